"""Who may use the dashboard, and how a request proves it.

- **Where it listens**: loopback by default.  Any other address needs ``KISYSTEM_DASHBOARD_TOKEN``
  (:func:`check_bind`); with a token set, every request but ``/healthz`` and the static files must
  carry it: ``Authorization: Bearer TOKEN`` (a Prometheus scraper), or the session cookie a browser
  gets by opening any page once with ``?token=TOKEN``.
- **Which host it answers**: bound to loopback, only requests whose ``Host`` is a loopback name, so
  a web page that rebinds its own DNS name to 127.0.0.1 cannot read the dashboard.
- **Mutating requests** (anything but GET/HEAD/OPTIONS) must also pass a CSRF check: the per-process
  token, set as a cookie on every page, must come back both in that cookie and in the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (pages send it: ``dashboard.js``), and a request's
  ``Origin``, when present, must be this server.
- **Every response** carries a strict Content-Security-Policy (scripts only from our own static
  files, no inline script), so even text that escaped escaping could not run.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from kisystem.errors import UsageError
from kisystem.paths import DASHBOARD_TOKEN_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_TOKEN_CHARS = 16
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/healthz", "/static/")  # no token needed: a liveness probe, and public assets
CSRF_COOKIE = "kisystem_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
AUTH_COOKIE = "kisystem_auth"
MAX_FORM_BYTES = 1 << 20
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (a name other than localhost could resolve anywhere)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token, and a token too short to be a secret."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageError(f"{DASHBOARD_TOKEN_ENV} is too short: use a secret of at least {MIN_TOKEN_CHARS} characters "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    if not is_loopback(host) and not token:
        raise UsageError(f"refusing to serve the dashboard on {host}: it is not a loopback address, so set "
                         f"{DASHBOARD_TOKEN_ENV} to a secret first (or bind to 127.0.0.1)")


class Guard:
    """ASGI middleware: host check, token, CSRF, security headers (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, csrf_token: str, token: str | None = None,
                 allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.csrf_token = csrf_token
        self.token = token
        self.session = _session_value(token) if token else None
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = _Request(scope)
        refusal = self._refusal(request)
        if refusal is None and request.method not in SAFE_METHODS:
            receive, refusal = await self._csrf(request, receive)
        if refusal is not None:
            return await _plain(send, *refusal)
        await self.app(scope, receive, self._sending(send, request))

    def _refusal(self, request: _Request) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        if self.allowed_hosts is not None and _host_name(request.header("host")) not in self.allowed_hosts:
            return 400, "this dashboard answers only to a loopback host name (127.0.0.1, localhost, [::1])", []
        if self.token is None or request.path.startswith(OPEN_PATHS):
            return None
        given = request.query("token")
        if given is not None:
            return self._login(request, given)
        if _same(request.header("authorization"), f"Bearer {self.token}") or _same(
                request.cookie(AUTH_COOKIE), self.session):
            return None
        return 401, (f"dashboard token required: open any page once with ?token=... ({DASHBOARD_TOKEN_ENV}), "
                     "or send Authorization: Bearer ..."), []

    def _login(self, request: _Request, given: str) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        """A right ``?token=`` sets the session cookie and redirects to the same page without it."""
        if not _same(given, self.token):
            return 401, "wrong dashboard token", []
        rest = urlencode([(k, v) for k, v in parse_qs(request.query_string).items() if k != "token"], doseq=True)
        location = request.path + (f"?{rest}" if rest else "")
        cookie = f"{AUTH_COOKIE}={self.session}; Path=/; HttpOnly; SameSite=Strict"
        return 303, "signed in", [(b"location", location.encode()), (b"set-cookie", cookie.encode())]

    async def _csrf(self, request: _Request, receive: Receive) -> tuple[Receive, tuple | None]:
        origin = request.header("origin")
        if origin and urlsplit(origin).netloc != request.header("host"):
            return receive, (403, "cross-origin request refused", [])
        sent = request.header(CSRF_HEADER)
        if sent is None:
            body, receive = await _buffered(receive)
            if body is None:
                return receive, (413, "form too large", [])
            if request.header("content-type", "").startswith("application/x-www-form-urlencoded"):
                sent = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [None])[0]
        if not (_same(sent, self.csrf_token) and _same(request.cookie(CSRF_COOKIE), self.csrf_token)):
            return receive, (403, "CSRF check failed: reload the page and try again", [])
        return receive, None

    def _sending(self, send: Send, request: _Request) -> Send:
        """``send`` adding the security headers, and the CSRF cookie where the browser lacks it."""
        set_cookie = request.cookie(CSRF_COOKIE) != self.csrf_token

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + list(SECURITY_HEADERS)
                if set_cookie:
                    cookie = f"{CSRF_COOKIE}={self.csrf_token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        return sending


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


class _Request:
    """The few parts of an ASGI HTTP scope the guard reads."""

    def __init__(self, scope: Scope) -> None:
        self.method = scope["method"]
        self.path = scope["path"]
        self.query_string = scope.get("query_string", b"").decode("latin-1")
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def query(self, name: str) -> str | None:
        values = parse_qs(self.query_string).get(name)
        return values[0] if values else None

    def cookie(self, name: str) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(self.header("cookie", ""))
        except CookieError:  # a malformed Cookie header: as if none was sent
            return None
        return jar[name].value if name in jar else None


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole body (None past MAX_FORM_BYTES) and a ``receive`` that hands it on again."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body, replayed = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _plain(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = f"{text}\n".encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS, *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _host_name(host: str | None) -> str:
    """``Host`` without its port (``[::1]:8765`` -> ``[::1]``)."""
    if not host:
        return ""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _session_value(token: str) -> str:
    """What the session cookie holds: derived from the token, so the cookie does not reveal it."""
    return hmac.new(token.encode(), b"kisystem dashboard session", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given.encode(), expected.encode())
