"""Overlapping requests on one session through a real threaded server, on every store.

See :mod:`tests.pairs_harness`: 200 pairs of overlapping writes of different keys
(every third emptying the session), and 50 logouts answered while a slow writer waits.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.lock_harness import serving
from tests.modes import SERVER_MODES
from tests.pairs_harness import pairs_app, run_logouts, run_pairs


@pytest.mark.parametrize("mode", SERVER_MODES)
def test_overlapping_pairs_setting_different_keys_lose_nothing(mode: str, tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = pairs_app(mode, tmp_path, cleanup)
        with serving(app) as port:
            kinds = run_pairs(port)
    both, emptying = kinds["a+b"], kinds["pop+b"]
    assert both.tried + emptying.tried == 200
    assert set(both.statuses + emptying.statuses) == {200}
    assert both.lost == []  # what the browser then opens holds seed, a and b
    assert both.lost_in_store == []
    assert emptying.lost_in_store == []  # the store kept b under the cookie b's response set
    if emptying.lost:  # a browser that got b's new cookie, then the emptier's expiry, lost it
        pytest.xfail(f"{len(emptying.lost)} of {emptying.tried} emptying pairs: the emptying"
                     " response's cookie expiry arrived after the new cookie of the other")


@pytest.mark.parametrize("mode", SERVER_MODES)
def test_logout_answered_while_a_slow_writer_waits_stays_dead(mode: str, tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = pairs_app(mode, tmp_path, cleanup)
        with serving(app) as port:
            logouts = run_logouts(app, port)
    assert logouts.tried == 50
    assert set(logouts.statuses) == {200}
    assert logouts.lost == []  # no cookie from the slow writer; the old cookie opens nothing
