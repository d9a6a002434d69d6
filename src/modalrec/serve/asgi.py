"""Two small ASGI helpers for middlewares that read a request's whole body before the app does."""

from __future__ import annotations


async def read_body(receive) -> bytes | None:
    """The request's body, all of it; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive):
    """A ``receive`` that hands the app ``body`` as one message, then passes on to the real one (disconnects)."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def with_content_length(scope, size: int) -> dict:
    """``scope`` with its ``Content-Length`` header set to ``size`` (after a middleware rewrote the body)."""
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(size).encode())]}
