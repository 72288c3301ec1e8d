from __future__ import annotations

import time
from pathlib import Path

from click.testing import Result
from flask import Flask

from satchel import Satchel, SQLiteStore
from satchel.store import Record
from tests.clock import FakeClock
from tests.services import postgres_store


def purge(store: object, *options: str) -> Result:
    """Run ``flask satchel purge *options`` on an app whose sessions live in ``store``."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k" * 32
    Satchel(app, store=store)  # type: ignore[arg-type]
    return app.test_cli_runner().invoke(args=["satchel", "purge", *options])


def test_purge_deletes_expired_sessions_in_batches(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.sqlite3", clock=clock)
    for i in range(25):
        store.create(f"dead{i}", Record({"a": b"1"}, clock.now, clock.now, clock.now + 10))
    store.create("live", Record({"a": b"1"}, clock.now, clock.now, clock.now + 1000))
    clock.advance(11)
    result = purge(store, "--batch", "10")
    assert result.exit_code == 0, result.output
    assert "Deleted 25 expired session(s)." in result.output
    assert store.count_expired() == 0
    assert store.load("live") is not None


def test_purge_rejects_a_bad_batch_size(tmp_path: Path) -> None:
    result = purge(SQLiteStore(tmp_path / "s.sqlite3"), "--batch", "0")
    assert result.exit_code != 0
    assert "--batch" in result.output


def test_purge_on_a_store_that_expires_by_itself(tmp_path: Path) -> None:
    class SelfExpiring:
        def load(self, key: str) -> None:
            return None

        def create(self, key: str, record: Record) -> None: ...

        def update(self, key: str, patch: object) -> bool:
            return False

        def delete(self, key: str) -> None: ...

    result = purge(SelfExpiring())
    assert result.exit_code == 0
    assert "nothing to purge" in result.output


def test_purge_in_cookie_mode_says_there_is_nothing_to_purge() -> None:
    result = purge("cookie://")
    assert result.exit_code == 0, result.output
    assert "sealed in cookies" in result.output


def test_purge_on_postgres_deletes_expired_sessions_in_batches() -> None:
    with postgres_store() as store:
        from psycopg import sql

        table = sql.Identifier(store.table)
        now = time.time()
        with store.pool.connection() as conn:
            conn.execute(sql.SQL(
                "INSERT INTO {} (key, data, created_at, last_seen, expires_at)"
                " SELECT 'dead' || i, '{{\"a\": \"1\"}}', %s, %s, %s"
                " FROM generate_series(1, 2500) AS i").format(table),
                (now - 90, now - 90, now - 30))
        for i in range(3):
            store.create(f"live{i}", Record({"a": b"1"}, now, now, now + 3600))
        deleted: list[int] = []
        purge_expired = store.purge_expired

        def spy(batch: int = 1000) -> int:
            deleted.append(purge_expired(batch))
            return deleted[-1]

        store.purge_expired = spy
        result = purge(store, "--batch", "1000")
        assert result.exit_code == 0, result.output
        assert "Deleted 2500 expired session(s)." in result.output
        assert deleted == [1000, 1000, 500, 0]
        assert all(store.load(f"live{i}") == Record({"a": b"1"}, now, now, now + 3600)
                   for i in range(3))
        with store.pool.connection() as conn:
            rows = conn.execute(sql.SQL("SELECT key FROM {} ORDER BY key").format(table))
            assert [key for (key,) in rows] == ["live0", "live1", "live2"]
        assert store.count_expired() == 0
