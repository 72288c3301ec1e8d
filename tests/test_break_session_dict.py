"""Ways to change the session behind its change tracking, in every mode.

Found by trying to break issue 10's dict-based session: each test does what a
Flask user may do with ``flask.session`` and reads the result back with a
later request, as a user would notice it.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import MemoryStore, Satchel
from satchel.codec import default_codec
from satchel.session import Session
from tests.clock import FakeClock
from tests.modes import MODES, mode_app


@pytest.fixture(params=MODES)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        app = mode_app(request.param, FakeClock(), tmp_path, cleanup)

        @app.get("/seed")
        def seed() -> str:
            session.update({"user": "alice", "cart": ["apple"], "pair": (["a"], 1)})
            return "ok"

        @app.get("/copy-then-change-the-copy")
        def copy_then_change_the_copy() -> Any:
            session["visits"] = 1
            shallow = copy.copy(session)
            shallow.pop("user")  # a scratch copy, e.g. to render without the user
            deep = copy.deepcopy(session)
            deep.clear()
            return {"user": session["user"]}

        @app.get("/pickle")
        def pickle_session() -> Any:
            real = session._get_current_object()  # type: ignore[attr-defined]
            data = pickle.dumps(real)
            return {"data": pickle.loads(data), "type": type(pickle.loads(data)).__name__}

        @app.get("/mutate-inside-a-tuple")
        def mutate_inside_a_tuple() -> str:
            session["pair"][0].append("b")
            session.modified = True  # Flask's documented way to save a nested change
            return "ok"

        @app.get("/dump")
        def dump() -> Any:
            return {key: list(value) if isinstance(value, tuple) else value
                    for key, value in session.items()}

        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.get("/seed")
    return client


def test_changing_a_copy_of_the_session_leaves_the_session_alone(client: FlaskClient) -> None:
    # copy.copy(flask.session) shared the session's change tracking with the copy: popping a
    # key from the copy deleted it from the stored session, and clear() on a copy would drop
    # the session's own writes.
    assert client.get("/copy-then-change-the-copy").json == {"user": "alice"}
    assert client.get("/dump").json == {"user": "alice", "cart": ["apple"],
                                        "pair": [["a"], 1], "visits": 1}


def test_a_pickled_session_is_its_data_only(client: FlaskClient) -> None:
    # Flask's own session pickles as the dict it is; satchel's failed (the key ring in its
    # state) or, for a bare Session, carried the raw session id into the pickle.
    response = client.get("/pickle")
    assert response.status_code == 200
    assert response.json == {"data": {"user": "alice", "cart": ["apple"], "pair": [["a"], 1]},
                             "type": "dict"}


def test_pickle_and_copies_of_a_bare_session_hold_no_id() -> None:
    sid = "i" * 43
    session = Session(lambda s: s.adopt(sid, {}, {"k": [1]}, created_at=0.0, last_seen=0.0,
                                        permanent=False))
    data = pickle.dumps(session)
    assert sid.encode() not in data
    assert pickle.loads(data) == {"k": [1]}
    assert type(copy.copy(session)) is dict and type(copy.deepcopy(session)) is dict
    copied = copy.deepcopy(session)
    copied["k"].append(2)
    assert session["k"] == [1]


def test_modified_saves_a_change_inside_a_tuple(client: FlaskClient) -> None:
    # A list inside a tuple is changed in place, and the view says so with
    # session.modified = True, as Flask documents. Cookie mode saved it; the server-side
    # stores did not, silently.
    client.get("/mutate-inside-a-tuple")
    assert client.get("/dump").json["pair"] == [["a", "b"], 1]


# -- a read-only request writes nothing, whatever the process's hash seed --------------------


def test_reading_a_set_written_by_another_process_does_not_clobber_a_parallel_write() -> None:
    # A set's encoding followed the set's iteration order, which depends on the process's
    # hash seed (PYTHONHASHSEED): a request that only read a set stored by another process
    # (another worker, before a restart) found the bytes "changed" and wrote its copy back,
    # undoing a parallel request's write to that key.
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32)
    store = MemoryStore()
    Satchel(app, store=store)
    loaded, go = threading.Event(), threading.Event()

    @app.get("/seed")
    def seed() -> str:
        session["tags"] = {"a", "b", "c", "d", "e", "f"}
        return "ok"

    @app.get("/read")
    def read() -> str:
        found = "a" in session["tags"]
        loaded.set()
        assert go.wait(10)
        return str(found)

    @app.get("/add")
    def add() -> str:
        session["tags"] = session["tags"] | {"z"}
        return "ok"

    @app.get("/tags")
    def tags() -> Any:
        return sorted(session["tags"])

    client = app.test_client()
    client.get("/seed")
    # What another process (another hash seed) would have stored for the same set.
    ((_, record),) = store._records.items()
    theirs = [_encoded_in_another_process(seed) for seed in range(10)]
    record.fields["tags"] = next((data for data in theirs if data != record.fields["tags"]),
                                 theirs[0])
    assert default_codec.decode(record.fields["tags"]) == {"a", "b", "c", "d", "e", "f"}

    reader = threading.Thread(target=client.get, args=("/read",))
    reader.start()
    assert loaded.wait(10)
    client.get("/add")
    go.set()
    reader.join(10)
    assert client.get("/tags").json == ["a", "b", "c", "d", "e", "f", "z"]


def _encoded_in_another_process(seed: int) -> bytes:
    code = ("import sys; from satchel.codec import default_codec;"
            " sys.stdout.buffer.write(default_codec.encode({'a', 'b', 'c', 'd', 'e', 'f'}))")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
