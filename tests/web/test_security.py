"""Where the dashboard may listen, the token, the Host check, CSRF on mutating requests, the headers."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kisystem.config import load_config
from kisystem.errors import ConfigError, UsageError
from kisystem.paths import DASHBOARD_TOKEN_ENV
from kisystem.web.security import AUTH_COOKIE, CSRF_COOKIE, LOOPBACK_HOSTS, check_bind, is_loopback
from tests.web.support import Seeded, client

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", "localhost.evil.com"])
def test_elsewhere_is_refused_without_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError, match=rf"refusing to serve the dashboard on {host}: .*{DASHBOARD_TOKEN_ENV}"):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_a_short_token_is_refused() -> None:
    with pytest.raises(UsageError, match="too short"):
        check_bind("0.0.0.0", "short")


def test_the_token_variable_is_not_an_unknown_config_override() -> None:
    assert load_config(None, env={DASHBOARD_TOKEN_ENV: TOKEN}).config is not None
    with pytest.raises(ConfigError) as err:  # a misspelt one still is
        load_config(None, env={"KISYSTEM_DASHBOARD_TOKN": TOKEN})
    assert any("KISYSTEM_DASHBOARD_TOKN: unknown" in p for p in err.value.problems)


def test_with_a_token_every_page_needs_it(seeded: Seeded) -> None:
    with client(seeded.path, token=TOKEN) as c:
        assert c.get("/").status_code == 401 and c.get("/metrics").status_code == 401
        assert c.get("/healthz").status_code == 200 and c.get("/static/dashboard.css").status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert c.get("/runs", params={"token": "wrong-token-0123456789"}).status_code == 401
        login = c.get("/runs", params={"token": TOKEN, "q": "add"}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/runs?q=add"
        assert TOKEN not in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
        assert c.cookies.get(AUTH_COOKIE)
        assert c.get("/runs?q=add").status_code == 200  # the session cookie from now on


def test_loopback_binding_answers_loopback_host_names_only(seeded: Seeded) -> None:
    with client(seeded.path, allowed_hosts=LOOPBACK_HOSTS) as c:
        assert c.get("/healthz").status_code == 400  # Host: testserver, as a rebound DNS name would be
        for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
            assert c.get("/", headers={"Host": host}).status_code == 200, host


def _with_post_route(c) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        form = parse_qs((await request.body()).decode())
        return PlainTextResponse(f"got {form['x'][0]}")

    c.app.router.routes.append(Route("/echo", echo, methods=["POST"]))


def test_mutating_requests_need_the_csrf_token(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        _with_post_route(c)
        assert c.post("/echo", data={"x": "1"}).status_code == 403  # no cookie yet, no token
        page = c.get("/")
        token = c.cookies.get(CSRF_COOKIE)
        assert token and f'<meta name="csrf-token" content="{token}">' in page.text
        assert "SameSite=Strict" in page.headers["set-cookie"]
        assert c.post("/echo", data={"x": "1"}).status_code == 403  # the cookie alone is not enough
        assert c.post("/echo", data={"x": "1", "csrf_token": "forged"}).status_code == 403
        by_form = c.post("/echo", data={"x": "2", "csrf_token": token})
        assert by_form.status_code == 200 and by_form.text == "got 2"  # the body still reaches the handler
        assert c.post("/echo", data={"x": "3"}, headers={"X-CSRF-Token": token}).text == "got 3"
        cross = c.post("/echo", data={"x": "4"}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        c.cookies.clear()
        assert c.post("/echo", data={"x": "5"}, headers={"X-CSRF-Token": token}).status_code == 403  # no cookie


def test_every_response_carries_the_security_headers(seeded: Seeded) -> None:
    with client(seeded.path, token=TOKEN) as c:
        for response in (c.get("/healthz"), c.get("/"), c.get("/static/htmx.min.js")):
            assert "default-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
