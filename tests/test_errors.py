"""``satchel.errors.without_tracebacks``: an error kept past its ``except`` holds no frames."""

from __future__ import annotations

import gc

from satchel.errors import StoreUnavailable, without_tracebacks


class Keeper:
    """What keeps an error for later, as a breaker's probe or a prefetched load does."""

    error: BaseException | None = None


def fail_and_keep(keeper: Keeper, *, bare: bool) -> None:
    try:
        try:
            raise ConnectionRefusedError("refused")
        except OSError as err:
            raise StoreUnavailable("store down") from err
    except StoreUnavailable as err:
        keeper.error = without_tracebacks(err) if bare else err  # this frame holds keeper


def cycles_left(*, bare: bool) -> int:
    """The Keepers left to the cycle collector once dropped."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        keeper = Keeper()
        fail_and_keep(keeper, bare=bare)
        del keeper
        gc.collect()
        return sum(1 for o in gc.garbage if isinstance(o, Keeper))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_a_kept_error_with_its_traceback_makes_a_cycle() -> None:
    # the case the function exists for: the error's frame holds what holds the error
    assert cycles_left(bare=False) == 1


def test_without_tracebacks_leaves_no_cycle_and_keeps_type_message_and_chain() -> None:
    assert cycles_left(bare=True) == 0
    keeper = Keeper()
    fail_and_keep(keeper, bare=True)
    kept = keeper.error
    assert isinstance(kept, StoreUnavailable) and str(kept) == "store down"
    cause = kept.__cause__
    assert isinstance(cause, ConnectionRefusedError) and str(cause) == "refused"
    assert kept.__traceback__ is None and cause.__traceback__ is None
    try:
        raise kept
    except StoreUnavailable as again:  # raised again, it gets the traceback of where
        assert again.__traceback__ is not None


def test_without_tracebacks_takes_none_and_a_chain_that_loops() -> None:
    assert without_tracebacks(None) is None
    first, second = ValueError("a"), KeyError("b")
    first.__context__, second.__context__ = second, first  # a loop: must still end
    assert without_tracebacks(first) is first
