"""SessionUse: what prefetching goes by."""

from __future__ import annotations

from satchel.session_use import SessionUse


def test_a_path_is_expected_to_do_what_its_last_request_did() -> None:
    use = SessionUse()
    use.record("/cart", used=True, had_cookie=True)
    use.record("/health", used=False, had_cookie=True)
    assert use.expected("/cart") and not use.expected("/health")
    use.record("/cart", used=False, had_cookie=True)
    assert not use.expected("/cart")


def test_a_new_path_follows_the_last_request_that_carried_a_cookie() -> None:
    use = SessionUse()
    assert use.expected("/new")  # nothing seen yet: expect use
    use.record("/health", used=False, had_cookie=True)
    assert not use.expected("/item/1")
    use.record("/probe", used=True, had_cookie=False)  # no cookie: says nothing of sessions
    assert not use.expected("/item/2")
    use.record("/cart", used=True, had_cookie=True)
    assert use.expected("/item/3")


def test_memory_is_bounded_oldest_out_and_long_paths_never_kept() -> None:
    use = SessionUse(limit=3, max_length=10)
    for path in ("/a", "/b", "/c", "/d"):
        use.record(path, used=False, had_cookie=False)
    assert len(use) == 3 and "/a" not in use and "/d" in use
    use.record("/" + "x" * 10, used=False, had_cookie=False)
    assert len(use) == 3 and "/" + "x" * 10 not in use
    use.record("/b", used=True, had_cookie=False)  # a known path changes in place
    assert len(use) == 3 and use.expected("/b")
