"""The store servers' CPU for the bare commands a session layer sends: a floor.

bench/load.py splits each layer's CPU per request into the app's and the store server's.
The server's part has a floor that no client code lowers: the commands themselves. This
sends them to the same servers, from one client, back to back, and reads the server's CPU
with the same meters as the cells (:mod:`load_store_cpu`):

- a read: one load (Redis ``GET``; PostgreSQL ``SELECT`` of a row by key);
- a write: a load, then a write (Redis ``GET`` and ``SET``; PostgreSQL ``SELECT`` and an
  ``UPDATE`` that merges a JSON field and commits without waiting for the WAL flush, as
  PostgresStore does by default).

The report sets each layer's app CPU beside the floor's server CPU: the req/s ratio to
Flask's cookie session that CPU would allow were the server's part only the bare commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from load_store_cpu import ServerCpu

COUNT = 3000  # requests' worth of commands per figure
QUICK_COUNT = 100


def _server_us(meter: ServerCpu, requests: Callable[[], None], count: int) -> float:
    """µs of the server's CPU per request over ``count`` requests' worth of commands."""
    requests()  # warm: connection, prepared statements, the server's caches
    since = meter.start()
    requests()
    return since() / count * 1e6


def redis_floor(client: Any, meter: ServerCpu, key: str, count: int) -> dict[str, float]:
    """{"read": µs, "write": µs} of redis-server CPU per request (see the module)."""
    value = b"x" * 64
    client.set(key, value)

    def reads() -> None:
        for _ in range(count):
            client.get(key)

    def writes() -> None:
        for _ in range(count):
            client.get(key)
            client.set(key, value)

    try:
        return {"read": _server_us(meter, reads, count), "write": _server_us(meter, writes, count)}
    finally:
        client.delete(key)


def postgres_floor(url: str, meter: ServerCpu, table: str, count: int) -> dict[str, float]:
    """{"read": µs, "write": µs} of PostgreSQL's CPU per request (see the module), on a
    table of its own in the database ``url`` names (the one ``meter`` counts)."""
    import psycopg

    from satchel.stores.postgres.statements import ASYNC_COMMIT

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY,"
                     " data jsonb NOT NULL, expires_at double precision NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES ('k', '{{\"n\": \"0\"}}', 1e12)"
                     " ON CONFLICT DO NOTHING")
        select = f"SELECT data::text, expires_at FROM {table} WHERE key = %s AND expires_at > %s"
        update = (f"UPDATE {table} SET data = data || %s::jsonb{ASYNC_COMMIT}"
                  " WHERE key = %s AND expires_at > %s")

        def reads() -> None:
            for _ in range(count):
                conn.execute(select, ("k", 0.0), prepare=True).fetchone()

        def writes() -> None:
            for n in range(count):
                conn.execute(select, ("k", 0.0), prepare=True).fetchone()
                conn.execute(update, (f'{{"n": "{n}"}}', "k", 0.0), prepare=True)

        try:
            return {"read": _server_us(meter, reads, count),
                    "write": _server_us(meter, writes, count)}
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def measure(meters: dict[str, ServerCpu], *, redis_client: Any, redis_key: str,
            postgres_url: str | None, count: int) -> dict[str, dict[str, float]]:
    """The floor of each satchel layer with a store server among ``meters`` (contender ->
    its meter): {contender: {"read": µs, "write": µs}}."""
    floors = {}
    for name, meter in meters.items():
        if name == "satchel-redis" and redis_client is not None:
            floors[name] = redis_floor(redis_client, meter, redis_key, count)
        elif name == "satchel-postgres" and postgres_url is not None:
            floors[name] = postgres_floor(postgres_url, meter, "satchel_bench_floor", count)
    return floors
