"""Fuzzing the session cookie, in every mode: the inputs, and the checks on each answer.

Each input is a whole ``Cookie`` header (random bytes, huge values, many
cookies of one name, unicode, quoting, mutated real tokens, well-shaped
unsigned ids), sent through Flask's WSGI app (``app.wsgi_app``, no test
client) to a view that reads the session. Counted per input:

- an error: an exception out of the app, or an HTTP 500;
- a forgery accepted: the view saw the victim's session (or any stored id)
  through a cookie value that is not one the app issued;
- a store call for a malformed id: the store (a ``SpyStore``) was called at
  all for a cookie value the app never issued (the view only reads, so an
  issued-id check is the only store call a request may make).

``tests/test_fuzz.py`` runs a short, seeded run; ``bench/fuzz.py`` (``make fuzz``)
a long one.
"""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flask

from satchel import Satchel
from satchel.ids import new_id
from tests.clock import FakeClock
from tests.modes import make_store
from tests.spy import PrefetchSpy, SpyStore

_ALPHABET = string.ascii_letters + string.digits + "-_"
_NOISE = "=;,\" \\\t.\x00\x7f\xff%+/"


@dataclass
class Counts:
    inputs: int = 0
    errors: int = 0
    forgeries: int = 0
    malformed_store_calls: int = 0
    real: int = 0  # inputs where the app read the real token among the noise (no fault)
    examples: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.inputs += other.inputs
        self.errors += other.errors
        self.forgeries += other.forgeries
        self.malformed_store_calls += other.malformed_store_calls
        self.real += other.real
        self.examples += other.examples[:5]


class Target:
    """An app in ``mode`` with a victim's session, its spy store, and the tokens it issued."""

    def __init__(self, mode: str, folder: Path, cleanup: ExitStack) -> None:
        clock = FakeClock()
        store = make_store(mode, clock, folder, cleanup)
        if mode in ("redis", "postgres"):
            store = PrefetchSpy(store)
        elif mode != "cookie":
            store = SpyStore(store)
        self.spy = store if isinstance(store, SpyStore) else None
        app = flask.Flask(__name__)
        app.config.update(SECRET_KEY="k" * 32, PROPAGATE_EXCEPTIONS=True)
        Satchel(app, store=store, clock=clock)
        self.app = app
        self.seen: dict[str, Any] = {}

        @app.post("/login/<kind>")
        def login(kind: str) -> str:
            flask.session["user"] = "victim"
            flask.session.permanent = kind == "permanent"
            return "ok"

        @app.route("/", methods=["GET", "POST"])
        def read() -> str:
            session: Any = flask.session
            self.seen["user"] = session.get("user")
            self.seen["sid"] = getattr(session, "sid", None)
            self.seen["cookie"] = getattr(session, "request_cookie", None)
            return "read"

        client = app.test_client()
        self.tokens: list[str] = []
        for kind in ("browser", "permanent"):
            client.delete_cookie("session")
            client.post(f"/login/{kind}")
            cookie = client.get_cookie("session")
            assert cookie is not None
            self.tokens.append(cookie.value)
        self.issued = frozenset(self.tokens)
        for token in self.tokens:  # the victim's sessions are live: a forgery would see them
            client.set_cookie("session", token)
            client.get("/")
            assert self.seen["user"] == "victim"

    def run(self, header: str, counts: Counts) -> None:
        """Send one Cookie header; count what went wrong."""
        counts.inputs += 1
        if self.spy is not None:
            self.spy.reset()
        self.seen.clear()
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "localhost",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_COOKIE": header,
                   "wsgi.input": None, "wsgi.errors": None}
        status: list[str] = []
        try:
            body = self.app.wsgi_app(environ, lambda s, h, e=None: status.append(s))
            b"".join(body)
        except Exception as err:  # every escape is what the fuzz counts
            counts.errors += 1
            self._example(counts, f"error {type(err).__name__}: {err}", header)
            return
        if not status or status[0].startswith("500"):
            counts.errors += 1
            self._example(counts, f"status {status}", header)
            return
        cookie = self.seen.get("cookie")
        if cookie in self.issued:
            counts.real += 1
            return  # the real token, among the noise: the victim's session, rightly
        if self.seen.get("user") is not None or self.seen.get("sid") is not None:
            counts.forgeries += 1
            self._example(counts, "forgery accepted", header)
        if self.spy is not None and self.spy.calls:
            counts.malformed_store_calls += 1
            self._example(counts, f"store calls {self.spy.names()}", header)

    @staticmethod
    def _example(counts: Counts, what: str, header: str) -> None:
        if len(counts.examples) < 20:
            counts.examples.append(f"{what}: {header[:200]!r}")


