"""``flask satchel stats``, ``list`` and ``revoke``: who is logged in where, from a shell.

Server-side stores only: in cookie mode, and on a store without the ability a command needs
(:class:`~satchel.store.UserIndex` for one user's sessions,
:class:`~satchel.store.Inventory` for counts and the whole list), a command prints why and
exits with status 1, as it does when the store cannot be reached. Sessions are named by
their handles (:mod:`satchel.handles`); no command prints a session id or a storage key.
User names and devices are printed with control characters escaped (``\\x1b``): a user
agent or a user name is chosen by whoever logs in, and must not drive the admin's terminal.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from satchel.engine import Engine
from satchel.errors import ConfigError, NotSupported, SatchelError
from satchel.flask.accounts import ListedSession
from satchel.flask.opening import no_key
from satchel.handles import Handles
from satchel.store import Inventory, SessionInfo, Store

P = ParamSpec("P")
R = TypeVar("R")


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """``command``, with satchel's errors (the store unreachable, the mode or store unable,
    an unusable key) turned into a one-line ``Error: ...`` and exit status 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SatchelError as err:
            raise click.ClickException(str(err)) from err

    return run


@click.command("stats")
@with_appcontext
@reported
def stats() -> None:
    """Count live sessions and users in the app's store (a walk of the whole store)."""
    store = _inventory()
    counted = store.stats()
    click.echo(f"Store: {store!r}\nLive sessions: {counted.sessions}\nUsers: {counted.users}")


@click.command("list")
@click.option("--user", help="Only this user's sessions, through the store's user index (costs"
              " that user's sessions). Without it: every session, a walk of the whole store.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects (handle,"
              " user, created, last_seen, expires, device; times in UTC) instead of a table.")
@with_appcontext
@reported
def list_sessions(user: str | None, as_json: bool) -> None:
    """List live sessions: handle, user, created, last seen (UTC), device.

    Oldest first. Handles are what `revoke --handle` takes; they are not cookies.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    _require_key(app)
    if user is None:
        listed = _every_session(app)
    else:
        try:
            listed = app.extensions["satchel"].sessions_of(user, app=app)
        except ConfigError:
            raise
        except ValueError as err:  # an empty user
            raise click.BadParameter(str(err), param_hint="--user") from err
    if as_json:
        click.echo(json.dumps([_as_json(session) for session in listed], indent=2))
    else:
        click.echo("\n".join(_table(listed)) if listed else "No sessions.")


@click.command("revoke")
@click.option("--user", help="End every session of this user.")
@click.option("--handle", help="End the session with this handle (from `list`).")
@with_appcontext
@reported
def revoke(user: str | None, handle: str | None) -> None:
    """End sessions: every session of --user, or the one of --handle (give exactly one).

    Prints how many ended. Their browsers are anonymous on their next request.
    """
    if (user is None) == (handle is None):
        raise click.UsageError("give exactly one of --user and --handle")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    satchel = app.extensions["satchel"]
    option, value = ("--user", user) if handle is None else ("--handle", handle)
    try:
        if handle is None:
            ended = satchel.revoke_user(user, app=app)
        else:
            ended = int(satchel.revoke(handle, app=app))
    except ConfigError:
        raise
    except ValueError as err:  # not a handle of this app; an empty user
        raise click.BadParameter(str(err), param_hint=option) from err
    if handle is None:
        click.echo(f"Ended {ended} session(s) of user {value!r}.")
    elif ended:
        click.echo("Ended 1 session.")
    else:
        click.echo("Ended 0 sessions: that session had ended already.")


def _store() -> Store:
    """The app's store; NotSupported in cookie mode."""
    engine = getattr(current_app.session_interface, "engine", None)
    if not isinstance(engine, Engine):
        raise NotSupported("sessions sealed in cookies (SATCHEL_STORE 'cookie://') live in the"
                           " browsers: they cannot be counted, listed or revoked one by one;"
                           " rotate SECRET_KEY to end them all, or keep sessions server-side")
    return engine.store


def _inventory() -> Inventory:
    store = _store()
    if not isinstance(store, Inventory):
        raise NotSupported(f"{store!r} cannot count or list every session (it has no"
                           " stats/all_sessions; see satchel.store.Inventory)")
    return store


def _require_key(app: Flask) -> None:
    """ConfigError unless ``SECRET_KEY`` is set: handles are made under it."""
    if no_key(app.config.get("SECRET_KEY")):
        raise ConfigError("SECRET_KEY is not set: session handles are made under it; set the"
                          " app's SECRET_KEY as its server does")


def _every_session(app: Flask) -> list[ListedSession]:
    """Every live session in the store, oldest first (a walk of the whole store)."""
    infos = _inventory().all_sessions()
    handles = Handles(app.config["SECRET_KEY"], app.config.get("SECRET_KEY_FALLBACKS") or ())
    listed = [_listed(info, handles) for info in infos]
    return sorted(listed, key=lambda session: (session.created_at, session.handle))


def _listed(info: SessionInfo, handles: Handles) -> ListedSession:
    def when(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, timezone.utc)

    return ListedSession(handles.handle(info.key), info.user, when(info.created_at),
                         when(info.last_seen), when(info.expires_at), info.device, False)


def _iso(moment: datetime) -> str:
    """UTC ISO-8601 to the second: ``2027-01-15T08:00:00Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(session: ListedSession) -> dict[str, Any]:
    return {"handle": session.handle, "user": session.user, "created": _iso(session.created_at),
            "last_seen": _iso(session.last_seen), "expires": _iso(session.expires_at),
            "device": session.device}


def _printable(text: str | None) -> str:
    """``text`` with each unprintable character escaped (``\\x1b``); ``-`` for None."""
    if text is None:
        return "-"
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def _table(listed: Iterable[ListedSession]) -> list[str]:
    rows = [(session.handle, _printable(session.user), _iso(session.created_at),
             _iso(session.last_seen), _printable(session.device)) for session in listed]
    rows.insert(0, ("HANDLE", "USER", "CREATED", "LAST SEEN", "DEVICE"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  ".join([*(row[column].ljust(width) for column, width in enumerate(widths)),
                       row[4]]) for row in rows]
