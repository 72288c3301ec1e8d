"""A short, seeded fuzz of the session cookie in every mode (``make fuzz`` runs a long one)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.fuzzing import Counts, Target, fuzz
from tests.modes import MODES

INPUTS = 1500


@pytest.mark.parametrize("mode", MODES)
def test_no_error_no_forgery_no_store_call_for_a_malformed_cookie(mode: str,
                                                                  tmp_path: Path) -> None:
    counts = fuzz(mode, INPUTS, seed=11, folder=tmp_path)
    assert counts.inputs == INPUTS
    assert (counts.errors, counts.forgeries, counts.malformed_store_calls) == (0, 0, 0), \
        counts.examples


@pytest.mark.parametrize("mode", ["memory", "cookie"])
def test_the_checks_catch_what_they_count(mode: str, tmp_path: Path) -> None:
    """The victim's own token, counted as if the app had not issued it: a forgery (and, with
    a store, a store call); an input that breaks the app: an error."""
    with ExitStack() as cleanup:
        target = Target(mode, tmp_path, cleanup)
        real = target.tokens[0]
        target.issued = frozenset()
        counts = Counts()
        target.run(f"session={real}", counts)
        assert counts.forgeries == 1
        assert counts.malformed_store_calls == (mode != "cookie")
        target.app.config["SECRET_KEY"] = 12345  # an unusable key: the request fails
        target.run(f"session={real}", counts)
        assert counts.errors == 1
