"""Who may change the catalogue, and what every response tells the browser.

The deployment model (docs/serving.md): modalrec serves plain HTTP; beyond one machine it runs behind
a reverse proxy that terminates TLS. Reading (recommendations, search, images) is open to anyone who
can reach the port. Writing (adding items) is guarded three ways by :class:`WriteGuard`:

- a **read-only** server refuses every write (403) — what ``modalrec serve`` starts when it listens
  beyond the loopback interface without a token;
- with a **token** (``--token`` or ``MODALREC_TOKEN``), a write needs ``Authorization: Bearer <token>``
  (401 otherwise; compared in constant time);
- a write whose ``Origin`` (or, without one, ``Referer``) names another site than the ``Host`` it was
  sent to is refused (403): a page elsewhere cannot make a visitor's browser add items.

Every response carries :data:`SECURITY_HEADERS` (no sniffing, no framing, a strict content policy).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse

from modalrec.serve.errors import error_response

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
READ_ONLY_POSTS = {"/recommend"}  # POSTs that change nothing (a JSON body, so browsers preflight them)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
}


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _is_write(scope) -> bool:
    return scope["method"] not in SAFE_METHODS and scope["path"] not in READ_ONLY_POSTS


def cross_site(scope) -> str | None:
    """The foreign site a request comes from (its Origin or Referer), or None when it is this site or unsaid."""
    host = _header(scope, b"host")
    origin = _header(scope, b"origin")
    source = origin if origin is not None else _header(scope, b"referer")
    if source is None:
        return None  # not sent by a browser page (curl, scripts): the token decides
    if source == "null":
        return "an opaque origin (null)"
    netloc = urlsplit(source).netloc
    return None if host is not None and netloc.lower() == host.lower() else source


class WriteGuard:
    """ASGI middleware: security headers on every response; writes checked as the module says."""

    def __init__(self, app, *, token: str | None = None, read_only: bool = False):
        self.app, self.token, self.read_only = app, token or None, read_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        refusal = self._refusal(scope) if _is_write(scope) else None
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope) -> JSONResponse | None:
        if self.read_only:
            return error_response(
                403,
                "this server is read-only: it listens beyond this machine without a token; "
                "restart it with --token (or MODALREC_TOKEN) to allow adding items",
            )
        foreign = cross_site(scope)
        if foreign is not None:
            return error_response(
                403,
                f"a write from another site ({foreign[:100]}) is refused: add items from "
                "this server's own page or with the API",
            )
        if self.token is None:
            return None
        auth = _header(scope, b"authorization") or ""
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return error_response(
                401,
                "adding items needs the server's token: send 'Authorization: Bearer <token>'",
                headers={"www-authenticate": "Bearer"},
            )
        return None
