"""The session object alone: lazy loading, access and change tracking."""

from __future__ import annotations

from satchel.session import Session


def loaded_with(data: dict[str, object]) -> Session:
    def loader(session: Session) -> None:
        session.adopt("sid", {}, dict(data), created_at=0.0, last_seen=0.0, permanent=False)

    return Session(loader)


def test_nothing_is_loaded_until_first_use() -> None:
    calls: list[Session] = []
    session = Session(calls.append)
    assert not session.accessed and not session.loaded
    assert not session.modified
    assert repr(session) == "<Session (not loaded)>"
    assert calls == []
    session.get("x")
    assert calls == [session] and session.accessed and session.loaded
    session.get("y")
    assert len(calls) == 1


def test_every_data_operation_counts_as_access() -> None:
    for use in (len, iter, lambda s: "k" in s, lambda s: s.get("k"), lambda s: s.permanent,
                lambda s: s.new, dict):
        session = loaded_with({"k": 1})
        use(session)
        assert session.accessed


def test_reads_do_not_modify() -> None:
    session = loaded_with({"a": [1], "b": 2})
    assert session["a"] == [1] and session.get("b") == 2 and dict(session) == {"a": [1], "b": 2}
    assert not session.modified


def test_writes_deletes_and_clear_modify() -> None:
    for change in (lambda s: s.__setitem__("c", 3), lambda s: s.pop("a"),
                   lambda s: s.__delitem__("b"), Session.clear, lambda s: s.update(z=1),
                   lambda s: s.setdefault("new", 1), lambda s: s.popitem()):
        session = loaded_with({"a": [1], "b": 2})
        change(session)
        assert session.modified


def test_setdefault_of_existing_key_does_not_modify() -> None:
    session = loaded_with({"a": 1})
    assert session.setdefault("a", 5) == 1
    assert not session.modified


def test_modified_flag_can_be_set_by_hand() -> None:
    session = loaded_with({})
    session.modified = True
    assert session.modified


def test_modified_set_before_the_load_loads_and_marks_the_loaded_keys() -> None:
    session = loaded_with({"cart": [1]})
    session.modified = True
    assert session.loaded and session.accessed and session.modified
    assert session.may_have_changed  # the loaded keys are re-encoded at commit
    session = Session(deferred=True)
    session.defer_load(None, lambda target: None)
    session.modified = False  # nothing to mark: no load
    assert not session.loaded and not session.modified


def test_permanent_is_metadata_not_a_key() -> None:
    session = loaded_with({"a": 1})
    session.permanent = True
    assert session.permanent and session.modified
    assert dict(session) == {"a": 1}


def test_repr_never_shows_the_id_or_values() -> None:
    session = loaded_with({"password": "hunter2"})
    len(session)
    text = repr(session)
    assert "sid" not in text and "hunter2" not in text and "password" in text


def test_non_string_keys_are_refused() -> None:
    session = loaded_with({})
    try:
        session[1] = "x"  # type: ignore[index]
    except TypeError as err:
        assert "str" in str(err)
    else:
        raise AssertionError("an int key was accepted")


def test_new_session_without_loader_is_new_and_empty() -> None:
    session = Session()
    assert session.new and len(session) == 0


def test_the_engines_use_only_the_sessions_public_view() -> None:
    """The session's internals can change without the engines (issue 10, point 4)."""
    import inspect
    import re

    from satchel import cookie_mode, engine

    for module in (engine, cookie_mode):
        private = re.findall(r"\bsession\._\w+", inspect.getsource(module))
        assert private == [], (module.__name__, private)
