"""uvicorn's HTTP protocols, answering a request they cannot parse with the service's JSON error.

A request line, header or ``Content-Length`` that is not valid HTTP never reaches the app: uvicorn's
parser answers it with a ``text/plain`` 400 of its own. These subclasses answer it with the body every
other error has (:mod:`modalrec.serve.errors`), the security headers every response carries, and
``connection: close`` (the stream cannot be trusted after a parse error). ``modalrec serve`` passes
:func:`http_protocol` to ``uvicorn.run(http=...)``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from uvicorn.protocols.http.h11_impl import H11Protocol

from modalrec.serve.errors import error_response
from modalrec.serve.security import SECURITY_HEADERS

if TYPE_CHECKING:
    import asyncio

    from uvicorn.server import ServerState

MAX_REASON = 200  # characters of the parser's own message kept in the detail


def _parser_reason(fallback: str) -> str:
    """The parser's message for the error being handled (uvicorn calls ``send_400_response`` inside its
    ``except``), without the echo of the offending bytes h11 appends; ``fallback`` when there is none."""
    exc = sys.exc_info()[1]
    reason = str(exc).split(": bytearray(")[0].strip() if exc is not None else ""
    return (reason or fallback.rstrip("."))[:MAX_REASON]


def bad_request_bytes(reason: str, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The whole HTTP/1.1 400 response (status line, headers, JSON body) for a request that is not valid HTTP."""
    resp = error_response(
        400,
        f"the request is not valid HTTP ({reason}); send a well-formed HTTP/1.1 request",
        headers={**SECURITY_HEADERS, "connection": "close"},
    )
    head = [b"HTTP/1.1 400 Bad Request"]
    head += [name + b": " + value for name, value in (*default_headers, *resp.raw_headers)]
    return b"\r\n".join(head) + b"\r\n\r\n" + resp.body


class _JsonBadRequest:
    """Mixin for a uvicorn HTTP protocol: its 400 for an unparsable request is a JSON error."""

    transport: asyncio.Transport  # both set by the uvicorn protocol it is mixed into
    server_state: ServerState

    def send_400_response(self, msg: str) -> None:
        self.transport.write(bad_request_bytes(_parser_reason(msg), self.server_state.default_headers))
        self.transport.close()


class H11JsonErrors(_JsonBadRequest, H11Protocol):
    """uvicorn's h11 protocol (pure Python; the one used when httptools is not installed)."""


try:  # the C parser, when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsJsonErrors(_JsonBadRequest, HttpToolsProtocol):
        """uvicorn's httptools protocol."""

    _HTTPTOOLS: type | None = HttpToolsJsonErrors
except ImportError:
    _HTTPTOOLS = None


def http_protocol() -> type:
    """The protocol uvicorn's ``http="auto"`` would pick (httptools when installed, else h11), with JSON 400s."""
    return _HTTPTOOLS or H11JsonErrors
