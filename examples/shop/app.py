"""A small demo shop on satchel's sessions.

Run it with ``make demo`` (or ``flask --app examples/shop/app.py run``) and log
in as demo / demo. Sessions live in ``examples/shop/instance/sessions.sqlite3``,
satchel's default store; the browser only ever holds a signed random id.
``FLASK_SATCHEL_STORE=cookie:// make demo`` runs it on client-side sessions
sealed in the cookie instead (any other store URL works too).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from satchel import Satchel, StoreUnavailable, session_lock

HERE = os.path.dirname(os.path.abspath(__file__))

# For local development only: anyone who reads this file can forge cookies.
# Set SHOP_SECRET_KEY in the environment for anything that is not your laptop.
DEV_ONLY_SECRET_KEY = "dev-only-secret-key-for-the-satchel-demo-shop-NOT-FOR-PRODUCTION"

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # published on the login page: a demo, not a secret
USER_KEY = "user"  # the session key the shop logs users in under (SATCHEL_USER_KEY)

STUDENTS = [
    ("Ada Lovelace", "A"),
    ("Alan Turing", "A-"),
    ("Grace Hopper", "B+"),
    ("Edsger Dijkstra", "B"),
    ("Barbara Liskov", "A"),
    ("Donald Knuth", "B+"),
]

# product id -> (name, price in cents)
PRODUCTS: dict[str, tuple[str, int]] = {
    "pencil": ("Pencil", 120),
    "notebook": ("Notebook", 450),
    "eraser": ("Eraser", 80),
    "ruler": ("Ruler (30 cm)", 199),
    "backpack": ("Backpack", 3499),
}

MAX_QUANTITY = 99

# Store class -> what the footer calls it.
STORE_KINDS = {"SQLiteStore": "SQLite", "RedisStore": "Redis", "PostgresStore": "PostgreSQL",
               "MemoryStore": "memory (this process only)"}

F = TypeVar("F", bound=Callable[..., Any])
CartView = Callable[..., Response]

satchel = Satchel()  # one extension object; init_app gives each app its own store


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the shop. ``config`` overrides the defaults (tests pass a store and a key)."""
    app = Flask(__name__, instance_path=os.path.join(HERE, "instance"))
    app.config.update(
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY") or DEV_ONLY_SECRET_KEY,
        SESSION_COOKIE_SAMESITE="Lax",
        SATCHEL_USER_KEY=USER_KEY,  # lets satchel list and sign out a user's sessions
    )
    # FLASK_SATCHEL_STORE=cookie:// (or any SATCHEL_STORE URL) picks another store;
    # unset, sessions go to the default SQLite file in the instance folder.
    # Values are parsed as JSON: rotate keys with FLASK_SECRET_KEY_FALLBACKS='["old key"]'
    # (a bare string is refused: Flask would make each character a key).
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    register_error_pages(app)  # before init_app: satchel keeps an app's own 503 handler
    satchel.init_app(app)
    app.extensions["shop_mode"] = mode = describe_mode(app)
    if not app.logger.level:
        app.logger.setLevel(logging.INFO)
    app.logger.info("Satchel demo shop: %s sessions; %s", mode["mode"], mode["footer"])
    register_views(app)
    return app


def describe_mode(app: Flask) -> dict[str, str]:
    """What serves this app's sessions: ``mode`` ("server-side" or "client-side") and a
    ``footer`` sentence that says where the data is."""
    try:
        store = Satchel.store_of(app)
    except RuntimeError:  # sealed cookies: there is no store
        return {"mode": "client-side", "footer": "the whole session is sealed in the cookie"
                " (encrypted and signed); no server keeps it"}
    kind = STORE_KINDS.get(type(store).__name__, type(store).__name__)
    if kind == "Redis" and "cluster" in repr(store):
        kind = "Redis Cluster"
    if kind == "SQLite":
        kind += f" ({os.path.basename(getattr(store, 'path', ''))})"
    return {"mode": "server-side",
            "footer": f"the cookie holds only a signed random id; data in {kind}"}


def server_side() -> bool:
    """True if the app in context keeps sessions in a store (False: sealed cookies)."""
    return bool(current_app.extensions["shop_mode"]["mode"] == "server-side")


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if USER_KEY not in session:
            flash("Please log in to see that page.", "error")
            return redirect(url_for("login", next=request.path))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def product_or_404(product_id: str) -> tuple[str, int]:
    product = PRODUCTS.get(product_id)
    if product is None:
        abort(404)
    return product


def cart_lines() -> tuple[list[dict[str, Any]], int]:
    """The cart as display lines (name, quantity, subtotal) and the total, in cents."""
    lines = []
    total = 0
    for product_id, quantity in session.get("cart", {}).items():
        if product_id not in PRODUCTS:  # a product dropped from the catalogue
            continue
        name, price = PRODUCTS[product_id]
        lines.append({"id": product_id, "name": name, "quantity": quantity,
                      "price": price, "subtotal": price * quantity})
        total += price * quantity
    return lines, total


def is_local_path(target: str) -> bool:
    """Only follow ``next`` to a path on this site (no open redirect)."""
    return target.startswith("/") and not target.startswith("//") and "\\" not in target


