"""The Flask face: the ``Satchel`` extension and its ``SessionInterface``.

The only package that imports Flask; the core (:mod:`satchel.engine`,
:mod:`satchel.cookie_mode`) knows nothing of it. Config is read per request
wherever Flask reads it per request, so tests may change it after the app is
built; ``SATCHEL_STORE`` and ``SATCHEL_GRACE_PERIOD`` are read once, by
``init_app``.

- :mod:`~satchel.flask.extension`: ``Satchel``, which installs everything;
- :mod:`~satchel.flask.interface`: the ``SessionInterface`` and its session class;
- :mod:`~satchel.flask.responses`: the headers, the 503, and JSON for sessions.
"""

from satchel.flask.extension import Satchel
from satchel.flask.flask_session import FlaskSession
from satchel.flask.interface import SatchelSessionInterface
from satchel.flask.responses import store_unavailable

__all__ = ["FlaskSession", "Satchel", "SatchelSessionInterface", "store_unavailable"]
