"""No password of a store URL reaches a message, a log line, an exception or a repr.

A password may sit in the URL's user info or in its query (redis-py takes
``?password=`` and ``?ssl_password=``, libpq ``?password=`` and
``?sslpassword=``), percent-encoded or not, or in a libpq conninfo string.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from satchel import ConfigError, Satchel, StoreUnavailable
from satchel.redact import redact_url, scrub, secrets_of
from satchel.urls import store_from_url

PW = "s3cr3t-Pa55"  # the password every URL below carries somewhere


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://user:{PW}@cache:6379/0", "redis://user:***@cache:6379/0"),
    (f"redis://:{PW}@cache/0", "redis://:***@cache/0"),
    (f"redis://cache/0?password={PW}", "redis://cache/0?password=***"),
    (f"redis://cache/0?db=1&PassWord={PW}&health_check_interval=5",
     "redis://cache/0?db=1&PassWord=***&health_check_interval=5"),
    (f"redis://cache/0?pass%77ord={PW}", "redis://cache/0?pass%77ord=***"),
    (f"rediss://cache/0?ssl_password={PW}&db=2", "rediss://cache/0?ssl_password=***&db=2"),
    (f"postgresql://db.internal/app?sslpassword={PW}", "postgresql://db.internal/app?sslpassword=***"),
    (f"postgresql://app:{PW}@db/app?password={PW}x", "postgresql://app:***@db/app?password=***"),
    ("postgresql://app:s3cr3t%40Pa55@db/app", "postgresql://app:***@db/app"),
    (f"postgresql://db/app?password={PW}%26more&user=me", "postgresql://db/app?password=***&user=me"),
    ("redis://cache/0?password=s3cr3t&Pa55", "redis://cache/0?password=***&***"),
    ("redis://:s3cr3t@Pa55@cache/0", "redis://:***@cache/0"),
    ("redis://:s3cr3t/Pa55@cache/0", "redis://:***@cache/0"),
    ("redis://u:s3cr3t#Pa55@cache/0", "redis://u:***@cache/0"),
    ("redis://u:s3cr3t?Pa55@cache/0", "redis://u:***@cache/0"),
    (f"host=db password={PW} dbname=app", "host=db password=*** dbname=app"),
    (f"host=db password = '{PW} x\\'y' dbname=app", "host=db password = *** dbname=app"),
])
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr3t" not in redact_url(url) and "Pa55" not in redact_url(url)


@pytest.mark.parametrize("url", [
    "redis://cache:6379/0", "rediss://cache/0?db=2", "unix:///run/redis.sock?db=1",
    "redis+cluster://10.0.0.5:7000", "postgresql://app@db:5432/app",
    "postgresql:///app?host=/var/run/postgresql&user=me@corp", "sqlite:///sessions.sqlite3",
    "memory://", "cookie://", "sessions.sqlite3", "host=db dbname=app",
])
def test_redact_url_leaves_a_url_without_password_alone(url: str) -> None:
    assert redact_url(url) == url
    assert secrets_of(url) == ()


def test_scrub_hides_secrets_and_the_quoted_pieces_of_one() -> None:
    secrets = secrets_of("redis://:s3cr3t/Pa55@cache/0")
    assert scrub("Port could not be cast to integer value as 's3cr3t'", secrets) == (
        "Port could not be cast to integer value as '***'")
    assert scrub('bad token: "s3cr3t/Pa55" in "redis://:s3cr3t/Pa55@cache/0"', secrets) == (
        'bad token: "***" in "redis://:***@cache/0"')
    assert scrub("couldn't connect to 'cache'", secrets) == "couldn't connect to 'cache'"
    assert scrub("anything", ()) == "anything"


# -- every message that shows a URL ----------------------------------------------------------

# Each URL with the password in the user info, then in the query.
def both(template_userinfo: str, template_query: str) -> list[str]:
    return [template_userinfo.format(pw=PW), template_query.format(pw=PW)]


def assert_hidden(err: BaseException) -> None:
    text = "".join(traceback.format_exception(err))  # the message, and every chained cause
    assert PW not in text and "s3cr3t" not in text and "Pa55" not in text, text
    assert "***" in str(err) or "s3cr3t" not in str(err)


@pytest.mark.parametrize("url", [
    *both("bogus://admin:{pw}@db.internal/x", "bogus://db.internal/x?password={pw}"),
    *both("cookie://admin:{pw}@host", "cookie://?password={pw}"),
    *both("sqlite://admin:{pw}@host/x.db", "sqlite://host/x.db?password={pw}"),
    f"host=db.internal password={PW}",
])
def test_store_url_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        store_from_url(url, base_dir=str(tmp_path))
    assert_hidden(info.value)


def test_satchel_store_config_error(tmp_path: Path) -> None:
    from flask import Flask

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=f"host=db password={PW}")
    with pytest.raises(ConfigError, match="not a URL") as info:
        Satchel(app)
    assert_hidden(info.value)


@pytest.mark.parametrize("url", [
    *both("redis://:{pw}@:6379/0", "redis://:6379/0?password={pw}"),  # no host
    *both("redis://u:{pw}@cache:port/0", "redis://cache:port/0?password={pw}"),  # bad port
    *both("memcached://u:{pw}@cache/0", "memcached://cache/0?password={pw}"),
    *both("redis://u:{pw}@cache/0?db=zero", "redis://cache/0?password={pw}&db=zero"),
    "redis://:s3cr3t/Pa55@cache/0",  # a raw '/' ends the port at 's3cr3t'
    "redis://u:s3cr3t#Pa55@cache/0",  # a raw '#' likewise
])
def test_redis_url_errors(url: str) -> None:
    from satchel.stores.redis import RedisStore

    with pytest.raises(ConfigError) as info:
        RedisStore.from_url(url)
    assert_hidden(info.value)


@pytest.mark.parametrize("url", both("redis://u:{pw}@127.0.0.1:1/0",
                                     "redis://127.0.0.1:1/0?password={pw}"))
def test_redis_unavailable_messages_and_logs(url: str, caplog: pytest.LogCaptureFixture) -> None:
    from flask import Flask, session

    from satchel.stores.redis import RedisStore

    store = RedisStore.from_url(url)
    assert PW not in repr(store)
    with pytest.raises(StoreUnavailable) as info:
        store.load("k" * 64)
    assert_hidden(info.value)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=url)
    Satchel(app)

    @app.post("/")
    def index() -> str:
        session["x"] = 1
        return "saved"

    caplog.set_level(logging.INFO)
    assert app.test_client().post("/").status_code == 503
    assert "unavailable" in caplog.text and PW not in caplog.text


@pytest.mark.parametrize("url", both("redis+cluster://u:{pw}@127.0.0.1:1",
                                     "redis+cluster://127.0.0.1:1?password={pw}"))
def test_redis_cluster_unavailable_message(url: str, caplog: pytest.LogCaptureFixture) -> None:
    from satchel.stores.redis import RedisStore

    caplog.set_level(logging.INFO)
    store = RedisStore.from_url(url)  # the app starts; its line at start names no password
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.load("k" * 43)  # builds the client: its failure, with no password
    finally:
        store.close()
    assert_hidden(info.value)
    assert "no cluster node answers" in caplog.text and PW not in caplog.text


@pytest.mark.parametrize("url", [
    *both("mysql://u:{pw}@db/app", "mysql://db/app?password={pw}"),
    *both("postgresql://u:{pw}@/app", "postgresql:///app?password={pw}"),  # no host
    *both("postgresql://u:{pw}@db/app?bogus=1", "postgresql://db/app?password={pw}&bogus=1"),
    *both("postgresql://u:{pw}%zz@db/app", "postgresql://db/app?password={pw}%zz"),  # echoed
    *both("postgresql://u:{pw}@[::1/app", "postgresql://[::1/app?password={pw}"),  # echoed
    "postgresql://u:s3cr3t@Pa55@db/app",  # libpq: password 's3cr3t', host 'Pa55@db'
    "postgresql://u:s3cr3t/Pa55@db/app",  # libpq: host 'u', port 's3cr3t'
])
def test_postgres_url_errors(url: str) -> None:
    from satchel.stores.postgres import PostgresStore

    with pytest.raises(ConfigError) as info:
        PostgresStore.from_url(url)
    assert_hidden(info.value)


@pytest.mark.parametrize("url", both("postgresql://u:{pw}@127.0.0.1:1/app",
                                     "postgresql://127.0.0.1:1/app?password={pw}"))
def test_postgres_unavailable_messages(url: str) -> None:
    from psycopg_pool import ConnectionPool

    from satchel.stores.postgres import PostgresStore

    started = PostgresStore.from_url(url, timeout=0.5)  # an app starts while it is down
    try:
        assert PW not in repr(started)
        with pytest.raises(StoreUnavailable) as info:
            started.load("k" * 64)
        assert_hidden(info.value)
    finally:
        started.close()
    with ConnectionPool(url, min_size=1, timeout=0.5, open=True) as pool:
        store = PostgresStore(pool, create_schema=False)
        assert PW not in repr(store)
        with pytest.raises(StoreUnavailable) as info:
            store.load("k" * 64)
        assert_hidden(info.value)