def register_error_pages(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: NotFound) -> tuple[str, int]:
        return render_template("error.html", code=404, title="Page not found",
                               message="There is nothing at this address."), 404

    @app.errorhandler(StoreUnavailable)
    def store_down(error: StoreUnavailable) -> tuple[str, int, dict[str, str]]:
        app.logger.warning("session store unavailable: %s", error)
        g.store_down = True  # the page must not touch the session (it cannot load)
        page = render_template("error.html", code=503, title="Back in a moment",
                               message="The session store cannot be reached right now."
                               " Nothing was changed; try again in a few seconds.")
        return page, 503, {"Retry-After": "5"}


def register_views(app: Flask) -> None:
    @app.template_filter("money")
    def money(cents: int) -> str:
        return f"${cents // 100}.{cents % 100:02d}"

    @app.template_filter("when")
    def when(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    @app.context_processor
    def shop_context() -> dict[str, Any]:
        mode = app.extensions["shop_mode"]
        if g.get("store_down"):
            return {"current_user": None, "cart_count": 0, "mode": mode}
        cart = session.get("cart", {})
        return {"current_user": session.get(USER_KEY), "cart_count": sum(cart.values()),
                "mode": mode}

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str | Response | tuple[str, int]:
        next_url = request.values.get("next", "")
        if request.method == "GET":
            return render_template("login.html", next_url=next_url)
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            error = "Please enter both a username and a password."
            return render_template("login.html", error=error, username=username,
                                   next_url=next_url), 400
        if username != DEMO_USER or password != DEMO_PASSWORD:
            return render_template("login.html", error="Wrong username or password.",
                                   username=username, next_url=next_url), 401
        session.clear()
        session[USER_KEY] = username
        session.regenerate()  # new id on login: a planted cookie is worthless
        # Remember me: a cookie with an expiry; without, one that ends with the browser.
        session.permanent = request.form.get("remember") == "on"
        flash(f"Welcome, {username}!")
        return redirect(next_url if is_local_path(next_url) else url_for("index"))

    @app.post("/logout")
    def logout() -> Response:
        session.destroy()  # deletes the stored session; the old cookie is dead
        flash("You have been logged out.")
        return redirect(url_for("index"))

    @app.get("/students")
    @login_required
    def students() -> str:
        return render_template("students.html", students=STUDENTS)

    @app.get("/account/sessions")
    @login_required
    def sessions() -> str:
        listed = satchel.sessions_of(session[USER_KEY]) if server_side() else []
        return render_template("sessions.html", sessions=listed)

    @app.post("/account/sessions/revoke")
    @login_required
    def revoke_session() -> Response:
        if not server_side():
            return cookie_mode_refusal()
        handle = request.form.get("handle", "")
        mine = {s.handle: s for s in satchel.sessions_of(session[USER_KEY])}
        if handle not in mine:  # only the user's own sessions, whatever the form says
            flash("That session is not one of yours, or it has ended already.", "error")
        elif mine[handle].current:
            flash("That is this device: use Log out.", "error")
        else:
            satchel.revoke(handle)
            flash("Signed out that session.")
        return redirect(url_for("sessions"))

    @app.post("/account/sessions/revoke-others")
    @login_required
    def revoke_others() -> Response:
        if not server_side():
            return cookie_mode_refusal()
        ended = satchel.revoke_user(session[USER_KEY], keep_current=True)
        flash(f"Signed out {ended} other session{'' if ended == 1 else 's'}.")
        return redirect(url_for("sessions"))

    @app.get("/products")
    def products() -> str:
        return render_template("products.html", products=PRODUCTS)

    @app.get("/cart")
    def cart() -> str:
        lines, total = cart_lines()
        return render_template("cart.html", lines=lines, total=total)

    # The cart is one session key: two requests that each read it, add an item and write it
    # back would keep only one of the items. Under @session_lock the requests of one session
    # to these views run one at a time, so every parallel add is counted. Sealed cookies have
    # no server to lock (session_lock there is a ConfigError): in that mode they run unlocked.
    cart_view: Callable[[CartView], CartView] = (
        session_lock if describe_mode(app)["mode"] == "server-side" else _same)

    @app.post("/cart/add/<product_id>")
    @cart_view
    def cart_add(product_id: str) -> Response:
        name, _ = product_or_404(product_id)
        raw = request.form.get("quantity", "1").strip() or "1"
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_QUANTITY:
            flash(f"Quantity must be a whole number from 1 to {MAX_QUANTITY}.", "error")
            return redirect(url_for("products"))
        cart = session.setdefault("cart", {})
        # Mutated in place, no session.modified = True: satchel notices.
        cart[product_id] = min(cart.get(product_id, 0) + int(raw), MAX_QUANTITY)
        flash(f"Added {name} to your cart.")
        return redirect(url_for("products"))

    @app.post("/cart/remove/<product_id>")
    @cart_view
    def cart_remove(product_id: str) -> Response:
        name, _ = product_or_404(product_id)
        cart = session.get("cart", {})
        if cart.pop(product_id, None) is None:
            flash(f"{name} was not in your cart.", "error")
        else:
            flash(f"Removed {name} from your cart.")
        return redirect(url_for("cart"))

    @app.post("/cart/clear")
    @cart_view
    def cart_clear() -> Response:
        session.pop("cart", None)
        flash("Your cart is empty now.")
        return redirect(url_for("cart"))


def _same(view: F) -> F:
    return view


def cookie_mode_refusal() -> Response:
    flash("Sessions sealed in cookies live in each browser: they cannot be signed out one by"
          " one (rotating SECRET_KEY ends them all).", "error")
    return redirect(url_for("sessions"))
