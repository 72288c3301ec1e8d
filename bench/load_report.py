"""bench/load.py's tables: the lines it prints and its report (markdown and chart).

A cell's summary (:func:`summary`) holds its req/s (median, lowest and highest round),
p50 and p99 latency (ms) and CPU per request (µs, medians of the rounds): ``app`` (both
gunicorn servers and the wrk clients driving them), ``server`` (the store's server: 0
without one) and ``total`` (their sum). Where CPU is the limit (a CPU-bound machine, all
processes on the same cores), req/s goes as 1 / total: a peer's total over a contender's
is the req/s ratio CPU alone allows, and the same ratio of ``app`` alone shows what is
left of the gap once the store server's CPU is taken out.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from typing import Any

import contender_apps
import report
from load_app import SCENARIOS
from load_servers import Cell

BASE = "flask-cookie"
PEERS = {"satchel-cookie": BASE, "satchel-redis": "flask-session-redis",
         "satchel-postgres": "flask-session-postgres"}
# The goals of issue 14: satchel's req/s as a ratio of Flask's cookie session's (read, write).
GOALS = {"satchel-sqlite": (1.0, 0.9), "satchel-redis": (0.95, 0.9),
         "satchel-postgres": (0.8, 0.7)}
CPU_COLUMNS = ("app CPU/req (us)", "server CPU/req (us)", "app+server CPU/req (us)",
               "switches/req")
# satchel's layer -> the contender with no session layer that makes only its store's calls
CALLS_ONLY = {"satchel-sqlite": "sqlite-calls", "satchel-redis": "redis-calls",
              "satchel-postgres": "postgres-calls"}
CALLS_TEXT = ("sqlite-calls, redis-calls and postgres-calls have no session layer: their views"
              " make only the store calls a session layer on that store needs at the least,"
              " through the driver's ordinary API (a read: an SQLite SELECT by key on the"
              " thread's connection, a Redis GET, a PostgreSQL SELECT by key on a pooled"
              " connection; a write: the same, then an SQLite INSERT OR REPLACE with"
              " SQLiteStore's guards (the servers' writers queued on a flock, BEGIN IMMEDIATE,"
              " a stat of the folder, COMMIT), a Redis SET, a PostgreSQL UPDATE merging a JSON"
              " field without waiting for the WAL flush). Their req/s ratio to "
              + BASE + " is what a layer that did nothing but those calls would reach in this"
              " run; satchel's layer beside it (its share may pass 1: satchel's own calls cost"
              " less than the ordinary API's):")
CALLS_HEADER = ["", "calls only (read / write)", "satchel (read / write)",
                "satchel / calls only (read / write)", "goal (read / write)"]

Table = dict[str, dict[str, dict[str, float]]]  # {contender: {scenario: summary}}


def summary(cells: list[Cell]) -> dict[str, float]:
    """One cell's rounds summed up: medians (and req/s's lowest and highest round)."""
    rates = [cell.rate for cell in cells]
    app = statistics.median(cell.cpu_us for cell in cells)
    server = statistics.median(cell.server_us for cell in cells)
    return {"rate": statistics.median(rates), "low": min(rates), "high": max(rates),
            "app": app, "server": server, "total": app + server,
            "switches": statistics.median(cell.switches for cell in cells),
            "p50": statistics.median(cell.p50 for cell in cells),
            "p99": statistics.median(cell.p99 for cell in cells)}


def _pairs(table: Table) -> list[tuple[str, str]]:
    """(contender, peer): each against Flask's cookie session, then satchel against its peer."""
    pairs = [(n, BASE) for n in table if n != BASE and BASE in table]
    return pairs + [(n, p) for n, p in PEERS.items() if n in table and p in table and p != BASE]


def _ratios(table: Table, mine: str, peer: str) -> dict[str, tuple[float, float]]:
    """(read, write) ratios: measured req/s, and the req/s CPU alone allows (app+server, app)."""
    def pair(of: Any) -> tuple[float, float]:
        return (of("read"), of("write"))

    return {"measured": pair(lambda s: table[mine][s]["rate"] / table[peer][s]["rate"]),
            "cpu": pair(lambda s: table[peer][s]["total"] / table[mine][s]["total"]),
            "app": pair(lambda s: table[peer][s]["app"] / table[mine][s]["app"])}


