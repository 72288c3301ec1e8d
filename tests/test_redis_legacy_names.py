"""A Flask app on Redis (one server and a cluster) whose browsers hold sessions from before
the store's current key names: each such session was created, then moved to its earlier name
(``prefix{<hex>}``) with a raw client, as an earlier build of satchel left it. The browsers
keep their sessions for reads, writes, touches and a login's rotation; the admin CLI lists
and revokes them; "log out other devices" ends them; none is ever moved to the current name
(see :mod:`satchel.stores.redis.names`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from satchel import Satchel, ids
from tests.clock import FakeClock
from tests.modes import make_store
from tests.test_cli_sessions import Browser, cli, make_app

pytest.importorskip("redis")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["redis", "redis-cluster"])
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        app = make_app(make_store(request.param, clock, tmp_path, cleanup), clock)

        @app.post("/logout-others")
        def logout_others() -> str:
            return str(app.extensions["satchel"].revoke_user("alice", keep_current=True))

        yield app


def names(app: Flask, key: str) -> tuple[bytes, bytes]:
    """The current and the earlier name of storage key ``key``."""
    prefix = Satchel.store_of(app).prefix.encode()  # type: ignore[attr-defined]
    return (prefix + base64.urlsafe_b64encode(bytes.fromhex(key)).rstrip(b"="),
            prefix + b"{" + key.encode() + b"}")


def where(app: Flask, key: str) -> tuple[bool, bool]:
    client: Any = Satchel.store_of(app).client  # type: ignore[attr-defined]
    return tuple(client.exists(name) == 1 for name in names(app, key))  # type: ignore[return-value]


def predate(app: Flask, browser: Browser) -> None:
    """Move ``browser``'s session to its earlier name, TTL and all."""
    client: Any = Satchel.store_of(app).client  # type: ignore[attr-defined]
    new, old = names(app, browser.key)
    data, ttl = client.get(new), client.pttl(new)
    assert data is not None and ttl > 0, "the session is not under its current name"
    client.set(old, data, px=ttl)
    client.delete(new)


def test_sessions_from_before_the_new_names_keep_working(app: Flask, clock: FakeClock) -> None:
    alice1, alice2 = Browser(app, "/login/alice"), Browser(app, "/login/alice")
    bob = Browser(app, "/login/bob", agent="curl/8.5")
    clock.advance(120)  # past the grace period of the logins' rotations
    for browser in (alice1, alice2, bob):
        predate(app, browser)
    assert alice1.data() == {"_user_id": "alice"}  # read
    assert alice1.client.post("/visit").status_code == 200  # write
    assert alice1.data() == {"_user_id": "alice", "seen": True}
    client: Any = Satchel.store_of(app).client  # type: ignore[attr-defined]
    before = client.pttl(names(app, alice2.key)[1])
    clock.advance(400)  # past the touch interval: the next request slides the expiry
    assert alice2.data() == {"_user_id": "alice"}
    assert client.pttl(names(app, alice2.key)[1]) > before
    for browser in (alice1, alice2, bob):
        assert where(app, browser.key) == (False, True)  # never moved

    listed = cli(app, "list")
    assert listed.exit_code == 0, listed.output
    assert {row.split()[0] for row in listed.output.splitlines()[1:]} == {
        alice1.handle, alice2.handle, bob.handle}
    mine = cli(app, "list", "--user", "alice")
    assert {row.split()[0] for row in mine.output.splitlines()[1:]} == {
        alice1.handle, alice2.handle}
    assert cli(app, "stats").output.splitlines()[1:] == ["Live sessions: 3", "Users: 2"]

    revoked = cli(app, "revoke", "--handle", bob.handle)
    assert (revoked.exit_code, revoked.output) == (0, "Ended 1 session.\n")
    assert where(app, bob.key) == (False, False)
    assert bob.data() == {}

    assert alice1.client.post("/logout-others").text == "1"  # alice2's session ends
    assert where(app, alice2.key) == (False, False)
    assert alice2.data() == {}
    assert alice1.data() == {"_user_id": "alice", "seen": True}

    old_key = alice1.key
    assert alice1.client.post("/login/carol").status_code == 200  # a new user: a new id
    cookie = alice1.client.get_cookie("session")
    assert cookie is not None
    new_key = ids.storage_key(cookie.value[: ids.ID_LENGTH])
    assert new_key != old_key
    assert where(app, new_key) == (True, False)  # the rotated session: the current name
    assert alice1.data() == {"_user_id": "carol", "seen": True}
    clock.advance(120)  # past the grace period: the old id's tombstone is gone too
    assert where(app, old_key) == (False, False)
