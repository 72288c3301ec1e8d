"""Sealing: AES-256-GCM tokens bound to a cookie name and purpose, with key rotation."""

from __future__ import annotations

import base64
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.sealed import COMPRESS_MIN, FLAG_COMPRESSED, FLAG_PERMANENT, Sealer, looks_permanent

PURPOSE = "test/purpose"
PLAIN = b'[1,1800000000.0,1800000000.0,1800086400.0,{"user":"alice","cart":[1,2,3]}]'


def sealer(secret: str = "current secret", *fallbacks: str, compress: bool = True) -> Sealer:
    return Sealer(secret, fallbacks, purpose=PURPOSE, compress=compress)


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def spell(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip_keeps_plaintext_and_permanence() -> None:
    ring = sealer()
    for permanent in (False, True):
        opened = ring.open(ring.seal(PLAIN, name="session", permanent=permanent), name="session")
        assert opened is not None
        assert (opened.plaintext, opened.permanent, opened.key_index) == (PLAIN, permanent, 0)


def test_token_hides_the_data_and_never_repeats() -> None:
    ring = sealer()
    first, second = (ring.seal(PLAIN, name="session") for _ in range(2))
    assert first != second  # fresh salt and nonce each time
    for token in (first, second):
        assert b"alice" not in raw(token)
        assert "alice" not in token


def test_bound_to_cookie_name_and_purpose() -> None:
    token = sealer().seal(PLAIN, name="session")
    assert sealer().open(token, name="other_session") is None
    assert Sealer("current secret", purpose="another/purpose").open(token, name="session") is None


def test_fallback_keys_open_old_tokens_and_say_so() -> None:
    old_token = sealer("old secret").seal(PLAIN, name="session")
    assert sealer("new secret").open(old_token, name="session") is None
    opened = sealer("new secret", "older secret", "old secret").open(old_token, name="session")
    assert opened is not None and opened.key_index == 2 and opened.plaintext == PLAIN
    # New tokens are always sealed under the current key.
    fresh = sealer("new secret", "old secret").seal(PLAIN, name="session")
    assert sealer("new secret").open(fresh, name="session") is not None


def test_header_flags_are_authenticated() -> None:
    token = sealer().seal(PLAIN, name="session", permanent=False)
    data = bytearray(raw(token))
    data[1] |= FLAG_PERMANENT
    forged = spell(bytes(data))
    assert looks_permanent(forged)  # the cheap pre-check believes it...
    assert sealer().open(forged, name="session") is None  # ...opening does not


def test_compresses_only_when_it_pays() -> None:
    ring = sealer()
    tiny = ring.seal(b"[1]", name="s")
    assert not raw(tiny)[1] & FLAG_COMPRESSED
    repetitive = b'{"note":"' + b"ab" * 1000 + b'"}'
    packed = ring.seal(repetitive, name="s")
    assert raw(packed)[1] & FLAG_COMPRESSED
    assert len(packed) < len(repetitive) // 4
    opened = ring.open(packed, name="s")
    assert opened is not None and opened.plaintext == repetitive
    random_ish = bytes(range(256)) * 2
    assert len(random_ish) >= COMPRESS_MIN
    assert ring.open(ring.seal(random_ish, name="s"), name="s").plaintext == random_ish  # type: ignore[union-attr]
    unpacked = sealer(compress=False).seal(repetitive, name="s")
    assert not raw(unpacked)[1] & FLAG_COMPRESSED


def test_only_one_spelling_of_a_token_opens() -> None:
    token = sealer().seal(PLAIN, name="session")
    # The last character carries spare bits; another character with the same
    # decoded bytes must not open (one token, one spelling).
    alphabet = string.ascii_letters + string.digits + "-_"
    twins = [token[:-1] + c for c in alphabet
             if c != token[-1] and raw(token[:-1] + c) == raw(token)]
    assert twins, "the token's length leaves spare bits in its last character"
    for twin in twins:
        assert sealer().open(twin, name="session") is None
    assert sealer().open(token + "=", name="session") is None
    standard_alphabet = token.replace("-", "+").replace("_", "/")
    if standard_alphabet != token:
        assert sealer().open(standard_alphabet, name="session") is None


# -- property: no mutation of a real token is ever accepted, and none raises -----------

RING = sealer("current secret", "old secret")
TOKENS = [RING.seal(PLAIN, name="session", permanent=p) for p in (False, True)]
TOKENS.append(sealer("old secret").seal(PLAIN * 20, name="session"))  # compressed, fallback key


@st.composite
def mutated_tokens(draw: st.DrawFn) -> str:
    token = draw(st.sampled_from(TOKENS))
    data = bytearray(raw(token))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "swap", "extend",
                                 "text", "replace-bytes"]))
    if kind == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
        return spell(bytes(data))
    if kind == "truncate":
        return token[:draw(st.integers(0, len(token) - 1))]
    if kind == "insert":
        at = draw(st.integers(0, len(token)))
        return token[:at] + draw(st.text(min_size=1, max_size=4)) + token[at:]
    if kind == "delete":
        at = draw(st.integers(0, len(token) - 1))
        return token[:at] + token[at + draw(st.integers(1, 8)):]
    if kind == "swap":
        i = draw(st.integers(0, len(data) - 2))
        j = draw(st.integers(i + 1, len(data) - 1))
        if data[i] == data[j]:
            data[i] ^= 0xFF
        data[i], data[j] = data[j], data[i]
        return spell(bytes(data))
    if kind == "extend":
        return token + draw(st.text(min_size=1, max_size=16))
    if kind == "replace-bytes":
        at = draw(st.integers(0, len(data) - 1))
        new = draw(st.binary(min_size=1, max_size=16))
        spliced = bytes(data[:at]) + new + bytes(data[at + len(new):])
        if spliced == bytes(data):
            spliced = spliced[:-1]
        return spell(spliced)
    return draw(st.text(max_size=300))


