"""Requests that are not valid HTTP: a real uvicorn server on a free local port, fed raw bytes over a socket."""

import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'modalrec[serve]'")

from modalrec.serve.protocol import H11JsonErrors, bad_request_bytes, http_protocol  # noqa: E402

MALFORMED = {
    "request line": b"GARBAGE\r\n\r\n",
    "header bytes": b"GET /health HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\n\r\n",
    "content length": b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
}


async def _ok_app(scope, receive, send):
    """Stands in for the service: the parser's answer never reaches an app."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module", params=[H11JsonErrors])
def port(request):
    """Port of a uvicorn server (background thread) using the protocol under test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(_ok_app, host="127.0.0.1", port=free, log_level="error", http=request.param, lifespan="off")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield free
    srv.should_exit = True
    thread.join(timeout=10)


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read until the server closes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_http_gets_the_json_error_shape(port, case):
    status, headers, body = _exchange(port, MALFORMED[case])
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close" and headers["x-content-type-options"] == "nosniff"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)
    assert list(error) == ["detail"] and error["detail"].startswith("the request is not valid HTTP (")


def test_the_detail_names_the_parsers_reason_without_echoing_bytes(port):
    detail = json.loads(_exchange(port, MALFORMED["content length"])[2])["detail"]
    assert "Content-Length" in detail
    detail = json.loads(_exchange(port, MALFORMED["header bytes"])[2])["detail"]
    assert "header" in detail and "Bad" not in detail


def test_a_well_formed_request_still_reaches_the_app(port):
    status, _, body = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"ok")


def test_the_response_bytes_carry_the_servers_default_headers():
    raw = bad_request_bytes("bad Content-Length", [(b"date", b"Sat, 05 Dec 2026 12:00:00 GMT")])
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\ndate: Sat, 05 Dec 2026 12:00:00 GMT\r\n")
    assert json.loads(raw.partition(b"\r\n\r\n")[2]) == {
        "detail": "the request is not valid HTTP (bad Content-Length); send a well-formed HTTP/1.1 request"
    }


def test_serve_picks_the_protocol_uvicorn_would_with_json_errors():
    try:
        import httptools  # noqa: F401
    except ImportError:
        assert http_protocol() is H11JsonErrors
    else:
        assert http_protocol().__name__ == "HttpToolsJsonErrors"
