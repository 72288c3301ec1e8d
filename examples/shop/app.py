"""A small demo shop on satchel's server-side sessions.

Run it with ``make demo`` (or ``flask --app examples/shop/app.py run``) and log
in as demo / demo. Sessions live in ``examples/shop/instance/sessions.sqlite3``,
satchel's default store; the browser only ever holds a signed random id.
``FLASK_SATCHEL_STORE=cookie:// make demo`` runs it on client-side sessions
sealed in the cookie instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from satchel import Satchel

HERE = os.path.dirname(os.path.abspath(__file__))

# For local development only: anyone who reads this file can forge cookies.
# Set SHOP_SECRET_KEY in the environment for anything that is not your laptop.
DEV_ONLY_SECRET_KEY = "dev-only-secret-key-for-the-satchel-demo-shop-NOT-FOR-PRODUCTION"

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # published on the login page: a demo, not a secret

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

F = TypeVar("F", bound=Callable[..., Any])


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the shop. ``config`` overrides the defaults (tests pass a store and a key)."""
    app = Flask(__name__, instance_path=os.path.join(HERE, "instance"))
    app.config.update(
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY") or DEV_ONLY_SECRET_KEY,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    # FLASK_SATCHEL_STORE=cookie:// (or any SATCHEL_STORE URL) picks another store;
    # unset, sessions go to the default SQLite file in the instance folder.
    # Values are parsed as JSON: rotate keys with FLASK_SECRET_KEY_FALLBACKS='["old key"]'
    # (a bare string is refused: Flask would make each character a key).
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    Satchel(app)
    register_views(app)
    return app


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if "user" not in session:
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


def register_views(app: Flask) -> None:
    @app.template_filter("money")
    def money(cents: int) -> str:
        return f"${cents // 100}.{cents % 100:02d}"

    @app.context_processor
    def shop_context() -> dict[str, Any]:
        cart = session.get("cart", {})
        return {"current_user": session.get("user"), "cart_count": sum(cart.values())}

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
        session["user"] = username
        session.regenerate()  # new id on login: a planted cookie is worthless
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

    @app.get("/products")
    def products() -> str:
        return render_template("products.html", products=PRODUCTS)

    @app.post("/cart/add/<product_id>")
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

    @app.get("/cart")
    def cart() -> str:
        lines, total = cart_lines()
        return render_template("cart.html", lines=lines, total=total)

    @app.post("/cart/remove/<product_id>")
    def cart_remove(product_id: str) -> Response:
        name, _ = product_or_404(product_id)
        cart = session.get("cart", {})
        if cart.pop(product_id, None) is None:
            flash(f"{name} was not in your cart.", "error")
        else:
            flash(f"Removed {name} from your cart.")
        return redirect(url_for("cart"))

    @app.post("/cart/clear")
    def cart_clear() -> Response:
        session.pop("cart", None)
        flash("Your cart is empty now.")
        return redirect(url_for("cart"))
