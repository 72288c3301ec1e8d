"""Per-request session overhead: satchel next to Flask's built-in session and Flask-Session.

Every contender is the same Flask app with three routes, driven in-process
through WSGI with a prebuilt environ (no sockets, no test client), so what is
timed is Flask plus the session layer:

- ``write``: reads a counter from the session and stores it plus one;
- ``read``: reads one key (a logged-in user) and changes nothing;
- ``untouched``: never touches the session (a health check, a static-like page).

Overhead is a contender's time per request minus the bare app's (the same
routes with no session layer at all: not even Flask's built-in one, which
costs every request something even when the view never touches it). The
ratios divide satchel's overhead by a peer's.

Every contender is measured the same way: one round times every cell (a
contender and a scenario) once, scenario by scenario (all the write cells,
then all the read cells, then all the untouched ones), the contenders in a
new shuffled order each round (seeded: runs are repeatable); a cell's figure
is its fastest round. Rounds used to go contender by contender (its write,
read and untouched cells, then the next contender's), which put each
untouched cell right after its own store's writes, in every round: whatever
work those writes leave behind outside the timed code (the kernel writing
back the SQLite files, PostgreSQL flushing its WAL, Redis persisting) falls
on the same cells each time, where the fastest round cannot leave it out.
Full runs in that order gave 5.3-5.6 µs of overhead on untouched requests to
satchel-sqlite and 4.1-4.3 to satchel-postgres-durable, against 2.5-2.9 to
satchel-memory, and 2.9 to SQLite timed without its write cells, though all
run the same number of instructions per untouched request (callgrind).

    python bench/overhead.py            # 3 to 5 minutes here
    python bench/overhead.py --quick    # a smoke run, figures not meaningful
    python bench/overhead.py --only flask-cookie,satchel-cookie
    python bench/overhead.py --permanent   # sessions made permanent at login
    python bench/overhead.py --quick --out /tmp/x   # also write the report there

A full run also writes bench/results/overhead.md and overhead.png (or
overhead-permanent.*); a ``--quick`` or ``--only`` run writes a report only
where ``--out`` says.

Flask-Session runs its SQLAlchemy backend on a SQLite file, the closest peer
of satchel's embedded store; its cachelib backend is shown too when cachelib is
installed (an in-process dict, as satchel's memory store).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
from pathlib import Path

import contender_apps
import report
from flask import Flask
from paired import median_difference

SCENARIOS = ("write", "read", "untouched")
SQLITE_CALLS = "sqlite-calls"  # the bare SQLite calls, timed in a request (see _floor_lines)


def paired_untouched(apps: dict[str, Flask], *, seconds: float,
                     blocks: int) -> dict[str, tuple[float, float, float]]:
    """Each session layer's untouched overhead, paired with the bare app's untouched request
    (see :mod:`paired`): seconds per request, the median and the quartiles over ``blocks``
    blocks of about ``seconds`` a side."""
    bare_app = apps["bare"]
    bare_environ = contender_apps.environ_for("/untouched", contender_apps.login_cookie(bare_app))
    count = max(20, int(seconds / contender_apps.drive(bare_app, bare_environ, 50)))
    figures = {}
    for name, app in apps.items():
        if name != "bare":
            environ = contender_apps.environ_for("/untouched", contender_apps.login_cookie(app))
            contender_apps.drive(app, environ, 50)
            gc.collect()
            figures[name] = median_difference(
                lambda n: contender_apps.drive(bare_app, bare_environ, n),
                lambda n, app=app, environ=environ: contender_apps.drive(app, environ, n),
                count=count, blocks=blocks)
    return figures


def _paired_lines(paired: dict[str, tuple[float, float, float]]) -> list[str]:
    lines = ["untouched overhead, paired with the bare app's untouched request (median of"
             " blocks back to back, in µs; in brackets the quartiles):"]
    lines += [f"  {name:26}{middle * 1e6:>6.1f}  ({low * 1e6:.1f} .. {high * 1e6:.1f})"
              for name, (middle, low, high) in paired.items()]
    return lines


def measure_all(apps: dict[str, Flask], *, seconds_per_run: float, repeats: int,
                seed: int = 0) -> dict[str, dict[str, float]]:
    """Seconds per request for every app and scenario: the fastest of ``repeats`` runs.

    The fastest run is the one least disturbed by the rest of the machine
    (timeit's rule); noise only ever adds time.

    Each cell's request count is calibrated so one timed run lasts about
    ``seconds_per_run``; the runs are interleaved (one round visits every
    cell) so that drift in the machine's speed hits all contenders alike.
    A round goes scenario by scenario, in :data:`SCENARIOS` order, the
    contenders shuffled anew for each (by ``seed``): no cell always follows
    the same neighbour, and no untouched or read cell follows a write cell,
    whose after-effects (see the module's docstring) would fall on it.
    """
    cells = {}
    for name, app in apps.items():
        for scenario in SCENARIOS:
            environ = contender_apps.environ_for(f"/{scenario}", contender_apps.login_cookie(app))
            warm = contender_apps.drive(app, environ, 20)
            cells[name, scenario] = (app, environ, max(20, int(seconds_per_run / warm)))
    runs: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
    order = random.Random(seed)
    names = list(apps)
    for _ in range(repeats):
        for scenario in SCENARIOS:
            order.shuffle(names)
            for name in names:
                app, environ, count = cells[name, scenario]
                gc.collect()
                runs[name, scenario].append(contender_apps.drive(app, environ, count))
    results: dict[str, dict[str, float]] = {name: {} for name in apps}
    for (name, scenario), times in runs.items():
        results[name][scenario] = min(times)
    return results


def contenders(tmp: Path) -> dict[str, Flask]:
    apps: dict[str, Flask | None] = {
        "bare": contender_apps.bare(),
        "flask-cookie": contender_apps.flask_cookie(),
        "flask-session-cachelib": contender_apps.flask_session_cachelib(),
        "flask-session-sqlalchemy": contender_apps.flask_session_sqlalchemy(
            f"sqlite:///{tmp / 'flask_session.sqlite3'}"),
        "flask-session-postgres": contender_apps.flask_session_postgres(),
        "flask-session-redis": contender_apps.flask_session_redis(),
        "satchel-cookie": contender_apps.satchel_cookie(),
        "satchel-memory": contender_apps.satchel_memory(),
        "satchel-sqlite": contender_apps.satchel_sqlite(tmp),
        SQLITE_CALLS: contender_apps.sqlite_calls(tmp),  # a floor, not a contender
        "satchel-redis": contender_apps.satchel_redis(),
        "satchel-postgres": contender_apps.satchel_postgres(),
        "satchel-postgres-durable": contender_apps.satchel_postgres(durable_writes=True),
    }
    missing = [name for name, app in apps.items() if app is None]
    if missing:
        print(f"skipped (not installed; pip install -e '.[bench]'): {', '.join(missing)}",
              file=sys.stderr)
    return {name: app for name, app in apps.items() if app is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    parser.add_argument("--seconds", type=float, default=0.25,
                        help="length of one timed run of one cell")
    parser.add_argument("--repeats", type=int, default=9,
                        help="timed runs per cell (the fastest counts)")
    parser.add_argument("--only", default="",
                        help="comma-separated contenders to run (the bare app always runs)")
    parser.add_argument("--permanent", action="store_true",
                        help="permanent sessions (session.permanent = True at login), with"
                             " Flask's default SESSION_REFRESH_EACH_REQUEST")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the report (default: bench/results for a full run,"
                             " none for --quick or --only)")
    args = parser.parse_args(argv)
    seconds, repeats = (0.01, 1) if args.quick else (args.seconds, args.repeats)

    with tempfile.TemporaryDirectory(prefix="satchel-bench-") as tmpdir:
        apps = contenders(Path(tmpdir))
        if args.only:
            wanted = {"bare", *args.only.split(",")}
            if "satchel-sqlite" in wanted:
                wanted.add(SQLITE_CALLS)
            unknown = wanted - set(apps)
            if unknown:
                parser.error(f"unknown contender(s): {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(apps)}")
            apps = {name: app for name, app in apps.items() if name in wanted}
        for app in apps.values():
            app.config["BENCH_PERMANENT"] = args.permanent
        try:
            results = measure_all(apps, seconds_per_run=seconds, repeats=repeats)
            apps.pop(SQLITE_CALLS, None)
            floors = (contender_apps.raw_round_trips(seconds, repeats)
                      | contender_apps.postgres_floors(seconds, repeats))
            paired = paired_untouched(apps, seconds=seconds / 25, blocks=5 if args.quick else 101)
        finally:
            contender_apps.cleanup_redis()
            contender_apps.cleanup_postgres()

    base = results.pop("bare")
    calls = results.pop(SQLITE_CALLS, None)
    if calls is not None:
        floors |= {"sqlite SELECT+UPSERT": calls["write"] - base["write"],
                   "sqlite SELECT": calls["read"] - base["read"]}
    print(f"per-request time in µs (fastest of {repeats} interleaved runs of ~{seconds}s each);"
          " in brackets the overhead: time - bare app's")
    print(f"{'':26}" + "".join(f"{s:>22}" for s in SCENARIOS))
    print(f"{'bare flask (no session)':26}"
          + "".join(f"{base[s] * 1e6:>22.1f}" for s in SCENARIOS))
    overhead = {name: {s: row[s] - base[s] for s in SCENARIOS} for name, row in results.items()}
    for name, row in results.items():
        cells = "".join(f"{row[s] * 1e6:>9.1f} (+{overhead[name][s] * 1e6:>7.1f})   "
                        for s in SCENARIOS)
        print(f"{name:26}{cells}")

    print("\nsatchel overhead as a ratio of the peer's (lower is better):")
    peers = ("flask-cookie", "flask-session-cachelib", "flask-session-sqlalchemy")
    pairs = [("satchel-cookie", "flask-cookie"), ("satchel-redis", "flask-session-redis"),
             ("satchel-postgres", "flask-session-postgres"),
             ("satchel-postgres-durable", "flask-session-postgres")] + [
        (mine, peer) for mine in ("satchel-memory", "satchel-sqlite") for peer in peers]
    pairs = [(m, p) for m, p in pairs if m in overhead and p in overhead]
    for mine, peer in pairs:
        cells = "".join(f"{_ratio(overhead[mine][s], overhead[peer][s]):>12}" for s in SCENARIOS)
        print(f"  {mine:24} / {peer:26}{cells}")
    _print_floors(floors, overhead)
    untouched_lines = _paired_lines(paired)
    print("\n" + "\n".join(untouched_lines))
    out = args.out or (None if args.quick or args.only else report.RESULTS)
    if out is not None:
        name = "overhead-permanent" if args.permanent else "overhead"
        written = _report(out, name, base, results, overhead, pairs, repeats, seconds,
                          _floor_lines(floors, overhead) + untouched_lines)
        print(f"\nreport: {written} (and {written.with_suffix('.png').name})")
    return 0


def _report(out: Path, name: str, base: dict[str, float], results: dict[str, dict[str, float]],
            overhead: dict[str, dict[str, float]], pairs: list[tuple[str, str]],
            repeats: int, seconds: float, floor_lines: list[str]) -> Path:
    """Write the run's tables and chart to ``out/name.md`` and ``.png``; the markdown's path."""
    rows = [["bare flask (no session)", *(f"{base[s] * 1e6:.1f}" for s in SCENARIOS)]]
    rows += [[n, *(f"{row[s] * 1e6:.1f} (+{overhead[n][s] * 1e6:.1f})" for s in SCENARIOS)]
             for n, row in results.items()]
    ratios = [[f"{mine} / {peer}", *(_ratio(overhead[mine][s], overhead[peer][s])
                                      for s in SCENARIOS)] for mine, peer in pairs]
    body = (f"Per-request time in µs, in-process WSGI (fastest of {repeats} interleaved runs of"
            f" ~{seconds} s each); in brackets the overhead: time - the bare app's.\n\n"
            + report.markdown_table(["", *SCENARIOS], rows)
            + "\nsatchel's overhead as a ratio of the peer's (lower is better):\n\n"
            + report.markdown_table(["", *SCENARIOS], ratios)
            + ("\n```\n" + "\n".join(floor_lines) + "\n```\n" if floor_lines else ""))
    panel = report.Panel(title="overhead over a contender_apps.bare Flask app (lower is better)",
                         unit="µs per request (log scale)", categories=list(overhead),
                         series={s: [max(overhead[n][s] * 1e6, 0.1) for n in overhead]
                                 for s in SCENARIOS}, log=True)
    return report.write(out, name, title="Per-request session overhead (make bench)",
                        env=report.environment(redis_url=contender_apps.REDIS_URL,
                                               postgres_url=contender_apps.POSTGRES_URL),
                        command=report.command_line(), body=body, panels=[panel])


_SQLITE_FLOORS = ("sqlite SELECT+UPSERT", "sqlite SELECT")


def _floor_lines(floors: dict[str, float], overhead: dict[str, dict[str, float]]) -> list[str]:
    """What the floors say of the run: each layer's overhead over the bare calls its store
    needs, and the lowest overhead ratio to its peer those calls alone would allow (a layer
    that did nothing but them).

    The floors of Redis and PostgreSQL are driver round trips timed in a loop; SQLite's are
    the calls of :func:`contender_apps.sqlite_calls`, timed in a request as the layers are
    (in-process calls run slower with the caches a request's Flask work leaves them; a
    round trip's time is mostly the server's and the network's). SQLite's calls run in the
    request's thread, where nothing overlaps them, so satchel's own session machinery
    (satchel-memory's overhead) adds to them: that sum is the floor under satchel's SQLite
    layer. A Redis or PostgreSQL load is sent as the request opens and overlaps it.
    """
    trips = {name: value for name, value in floors.items() if name not in _SQLITE_FLOORS}
    lines = []
    if trips:
        lines.append("raw driver round trips on the same servers, µs: "
                     + ", ".join(f"{name} {value * 1e6:.1f}" for name, value in trips.items()))
    if _SQLITE_FLOORS[0] in floors:
        lines.append("raw sqlite3 calls in a request of a bare app (WAL, synchronous=NORMAL),"
                     " µs over the bare app: "
                     + ", ".join(f"{name.removeprefix('sqlite ')} {floors[name] * 1e6:.1f}"
                                 for name in _SQLITE_FLOORS))
    layers = [("satchel-redis", "flask-session-redis", ("redis GET", "redis SET"), "GET+SET",
               "redis GET", "GET", "round trips"),
              ("satchel-postgres", "flask-session-postgres",
               ("psycopg SELECT", "psycopg UPDATE, async commit"), "SELECT+UPDATE, async commit",
               "psycopg SELECT", "SELECT", "round trips"),
              ("satchel-postgres-durable", "flask-session-postgres",
               ("psycopg SELECT", "psycopg UPDATE"), "SELECT+UPDATE", "psycopg SELECT",
               "SELECT", "round trips"),
              ("satchel-sqlite", "flask-cookie", ("sqlite SELECT+UPSERT",), "SELECT+UPSERT",
               "sqlite SELECT", "SELECT", "sqlite calls")]
    for name, peer, writes, write_label, read, read_label, what in layers:
        if name not in overhead or read not in floors or not all(w in floors for w in writes):
            continue
        write_floor, read_floor = sum(floors[w] for w in writes), floors[read]
        cells = overhead[name]
        lines.append(f"  {name} overhead / {what}: write"
                     f" {_ratio(cells['write'], write_floor)} (of {write_label}), read"
                     f" {_ratio(cells['read'], read_floor)} (of {read_label})")
        if peer in overhead:
            theirs = overhead[peer]
            lines.append(f"    lowest ratio to {peer} the {what} allow: write"
                         f" {_ratio(write_floor, theirs['write'])}, read"
                         f" {_ratio(read_floor, theirs['read'])}")
            if what == "sqlite calls" and "satchel-memory" in overhead:
                machinery = overhead["satchel-memory"]
                lines.append(f"    with satchel's session machinery (satchel-memory's overhead)"
                             f" added: write"
                             f" {_ratio(write_floor + machinery['write'], theirs['write'])},"
                             f" read {_ratio(read_floor + machinery['read'], theirs['read'])}")
    if "satchel-postgres" in overhead and "psycopg SELECT" in floors:
        lines.append("  (satchel-postgres commits session data without waiting for the WAL"
                     " flush, as PostgresStore does by default, and is set beside an UPDATE"
                     " that does the same;\n   -durable waits, as the plain UPDATE and"
                     " Flask-Session do: PostgresStore(..., durable_writes=True))")
    return lines


def _print_floors(floors: dict[str, float], overhead: dict[str, dict[str, float]]) -> None:
    lines = _floor_lines(floors, overhead)
    if lines:
        print("\n" + "\n".join(lines))


def _ratio(mine: float, theirs: float) -> str:
    if theirs <= 0:
        return "n/a"
    return f"{max(mine, 0.0) / theirs:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
