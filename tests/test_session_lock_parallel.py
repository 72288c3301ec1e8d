"""Parallel same-key adds under ``@session_lock`` through a real threaded server: none lost.

See :mod:`tests.lock_harness` (which also measures what is lost without the lock).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.lock_harness import cart_app, parallel_adds, serving
from tests.modes import SERVER_MODES


@pytest.mark.parametrize("count", [8, 50])
@pytest.mark.parametrize("mode", SERVER_MODES)
def test_parallel_adds_to_one_key_under_the_lock_are_all_kept(
    mode: str, count: int, tmp_path: Path
) -> None:
    with ExitStack() as cleanup:
        app = cart_app(mode, tmp_path, cleanup, locked=True)
        with serving(app) as port:
            statuses, cart = parallel_adds(port, count)
    assert statuses == [200] * count
    assert sorted(cart) == list(range(count))
