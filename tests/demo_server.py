"""The demo shop run for real, as ``make demo`` runs it: ``flask run`` in a subprocess.

Used by the browser tests (tests/test_demo_browser.py) and the screenshot script
(``python -m tests.demo_screenshots``). The server binds 127.0.0.1 on a free port, keeps its
sessions in the SQLite file it is given, and uses the satchel these tests import.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import satchel
from tests.services import LOOPBACK, closed_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "browser-test-key-" + "k" * 32  # the same key across restarts: cookies stay valid
CHROMIUM = "/usr/bin/chromium"  # Debian's (apt-get install chromium); never a downloaded one


class DemoServer:
    """``flask --app examples/shop/app.py run`` on ``sqlite_file``; ``url`` once started.

    A context manager: ``with DemoServer(path) as shop: ...`` starts it and stops it after.
    ``start()`` raises RuntimeError, with the server's output, if it does not answer within
    ``timeout`` seconds.
    """

    def __init__(self, sqlite_file: Path, timeout: float = 20.0) -> None:
        self.sqlite_file = sqlite_file
        self.timeout = timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = sqlite_file.with_name(sqlite_file.name + ".log")  # the server's output

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> DemoServer:
        self.port = closed_port()
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join([str(Path(satchel.__file__).parent.parent),
                                              str(ROOT)]),
               "FLASK_SATCHEL_STORE": f"sqlite:///{self.sqlite_file}",
               "FLASK_SECRET_KEY": f'"{KEY}"'}  # from_prefixed_env parses JSON
        command = [sys.executable, "-m", "flask", "--app", "examples/shop/app.py", "run",
                   "--host", LOOPBACK, "--port", str(self.port)]
        with open(self.log, "ab") as log:  # a file, not a pipe nobody reads while it runs
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        output = self.stop()
        raise RuntimeError(f"the demo did not start on port {self.port}:\n{output}")

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); return what it has printed
        since it was first started."""
        process, self.process = self.process, None
        if process is None:
            return self.output()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
