"""Write protection and response headers (modalrec.serve.security) and the stalled-body timeout."""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from modalrec.serve.app import BodySizeLimit, create_app  # noqa: E402
from modalrec.serve.recommender import Recommender  # noqa: E402
from modalrec.serve.security import SECURITY_HEADERS, is_loopback  # noqa: E402


@pytest.fixture(scope="module")
def uni(served_runs):
    return Recommender.load(served_runs["unisrec"])


def _add(client, item_id: str, **headers):
    return client.post(
        "/items", json={"items": [{"item_id": item_id, "text": f"a film called {item_id}"}]}, headers=headers
    )


def test_every_response_carries_the_security_headers(uni):
    with TestClient(create_app(uni)) as c:
        for resp in (c.get("/"), c.get("/health"), c.get("/items/nope"), c.post("/recommend", content=b"{")):
            for key, value in SECURITY_HEADERS.items():
                assert resp.headers.get(key) == value, (resp.request.url, key)


def test_writes_from_another_site_are_refused(uni):
    with TestClient(create_app(uni)) as c:
        r = _add(c, "evil-1", origin="https://evil.example")
        assert r.status_code == 403 and "another site" in r.json()["detail"]
        r = c.post("/items/form", data={"item_id": "evil-2", "title": "Evil"}, headers={"origin": "null"})
        assert r.status_code == 403
        r = _add(c, "evil-3", referer="https://evil.example/page")
        assert r.status_code == 403
        assert c.get("/items/evil-1").status_code == 404 and c.get("/items/evil-3").status_code == 404
        assert _add(c, "own-1", origin="http://testserver").status_code == 201  # this site's own page
        assert _add(c, "script-1").status_code == 201  # no Origin: not a browser page; no token asked
        ok = c.post("/recommend", json={"history": [uni._ids[1]], "k": 3}, headers={"origin": "https://x.example"})
        assert ok.status_code == 200  # reading is open


def test_a_token_guards_writes_only(uni):
    with TestClient(create_app(uni, token="s3cret")) as c:
        r = _add(c, "tok-1")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert _add(c, "tok-2", authorization="Bearer wrong").status_code == 401
        assert _add(c, "tok-3", authorization="Bearer s3cret").status_code == 201
        assert c.get("/items/tok-1").status_code == 404 and c.get("/items/tok-3").status_code == 200
        assert c.post("/recommend", json={"history": [uni._ids[1]], "k": 3}).status_code == 200


def test_a_read_only_server_refuses_every_write(uni):
    with TestClient(create_app(uni, read_only=True)) as c:
        r = _add(c, "ro-1", authorization="Bearer anything")
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize(
    "host,local",
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host, local):
    assert is_loopback(host) is local


def test_a_body_that_never_arrives_is_dropped():
    sent = []

    async def app(scope, receive, send):  # never reached
        raise AssertionError("the app must not see a stalled request")

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    guard = BodySizeLimit(app, max_bytes=1024, timeout_s=0.05)
    asyncio.run(guard({"type": "http", "method": "POST", "path": "/items", "headers": []}, receive, send))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


def _png_of(width: int, height: int, mode: str = "1") -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_an_image_bomb_is_refused_from_its_header(served_runs):
    from modalrec.content.image import ImageTowerError, decode_image
    from modalrec.serve.recommender import RequestError

    bomb = _png_of(6000, 6000)  # 36 megapixels in a few KB
    assert len(bomb) < 100_000
    with pytest.raises(ImageTowerError, match="36.0 megapixels"):
        decode_image(bomb, 16, max_pixels=12_000_000)
    assert decode_image(_png_of(40, 30, "RGB"), 16, max_pixels=12_000_000).shape == (16, 16, 3)
    rec = Recommender.load(served_runs["pmmrec"])
    n = rec.n_items
    with pytest.raises(RequestError, match="megapixels"):
        rec.add_items([{"item_id": "bomb", "title": "Bomb", "image": bomb}])
    assert rec.n_items == n


