"""The benchmark behind ``make bench`` runs and reports every contender."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "overhead.py"


def test_quick_bench_reports_ratios_for_every_contender() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    for name in ("flask-cookie", "flask-session-sqlalchemy", "satchel-memory", "satchel-sqlite"):
        assert name in result.stdout
    assert re.search(r"satchel-sqlite +/ flask-cookie +\d+\.\d+x", result.stdout)
    assert "skipped" not in result.stderr, result.stderr


def test_quick_bench_with_permanent_sessions() -> None:
    """The README's `bench/overhead.py --permanent` runs (figures not meaningful in a test)."""
    result = subprocess.run([sys.executable, str(BENCH), "--quick", "--permanent", "--only",
                             "flask-cookie,satchel-sqlite"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"satchel-sqlite +/ flask-cookie +\d+\.\d+x", result.stdout)
