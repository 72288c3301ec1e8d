"""Every command the README gives runs as written, and is run: here, or by ``.ci/run``.

``SHELL`` lists each command the README shows (in a code block, or inline in the prose) with
where it runs; a command added to the README without an entry here fails
:func:`test_every_readme_command_is_listed`, and an entry whose command left the README fails it
too. The cheap ones run here for real, in subprocesses; the long ones (``make test``, ``make
lint``, ``make faults``, ``make fuzz``, ``make compat``) are what ``.ci/run`` runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.services import POSTGRES_URL, REDIS_URL, cannot_test, closed_port
from tests.stores.redis_cluster import free_ports, missing_binaries

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI_RUN = (ROOT / ".ci" / "run").read_text()
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)
COMMAND_WORDS = {"make", "flask", "pip", "python", "python3", ".venv/bin/python", ".venv/bin/pip",
                 ".venv/bin/flask", "redis-cli", "redis-server", "git", "for", "mkdir", "cd"}
CLUSTER_RECIPE = ("mkdir -p /tmp/satchel-cluster && cd /tmp/satchel-cluster",
                  "for port in 7000 7001 7002; do redis-server --port $port --bind 127.0.0.1"
                  " --cluster-enabled yes --cluster-config-file nodes-$port.conf --save ''"
                  " --appendonly no --daemonize yes; done",
                  "redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002"
                  " --cluster-replicas 0 --cluster-yes")
CLUSTER_STOP = "for port in 7000 7001 7002; do redis-cli -p $port shutdown nosave; done"

CI = ".ci/run"
SHELL: dict[str, str] = {
    "python3 -m venv .venv && .venv/bin/pip install -e '.[redis,postgres]'":
        "test_install_from_a_checkout_and_from_a_git_url",
    "pip install 'satchel[redis,postgres] @ git+<repository URL>'":
        "test_install_from_a_checkout_and_from_a_git_url",
    "make demo": "test_the_demo_recipe_serves_on_each_store",
    "FLASK_SATCHEL_STORE=cookie:// make demo": "test_the_demo_recipe_serves_on_each_store",
    "FLASK_SATCHEL_STORE=redis://127.0.0.1:6379/0 make demo":
        "test_the_demo_recipe_serves_on_each_store",
    "FLASK_SATCHEL_STORE=postgresql://postgres@127.0.0.1:5432/test make demo":
        "test_the_demo_recipe_serves_on_each_store",
    "FLASK_SATCHEL_STORE=redis+cluster://127.0.0.1:7000 make demo":
        "test_the_cluster_recipe_serves_the_demo",
    **dict.fromkeys(CLUSTER_RECIPE, "test_the_cluster_recipe_serves_the_demo"),
    CLUSTER_STOP: "test_the_cluster_recipe_serves_the_demo",
    "make test": CI,
    "SATCHEL_TEST_REDIS_URL=redis://127.0.0.1:6380/0 make test":
        "test_the_test_servers_come_from_the_environment",
    "make lint": CI,
    "make compat": CI,
    "make compat SHARED=/path/to/folder": "test_make_compat_without_the_tests_says_what_is_missing",
    "make bench": "tests/test_bench.py (the script make bench runs, --quick)",
    ".venv/bin/python bench/overhead.py --quick": "tests/test_bench.py",
    ".venv/bin/python bench/overhead.py --permanent": "tests/test_bench.py (--quick --permanent)",
    "make bench-load": "tests/test_bench.py (the script make bench-load runs, --quick)",
    ".venv/bin/python bench/load.py --quick": "tests/test_bench.py",
    "make bench-scale": "tests/test_bench.py (the script make bench-scale runs, --quick)",
    ".venv/bin/python bench/redis_memory.py": "tests/test_bench.py (--sessions 200)",
    ".venv/bin/python bench/purge.py --store sqlite": "tests/test_bench.py (--quick)",
    ".venv/bin/python bench/purge.py --store postgres": "tests/test_bench.py (--quick)",
    ".venv/bin/python bench/sqlite_processes.py": "tests/test_bench.py (--quick)",
    ".venv/bin/python bench/sqlite_processes.py --loads write --rounds 4 --against OLD_SRC":
        "tests/test_bench.py (--quick --loads write --against src)",
    ".venv/bin/python bench/sqlite_floor.py": "tests/test_bench.py (--quick)",
    ".venv/bin/python bench/untouched_instructions.py": "tests/test_bench.py (--requests 5)",
    "make fuzz": CI,
    ".venv/bin/python bench/fuzz.py --count N --seed S --modes memory,cookie":
        "test_the_short_runs_the_readme_gives",
    "make faults": CI,
    ".venv/bin/python -m tests.fault_harness --seconds 5 --only redis":
        CI + " (--only redis, 30 s faults); test_the_short_runs_the_readme_gives (--help)",
    ".venv/bin/python -m tests.lock_harness": "test_the_short_runs_the_readme_gives",
    "make clean": "test_make_clean_removes_the_venv",
    "flask --app yourapp satchel stats": "test_the_admin_commands_run_on_the_demo",
    ".venv/bin/flask --app examples/shop/app.py satchel purge":
        "test_the_admin_commands_run_on_the_demo",
    # synopses of the subcommands, under a heading that says how to run them
    "flask satchel ...": "tests/test_cli*.py",
    "flask satchel stats": "tests/test_cli_sessions.py",
    "flask satchel list [--user U] [--json]": "tests/test_cli_sessions.py",
    "flask satchel revoke --user U": "tests/test_cli_sessions.py",
    "flask satchel purge [--batch N]": "tests/test_cli.py",
    "flask satchel check": "tests/test_cli_check.py",
    "flask satchel purge": "tests/test_cli.py",
    "make docs": CI,
    ".venv/bin/python -m tests.demo_screenshots": CI,
}


def readme_commands() -> set[str]:
    """The shell commands of the README: each line of an untagged code block, and each inline
    code span of the prose that starts with a command (after ``VAR=value`` assignments)."""
    commands = {line.strip() for match in FENCE.finditer(README) if match.group(2) == ""
                for line in match.group(3).splitlines() if line.strip()}
    for span in re.findall(r"`([^`]+)`", FENCE.sub("", README)):
        span = " ".join(span.split())
        words = [w for w in span.split() if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)]
        if len(words) > 1 and words[0] in COMMAND_WORDS:
            commands.add(span)
    return commands


def test_every_readme_command_is_listed() -> None:
    commands = readme_commands()
    assert sorted(commands - SHELL.keys()) == [], "a README command no test or .ci/run runs"
    assert sorted(SHELL.keys() - commands) == [], "listed here, gone from the README"


def test_what_ci_runs_is_in_ci() -> None:
    for command, where in SHELL.items():
        if where.startswith(CI):
            target = command.split()[1] if command.startswith("make") else "tests.fault_harness"
            assert re.search(rf"^\s*(make {target}\b|.*-m {target}\b)", CI_RUN, re.M), command
    for where in set(SHELL.values()):
        name = where.split()[0]
        if name.startswith("test_"):
            assert name in globals(), where


# Set when the tests run under make (make test, .ci/run): a make they start would then print
# "make[1]: Entering directory" lines and share the outer one's flags.
_OUTER_MAKE = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")


def run(command: list[str] | str, *, env: dict[str, str] | None = None, cwd: Path = ROOT,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    outer = {name: value for name, value in os.environ.items() if name not in _OUTER_MAKE}
    return subprocess.run(command, shell=isinstance(command, str), capture_output=True,
                          text=True, cwd=cwd, timeout=timeout,
                          env={**outer, "PYTHONPATH": str(ROOT / "src"), **(env or {})})


def venv_python(command: str) -> str:
    """``command`` with the README's ``.venv/bin/`` tools taken from this test's interpreter."""
    return (command.replace(".venv/bin/python", sys.executable)
            .replace(".venv/bin/flask", f"{sys.executable} -m flask"))


# -- python ---------------------------------------------------------------------------------

def python_blocks() -> list[str]:
    return [match.group(3) for match in FENCE.finditer(README) if match.group(2) == "python"]


def test_the_quick_start_runs_as_written() -> None:
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    exec(python_blocks()[0], namespace)  # the README's own snippet
    app: Flask = namespace["app"]
    app.config["SATCHEL_STORE"] = "memory://"  # read by Satchel(app): the snippet's store is set
    client = app.test_client()
    assert client.get("/").json == {"visits": 1}  # a browser can open it: GET
    assert client.get("/").json == {"visits": 2}
    assert app.extensions["satchel"] is not None


def test_the_cookie_mode_snippet_runs() -> None:
    block = next(b for b in python_blocks() if 'SATCHEL_STORE"] = "cookie://"' in b)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k" * 32
    first, second = block.split("# or")
    exec(first, {"app": app, "Satchel": __import__("satchel").Satchel})
    other = Flask(__name__)
    other.config["SECRET_KEY"] = "k" * 32
    exec(second, {"app": other, "Satchel": __import__("satchel").Satchel})
    for made in (app, other):
        made.add_url_rule("/", "set", lambda: __import__("flask").session.update(a=1) or "ok")
        cookie = made.test_client().get("/").headers["Set-Cookie"]
        assert cookie.startswith("session=") and len(cookie) > 67  # sealed data, not an id


# -- install --------------------------------------------------------------------------------

def test_install_from_a_checkout_and_from_a_git_url(tmp_path: Path) -> None:
    """The README's two install commands, for real, in a copy of this checkout (pip needs its
    package index for the drivers and the build backend)."""
    checkout = tmp_path / "satchel"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*cache*", "build", "*.egg-info", "instance", ".ci-redis-*"))
    command = next(c for c in SHELL if c.startswith("python3 -m venv"))
    installed = run(command.replace("python3", sys.executable, 1), cwd=checkout, timeout=300,
                    env={"PYTHONPATH": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if installed.returncode and re.search(r"connect|resolve|index|network", installed.stderr,
                                          re.I):
        cannot_test(f"pip cannot reach its package index: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    python = checkout / ".venv" / "bin" / "python"
    probe = ("import importlib.util as u, satchel, redis, psycopg, psycopg_pool\n"
             "from satchel import RedisStore, PostgresStore\n"
             "print(satchel.__file__, satchel.__version__,"
             " [m for m in ('mypy', 'ruff', 'flask_session', 'pytest') if u.find_spec(m)])")
    seen = run([str(python), "-c", probe], env={"PYTHONPATH": ""})
    assert seen.stdout.split() == [str(checkout / "src" / "satchel" / "__init__.py"), "0.1.0",
                                   "[]"], seen.stderr

    # the git URL form, from a repository of the copy
    for git in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(["git", *git], cwd=checkout, check=True, capture_output=True)
    command = next(c for c in SHELL if "@ git+" in c)
    url = command.replace("<repository URL>", f"file://localhost{checkout}")  # as the README says
    installed = run(f"{checkout}/.venv/bin/{url}", cwd=tmp_path, timeout=300,
                    env={"PYTHONPATH": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert installed.returncode == 0, installed.stderr
    seen = run([str(python), "-c", probe], cwd=tmp_path, env={"PYTHONPATH": ""})
    assert "site-packages/satchel/__init__.py 0.1.0 []" in seen.stdout, seen.stderr


# -- make -----------------------------------------------------------------------------------

def make_n(target: str, *args: str) -> list[str]:
    result = run(["make", "-n", "-B", target, *args])
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_demo_installs_only_the_drivers() -> None:
    lines = make_n("demo")
    installs = [line for line in lines if "pip install" in line]
    assert installs[-1].endswith("pip install -q -e \".[redis,postgres]\""), installs
    assert not any("dev" in line or "bench" in line for line in installs), installs


def test_make_test_installs_the_rest_after_a_demo() -> None:
    lines = make_n("test")
    assert any(line.endswith("pip install -q -e \".[dev,bench]\"") for line in lines)
    # the full install stands for the demo's too: no second install when make demo follows
    assert any(re.fullmatch(r"touch \S*\.installed \S*\.demo", line) for line in lines)


def test_make_clean_removes_the_venv() -> None:
    assert any(line.startswith("rm -rf .venv ") for line in make_n("clean"))


def test_make_compat_without_the_tests_says_what_is_missing(tmp_path: Path) -> None:
    command = next(c for c in SHELL if c.startswith("make compat SHARED="))
    result = run(command.replace("/path/to/folder", str(tmp_path)).split())
    assert result.returncode != 0
    assert f"{tmp_path}/flask-compat not found" in result.stderr
    assert "SHARED" in result.stderr and "tests/test_flask_compat.py" in result.stderr
    assert "cd:" not in result.stderr
    script = run(["scripts/flask-compat.sh", str(tmp_path / "flask-compat")])
    assert script.returncode == 1 and "usage: scripts/flask-compat.sh" in script.stderr


# -- the demo, on each store ----------------------------------------------------------------

@contextmanager
def demo_server(store: str) -> Iterator[str]:
    """The flask command ``make demo`` runs, on a free port, with ``FLASK_SATCHEL_STORE``."""
    recipe = make_n("demo")[-1]
    assert recipe.startswith(".venv/bin/python -m flask --app examples/shop/app.py run")
    port = closed_port()
    command = venv_python(recipe).replace("--port 5000", f"--port {port}")
    process = subprocess.Popen(command.split(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                                    "FLASK_SATCHEL_STORE": store})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=10)  # waits, and closes the pipe


def log_in_and_add(base: str) -> str:
    """Log in as demo/demo, add a pencil; the cart page's text."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = urllib.parse.urlencode({"username": "demo", "password": "demo"}).encode()
    opener.open(base + "/login", form, timeout=10).read()
    opener.open(base + "/cart/add/pencil", b"", timeout=10).read()
    text: str = opener.open(base + "/cart", timeout=10).read().decode()
    return text