def test_request_sizes_are_bounded_as_the_spec_says(uni):
    from modalrec.serve.app import MAX_CONTENT_ENTRIES, MAX_ITEMS_PER_ADD

    with TestClient(create_app(uni)) as c:
        spec = c.get("/openapi.json").json()["components"]["schemas"]
        assert spec["AddItemsRequest"]["properties"]["items"]["maxItems"] == MAX_ITEMS_PER_ADD
        assert str(MAX_CONTENT_ENTRIES) in spec["RecommendRequest"]["properties"]["history"]["description"]
        many = [{"text": f"film {i}"} for i in range(MAX_CONTENT_ENTRIES + 1)]
        r = c.post("/recommend", json={"history": many, "k": 3})
        assert r.status_code == 422 and f"at most {MAX_CONTENT_ENTRIES}" in r.text
        assert c.post("/recommend", json={"history": many[:MAX_CONTENT_ENTRIES], "k": 3}).status_code == 200
        items = [{"item_id": f"b{i}", "text": "x"} for i in range(MAX_ITEMS_PER_ADD + 1)]
        assert c.post("/items", json={"items": items}).status_code == 422


def test_no_coercion_no_echo_and_a_favicon(uni):
    with TestClient(create_app(uni)) as c:
        h = [uni._ids[1]]
        assert c.post("/recommend", json={"history": h, "k": True}).status_code == 422
        assert c.post("/recommend", json={"history": h, "k": "3"}).status_code == 422
        assert c.post("/recommend", json={"history": h, "exclude_seen": 0}).status_code == 422
        r = c.post("/recommend", json={"history": h, "exclude": [f"nope-{i}" for i in range(5000)]})
        assert r.status_code == 422 and len(r.json()["unknown_item_ids"]) == 100 and "5000 unknown ids" in r.text
        fav = c.get("/favicon.ico")
        assert fav.status_code == 200 and fav.headers["content-type"].startswith("image/svg+xml")


def test_many_waiting_bodies_shorten_the_wait():
    guard = BodySizeLimit(None, max_bytes=1024, timeout_s=30)
    assert guard._timeout() == 30
    guard._waiting = guard.BUSY
    assert guard._timeout() == guard.SHORT_TIMEOUT_S < 30


def test_a_repeated_query_parameter_is_refused(uni):
    with TestClient(create_app(uni)) as c:
        item = uni._ids[1]
        r = c.get(f"/items/{item}/similar?k=3&k=5")
        assert r.status_code == 422 and "more than once: k" in r.json()["detail"]
        assert r.headers["x-content-type-options"] == SECURITY_HEADERS["x-content-type-options"]
        assert c.get(f"/items/{item}/similar?k=3").status_code == 200
        assert c.get("/items/search?q=a&q=b").status_code == 422


def _waiting_request(app, scope: dict) -> asyncio.Task:
    """A request whose body never arrives, sent straight to the ASGI app."""

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        pass

    return asyncio.create_task(app(scope, receive, send))


def test_a_request_waiting_for_its_body_holds_one_task_and_little_memory(uni, http_scope):
    """Thousands of stalled uploads wait at once (bench/serve_abuse.py): each must hold its own task only.
    A middleware that runs the app in a task group (Starlette's BaseHTTPMiddleware, ``@app.middleware``:
    4 tasks and 25 KiB per waiting request) or a task per receive (``asyncio.wait_for``, kept on 3.10 only)
    multiplies what the server keeps per connection."""
    app, n = create_app(uni, body_timeout_s=30), 200

    async def main() -> tuple[float, float]:
        warm = _waiting_request(app, http_scope("/recommend", 1000))  # first request: the middleware stack is built
        await asyncio.sleep(0.01)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            waiting = [_waiting_request(app, http_scope("/recommend", 1000)) for _ in range(n)]
            await asyncio.sleep(0.05)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        tasks = len(asyncio.all_tasks()) - 2  # this one and the warm-up request
        for t in (*waiting, warm):
            t.cancel()
        await asyncio.gather(*waiting, warm, return_exceptions=True)
        return tasks / n, used / n

    tasks, used = asyncio.run(main())
    assert tasks == (1 if sys.version_info >= (3, 11) else 2)
    assert used < 12 * 1024, f"{used / 1024:.1f} KiB per waiting request"
