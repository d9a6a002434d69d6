"""The HTTP service (FastAPI TestClient, in-process): endpoints, error codes, concurrency, the CLI hooks."""

import base64
import json
import re
import threading
from urllib.parse import urljoin

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from modalrec.serve.app import BodySizeLimit, create_app  # noqa: E402
from modalrec.serve.recommender import Recommender  # noqa: E402


def _png(seed: int = 0, size: int = 20) -> bytes:
    from modalrec.datasets.builtin import png_bytes

    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def load(served_runs, tmp_path_factory):
    """``load(name)``: a fresh Recommender for a served run (data prepared in one module-wide home)."""
    home = tmp_path_factory.mktemp("app-home")

    def _load(name: str) -> Recommender:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MODALREC_HOME", str(home))
            return Recommender.load(served_runs[name])

    return _load


@pytest.fixture(scope="module")
def pmm(load):
    """A pmmrec Recommender shared by the module (tests that add items use ids of their own)."""
    return load("pmmrec")


@pytest.fixture(scope="module")
def client(pmm):
    with TestClient(create_app(pmm, max_body_bytes=64 * 1024)) as c:
        yield c


def _ids(resp) -> list[str]:
    return [r["item_id"] for r in resp.json()["items"]]


# -- happy paths --------------------------------------------------------------------------------


def test_health_page_static_files_and_spec(client, pmm):
    assert client.get("/health").json() == {
        "status": "ok",
        "model": "pmmrec",
        "n_items": pmm.n_items,
        "can_add_items": True,
        "index": {"kind": "exact"},
    }
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="search-input"' in page.text and "static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/recommend",
        "/items",
        "/items/form",
        "/items/search",
        "/items/{item_id}",
        "/items/{item_id}/image",
        "/items/{item_id}/similar",
        "/health",
    }
    req = spec["components"]["schemas"]["RecommendRequest"]
    assert req["required"] == ["history"] and req["examples"]
    assert req["properties"]["k"]["minimum"] == 1 and req["properties"]["k"]["maximum"] == 1000
    assert req["properties"]["history"]["minItems"] == 1
    assert set(spec["paths"]["/items"]["post"]["responses"]) == {"201", "400", "409", "413", "422"}
    error = spec["paths"]["/recommend"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "image/png" in spec["paths"]["/items/{item_id}/image"]["get"]["responses"]["200"]["content"]


def test_api_reference_page_is_offline(client):
    """GET /docs: the reference page loads its script and styles from /static only, never from another host."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in page.headers
    urls = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", page.text, flags=re.I)
    assert urls and not [u for u in urls if re.match(r"(?i)^(?:[a-z][a-z0-9+.-]*:|//)", u)], urls
    resources = re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']([^"']*)["']""", page.text, flags=re.I)
    assert {urljoin("/docs", u) for u in resources} == {"/static/docs.js", "/static/style.css", "/static/docs.css"}
    assert not re.search(r"<script\b(?![^>]*\bsrc=)", page.text, flags=re.I), "no inline scripts (CSP)"
    assert not re.search(r"<style\b|\sstyle\s*=", page.text, flags=re.I), "no inline styles (CSP)"
    script = client.get("/static/docs.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "innerHTML" not in script.text and not re.search(r"(?i)https?://", script.text)
    for css in ("/static/docs.css", "/static/style.css"):
        r = client.get(css)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
        assert not re.search(r"(?i)@import|url\(\s*[\"']?(?:[a-z]+:|//)", r.text), f"{css} loads nothing from elsewhere"
    assert 'href="docs"' in client.get("/").text  # the main page links to it


def test_recommend(client, pmm):
    hist = [pmm._ids[1], pmm._ids[2], pmm._ids[3]]
    r = client.post("/recommend", json={"history": hist})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "pmmrec" and body["n_items"] == pmm.n_items and len(body["items"]) == 10
    assert set(body["items"][0]) == {
        "item_id",
        "score",
        "rank",
        "text",
        "is_new",
        "has_image",
        "title",
        "year",
        "genres",
    }
    assert [x["rank"] for x in body["items"]] == list(range(1, 11))
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True) and not set(_ids(r)) & set(hist)
    assert _ids(r) == [x.item_id for x in pmm.recommend(hist, k=10)]
    # options
    r = client.post(
        "/recommend",
        json={
            "history": hist,
            "k": 3,
            "exclude_seen": False,
            "include": [pmm._ids[i] for i in (1, 5, 6, 7)],
            "exclude": [pmm._ids[7]],
        },
    )
    assert r.status_code == 200 and set(_ids(r)) == {pmm._ids[i] for i in (1, 5, 6)}
    # k above the catalogue size: the whole ranked catalogue (minus the history)
    r = client.post("/recommend", json={"history": hist, "k": 1000})
    assert r.status_code == 200 and len(r.json()["items"]) == pmm.n_items - 3


