"""``flask satchel purge``: delete expired sessions, in batches."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from satchel.errors import StoreUnavailable
from satchel.store import Purgeable


@click.command("purge")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Records deleted per transaction.")
@with_appcontext
def purge(batch: int) -> None:
    """Delete expired sessions, in batches. Exits with status 1 if the store is unavailable."""
    from satchel.cookie_mode import CookieEngine
    from satchel.flask import Satchel, SatchelSessionInterface

    interface = current_app.session_interface
    if isinstance(interface, SatchelSessionInterface) and isinstance(interface.engine,
                                                                     CookieEngine):
        click.echo("Sessions are sealed in cookies (SATCHEL_STORE 'cookie://'); they expire"
                   " in the browser and there is nothing to purge.")
        return
    store = Satchel.store_of(current_app)
    if not isinstance(store, Purgeable):
        click.echo(f"{type(store).__name__} expires sessions by itself; nothing to purge.")
        return
    total = 0
    try:
        with click.progressbar(length=store.count_expired(), label="Purging expired sessions",
                               show_pos=True) as bar:
            while deleted := store.purge_expired(batch):
                total += deleted
                bar.update(deleted)
    except StoreUnavailable as err:  # a message and exit status 1, not a traceback
        done = f"{total} expired session(s) were deleted" if total else "nothing was purged"
        raise click.ClickException(f"{err}; {done}") from err
    click.echo(f"Deleted {total} expired session(s).")