def _goal(mine: str, peer: str, measured: tuple[float, float]) -> str:
    goal = GOALS.get(mine) if peer == BASE else None
    if not goal:
        return ""
    met = measured[0] >= goal[0] and measured[1] >= goal[1]
    return f">= {goal[0]} / {goal[1]}  " + ("met" if met else "NOT met")


def _calls_rows(table: Table) -> list[list[str]]:
    """Per satchel layer whose calls-only contender ran: the calls-only app's req/s ratio to
    Flask's cookie session, the layer's, the layer's share of the calls-only app's (read /
    write each), and the layer's goal."""
    rows = []
    for mine, calls in CALLS_ONLY.items():
        if mine not in table or calls not in table or BASE not in table:
            continue
        alone = _ratios(table, calls, BASE)["measured"]
        measured = _ratios(table, mine, BASE)["measured"]
        goal = GOALS[mine]
        rows.append([mine, f"{alone[0]:.2f} / {alone[1]:.2f}",
                     f"{measured[0]:.2f} / {measured[1]:.2f}",
                     f"{measured[0] / alone[0]:.2f} / {measured[1] / alone[1]:.2f}",
                     f"{goal[0]} / {goal[1]}"])
    return rows


def _legend(labels: list[str]) -> list[str]:
    """What the CPU columns count, one item a line; ``labels``: how each server was measured."""
    return ["CPU per request, µs, median of the rounds (app+server: the sum of the two):",
            "app: both gunicorn servers and the wrk clients driving them",
            "server: the store's server, 0 without one (SQLite runs in the app's process)",
            *labels,
            "switches/req: the voluntary context switches of the gunicorn servers' threads"
            " per request (a thread went to sleep: on a lock, a socket, the interpreter lock)"]


def lines(table: Table, labels: list[str]) -> list[str]:
    """The printed tables; ``labels`` say how each store server's CPU was measured."""
    out = [f"{'':24}" + "".join(f"{s + ' req/s (min-max)':>28}{'p50 ms':>9}{'p99 ms':>9}"
                                for s in SCENARIOS)]
    for name, row in table.items():
        out.append(f"{name:24}" + "".join(
            f"{c['rate']:>11.0f} ({c['low']:>6.0f}-{c['high']:>6.0f}){'':>3}"
            f"{c['p50']:>9.2f}{c['p99']:>9.2f}" for c in row.values()))
    legend = _legend(labels)
    out += ["", legend[0], *(f"  {item}" for item in legend[1:]),
            f"{'':31}" + "".join(f"{column:>25}" for column in CPU_COLUMNS)]
    for name, row in table.items():
        out += [f"{name:24}{s:7}" + "".join(f"{c[key]:>25.0f}" for key in
                                             ("app", "server", "total"))
                + f"{c['switches']:>25.1f}" for s, c in row.items()]
    pairs = _pairs(table)
    out.append("\nreq/s as a ratio of the peer's in the same run (higher is better):"
               f"\n{'':48}{'read':>8}{'write':>8}   goal (read / write)")
    for mine, peer in pairs:
        read, write = _ratios(table, mine, peer)["measured"]
        out.append(f"  {mine + ' / ' + peer:46}{read:>8.2f}{write:>8.2f}   "
                   f"{_goal(mine, peer, (read, write))}".rstrip())
    out.append("\nthe req/s ratio CPU alone allows on a CPU-bound machine: the peer's app+server"
               " CPU per request / mine\n(and the same counting the app's CPU only: the"
               " difference is the store server's part)"
               f"\n{'':48}{'app+server (read / write)':>27}{'app only (read / write)':>27}")
    for mine, peer in pairs:
        ratios = _ratios(table, mine, peer)
        out.append(f"  {mine + ' / ' + peer:46}" + "".join(
            f"{f'{ratios[key][0]:.2f} / {ratios[key][1]:.2f}':>27}" for key in ("cpu", "app")))
    rows = _calls_rows(table)
    if rows:
        out.append("\nthe store calls alone: the req/s ratio to " + BASE + " of a bare app making"
                   " only the calls a layer on the store needs (sqlite-calls, redis-calls,"
                   " postgres-calls),"
                   " beside satchel's layer"
                   f"\n{'':20}" + "".join(f"{column:>37}" for column in CALLS_HEADER[1:]))
        out += [f"  {row[0]:18}" + "".join(f"{cell:>37}" for cell in row[1:]) for row in rows]
    return out