def test_recommend_with_raw_content_in_the_history(client, pmm):
    src = pmm._ids[7]
    content = {"text": pmm.item(src).text, "image_base64": _b64(pmm.item_image(src))}
    by_id = client.post("/recommend", json={"history": [pmm._ids[1], src], "k": 5, "exclude_seen": False})
    by_content = client.post("/recommend", json={"history": [pmm._ids[1], content], "k": 5, "exclude_seen": False})
    assert by_content.status_code == 200 and _ids(by_content) == _ids(by_id)
    titled = client.post(
        "/recommend", json={"history": [{"title": "Storm at sea", "year": 1999, "genres": ["Drama"]}], "k": 2}
    )
    assert titled.status_code == 200 and len(titled.json()["items"]) == 2


def test_item_search_image_similar(client, pmm):
    iid = pmm._ids[4]
    r = client.get(f"/items/{iid}")
    assert r.json() == {
        "item_id": iid,
        "text": pmm.item(iid).text,
        "is_new": False,
        "has_image": True,
        "title": pmm.item(iid).title,
        "year": "",
        "genres": "",
    }
    word = pmm.item(iid).text.split()[-1]
    r = client.get("/items/search", params={"q": word.upper(), "limit": 5})
    assert r.status_code == 200 and 1 <= len(r.json()["items"]) <= 5
    assert all(word.lower() in x["text"].lower() for x in r.json()["items"])
    img = client.get(f"/items/{iid}/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content == pmm.item_image(iid)
    r = client.get(f"/items/{iid}/similar", params={"k": 4})
    assert r.status_code == 200 and len(r.json()["items"]) == 4 and iid not in _ids(r)


def test_added_item_is_searchable_and_recommendable_at_once(client, pmm):
    n0 = pmm.n_items
    png = _png(1)
    r = client.post(
        "/items",
        json={
            "items": [
                {
                    "item_id": "zeb-1",
                    "title": "Zebracorn Odyssey",
                    "year": 2003,
                    "genres": ["Adventure"],
                    "image_base64": "data:image/png;base64," + _b64(png),
                },
                {"item_id": "zeb-2", "text": "Zebracorn Returns: a tale of storms"},
            ]
        },
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"added": ["zeb-1", "zeb-2"], "n_items": n0 + 2, "warnings": []}
    found = client.get("/items/search", params={"q": "zebracorn"}).json()["items"]
    assert {x["item_id"] for x in found} == {"zeb-1", "zeb-2"} and all(x["is_new"] for x in found)
    assert client.get("/items/zeb-1").json()["has_image"] is True
    assert client.get("/items/zeb-1/image").content == png
    assert client.get("/items/zeb-2/image").status_code == 404
    r = client.post("/recommend", json={"history": [pmm._ids[1]], "k": 2, "include": ["zeb-1", pmm._ids[2]]})
    assert set(_ids(r)) == {"zeb-1", pmm._ids[2]} and [x for x in r.json()["items"] if x["is_new"]]
    everything = client.post("/recommend", json={"history": [pmm._ids[1]], "k": 1000})
    assert {"zeb-1", "zeb-2"} <= set(_ids(everything))  # scored with the rest of the catalogue
    r = client.post("/recommend", json={"history": ["zeb-1", "zeb-2"], "k": 3})  # usable in a history too
    assert r.status_code == 200 and not {"zeb-1", "zeb-2"} & set(_ids(r))


def test_add_item_through_the_form(client):
    png = _png(2)
    r = client.post(
        "/items/form",
        data={"title": "Formica Rising", "year": "1987", "genres": "Drama, Sci-Fi"},
        files={"image": ("poster.png", png, "image/png")},
    )
    assert r.status_code == 201, r.text
    (new_id,) = r.json()["added"]
    assert new_id.startswith("new-")
    info = client.get(f"/items/{new_id}").json()
    assert info["is_new"] and info["has_image"] and "Formica Rising" in info["text"]
    assert client.get(f"/items/{new_id}/image").content == png
    r = client.post("/items/form", data={"title": "No Picture", "item_id": "form-2"})  # url-encoded, no image
    assert r.status_code == 201 and r.json()["added"] == ["form-2"]


# -- errors ---------------------------------------------------------------------------------------

TRUNCATED_PNG = _png(3)[:40]
CASES = [
    # (name, method, path, request kwargs, status, text the detail must contain)
    ("empty history", "post", "/recommend", {"json": {"history": []}}, 422, "history"),
    ("missing history", "post", "/recommend", {"json": {"k": 3}}, 422, "history: Field required"),
    ("k zero", "post", "/recommend", {"json": {"history": ["1"], "k": 0}}, 422, "k: "),
    ("k too large", "post", "/recommend", {"json": {"history": ["1"], "k": 1001}}, 422, "less than or equal to 1000"),
    ("k not a number", "post", "/recommend", {"json": {"history": ["1"], "k": "ten"}}, 422, "k: "),
    ("unknown id", "post", "/recommend", {"json": {"history": ["1", "nope"]}}, 422, "'nope'"),
    ("unknown include", "post", "/recommend", {"json": {"history": ["1"], "include": ["nada"]}}, 422, "'nada'"),
    ("entry of a wrong type", "post", "/recommend", {"json": {"history": ["1", 5]}}, 422, "history.1"),
    ("content without text", "post", "/recommend", {"json": {"history": [{"year": 1999}]}}, 422, "'text' or 'title'"),
    ("typo in a field", "post", "/recommend", {"json": {"history": ["1"], "K": 3}}, 422, "K: Extra inputs"),
    (
        "malformed JSON",
        "post",
        "/recommend",
        {"content": b'{"history": [', "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    (
        "not JSON",
        "post",
        "/recommend",
        {"content": b"history=1", "headers": {"content-type": "text/plain"}},
        422,
        "Content-Type: application/json",
    ),
    ("body not an object", "post", "/recommend", {"json": ["1", "2"]}, 422, "body"),
    ("no items", "post", "/items", {"json": {"items": []}}, 422, "items"),
    (
        "bad base64",
        "post",
        "/items",
        {"json": {"items": [{"item_id": "b1", "text": "t", "image_base64": "@@"}]}},
        422,
        "not valid base64",
    ),
    (
        "not an image",
        "post",
        "/items",
        {"json": {"items": [{"item_id": "b2", "text": "t", "image_base64": _b64(b"hello world")}]}},
        422,
        "not a PNG, JPEG",
    ),
    (
        "undecodable image",
        "post",
        "/items",
        {"json": {"items": [{"item_id": "b3", "text": "t", "image_base64": _b64(TRUNCATED_PNG)}]}},
        422,
        "cannot be decoded",
    ),
    (
        "id twice",
        "post",
        "/items",
        {"json": {"items": [{"item_id": "d", "text": "a"}, {"item_id": "d", "text": "b"}]}},
        422,
        "given twice",
    ),
    (
        "existing id",
        "post",
        "/items",
        {"json": {"items": [{"item_id": "1", "text": "clash"}]}},
        409,
        "already in the catalogue: 1",
    ),
    ("slash in id", "post", "/items", {"json": {"items": [{"item_id": "a/b", "text": "t"}]}}, 422, "item_id"),
    ("no content", "post", "/items", {"json": {"items": [{"item_id": "e1"}]}}, 422, "'text' or 'title'"),
    ("form without title", "post", "/items/form", {"data": {"year": "1999"}}, 422, "title: Field required"),
    ("form blank title", "post", "/items/form", {"data": {"title": "   "}}, 422, "title"),
    ("form year out of range", "post", "/items/form", {"data": {"title": "t", "year": "99"}}, 422, "year"),
    (
        "form text upload",
        "post",
        "/items/form",
        {"data": {"title": "t"}, "files": {"image": ("notes.txt", b"just text", "text/plain")}},
        422,
        "'notes.txt' is not a PNG",
    ),
    ("search without q", "get", "/items/search", {}, 422, "q: Field required"),
    ("search limit 0", "get", "/items/search", {"params": {"q": "a", "limit": 0}}, 422, "limit"),
    ("unknown item", "get", "/items/nope", {}, 404, "'nope'"),
    ("image of unknown item", "get", "/items/nope/image", {}, 404, "'nope'"),
    ("similar of unknown item", "get", "/items/nope/similar", {}, 404, "'nope'"),
    ("similar k 0", "get", "/items/1/similar", {"params": {"k": 0}}, 422, "k"),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,text", CASES, ids=[c[0] for c in CASES])
def test_bad_requests_get_a_4xx_that_names_the_problem(client, pmm, name, method, path, kwargs, status, text):
    n0 = pmm.n_items
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    detail = r.json()["detail"]
    assert isinstance(detail, str) and text in detail, detail
    assert pmm.n_items == n0  # nothing half-added


def test_unknown_ids_are_listed(client):
    r = client.post("/recommend", json={"history": ["1", "nope", "nada"]})
    assert r.status_code == 422 and r.json()["unknown_item_ids"] == ["nope", "nada"]


def test_item_without_image_is_404(client):
    client.post("/items", json={"items": [{"item_id": "plain-1", "text": "no picture here"}]})
    r = client.get("/items/plain-1/image")
    assert r.status_code == 404 and "has no image" in r.json()["detail"]


def test_body_size_limit(client):
    big = {"items": [{"item_id": "big", "text": "x" * 20_000}] * 4}
    r = client.post("/items", json=big)
    assert r.status_code == 413 and "larger than the limit of 65536 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the middleware must count
        for _ in range(100):
            yield b"x" * 1000

    r = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "more than 65536 bytes" in r.json()["detail"]


def test_body_size_limit_does_not_trust_content_length():
    import asyncio

    seen = []

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        seen.append(await receive())

    sent = []
    messages = [
        {"type": "http.request", "body": b"x" * 60, "more_body": True},
        {"type": "http.request", "body": b"x" * 60, "more_body": False},
    ]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/items", "headers": [(b"content-length", b"10")]}
    asyncio.run(BodySizeLimit(app, max_bytes=100)(scope, receive, send))
    assert not seen and sent[0]["status"] == 413
    assert b"more than 100 bytes" in sent[1]["body"]
    # a body under the limit reaches the app whole, in one message
    messages[:] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    ok = []

    async def app2(scope, receive, send):
        ok.append(await receive())

    asyncio.run(BodySizeLimit(app2, max_bytes=100)(scope | {"headers": []}, receive, send))
    assert ok == [{"type": "http.request", "body": b"abcd", "more_body": False}]


def test_unexpected_recommender_errors_never_become_500_for_input(pmm, monkeypatch):
    with TestClient(create_app(pmm), raise_server_exceptions=False) as c:
        monkeypatch.setattr(pmm, "recommend", lambda *a, **k: (_ for _ in ()).throw(ValueError("odd history")))
        r = c.post("/recommend", json={"history": ["1"]})
        assert r.status_code == 422 and "odd history" in r.json()["detail"]
        monkeypatch.setattr(pmm, "recommend", lambda *a, **k: (_ for _ in ()).throw(KeyError("missing field")))
        r = c.post("/recommend", json={"history": ["1"]})
        assert r.status_code == 422 and "missing field" in r.json()["detail"]
        monkeypatch.setattr(pmm, "recommend", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
        r = c.post("/recommend", json={"history": ["1"]})  # a real bug stays a 500, in the same JSON shape
        assert r.status_code == 500 and "RuntimeError" in r.json()["detail"]


# -- concurrency, ID models, every model ------------------------------------------------------------


def test_adding_while_recommending(load):
    rec = load("pmmrec")
    n0, errors = rec.n_items, []
    with TestClient(create_app(rec)) as c:

        def add(t):
            for j in range(5):
                r = c.post("/items", json={"items": [{"item_id": f"c{t}-{j}", "text": f"thread {t} item {j}"}]})
                if r.status_code != 201:
                    errors.append(r.text)

        def ask():
            for _ in range(10):
                r = c.post("/recommend", json={"history": [rec._ids[1], rec._ids[2]], "k": 5})
                if r.status_code != 200 or len(r.json()["items"]) != 5:
                    errors.append(r.text)
                s = c.get("/items/search", params={"q": "thread"})
                if s.status_code != 200:
                    errors.append(s.text)

        threads = [threading.Thread(target=add, args=(t,)) for t in range(2)]
        threads += [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert c.get("/health").json()["n_items"] == n0 + 10 == rec.n_items
        assert len(c.get("/items/search", params={"q": "thread", "limit": 100}).json()["items"]) == 10


def test_id_model_serves_but_cannot_add_items(load):
    with TestClient(create_app(load("sasrec"))) as c:
        assert c.get("/health").json()["can_add_items"] is False
        r = c.post("/recommend", json={"history": ["1", "2"], "k": 4})
        assert r.status_code == 200 and len(r.json()["items"]) == 4
        r = c.post("/items", json={"items": [{"item_id": "n1", "text": "something new"}]})
        assert r.status_code == 422 and "ID embedding" in r.json()["detail"]
        r = c.post("/items/form", data={"title": "New"})
        assert r.status_code == 422 and "cannot add items" in r.json()["detail"]
        r = c.post("/recommend", json={"history": [{"text": "never seen"}]})
        assert r.status_code == 422 and "never saw" in r.json()["detail"]


def test_every_registered_model_answers(served_runs, load, pmm):
    from modalrec.models.registry import available_models

    names = available_models()
    missing = [n for n in names if n not in served_runs]
    assert not missing, f"add {missing} to the served_runs fixture (tests/serve/conftest.py)"
    for name in names:
        rec = pmm if name == "pmmrec" else load(name)
        with TestClient(create_app(rec)) as c:
            r = c.post("/recommend", json={"history": [rec._ids[1], rec._ids[2]], "k": 3})
            assert r.status_code == 200, (name, r.text)
            assert r.json()["model"] == name and len(r.json()["items"]) == 3


# -- the command line ---------------------------------------------------------------------------------


def test_cli_help_does_not_import_the_web_stack():
    import subprocess
    import sys

    code = (
        "import sys\nimport modalrec.cli as c\ntry:\n    c.main(['serve', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('fastapi', 'uvicorn', 'starlette', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "--add-items" in out


def test_cli_serve_builds_the_app_and_adds_items(served_runs, tmp_path, monkeypatch, capsys):
    import uvicorn

    from modalrec.cli import main

    (tmp_path / "img.png").write_bytes(_png(4))
    items = tmp_path / "new.csv"
    items.write_text(
        "item_id,title,year,genres,image\ncsv-1,Quokka Quest,2011,Comedy|Family,img.png\ncsv-2,Quokka Quest II,2013,,\n"
    )
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert main(["serve", str(served_runs["pmmrec"]), "--port", "8123", "--add-items", str(items), "--quiet"]) == 0
    assert "added 2 items" in capsys.readouterr().out
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    from modalrec.serve.protocol import http_protocol

    assert started["http"] is http_protocol()  # the parser's own 400s are JSON too
    with TestClient(started["app"]) as c:
        found = c.get("/items/search", params={"q": "quokka"}).json()["items"]
        assert [x["item_id"] for x in found] == ["csv-1", "csv-2"] and found[0]["has_image"]
        assert c.get("/items/csv-1/image").content == (tmp_path / "img.png").read_bytes()

    jsonl = tmp_path / "new.jsonl"
    jsonl.write_text(json.dumps({"item_id": "j1", "text": "from jsonl"}) + "\n{broken\n")
    assert main(["serve", str(served_runs["pmmrec"]), "--add-items", str(jsonl), "--quiet"]) == 2
    assert "line 2: not valid JSON" in capsys.readouterr().err


def test_cli_serve_without_the_extra_says_what_to_install(served_runs, monkeypatch, capsys):
    import sys

    from modalrec.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert main(["serve", str(served_runs["pmmrec"])]) == 2
    assert "pip install 'modalrec[serve]'" in capsys.readouterr().err


def test_cli_recommend_jsonl_file(served_runs, tmp_path, capsys):
    from modalrec.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(
        json.dumps({"user": "u1", "history": ["1", "2"]}) + "\n" + json.dumps({"user": "u2", "history": ["3"]}) + "\n"
    )
    assert main(["recommend", str(served_runs["sasrec"]), "--input", str(inp), "--output", str(out), "--k", "3"]) == 0
    assert "2 histories" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["user"] for x in lines] == ["u1", "u2"] and all(len(x["items"]) == 3 for x in lines)
    assert main(["recommend", str(served_runs["sasrec"]), "--input", str(inp)]) == 2
    assert "--input needs --output" in capsys.readouterr().err
    assert main(["recommend", str(served_runs["sasrec"]), "--history", "1,2", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_a_client_gone_before_its_body_arrived_raises_nothing(pmm, http_scope):
    """A client that disconnects mid-body gets no answer, and the app behind the size limit raises nothing
    (Starlette's HTTP middleware used to fail with "No response returned", a traceback in the log)."""
    import asyncio

    app = create_app(pmm)
    scope = http_scope("/items")
    messages = [{"type": "http.request", "body": b'{"items": [', "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def go():
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(go())  # raised RuntimeError before the fix
    assert all(m["type"].startswith("http.response") for m in sent)


def test_accept_errors_from_running_out_of_files_are_one_line_per_power_of_two(caplog):
    """asyncio's traceback per refused connection (EMFILE) becomes a counted line; other errors still reach
    the default handler."""
    import asyncio
    import errno

    from modalrec.serve.app import quiet_accept_errors

    loop = asyncio.new_event_loop()
    try:
        quiet_accept_errors(loop)
        with caplog.at_level("WARNING"):
            for _ in range(5):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
        lines = [r.getMessage() for r in caplog.records if "file descriptors" in r.getMessage()]
        assert [ln.split(":")[1].split()[0] for ln in lines] == ["1", "2", "4"]
        caplog.clear()
        with caplog.at_level("ERROR"):
            loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        assert "something else" in caplog.text
    finally:
        loop.close()


def test_the_connection_limit_warning_is_counted_not_repeated(caplog):
    import logging

    from modalrec.serve.app import count_repeated_warning

    name = "modalrec-test.uvicorn-like"
    count_repeated_warning(name, "Exceeded concurrency limit.")
    count_repeated_warning(name, "Exceeded concurrency limit.")  # installed once
    log = logging.getLogger(name)
    with caplog.at_level("WARNING", logger=name):
        for _ in range(9):
            log.warning("Exceeded concurrency limit.")
        log.warning("something else")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [f"Exceeded concurrency limit. ({n} so far; one line per power of two)" for n in (1, 2, 4, 8)] + [
        "something else"
    ]
