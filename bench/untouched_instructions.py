"""CPU instructions per request over a bare app (callgrind), for each satchel mode.

Wall time cannot resolve a few microseconds on a busy machine; callgrind counts
instructions, which other processes do not change. One process builds bench/overhead.py's
apps (bare and the modes asked for), warms each, then, under callgrind with
instrumentation off until then, drives each app's WSGI callable ``--requests`` times
between a zeroing and a dump of the counters (a client request, through a tiny C helper
built with gcc against valgrind's callgrind.h); a mode's figure is its count per request
minus the bare app's.

    python bench/untouched_instructions.py                 # all modes, /untouched
    python bench/untouched_instructions.py --path /read memory cookie
    python bench/untouched_instructions.py --permanent --fresh-cookie-header

Run it with ``PYTHONHASHSEED`` fixed (it is set to 0 unless given): string hashes move dict
probes, and with them a few hundred instructions. ``--gc`` leaves the collector on (off by
default: a collection falls where it falls). ``--fresh-cookie-header`` gives each request a
new ``Cookie`` string, whose hash is not known yet (as a real server's), to both apps.
Needs valgrind, its headers (callgrind.h) and gcc; about a minute.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_HELPER = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
"""
MODES = ("memory", "cookie", "sqlite", "redis", "postgres", "durable")


def _drive(app: Any, environ: dict[str, Any], count: int, fresh_header: bool) -> None:
    import contender_apps

    wsgi: Callable[..., Iterable[bytes]] = app.wsgi_app
    header = environ.get("HTTP_COOKIE", "")
    for _ in range(count):
        env = environ.copy()
        if fresh_header:
            env["HTTP_COOKIE"] = header[:1] + header[1:]  # equal, but a new str
        body = wsgi(env, contender_apps.start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _measure(args: argparse.Namespace, helper: str) -> None:
    """Inside valgrind: build, warm, then count each app's requests (one dump each)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import contender_apps

    cg = ctypes.CDLL(helper)
    folder = Path(tempfile.mkdtemp())
    makers: dict[str, Callable[[], Any]] = {
        "bare": contender_apps.bare, "memory": contender_apps.satchel_memory,
        "cookie": contender_apps.satchel_cookie,
        "sqlite": lambda: contender_apps.satchel_sqlite(folder),
        "redis": contender_apps.satchel_redis, "postgres": contender_apps.satchel_postgres,
        "durable": lambda: contender_apps.satchel_postgres(durable_writes=True)}
    cells = []
    for mode in ("bare", *args.modes):
        app = makers[mode]()
        if app is None:
            print(f"{mode}: its server is not reachable, left out", file=sys.stderr)
            continue
        login = contender_apps.satchel_memory() if mode == "bare" else app  # bare: the same header
        login.config["BENCH_PERMANENT"] = args.permanent
        environ = contender_apps.environ_for(args.path, contender_apps.login_cookie(login))
        _drive(app, environ, 50, args.fresh_cookie_header)
        cells.append((mode, app, environ))
    if not args.gc:
        gc.disable()
    cg.cg_start()
    try:
        for mode, app, environ in cells:
            gc.collect()
            _drive(app, environ, 20, args.fresh_cookie_header)
            cg.cg_zero()
            _drive(app, environ, args.requests, args.fresh_cookie_header)
            cg.cg_dump(mode.encode())
    finally:
        contender_apps.cleanup_redis()
        contender_apps.cleanup_postgres()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modes", nargs="*", help=f"any of {', '.join(MODES)} (default: all)")
    parser.add_argument("--path", default="/untouched", help="/untouched, /read or /write")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--permanent", action="store_true", help="permanent sessions")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    parser.add_argument("--fresh-cookie-header", action="store_true")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the helper, under valgrind
    args = parser.parse_args()
    args.modes = args.modes or list(MODES)
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if args.inside:
        _measure(args, args.inside)
        return
    with tempfile.TemporaryDirectory() as work:
        source, helper = Path(work, "cg.c"), Path(work, "cg.so")
        source.write_text(_HELPER)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(helper), str(source)],
                       check=True)
        out = Path(work, "callgrind.out")
        env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                        f"--callgrind-out-file={out}", sys.executable, __file__,
                        *sys.argv[1:], "--inside", str(helper)],
                       check=True, env=env, stderr=subprocess.DEVNULL)
        counts = {}
        for dump in Path(work).glob("callgrind.out.*"):
            text = dump.read_text()
            name = re.search(r"Client Request: (\S+)", text)
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if name and total:
                counts[name.group(1)] = int(total.group(1)) / args.requests
    bare = counts.pop("bare")
    print(f"instructions per {args.path} request (bare app: {bare:,.0f}), over the bare app:")
    for mode in args.modes:
        if mode in counts:
            print(f"  {mode:10} {counts[mode] - bare:+10,.0f}")


if __name__ == "__main__":
    main()
