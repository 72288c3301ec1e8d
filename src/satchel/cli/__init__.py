"""``flask satchel ...``: admin commands, registered on the app by ``Satchel.init_app``.

- ``stats``, ``list``, ``revoke``: who is logged in where (:mod:`satchel.cli.sessions`);
- ``purge``: delete expired sessions (:mod:`satchel.cli.purge`);
- ``check``: lint the app's session config (:mod:`satchel.cli.check`).
"""

from __future__ import annotations

from flask.cli import AppGroup

from satchel.cli.check import check
from satchel.cli.purge import purge
from satchel.cli.sessions import list_sessions, revoke, stats

satchel_cli = AppGroup("satchel", help="Manage satchel sessions.")
for _command in (stats, list_sessions, revoke, purge, check):
    satchel_cli.add_command(_command)

__all__ = ["satchel_cli"]
