"""What a newcomer meets first: the imports, the missing-extra errors, the version, the files.

Each import check runs in a fresh interpreter, so what ``import satchel`` loads is seen whole
(this test process has long imported redis and psycopg).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter with this checkout's ``src`` first on the path."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"),
                                                     "PATH": "/usr/bin:/bin"})


def test_import_satchel_loads_no_driver() -> None:
    result = run_python(
        "import sys, satchel\n"
        "print(sorted(m for m in ('redis', 'psycopg', 'psycopg_pool') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_store_imports_from_the_package() -> None:
    result = run_python(
        "import sys\n"
        "from satchel import RedisStore, PostgresStore, SQLiteStore, MemoryStore, SealedCookies\n"
        "from satchel.stores.redis import RedisStore as R\n"
        "from satchel.stores.postgres import PostgresStore as P\n"
        "assert RedisStore is R and PostgresStore is P\n"
        "print('redis' in sys.modules, 'psycopg' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"


def test_using_one_store_loads_only_its_driver() -> None:
    result = run_python("import sys, satchel\nsatchel.RedisStore\n"
                        "print('redis' in sys.modules, 'psycopg' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True False"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import satchel

    with pytest.raises(AttributeError, match="NoSuchStore"):
        satchel.NoSuchStore  # noqa: B018
    assert "RedisStore" in dir(satchel) and "PostgresStore" in dir(satchel)


def test_star_import_needs_no_driver() -> None:
    result = run_python("import sys\nsys.modules['redis'] = sys.modules['psycopg'] = None\n"
                        "from satchel import *\nprint(Satchel.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Satchel"


# -- a missing extra: a clear error, with a command that installs it ------------------------

def extra_requirements(extra: str) -> list[str]:
    return list(PYPROJECT["project"]["optional-dependencies"][extra])


@pytest.mark.parametrize(("name", "blocked", "extra"), [
    ("RedisStore", ["redis"], "redis"),
    ("PostgresStore", ["psycopg"], "postgres"),
    ("PostgresStore", ["psycopg_pool"], "postgres"),
])
def test_a_store_without_its_driver_names_the_install(name: str, blocked: list[str],
                                                      extra: str) -> None:
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    result = run_python(f"import sys\n{block}import satchel\nprint('imported')\n"
                        f"from satchel import {name}")
    assert result.stdout.strip() == "imported"  # the package itself needs no driver
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: ")
    assert_hint_works(message, extra)


@pytest.mark.parametrize(("url", "blocked", "extra"), [
    ("redis://127.0.0.1:6379/0", "redis", "redis"),
    ("redis+cluster://127.0.0.1:7000", "redis", "redis"),
    ("postgresql://postgres@127.0.0.1/test", "psycopg", "postgres"),
])
def test_a_store_url_without_its_driver_names_the_install(url: str, blocked: str,
                                                          extra: str) -> None:
    result = run_python(
        f"import sys\nsys.modules[{blocked!r}] = None\n"
        "from flask import Flask\nfrom satchel import Satchel\n"
        f"app = Flask(__name__)\napp.config.update(SECRET_KEY='k' * 32, SATCHEL_STORE={url!r})\n"
        "Satchel(app)")
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("satchel.errors.ConfigError: SATCHEL_STORE")
    assert_hint_works(message, extra)


def assert_hint_works(message: str, extra: str) -> None:
    """The message names commands that install the extra: its requirements from PyPI (satchel
    itself is not published there, so ``pip install 'satchel[extra]'`` would not resolve), and
    the extra from a checkout."""
    assert "satchel[" not in message, message
    assert f"pip install -e '.[{extra}]'" in message, message
    direct = re.search(r"pip install ((?:'[^']+' ?)+)", message)
    assert direct, message
    assert re.findall(r"'([^']+)'", direct.group(1)) == extra_requirements(extra)


def test_no_message_in_the_package_suggests_installing_an_unpublished_name() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "src").rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"pip install [^-]*satchel\[", line)]
    assert offenders == []


# -- version, license, changelog ------------------------------------------------------------

def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import satchel

    assert satchel.__version__ == version("satchel")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", satchel.__version__)


def test_version_without_metadata_says_so() -> None:
    # a checkout on the path, never installed: no metadata to read
    result = run_python(
        "import importlib.metadata as m\n"
        "def missing(name):\n    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\nimport satchel\nprint(satchel.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0+unknown"


def test_license_file_matches_the_declared_license() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE.txt"]
    text = (ROOT / "LICENSE.txt").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text


def test_changelog_has_a_section_for_the_current_version() -> None:
    text = (ROOT / "CHANGES.rst").read_text()
    version = PYPROJECT["project"]["version"]
    heading = f"Version {version}"
    assert heading in text.splitlines()
    lines = text.splitlines()
    at = lines.index(heading)
    assert set(lines[at + 1]) == {"-"} and len(lines[at + 1]) == len(heading)