@pytest.mark.parametrize("readme_store", ["", "cookie://", "redis://127.0.0.1:6379/0",
                                          "postgresql://postgres@127.0.0.1:5432/test"])
def test_the_demo_recipe_serves_on_each_store(readme_store: str, tmp_path: Path) -> None:
    command = f"FLASK_SATCHEL_STORE={readme_store} make demo" if readme_store else "make demo"
    assert command in SHELL
    # the test servers may live elsewhere (SATCHEL_TEST_*_URL); the default SQLite file moves
    # out of the checkout's instance folder
    store = {"": f"sqlite:///{tmp_path}/sessions.sqlite3",
             "redis://127.0.0.1:6379/0": REDIS_URL,
             "postgresql://postgres@127.0.0.1:5432/test": POSTGRES_URL}.get(readme_store,
                                                                           readme_store)
    if store.startswith("redis"):
        from tests.services import redis_client
        with redis_client():
            pass
    if store.startswith("postgresql"):
        from tests.services import postgres_store
        with postgres_store():
            pass
    with demo_server(store) as base:
        assert "Pencil" in log_in_and_add(base)


@pytest.fixture
def cluster_ports() -> Iterator[list[int]]:
    """Ports for the README's three cluster nodes, shut down afterwards however the test went."""
    if missing := missing_binaries():
        cannot_test(f"the Redis Cluster recipe needs {', '.join(missing)}")
    ports = free_ports(3)
    yield ports
    for port in ports:
        run(["redis-cli", "-p", str(port), "shutdown", "nosave"], timeout=10)


