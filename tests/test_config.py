"""Configuration precedence and validation (WIRE §1): args > env > default, checked up front."""

from __future__ import annotations

import pytest
from _servers import always, ok, serve
from aiohttp import web

from createos_sandbox_async import AsyncSession, Limits, RetryPolicy, Timeouts
from createos_sandbox_async._config import coerce_timeouts, resolve_api_key, resolve_base_url

ENVS = ("CREATEOS_SANDBOX_API_KEY", "CREATEOS_API_KEY", "CREATEOS_SANDBOX_BASE_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def test_api_key_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_api_key(None) is None
    monkeypatch.setenv("CREATEOS_API_KEY", "from-generic")
    assert resolve_api_key(None) == "from-generic"
    monkeypatch.setenv("CREATEOS_SANDBOX_API_KEY", "from-sandbox")
    assert resolve_api_key(None) == "from-sandbox"
    assert resolve_api_key("explicit") == "explicit"


def test_blank_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATEOS_SANDBOX_API_KEY", "   ")
    monkeypatch.setenv("CREATEOS_API_KEY", "generic")
    assert resolve_api_key("") == "generic"
    assert resolve_api_key("  ") == "generic"


def test_api_key_type_checked() -> None:
    with pytest.raises(TypeError, match="api_key"):
        resolve_api_key(b"bytes")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_env_key_is_what_the_server_receives(monkeypatch: pytest.MonkeyPatch) -> None:
    app = web.Application()
    app.router.add_get("/v1/whoami", always(lambda: ok({"user_id": "u"})))
    async with serve(app) as srv:
        monkeypatch.setenv("CREATEOS_API_KEY", "generic-key")
        monkeypatch.setenv("CREATEOS_SANDBOX_BASE_URL", srv.base_url)
        async with AsyncSession() as session:
            await session.whoami()
        monkeypatch.setenv("CREATEOS_SANDBOX_API_KEY", "sandbox-key")
        async with AsyncSession() as session:
            await session.whoami()
        async with AsyncSession("explicit-key") as session:
            await session.whoami()
    assert [r.headers["X-Api-Key"] for r in srv.requests] == [
        "generic-key",
        "sandbox-key",
        "explicit-key",
    ]


def test_base_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_base_url(None) == ("https://api.sb.createos.sh", "base_url")
    monkeypatch.setenv("CREATEOS_SANDBOX_BASE_URL", "https://env.example/")
    assert resolve_base_url(None) == ("https://env.example", "CREATEOS_SANDBOX_BASE_URL")
    assert resolve_base_url("https://arg.example/p/") == ("https://arg.example/p", "base_url")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://h.example", "scheme"),
        ("h.example", "scheme"),
        ("https://", "no host"),
        ("https://user:pw@h.example", "userinfo"),
        ("https://user@h.example", "userinfo"),
        ("https://h.example/?a=1", "query"),
        ("https://h.example/?", "query"),
        ("https://h.example/#frag", "fragment"),
        ("https://h.example:99999", "port"),
    ],
)
def test_base_url_rejections_name_the_argument(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        AsyncSession("k", base_url=url)
    assert str(info.value).startswith("base_url")
    assert "pw" not in str(info.value)


def test_bad_env_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATEOS_SANDBOX_BASE_URL", "https://h.example/?x=1")
    with pytest.raises(ValueError, match=r"^CREATEOS_SANDBOX_BASE_URL"):
        AsyncSession("k")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://sb.localhost"],
)
def test_plain_http_allowed_for_loopback(url: str) -> None:
    AsyncSession("k", base_url=url)


def test_plain_http_with_key_refused_elsewhere() -> None:
    with pytest.raises(ValueError, match="base_url uses plain http") as info:
        AsyncSession("secret-key-value", base_url="http://api.example.com")
    assert "secret-key-value" not in str(info.value)
    AsyncSession(None, base_url="http://api.example.com")  # no key, nothing to leak
    AsyncSession("k", base_url="http://api.example.com", allow_insecure_http=True)


def test_timeouts_coercion_and_validation() -> None:
    assert coerce_timeouts(None) == Timeouts()
    assert Timeouts().request == 60.0 and Timeouts().stream_idle == 30.0
    assert coerce_timeouts(5) == Timeouts(request=5.0)
    t = Timeouts(connect=1, request=None, stream_idle=2, pool=3)
    assert coerce_timeouts(t) is t
    with pytest.raises(ValueError, match="timeout"):
        coerce_timeouts(0)
    with pytest.raises(TypeError, match="timeout"):
        coerce_timeouts("5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream_idle"):
        Timeouts(stream_idle=-1)


def test_limits_validation_and_max_connections() -> None:
    assert Limits() == Limits(max_connections=100, max_connections_per_host=0)
    with pytest.raises(ValueError, match="max_connections"):
        Limits(max_connections=-1)
    with pytest.raises(ValueError, match="max_connections_per_host"):
        Limits(max_connections_per_host=-1)
    with pytest.raises(ValueError, match="keepalive_expiry"):
        Limits(keepalive_expiry=-1.0)
    with pytest.raises(ValueError, match="max_connections"):
        AsyncSession("k", base_url="http://127.0.0.1:1", max_connections=-5)


def test_configuration_fields_follow_the_argument_rule() -> None:
    """Limits and RetryPolicy check fields like calls check arguments (_validate): a wrong type
    is a TypeError, a wrong value a ValueError, and the message names the field."""
    for build, name in [
        (lambda v: Limits(max_connections=v), "max_connections"),
        (lambda v: Limits(max_connections_per_host=v), "max_connections_per_host"),
        (lambda v: RetryPolicy(max_retries=v), "max_retries"),
    ]:
        for wrong_type in (True, "10", 2.0, None):
            with pytest.raises(TypeError, match=name):
                build(wrong_type)
        with pytest.raises(ValueError, match=name):
            build(-1)
    for wrong_type in ("15", True, None):
        with pytest.raises(TypeError, match="keepalive_expiry"):
            Limits(keepalive_expiry=wrong_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive_expiry"):
        Limits(keepalive_expiry=float("nan"))
    assert Limits(keepalive_expiry=float("inf")).keepalive_expiry == float("inf")
    assert RetryPolicy(max_retries=0, base=0, cap=0).max_retries == 0


def test_wrong_types_name_the_argument() -> None:
    with pytest.raises(TypeError, match="retry"):
        AsyncSession("k", base_url="http://127.0.0.1:1", retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limits"):
        AsyncSession("k", base_url="http://127.0.0.1:1", limits=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="headers"):
        AsyncSession("k", base_url="http://127.0.0.1:1", headers={"a": 1})  # type: ignore[dict-item]
    # The type is named, never the value (the same idiom as every check in _validate).
    with pytest.raises(TypeError, match=r"timeout must be .* got str$") as info:
        AsyncSession("k", base_url="http://127.0.0.1:1", timeout="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in str(info.value)


@pytest.mark.anyio
async def test_limits_reach_the_connector() -> None:
    app = web.Application()
    app.router.add_get("/healthz", always(lambda: ok({"up": True})))
    limits = Limits(max_connections=7, max_connections_per_host=3, keepalive_expiry=2.0)
    async with serve(app) as srv, srv.session(limits=limits) as session:
        assert (await session.health()).up
        connector = session._transport.connector
        assert connector is not None
        assert (connector.limit, connector.limit_per_host) == (7, 3)
