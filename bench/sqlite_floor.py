"""Where satchel's SQLite write goes: its layer beside floors built up one part at a time.

``make bench`` sets satchel's SQLite layer beside the bare ``sqlite3`` calls timed in a bare
app's request. That floor leaves out two costs any SQLite layer of satchel's pays: its
session machinery, which runs in the same request (satchel-memory's overhead), and the
slower running of the rest of the request once SQLite and the kernel have run in it
(their code and data push the interpreter's out of the CPU's caches). This benchmark times,
in one interleaved run, through WSGI in-process as ``make bench`` does:

- ``memory``: satchel on its memory store;
- ``memory+calls``: the same, whose store also makes the bare calls: a SELECT by key on
  load, an autocommitted INSERT OR REPLACE on update, on a WAL file with
  ``synchronous=NORMAL`` (the calls of ``contender_apps.sqlite_calls``);
- ``memory+calls+guards``: the same, with what SQLiteStore's guarantees add to a write:
  the write in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (a write that waited for another writer's
  lock is checked against the file at the path before it commits), a ``stat`` of the
  folder (that check), and the lock that queues the writers of several processes (two
  ``flock`` calls);
- ``memory+schema``: the same guarded write, but the statements are the SQLite store's own on
  its schema (a session row and a row per key, which is what merges per key): on load its
  SELECT of the session with its fields, on update its INSERT of the key that checks in the
  same statement that the session is live (so a write never brings back a session that
  expired or was revoked);
- ``sqlite``: satchel on :class:`SQLiteStore`.

Each line gives the overhead over a bare app (µs; write / read) and the ratio to Flask's
cookie session's overhead, the peer of ``make bench``'s SQLite goal. The gap between the last
two lines is the store's own Python code around the same statements. Prints only; writes no report.

    .venv/bin/python bench/sqlite_floor.py            # about 2 minutes
    .venv/bin/python bench/sqlite_floor.py --quick    # a smoke run, figures not meaningful
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import contender_apps
from contender_apps import satchel_on
from timing import fastest_interleaved

from satchel import MemoryStore
from satchel.store import Patch, Record, Updated


class _CallsStore(MemoryStore):
    """A memory store whose load and update also make the bare SQLite calls of a layer on
    SQLite (``guards``: and what SQLiteStore's guarantees add to a write)."""

    def __init__(self, folder: Path, *, guards: bool) -> None:
        super().__init__()
        folder.mkdir(exist_ok=True)
        self._folder = str(folder)
        self._db = contender_apps.calls_db(folder / "calls.sqlite3")
        self._cur = self._db.cursor()
        self._lock_fd = contender_apps.calls_lock(folder / "calls.sqlite3")
        self._guards = guards

    def load(self, key: str) -> Record | None:
        self._cur.execute(contender_apps.CALLS_SELECT, ("k",)).fetchall()
        return super().load(key)

    def update(self, key: str, patch: Patch) -> Updated:
        params = ("k", b'{"n": 1}')
        if self._guards:
            contender_apps.guarded_write(self._cur, self._lock_fd, self._folder, params)
        else:
            self._cur.execute(contender_apps.CALLS_WRITE, params)
        return super().update(key, patch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    seconds, repeats = (0.02, 2) if args.quick else (0.25, 15)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        apps = {
            "bare": contender_apps.bare(),
            "flask-cookie": contender_apps.flask_cookie(),
            "memory": satchel_on(MemoryStore(), "memory"),
            "memory+calls": satchel_on(_CallsStore(folder / "calls", guards=False), "calls"),
            "memory+calls+guards": satchel_on(_CallsStore(folder / "guards", guards=True),
                                              "guards"),
            "memory+schema": satchel_on(contender_apps.SchemaFloor(folder / "schema"), "schema"),
            "sqlite": contender_apps.satchel_sqlite(folder),
        }
        times: dict[str, dict[str, float]] = {}
        for path in ("/write", "/read"):
            calls = {}
            for name, app in apps.items():
                cookie = None if name == "bare" else contender_apps.login_cookie(app)
                environ = contender_apps.environ_for(path, cookie)
                calls[name] = (lambda app=app, environ=environ:  # type: ignore[misc]
                               contender_apps.drive(app, environ, 1))
            times[path] = fastest_interleaved(calls, seconds=seconds, repeats=repeats)
    over = {path: {name: (t - found["bare"]) * 1e6 for name, t in found.items()}
            for path, found in times.items()}
    print(f"overhead over a bare app (µs), fastest of {repeats} interleaved runs;"
          " in brackets the ratio to Flask's cookie session's; the bare app took"
          f" {times['/write']['bare'] * 1e6:.1f} µs (/write), {times['/read']['bare'] * 1e6:.1f}"
          " µs (/read)")
    print(f"  {'':22}{'write':>16}{'read':>16}")
    for name in apps:
        if name == "bare":
            continue
        cells = [f"{over[p][name]:7.1f} ({over[p][name] / over[p]['flask-cookie']:.2f}x)"
                 for p in ("/write", "/read")]
        print(f"  {name:22}{cells[0]:>16}{cells[1]:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