def _mutate(rng: random.Random, token: str) -> str:
    chars = list(token)
    if not chars:
        return rng.choice(_ALPHABET + _NOISE)
    kind = rng.randrange(9)
    if kind == 0:  # one character changed
        chars[rng.randrange(len(chars))] = rng.choice(_ALPHABET + _NOISE)
    elif kind == 1:  # one dropped
        del chars[rng.randrange(len(chars))]
    elif kind == 2:  # one inserted
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(_ALPHABET + _NOISE))
    elif kind == 3:  # truncated
        del chars[rng.randrange(len(chars) + 1):]
    elif kind == 4:  # extended
        chars += rng.choices(_ALPHABET, k=rng.randrange(1, 40))
    elif kind == 5:  # case swapped
        i = rng.randrange(len(chars))
        chars[i] = chars[i].swapcase()
    elif kind == 6:  # permanence flag flipped, MAC kept
        text = token.replace(".b", ".p", 1) if ".b" in token else token.replace(".p", ".b", 1)
        return text
    elif kind == 7:  # the last character's spare bits changed (non-canonical base64)
        last = _ALPHABET.index(chars[-1]) if chars[-1] in _ALPHABET else 0
        chars[-1] = _ALPHABET[(last ^ rng.randrange(1, 4)) % 64]
    else:  # a few mutations at once
        text = token
        for _ in range(rng.randrange(2, 5)):
            text = _mutate(rng, text)
        return text
    return "".join(chars)


def header_for(rng: random.Random, tokens: list[str]) -> str:
    """One Cookie header for the fuzz: see the module docstring for the kinds."""
    token = rng.choice(tokens)
    kind = rng.randrange(10)
    if kind == 0:  # random bytes, as a WSGI server hands them over (latin-1)
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(200))).decode("latin-1")
    if kind == 1:  # a huge value
        size = rng.choice((129, 4097, 65536))
        return "session=" + rng.choice((token[:10], "A", "=", "\xff")) * size
    if kind == 2:  # many cookies of one name, at most one of them real
        values = [_mutate(rng, token) for _ in range(rng.randrange(2, 30))]
        if rng.random() < 0.3:
            values.insert(rng.randrange(len(values) + 1), token)
        return "; ".join(f"session={value}" for value in values)
    if kind == 3:  # unicode, as UTF-8 bytes read as latin-1, or as is
        text = "".join(chr(rng.randrange(0x80, 0x2FFFF)) for _ in range(rng.randrange(1, 40)))
        if rng.random() < 0.5:
            text = text.encode("utf-8", "surrogatepass").decode("latin-1")
        return f"session={text}" if rng.random() < 0.7 else text
    if kind == 4:  # quoting and escapes around a mutated token
        return f'session="{_mutate(rng, token)}"' + rng.choice(("", "; a=b", '\\"', ";"))
    if kind == 5:  # a well-shaped id, unsigned or signed by someone else
        return f"session={new_id()}.{rng.choice('pb')}" + "".join(rng.choices(_ALPHABET, k=22))
    if kind == 6:  # the real id with another token's MAC
        other = rng.choice(tokens)
        if token.startswith("session") or "." not in token:
            return f"session={_mutate(rng, token)}"
        return f"session={token.split('.')[0]}.{other.split('.', 1)[1]}"
    if kind == 7:  # a noisy header around a mutated token
        parts = [f"{''.join(rng.choices(_ALPHABET, k=5))}={''.join(rng.choices(_NOISE, k=3))}"
                 for _ in range(rng.randrange(5))]
        parts.insert(rng.randrange(len(parts) + 1), f"session={_mutate(rng, token)}")
        return rng.choice((";", "; ", ",", " ;")).join(parts)
    return f"session={_mutate(rng, token)}"  # a mutated real token


def fuzz(mode: str, count: int, seed: int, folder: Path) -> Counts:
    """``count`` inputs against a fresh app in ``mode``; the counts."""
    counts = Counts()
    quiet = [logging.getLogger(name) for name in ("satchel", "satchel.security")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)  # a rejected cookie is logged, a million times
    try:
        with ExitStack() as cleanup:
            target = Target(mode, folder, cleanup)
            rng = random.Random(seed)
            for _ in range(count):
                target.run(header_for(rng, target.tokens), counts)
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return counts


def inputs_of(seed: int, tokens: list[str], count: int) -> Iterator[str]:
    """The first ``count`` headers of the run seeded with ``seed`` (to replay one)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield header_for(rng, tokens)
