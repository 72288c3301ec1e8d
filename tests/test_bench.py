"""The benchmarks behind ``make bench``, ``make bench-load`` and ``make bench-scale`` run and
report every contender (short runs: the figures are not meaningful, their shape is)."""

import http.server
import re
import shutil
import subprocess
import sys
import threading
from itertools import pairwise
from pathlib import Path

import pytest

from tests.services import cannot_test

BENCH = Path(__file__).resolve().parent.parent / "bench"
RESULTS = BENCH / "results"


def results_state() -> dict[Path, int]:
    """The committed reports' files and times: a short run leaves them alone."""
    return {path: path.stat().st_mtime_ns for path in RESULTS.glob("*")}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_quick_bench_reports_ratios_for_every_contender(tmp_path: Path) -> None:
    before = results_state()
    result = run(str(BENCH / "overhead.py"), "--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("flask-cookie", "flask-session-sqlalchemy", "satchel-memory", "satchel-sqlite"):
        assert name in result.stdout
    assert re.search(r"satchel-sqlite +/ flask-cookie +\d+\.\d+x", result.stdout)
    assert "skipped" not in result.stderr, result.stderr
    report = (tmp_path / "overhead.md").read_text()
    assert re.search(r"^\| satchel-sqlite / flask-cookie \| \d+\.\d+x \|", report, re.M), report
    for line in ("- Machine: ", "- Versions: Python ", "Flask ", "Redis ", "PostgreSQL ",
                 "- Command: `python bench/overhead.py --quick --out "):
        assert line in report
    for layer, peer in (("satchel-redis", "flask-session-redis"),
                        ("satchel-postgres", "flask-session-postgres")):
        # what the raw round trips alone would allow, in the output and the report
        floor = rf"{layer} overhead / round trips.*\n +lowest ratio to {peer} the round trips"
        assert re.search(floor + r" allow: write \d+\.\d+x, read \d+\.\d+x", result.stdout)
        assert re.search(floor, report), report
    # SQLite's floor: the bare sqlite3 calls timed in a request, alone and with satchel's
    # session machinery; the calls' app is a floor, not a contender of the tables
    # (a quick run's figures may come out at or below 0: n/a)
    floor = (r"satchel-sqlite overhead / sqlite calls: write {r} \(of SELECT\+UPSERT\)"
             r", read {r} \(of SELECT\)\n +lowest ratio to flask-cookie the sqlite calls"
             r" allow: write {r}, read {r}\n +with satchel's session machinery"
             r" \(satchel-memory's overhead\) added: write {r}, read {r}"
             ).format(r=r"(?:\d+\.\d+x|n/a)")
    assert re.search(floor, result.stdout), result.stdout
    assert re.search(floor, report), report
    assert re.search(r"raw sqlite3 calls in a request .*: SELECT\+UPSERT -?\d+\.\d, SELECT"
                     r" -?\d+\.\d", result.stdout), result.stdout
    assert not re.search(r"^\| sqlite-calls", report, re.M), report
    assert "  sqlite-calls " not in result.stdout
    # the untouched overhead paired with the bare app's, for every session layer
    paired = r"\n  {} +-?\d+\.\d  \(-?\d+\.\d \.\. -?\d+\.\d\)"
    for name in ("flask-cookie", "satchel-cookie", "satchel-memory", "satchel-sqlite",
                 "satchel-redis", "satchel-postgres"):
        assert re.search(paired.format(name), result.stdout), result.stdout
        assert re.search(paired.format(name), report), report
    assert (tmp_path / "overhead.png").read_bytes().startswith(b"\x89PNG")
    assert results_state() == before


def test_quick_bench_with_permanent_sessions() -> None:
    """The README's `bench/overhead.py --permanent` runs (figures not meaningful in a test);
    a --quick run writes no report unless told where."""
    before = results_state()
    result = run(str(BENCH / "overhead.py"), "--quick", "--permanent", "--only",
                 "flask-cookie,satchel-sqlite")
    assert result.returncode == 0, result.stderr
    assert re.search(r"satchel-sqlite +/ flask-cookie +\d+\.\d+x", result.stdout)
    assert "report:" not in result.stdout
    assert results_state() == before


def test_quick_load_bench_under_gunicorn_and_wrk(tmp_path: Path) -> None:
    """`bench/load.py --quick`: two gunicorn servers per contender, wrk against each; every
    response checked (a lost session on /read fails the run)."""
    if shutil.which("wrk") is None:
        cannot_test("bench/load.py needs wrk: apt-get install wrk")
    before = results_state()
    result = run(str(BENCH / "load.py"), "--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stderr and "FAILED" not in result.stderr, result.stderr
    names = ("flask-cookie", "flask-session-redis", "flask-session-postgres",
             "satchel-cookie", "satchel-sqlite", "satchel-redis", "satchel-postgres",
             "sqlite-calls", "redis-calls", "postgres-calls")
    for name in names:
        assert re.search(rf"^{name} +\d+ \( *\d+- *\d+\)( +\d+\.\d\d){{2}} +\d+ \(",
                         result.stdout, re.M), result.stdout
    assert re.search(r"satchel-redis / flask-session-redis +\d+\.\d\d +\d+\.\d\d",
                     result.stdout), result.stdout
    report = (tmp_path / "load.md").read_text()
    assert "| satchel-sqlite / flask-cookie |" in report and "gunicorn " in report, report
    # CPU per request: the app's, the store server's (none for cookies and SQLite), their sum;
    # the servers' voluntary context switches per request
    assert "server CPU/req (us)" in result.stdout and "app+server CPU/req (us)" in report
    for name in names:
        for scenario in ("read", "write"):
            found = re.search(rf"^{name} +{scenario} +(\d+) +(\d+) +(\d+) +(\d+\.\d)$",
                              result.stdout, re.M)
            assert found, result.stdout
            app, server, total = map(int, found.groups()[:3])
            assert app > 0 and abs(app + server - total) <= 1, found.group(0)
            assert float(found.group(4)) > 0, found.group(0)  # each request waits on its socket
            has_server = "redis" in name or "postgres" in name
            assert (server > 0) if has_server else (server == 0), found.group(0)
        row = re.search(rf"^\| {name}(( \| \d+){{3}} \| \d+\.\d){{2}} \|$", report, re.M)
        assert row, report
    # What CPU alone allows, with and without the store server's part, for each store
    for name in names[1:]:
        assert re.search(rf"^  {name} / flask-cookie +\d+\.\d\d / \d+\.\d\d"
                         r" +\d+\.\d\d / \d+\.\d\d$", result.stdout, re.M), result.stdout
        assert re.search(rf"^\| {name} / flask-cookie( \| \d+\.\d\d){{4}} \|$", report, re.M)
    # The store calls alone (no session layer) beside satchel's layer on that store
    pair = r"\d+\.\d\d / \d+\.\d\d"
    for name in ("satchel-sqlite", "satchel-redis", "satchel-postgres"):
        assert re.search(rf"^  {name}( +{pair}){{3}} +[01]\.\d+ / 0\.\d+$", result.stdout,
                         re.M), result.stdout
        assert re.search(rf"^\| {name}( \| {pair}){{3}} \| [01]\.\d+ / 0\.\d+ \|$", report,
                         re.M), report
    assert "sqlite-calls, redis-calls and postgres-calls have no session layer" in report
    assert (tmp_path / "load.png").read_bytes().startswith(b"\x89PNG")
    assert results_state() == before


def test_quick_scale_bench_fills_each_store() -> None:
    """`bench/scale.py --quick`: 1,000 vs 10,000 sessions stored (bulk-filled in the stores'
    real schema: a filler the store could not read would not be counted) in each store."""
    before = results_state()
    result = run(str(BENCH / "scale.py"), "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stderr, result.stderr
    for kind in ("sqlite", "postgres", "redis"):
        for size in ("1,000", "10,000"):
            assert re.search(rf"^{kind} +{size}( +\d+\.\d{{3}}){{4}}$", result.stdout,
                             re.M), result.stdout
        assert re.search(rf"^{kind} +10,000 / 1,000( +\d+\.\d\dx){{4}}$", result.stdout,
                         re.M), result.stdout
    assert results_state() == before


def test_redis_memory_bench_compares_bytes_per_session() -> None:
    """`bench/redis_memory.py`: its own redis-server, satchel's bytes per session next to
    Flask-Session's for the same payload."""
    if shutil.which("redis-server") is None:
        cannot_test("bench/redis_memory.py starts a redis-server: apt-get install redis-server")
    result = run(str(BENCH / "redis_memory.py"), "--sessions", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("flask-session", "satchel", "satchel, no device"):
        # bytes per session, then the lengths of a key's name and of its value
        assert re.search(rf"^{name} +\d+ B +\d+ B +200 +\d+ B +\d+ B +string/",
                         result.stdout, re.M), result.stdout
    assert re.search(r"^ratio, satchel +\d+\.\d\dx +\d+\.\d\dx", result.stdout, re.M)


def test_quick_purge_bench_measures_latency_before_and_during_the_purge() -> None:
    """`bench/purge.py --quick`: a backlog of expired sessions purged by `flask satchel purge`
    while requests run, in SQLite and PostgreSQL; every expired session goes."""
    for store in ("sqlite", "postgres"):
        result = run(str(BENCH / "purge.py"), "--store", store, "--quick")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Deleted 6000 expired session(s)." in result.stderr, result.stderr
        for window in ("before", "during"):
            for kind in ("write", "read"):
                assert re.search(rf"^{window} +{kind} +\d+ +\d+\.\d\d", result.stdout,
                                 re.M), result.stdout
        assert re.search(r"^p99 during/before +\d+\.\d\dx write", result.stdout, re.M)


def test_quick_sqlite_processes_bench_runs_one_and_two_processes() -> None:
    """`bench/sqlite_processes.py --quick`: SQLite writes from one and two app processes."""
    result = run(str(BENCH / "sqlite_processes.py"), "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    for load in ("paced-write", "write", "read"):
        for procs in (1, 2):
            assert re.search(rf"^satchel-sqlite +{load} +{procs} +\d+ +\d+\.\d\d", result.stdout,
                             re.M), result.stdout


def test_quick_sqlite_processes_bench_runs_another_checkouts_store_beside() -> None:
    """`bench/sqlite_processes.py --loads write --against OLD_SRC` (README): a before/after
    in one run; here the other tree is this one's own src, named after its checkout."""
    src = BENCH.parent / "src"
    result = run(str(BENCH / "sqlite_processes.py"), "--quick", "--loads", "write",
                  "--against", str(src))
    assert result.returncode == 0, result.stdout + result.stderr
    for procs in (1, 2):
        for layer in ("satchel-sqlite", f"satchel-sqlite@{src.parent.name}"):  # the checkout
            assert re.search(rf"^{layer} +write +{procs} +\d+ +\d+\.\d\d", result.stdout,
                             re.M), result.stdout


def test_quick_sqlite_floor_bench_builds_up_the_floor_of_a_write() -> None:
    """`bench/sqlite_floor.py --quick`: satchel's SQLite layer beside the memory store, then
    the memory store making the bare SQLite calls, then with the guarantees' calls added, then
    with the SQLite store's own statements on its schema."""
    result = run(str(BENCH / "sqlite_floor.py"), "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("flask-cookie", "memory", r"memory\+calls", r"memory\+calls\+guards",
                 r"memory\+schema", "sqlite"):
        assert re.search(rf"^  {name} +-?\d+\.\d \(-?\d+\.\d\dx\) +-?\d+\.\d \(",
                         result.stdout, re.M), result.stdout


def test_untouched_instructions_counts_every_mode() -> None:
    """The README's callgrind count of an untouched request's instructions runs and reports
    every mode (a few requests: the counts are not meaningful here, their shape is)."""
    if shutil.which("valgrind") is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        cannot_test("bench/untouched_instructions.py needs valgrind: apt-get install valgrind")
    result = run(str(BENCH / "untouched_instructions.py"), "--requests", "5")
    assert result.returncode == 0, result.stderr
    assert re.search(r"instructions per /untouched request \(bare app: [\d,]+\)", result.stdout)
    for mode in ("memory", "cookie", "sqlite", "redis", "postgres", "durable"):
        assert re.search(rf"\n  {mode} +[+-][\d,]+", result.stdout), result.stdout


def test_load_client_reports_a_bad_response_whatever_its_body(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A contender that answers with an error page (quotes, newlines: an HTML traceback) is
    counted as bad, with the start of that page in the report, not a crash of the run:
    wrk's JSON line once broke on a newline in the body it quoted."""
    if shutil.which("wrk") is None:
        cannot_test("bench/load.py needs wrk: apt-get install wrk")
    monkeypatch.syspath_prepend(str(BENCH))
    from load_servers import drive

    class ErrorPage(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # http.server's name for it
            login = self.path == "/login"
            body = b"ok" if login else b'<p class="x">Internal\n\tError</p>\r\n"end"'
            self.send_response(200 if login else 500)
            if login:
                self.send_header("Set-Cookie", "s=1; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ErrorPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cell = drive([server.server_address[1]], "/write", "ok", seconds=1, connections=1)
    finally:
        server.shutdown()
        server.server_close()
    assert cell.bad > 0 and cell.rate > 0
    assert cell.first_bad == "500 ?p class??x??Internal??Error?/p????end?", cell.first_bad
    assert "\n" not in cell.first_bad and '"' not in cell.first_bad


def test_quick_load_bench_runs_the_floors_under_satchels_sqlite_write(tmp_path: Path) -> None:
    """The floors run only when named: satchel on its memory store, and the same whose store
    also runs the SQLite store's own statements (each must find or write its row, or the
    request fails and the run with it)."""
    if shutil.which("wrk") is None:
        cannot_test("bench/load.py needs wrk: apt-get install wrk")
    names = ("flask-cookie", "satchel-memory", "satchel-memory+schema", "satchel-sqlite")
    result = run(str(BENCH / "load.py"), "--quick", "--only", ",".join(names),
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        assert re.search(rf"^{re.escape(name)} +\d+ \( *\d+- *\d+\)", result.stdout, re.M), (
            result.stdout)
    assert re.search(r"^  satchel-memory\+schema / flask-cookie +\d+\.\d\d +\d+\.\d\d",
                     result.stdout, re.M), result.stdout
    report = (tmp_path / "load.md").read_text()
    assert "| satchel-memory+schema |" in report, report


def test_load_bench_names_its_floors_only_when_asked() -> None:
    if shutil.which("wrk") is None:
        cannot_test("bench/load.py needs wrk: apt-get install wrk")
    result = run(str(BENCH / "load.py"), "--quick", "--only", "satchel-nothing")
    assert result.returncode == 2
    assert "satchel-memory, satchel-memory+schema" in result.stderr, result.stderr



@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 10, 12])
def test_load_bench_rounds_put_each_layer_after_another_one_each_time(
        count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round runs every layer once, and in the first three rounds no layer runs just
    after the same one twice (four layers or more): a layer that always came after another
    took that one's after-effects in every round, and the median could not tell."""
    monkeypatch.syspath_prepend(str(BENCH))
    from load import orders

    names = [f"layer{i}" for i in range(count)]
    rounds = orders(names, 5)
    assert len(rounds) == 5
    assert rounds[0] == names
    for order in rounds:
        assert sorted(order) == sorted(names)
    if count >= 4:
        pairs = [pair for order in rounds[:3] for pair in pairwise(order)]
        assert len(pairs) == len(set(pairs)), rounds
    assert rounds == orders(names, 5)  # the same every run


def test_reports_name_the_commit_and_only_code_changes_mark_it(tmp_path: Path) -> None:
    """A report says "with uncommitted changes" when the code measured differs from its
    commit, not when only the earlier reports or the docs do (every run rewrites them)."""
    root = BENCH.parent
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True, timeout=120)

    def commit_line() -> str:
        return subprocess.run(
            [sys.executable, "-c", "import report; print(report._git_commit())"],
            cwd=clone / "bench", capture_output=True, text=True, check=True,
            timeout=60).stdout.strip()

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True,
                          capture_output=True, check=True).stdout.strip()
    assert commit_line() == head
    with (clone / "bench" / "results" / "load.md").open("a") as report:
        report.write("another run\n")
    with (clone / "README.md").open("a") as readme:
        readme.write("figures\n")
    assert commit_line() == head
    with (clone / "src" / "satchel" / "__init__.py").open("a") as code:
        code.write("# changed\n")
    assert commit_line() == f"{head} (with uncommitted changes)"
