"""The CPU a session store's server spends during one of bench/load.py's cells.

On a machine whose cores the app and the store's server share, every CPU second the
server spends on a request is one the app cannot: a store's server CPU per request
lowers req/s as the app's own does. A probe's :meth:`ServerCpu.start` opens a window;
the function it returns gives the server's CPU seconds (user + system) since then.

- Redis: the server's own ``INFO cpu`` (``used_cpu_user + used_cpu_sys``: all its
  threads). A server that other clients use counts their commands too.
- PostgreSQL: ``/proc/<pid>/stat`` (utime + stime, clock ticks: 1/100 s on Linux) of the
  processes whose comm is ``postgres``, readable without privileges: the backends of
  the run's own database and the server's background processes (WAL writer,
  checkpointer...). The backends of other databases (other clients) are left out, told
  apart by their process title; where a title cannot be read the process counts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ServerCpu(Protocol):
    """A store server's CPU meter; ``label`` says what it counts (for the report)."""

    label: str

    def start(self) -> Callable[[], float]:
        """Open a window: the returned function gives the server's CPU seconds since (>= 0)."""
        ...


class NoServer:
    """A contender without a store server (cookies, SQLite in the app's process): 0 s."""

    label = ""

    def start(self) -> Callable[[], float]:
        """A window in which nothing is counted: the function returns 0.0."""
        return lambda: 0.0


class RedisServer:
    """A redis-server's CPU from its ``INFO cpu``; ``client`` is a redis-py client of it,
    ``where`` its host:port (for the label: no credentials).

    ``own``: the server is the run's alone (else the label says the figure includes other
    clients' commands). Raises redis-py's errors if the server does not answer.
    """

    def __init__(self, client: Any, *, where: str, own: bool) -> None:
        self._client = client
        self.label = (f"Redis: INFO cpu of the run's own redis-server ({where})" if own else
                      f"Redis: INFO cpu of the redis-server at {where}, which other clients"
                      " use too: the figure includes their commands (--own-redis leaves"
                      " them out)")

    def _seconds(self) -> float:
        cpu = self._client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def start(self) -> Callable[[], float]:
        """Open a window; the function gives redis-server's CPU seconds since."""
        before = self._seconds()
        return lambda: max(0.0, self._seconds() - before)


def _counted(title: str, database: str) -> bool:
    """Whether a PostgreSQL process with process title ``title`` counts for ``database``.

    A client backend's title names its user, database and client address ("postgres:
    15/main: postgres db 127.0.0.1(5432) idle"); a background process's names its role
    ("postgres: 15/main: walwriter"). The postmaster's ("/usr/lib/.../postgres -D ...")
    is left out: it forks the backends of every client, and the run's connect before
    its cells. An unreadable (empty) title counts.
    """
    if not title:
        return True
    if not title.startswith("postgres:"):
        return False
    words = title.split()
    if database in words:
        return True
    if "autovacuum" in words and "worker" in words:  # another database's vacuum
        return False
    return not any(word == "[local]" or (word.endswith(")") and "(" in word)
                   for word in words)  # another database's client backend


def postgres_ticks(database: str) -> dict[tuple[int, int], int]:
    """utime + stime (clock ticks) of the PostgreSQL processes that count for ``database``
    (see :func:`_counted`), by (pid, start time): a pid reused within a window is a new
    process. Processes that vanish while read are skipped."""
    ticks: dict[tuple[int, int], int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if comm != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        if not _counted(title, database):
            continue
        fields = rest.split()  # fields[0] is stat's third field (state)
        ticks[(int(entry.name), int(fields[19]))] = int(fields[11]) + int(fields[12])
    return ticks


class PostgresServer:
    """The CPU of the PostgreSQL processes that serve ``database`` (see the module's doc)."""

    def __init__(self, database: str) -> None:
        self._database = database
        self.label = (f"PostgreSQL: /proc CPU of the backends of the run's database"
                      f" ({database}) and the server's background processes; other"
                      " databases' backends left out")

    def start(self) -> Callable[[], float]:
        """Open a window; the function gives those processes' CPU seconds since.

        A process started within the window counts all its CPU; one that ended within it
        counts none (its last ticks are gone with it).
        """
        before = postgres_ticks(self._database)

        def since() -> float:
            after = postgres_ticks(self._database)
            return sum(max(0, now - before.get(key, 0)) for key, now in after.items()) / _TICK

        return since


def probe(name: str, *, redis_client: Any, redis_url: str, own_redis: bool,
          database: str) -> ServerCpu:
    """The meter of contender ``name``'s store server: Redis for a name with "redis",
    PostgreSQL (``database``) for one with "postgres", else :class:`NoServer`."""
    if "redis" in name and redis_client is not None:
        parts = urlsplit(redis_url)
        return RedisServer(redis_client, where=f"{parts.hostname}:{parts.port or 6379}",
                           own=own_redis)
    if "postgres" in name:
        return PostgresServer(database)
    return NoServer()