def test_the_cluster_recipe_serves_the_demo(cluster_ports: list[int], tmp_path: Path) -> None:
    def on_free_ports(command: str) -> str:
        for readme_port, port in zip((7000, 7001, 7002), cluster_ports, strict=True):
            command = command.replace(str(readme_port), str(port))
        return command.replace("/tmp/satchel-cluster", str(tmp_path / "cluster"))

    started = run(" && ".join(map(on_free_ports, CLUSTER_RECIPE)), timeout=60)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "[OK] All 16384 slots covered." in started.stdout
    first = cluster_ports[0]
    deadline = time.monotonic() + 30
    while "cluster_state:ok" not in run(["redis-cli", "-p", str(first), "cluster", "info"]).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with demo_server(f"redis+cluster://127.0.0.1:{first}") as base:
        assert "Pencil" in log_in_and_add(base)
    stopped = run(on_free_ports(CLUSTER_STOP), timeout=30)
    assert stopped.returncode == 0, stopped.stderr
    for port in cluster_ports:
        assert run(["redis-cli", "-p", str(port), "ping"]).stdout.strip() != "PONG"


# -- admin commands, short runs, test servers -----------------------------------------------

def test_the_admin_commands_run_on_the_demo(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/sessions.sqlite3"
    with demo_server(store) as base:
        log_in_and_add(base)
    env = {"FLASK_SATCHEL_STORE": store}
    stats = run(f"{sys.executable} -m " + "flask --app yourapp satchel stats".replace(
        "yourapp", "examples/shop/app.py"), env=env)
    assert stats.returncode == 0, stats.stderr
    assert "SQLiteStore" in stats.stdout and "Live sessions: 1\n" in stats.stdout, stats.stdout
    purge = run(venv_python(".venv/bin/flask --app examples/shop/app.py satchel purge"), env=env)
    assert purge.returncode == 0, purge.stderr
    assert purge.stdout.strip().splitlines()[-1] == "Deleted 0 expired session(s).", purge.stdout


def test_the_short_runs_the_readme_gives() -> None:
    readme = ".venv/bin/python bench/fuzz.py --count N --seed S --modes memory,cookie"
    fuzz = run(venv_python(readme).replace(" N ", " 400 ").replace(" S ", " 1 "), timeout=300)
    assert fuzz.returncode == 0, fuzz.stdout + fuzz.stderr
    assert "memory" in fuzz.stdout and "cookie" in fuzz.stdout
    faults = run(venv_python(".venv/bin/python -m tests.fault_harness --help"))
    assert faults.returncode == 0 and "--seconds" in faults.stdout and "--only" in faults.stdout
    locks = run(venv_python(".venv/bin/python -m tests.lock_harness"), timeout=300)
    assert locks.returncode == 0, locks.stderr
    assert re.search(r"^memory\s+yes\s+8\s+8\s+8\s+0\b", locks.stdout, re.M), locks.stdout


@pytest.mark.parametrize("variable", ["SATCHEL_TEST_REDIS_URL", "SATCHEL_TEST_POSTGRES_URL"])
def test_the_test_servers_come_from_the_environment(variable: str) -> None:
    """Pointed at a port nothing listens on, the store tests skip and name the variable and the
    URL (outside CI): they read the variable the README names."""
    redis = "REDIS" in variable
    url = f"{'redis://' if redis else 'postgresql://postgres@'}127.0.0.1:{closed_port()}/0"
    module = f"tests/stores/test_{'redis' if redis else 'postgres'}.py"
    result = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly",
                  "-p", "no:cacheprovider", module, "-x"],
                 env={variable: url, "CI": ""}, timeout=300)
    summary = result.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "failed" not in summary, result.stdout[-2000:]
    assert repr(url) in result.stdout and variable in result.stdout, result.stdout[-2000:]