def write(out: Path, setup: str, table: Table, labels: list[str], *,
          redis_version: str) -> Path:
    """Write ``out/load.md`` and ``out/load.png``; the markdown file's path.
    ``redis_version``: the run's Redis server's, asked while it ran (``--own-redis``'s
    server is gone by now)."""
    header = ["", *(f"{s} {what}" for s in SCENARIOS for what in ("req/s", "p50 ms", "p99 ms"))]
    rows = [[name, *(value for c in row.values() for value in
                     (f"{c['rate']:.0f} ({c['low']:.0f}-{c['high']:.0f})", f"{c['p50']:.2f}",
                      f"{c['p99']:.2f}"))] for name, row in table.items()]
    cpu_header = ["", *(f"{s} {column}" for s in SCENARIOS for column in CPU_COLUMNS)]
    cpu_rows = [[name, *(value for c in row.values() for value in
                         (*(f"{c[key]:.0f}" for key in ("app", "server", "total")),
                          f"{c['switches']:.1f}"))] for name, row in table.items()]
    legend = _legend(labels)
    ratio_rows, cpu_ratio_rows = [], []
    for mine, peer in _pairs(table):
        ratios = _ratios(table, mine, peer)
        read, write_ = ratios["measured"]
        ratio_rows.append([f"{mine} / {peer}", f"{read:.2f}", f"{write_:.2f}",
                           _goal(mine, peer, (read, write_))])
        cpu_ratio_rows.append([f"{mine} / {peer}", *(f"{ratios[key][index]:.2f}"
                                                      for key in ("cpu", "app")
                                                      for index in (0, 1))])
    body = (f"{setup}; req/s in brackets: the lowest and highest round.\n\n"
            + report.markdown_table(header, rows)
            + f"\n{legend[0]}\n\n" + "".join(f"- {item}\n" for item in legend[1:]) + "\n"
            + report.markdown_table(cpu_header, cpu_rows)
            + "\nreq/s as a ratio of the peer's in the same run (higher is better):\n\n"
            + report.markdown_table(["", "read", "write", "goal (read / write)"], ratio_rows)
            + "\nThe req/s ratio CPU alone allows on a CPU-bound machine (the peer's app+server"
              " CPU per request / this one's), and the same counting the app's CPU only: the"
              " difference is the store server's part of the gap.\n\n"
            + report.markdown_table(["", "app+server read", "app+server write", "app only read",
                                     "app only write"], cpu_ratio_rows))
    calls_rows = _calls_rows(table)
    if calls_rows:
        body += f"\n{CALLS_TEXT}\n\n" + report.markdown_table(CALLS_HEADER, calls_rows)
    names = list(table)
    panels = [report.Panel(title=title, unit=unit, categories=names,
                           series={s: [table[n][s][key] for n in names] for s in SCENARIOS})
              for title, unit, key in (("throughput (higher is better)", "requests/s", "rate"),
                                       ("p99 latency (lower is better)", "ms", "p99"))]
    env: dict[str, Any] = report.environment(
        extra={"Tools": f"gunicorn {report._version('gunicorn')}, {_wrk_version()}"})
    env["Versions"] += (f", Redis {redis_version},"
                        f" PostgreSQL {report.postgres_version(contender_apps.POSTGRES_URL)}")
    return report.write(out, "load", title="Throughput under gunicorn (make bench-load)",
                        env=env, command=report.command_line(), body=body, panels=panels)


def _wrk_version() -> str:
    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return " ".join((result.stdout + result.stderr).split()[:2]) or "wrk"