@settings(max_examples=1000, deadline=None)
@given(mutated_tokens())
def test_no_mutated_token_opens(token: str) -> None:
    if token in TOKENS:
        return  # a mutation that happened to give the token back is not a mutation
    assert RING.open(token, name="session") is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOKENS), st.text(max_size=20))
def test_no_token_opens_under_another_name(token: str, name: str) -> None:
    if name != "session":
        assert RING.open(token, name=name) is None


def test_a_token_opened_again_gives_the_same_answer_and_only_for_its_cookie_name() -> None:
    ring = sealer()
    token = ring.seal(PLAIN, name="session", permanent=True)
    first = ring.open(token, name="session")
    assert first is not None and ring.open(token, name="session") == first
    assert ring.open(token, name="other") is None  # bound to the name, remembered or not
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert ring.open(tampered, name="session") is None
    assert ring.open(tampered, name="session") is None  # a failure is never remembered
    rotated = sealer("new secret", "current secret")  # a new key ring forgets nothing wrongly
    opened = rotated.open(token, name="session")
    assert opened is not None and opened.key_index == 1
    assert sealer("unrelated secret").open(token, name="session") is None


def test_the_tokens_remembered_are_bounded() -> None:
    from satchel.sealed import OPENED_CACHE_SIZE

    ring = sealer()
    tokens = [ring.seal(PLAIN, name="session") for _ in range(OPENED_CACHE_SIZE + 10)]
    for token in tokens:
        opened = ring.open(token, name="session")
        assert opened is not None and opened.plaintext == PLAIN
    assert len(ring._opened) <= OPENED_CACHE_SIZE
    big = ring.seal(b"x" * 10_000, name="session")
    assert ring.open(big, name="session") is not None
    assert ("session", big) not in ring._opened  # too big to keep


@given(st.binary(min_size=0, max_size=6), st.text(string.ascii_letters + "-_=.", max_size=3))
def test_looks_permanent_reads_the_header_the_same_way_every_time(head: bytes,
                                                                   noise: str) -> None:
    token = spell(head) + noise
    claims = len(head) >= 2 and head[0] == 1 and bool(head[1] & FLAG_PERMANENT)
    for _ in range(2):  # the second answer is the remembered one
        answer = looks_permanent(token)
        if len(token) >= 4 and not noise:
            assert answer == claims
        assert answer == looks_permanent(token[:4])
