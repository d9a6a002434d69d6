"""The web page end to end: a real uvicorn server on a free local port, driven by headless Chromium.

Uses Debian's Chromium (``/usr/bin/chromium``) through Playwright's Python API; Playwright's own
browser downloads are never used.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'modalrec[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'modalrec[test]'")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() or shutil.which("chromium")),
    reason="needs Chromium at /usr/bin/chromium: apt-get install chromium",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_runs, tmp_path_factory):
    """Base URL of a uvicorn server (background thread) over a tiny pmmrec run."""
    import uvicorn

    from modalrec.serve.app import create_app
    from modalrec.serve.recommender import Recommender

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("e2e-home")))
        rec = Recommender.load(served_runs["pmmrec"])
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server did not start on port {port}")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        exe = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _png() -> bytes:
    import numpy as np

    from modalrec.datasets.builtin import png_bytes

    img = np.zeros((24, 24, 3), dtype=np.uint8)
    img[:, :12] = (200, 40, 40)
    return png_bytes(img)


def test_search_pick_and_see_recommendations(page):
    expect = sync_api.expect
    expect(page.get_by_test_id("model-info")).to_contain_text("pmmrec")
    page.get_by_label("Search by title").fill("strange")
    results = page.get_by_test_id("search-result")
    expect(results.first).to_be_visible()
    expect(results.first).to_contain_text("strange")
    results.first.click()
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    cards = page.get_by_test_id("rec-card")
    expect(cards).to_have_count(10)
    expect(cards.first.get_by_test_id("rec-rank")).to_have_text("#1")
    expect(cards.nth(9).get_by_test_id("rec-rank")).to_have_text("#10")
    expect(cards.first.get_by_test_id("rec-title")).not_to_be_empty()
    # the history is kept across a reload, and its recommendations come back with it
    page.reload()
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    expect(cards).to_have_count(10)
    # the picked item is not recommended back; removing it empties the list again
    picked = page.get_by_test_id("history-item").first.get_attribute("data-item-id")
    assert picked not in [c.get_attribute("data-item-id") for c in cards.all()]
    page.get_by_test_id("history-remove").first.click()
    expect(page.get_by_test_id("history-item")).to_have_count(0)
    expect(cards).to_have_count(0)


def test_keyboard_only(page):
    expect = sync_api.expect
    box = page.get_by_label("Search by title")
    box.focus()
    page.keyboard.type("tale")
    expect(page.get_by_test_id("search-result").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    expect(page.get_by_test_id("rec-card").first).to_be_visible()


def _shot(page, name: str, tmp_path) -> None:
    """A screenshot into the test artefacts ($MODALREC_TEST_ARTEFACTS, else the test's tmp folder)."""
    folder = Path(os.environ.get("MODALREC_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_similar_items_on_a_click(page, tmp_path):
    expect = sync_api.expect
    page.get_by_label("Search by title").fill("strange")
    page.get_by_test_id("search-result").first.click()
    card = page.get_by_test_id("rec-card").first
    name = card.get_by_test_id("item-title").get_attribute("title")
    card.get_by_test_id("similar-button").click()
    panel = page.get_by_test_id("similar-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading")).to_have_text("Similar to " + name)
    expect(page.get_by_test_id("similar-card")).to_have_count(6)
    shown = [c.get_attribute("data-item-id") for c in page.get_by_test_id("similar-card").all()]
    api = page.request.get(page.url + "items/" + card.get_attribute("data-item-id") + "/similar?k=6").json()
    assert shown == [x["item_id"] for x in api["items"]]
    _shot(page, "web-similar", tmp_path)


def test_duplicate_warning_and_deleting_an_added_item(page, tmp_path):
    expect = sync_api.expect
    existing = page.request.get(page.url + "items/search?q=strange&limit=1").json()["items"][0]
    page.get_by_label("Title", exact=True).fill(existing["title"])
    page.get_by_test_id("new-submit").click()
    status = page.get_by_test_id("new-status")
    expect(status).to_contain_text("Added")
    expect(status).to_contain_text("same content as catalogue item")
    added = page.get_by_test_id("added-item").first
    new_id = added.get_attribute("data-item-id")
    page.on("dialog", lambda d: d.accept())
    added.get_by_test_id("delete-item").click()
    expect(status).to_contain_text("Deleted")
    expect(page.get_by_test_id("added-item")).to_have_count(0)
    assert page.request.get(page.url + "items/" + new_id).status == 404
    _shot(page, "web-deleted", tmp_path)


def test_phone_layout_has_no_sideways_scroll(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.goto(server)
    pg.get_by_label("Search by title").fill("strange")
    pg.get_by_test_id("search-result").first.click()
    sync_api.expect(pg.get_by_test_id("rec-card")).to_have_count(10)
    width = pg.evaluate("document.documentElement.scrollWidth")
    height = pg.evaluate("document.documentElement.scrollHeight")
    _shot(pg, "web-phone", tmp_path)
    context.close()
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    assert height < 4500, f"the page is {height} px long on a phone"


def test_add_a_new_item_through_the_form(page):
    expect = sync_api.expect
    page.get_by_label("Search by title").fill("storms")
    page.get_by_test_id("search-result").first.click()
    expect(page.get_by_test_id("rec-card").first).to_be_visible()

    page.get_by_label("Title", exact=True).fill("Zanzibar Storms")
    page.get_by_label("Year").fill("2004")
    page.get_by_label("Genres").fill("Adventure, Drama")
    page.get_by_label("Image").set_input_files(
        files=[{"name": "poster.png", "mimeType": "image/png", "buffer": _png()}]
    )
    page.get_by_test_id("new-submit").click()
    expect(page.get_by_test_id("new-status")).to_contain_text("Added")
    added = page.get_by_test_id("added-item")
    expect(added).to_have_count(1)
    expect(added.get_by_test_id("new-badge")).to_have_text("new")
    # the page searches for the new title: it is there at once, marked new, with its image
    result = page.get_by_test_id("search-result").filter(has_text="Zanzibar Storms")
    expect(result).to_have_count(1)
    expect(result.get_by_test_id("new-badge")).to_be_visible()
    expect(added.get_by_test_id("poster")).to_be_visible()
    assert added.get_by_test_id("poster").evaluate("img => img.complete && img.naturalWidth") == 24
    # ... and it can be recommended: put it in the history, then look for new items among the scores
    new_id = added.get_attribute("data-item-id")
    recs = page.request.post(page.url + "recommend", data={"history": ["1"], "k": 1000}).json()
    assert new_id in [r["item_id"] for r in recs["items"]]


def test_a_page_on_another_site_cannot_add_an_item(browser, server):
    """A page elsewhere auto-submits a form to /items/form in the visitor's browser: refused, nothing added."""
    evil = (
        "<html><body><form id='f' method='POST' action='" + server + "items/form'>"
        "<input name='item_id' value='planted-1'><input name='title' value='Planted'></form>"
        "<script>document.getElementById('f').submit()</script></body></html>"
    )
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.route("http://evil.test/", lambda route: route.fulfill(status=200, content_type="text/html", body=evil))
    with pg.expect_response(lambda r: r.url.endswith("/items/form")) as answer:
        pg.goto("http://evil.test/")
    assert answer.value.status == 403
    assert pg.request.get(server + "items/planted-1").status == 404
    context.close()


# -- the API reference page (/docs) --------------------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def _open_docs(browser, server, **context_options):
    """A fresh context on /docs, rendered; ``problems`` collects console errors, failed requests and 4xx/5xx."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    problems = []
    pg.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    pg.on("pageerror", lambda e: problems.append(f"JavaScript error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    pg.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} for {r.url}"))
    pg.goto(server + "docs")
    sync_api.expect(pg.get_by_test_id("operation").first).to_be_visible()
    return context, pg, problems


def test_api_reference_page_lists_every_operation(browser, server, tmp_path):
    expect = sync_api.expect
    context, pg, problems = _open_docs(browser, server)
    spec = pg.request.get(server + "openapi.json").json()
    operations = {(m, p) for p, item in spec["paths"].items() for m in item if m in HTTP_METHODS}
    expect(pg.get_by_test_id("operation")).to_have_count(len(operations))
    shown = {
        (a.get_attribute("data-method"), a.get_attribute("data-path")) for a in pg.get_by_test_id("operation").all()
    }
    assert shown == operations
    text = pg.locator("main").inner_text()
    assert [p for p in spec["paths"] if p not in text] == []
    expect(pg.get_by_test_id("api-version")).to_contain_text(spec["info"]["version"])
    # parameters with their constraints, the request body's fields resolved from components.schemas
    search = pg.locator('[data-testid="operation"][data-path="/items/search"]')
    expect(search.get_by_test_id("param-name")).to_have_text(["q", "limit"])
    expect(search.get_by_test_id("parameter").first).to_contain_text("maxLength 200")
    recommend = pg.locator('[data-testid="operation"][data-path="/recommend"]')
    expect(recommend.get_by_test_id("request-body")).to_contain_text("RecommendRequest")
    history = recommend.get_by_test_id("field").filter(
        has=pg.get_by_test_id("field-name").get_by_text("history", exact=True)
    )
    expect(history.first).to_contain_text("required")
    expect(history.first).to_contain_text("ItemContent")  # the array's object items are expanded
    expect(recommend.get_by_test_id("response")).to_have_count(len(spec["paths"]["/recommend"]["post"]["responses"]))
    # every contents link leads somewhere; a schema link unfolds that schema
    assert pg.evaluate(
        "[...document.querySelectorAll('#toc a')].every(a => document.getElementById(a.getAttribute('href').slice(1)))"
    )
    to_schema = recommend.get_by_role("link", name="ErrorResponse").first
    target = to_schema.get_attribute("href")[1:]
    to_schema.click()
    expect(pg.locator(f"details[id='{target}']")).to_have_attribute("open", "")
    _shot(pg, "docs-page", tmp_path)
    context.close()
    assert not problems, problems


def test_api_reference_page_on_a_phone_has_no_sideways_scroll(browser, server):
    context, pg, problems = _open_docs(
        browser, server, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    pg.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")  # the widest it gets
    width = pg.evaluate("document.documentElement.scrollWidth")
    context.close()
    assert width <= 390, f"the API reference is {width} px wide on a 390 px phone"
    assert not problems, problems


def test_api_reference_page_shows_spec_strings_as_text(browser, server):
    """Markup inside the spec (titles, paths, names, descriptions) is shown as text, never parsed as HTML."""
    evil = '<img src="x" data-evil="1"><script>window.pwned = 1</script>'
    spec = {
        "openapi": "3.1.0",
        "info": {"title": evil, "version": "1", "description": evil},
        "paths": {
            "/a/<b>{id}</b>": {
                "get": {
                    "tags": [evil],
                    "summary": evil,
                    "description": evil,
                    "parameters": [{"name": evil, "in": "query", "schema": {"type": "string", "enum": [evil]}}],
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/<i>E</i>"}}}
                    },
                    "responses": {"200": {"description": evil}},
                }
            }
        },
        "components": {
            "schemas": {
                "<i>E</i>": {
                    "type": "object",
                    "description": evil,
                    "properties": {evil: {"type": "string", "description": evil}},
                }
            }
        },
    }
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.route(server + "openapi.json", lambda route: route.fulfill(json=spec))
    pg.goto(server + "docs")
    sync_api.expect(pg.get_by_test_id("op-path")).to_have_text("/a/<b>{id}</b>")
    sync_api.expect(pg.get_by_test_id("api-title")).to_contain_text(evil)
    injected = pg.locator("main img, main script, main b, main i, [data-evil]").count()
    pwned = pg.evaluate("window.pwned")
    context.close()
    assert injected == 0 and pwned is None
