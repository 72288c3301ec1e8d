"""The documentation keeps up with the code: every config key and every store has its page.

(``make docs``, run by ``.ci/run``, builds it with warnings as errors.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from satchel.settings import KNOWN_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_every_config_key_is_in_the_configuration_reference(key: str) -> None:
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    assert f"\n``{key}``\n" in text, f"{key} has no entry in docs/configuration.rst"


@pytest.mark.parametrize("page", ["memory", "sqlite", "redis", "postgres"])
def test_every_store_has_a_page_in_the_toctree(page: str) -> None:
    assert (DOCS / "stores" / f"{page}.rst").is_file()
    assert f"stores/{page}\n" in (DOCS / "index.rst").read_text(encoding="utf-8")
