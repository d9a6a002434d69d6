"""HTTP service over a :class:`~modalrec.serve.recommender.Recommender`: JSON API, OpenAPI spec, web page.

``create_app(Recommender.load(run))`` returns a FastAPI app; ``modalrec serve RUN`` runs it with uvicorn.
The status codes mean the same on every endpoint (docs/serving.md lists them per endpoint):

- 400: the body is not valid JSON (or ``Content-Length`` is not a number);
- 401: adding items needs the server's token (``Authorization: Bearer <token>``);
- 403: a write refused: the server is read-only, or the request comes from another site's page;
- 404: the item named in the URL does not exist (or has no image);
- 408: the request body did not arrive in time;
- 409: an item id to add is already in the catalogue;
- 413: the body is larger than ``max_body_bytes``;
- 422: anything else the request asks that cannot be answered: schema violations, an empty history,
  k out of range, unknown item ids inside a body, undecodable images, an ID model asked to add items.

Every error body is ``{"detail": "<what is wrong>"}`` (plus ``errors`` for schema violations and
``unknown_item_ids`` when ids are unknown). Recommender calls are CPU-bound, so the endpoints are plain
``def`` functions: FastAPI runs them in its thread pool and the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import base64
from contextlib import asynccontextmanager
import binascii
import errno
import functools
import logging
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, File, Form, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.datastructures import QueryParams
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StringConstraints,
    Tag,
    model_validator,
)

from modalrec import __version__
from modalrec.serve.added import AddedItems
from modalrec.serve.asgi import replaying
from modalrec.serve.errors import error_response
from modalrec.serve.recommender import MAX_K, Recommender, RequestError, UnknownItemError

log = logging.getLogger("modalrec.serve")

WEB_DIR = Path(__file__).with_name("web")
MAX_HISTORY = 1000  # entries per history (the model reads only its last max_len anyway)
MAX_ITEMS_PER_ADD = 100  # each is encoded: a bound on one request's memory and time
MAX_CONTENT_ENTRIES = 50  # raw-content entries (items the model never saw) in one /recommend history
MAX_ID_LIST = 100_000  # ids in include / exclude
MAX_TEXT = 20_000
# An id added over HTTP must be addressable in a URL path: no '/', no surrounding white space.
NEW_ID_PATTERN = r"^[^\s/](?:[^/]*[^\s/])?$"

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Genre = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ItemIdPath = Annotated[str, PathParam(description="a catalogue item id", examples=["1"])]

# -- images ------------------------------------------------------------------------------------

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def image_media_type(data: bytes) -> str | None:
    """Media type of an encoded image from its magic bytes (PNG, JPEG, WebP, GIF), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _check_image(data: bytes, where: str) -> bytes:
    if not data:
        raise ValueError(f"{where} is empty")
    if image_media_type(data) is None:
        raise ValueError(f"{where} is not a PNG, JPEG, WebP or GIF file (its first bytes are {data[:8]!r})")
    return data


def decode_base64_image(value: str, where: str = "image_base64") -> bytes:
    """Bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed); ValueError names the problem."""
    s = value.strip()
    if s.startswith("data:"):
        head, sep, s = s.partition(",")
        if not sep or not head.endswith(";base64"):
            raise ValueError(f"{where}: a data URL must look like 'data:image/png;base64,...'")
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{where} is not valid base64 ({e})") from None
    return _check_image(data, where)


# -- request and response bodies -----------------------------------------------------------------


class ItemContent(BaseModel):
    """An item given by its content: ``text``, or ``title`` with optional ``year`` and ``genres``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Heat", "year": 1995, "genres": ["Action", "Crime"]}, {"text": "A film about bees"}]
        },
    )

    text: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT,
        description="the item's full text as the model reads it (overrides title/year/genres)",
    )
    title: str | None = Field(None, min_length=1, max_length=500, examples=["Heat"])
    year: int | None = Field(None, ge=1800, le=2200, examples=[1995])
    genres: list[Genre] | None = Field(None, max_length=50, examples=[["Action", "Crime"]])
    image_base64: str | None = Field(
        None,
        min_length=1,
        max_length=12 * 2**20,
        description="PNG, JPEG, WebP or GIF file, base64-encoded (a 'data:image/...;base64,' prefix is accepted)",
    )

    _image: bytes | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self):
        if not ((self.text and self.text.strip()) or (self.title and self.title.strip())):
            raise ValueError("an item's content needs a non-empty 'text' or 'title'")
        if self.image_base64 is not None:
            self._image = decode_base64_image(self.image_base64)
        return self

    def fields(self) -> dict[str, Any]:
        """The recommender's content dict (only the fields given; the image as bytes)."""
        out: dict[str, Any] = {
            k: getattr(self, k) for k in ("text", "title", "year", "genres") if getattr(self, k) is not None
        }
        if self._image is not None:
            out["image"] = self._image
        return out


def _history_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "item-id"
    return "item-content" if isinstance(value, (dict, ItemContent)) else None


HistoryEntry = Annotated[
    Union[Annotated[ItemId, Tag("item-id")], Annotated[ItemContent, Tag("item-content")]],
    Discriminator(
        _history_kind,
        custom_error_type="history_entry",
        custom_error_message="a history entry must be an item id (a string) or an item's content (an "
        "object with 'text' or 'title')",
    ),
    Field(description="a catalogue item id, or the content of an item the model never saw (ID-free models only)"),
]
_TAGS = ("item-id", "item-content")  # union tags pydantic puts into error locations; not shown to users


class RecommendRequest(BaseModel):
    """A history (oldest first) and what to return."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"history": ["1", "2", "3"], "k": 10},
                {"history": ["1", {"title": "Heat", "year": 1995, "genres": ["Action"]}], "k": 5, "exclude": ["7"]},
            ]
        },
    )

    history: list[HistoryEntry] = Field(
        min_length=1,
        max_length=MAX_HISTORY,
        description=f"oldest first; at most {MAX_CONTENT_ENTRIES} entries may be "
        "content (each is encoded for this request)",
    )
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="how many items to return (at most the catalogue size)")
    exclude_seen: StrictBool = Field(True, description="leave out the items of the history")
    include: list[ItemId] | None = Field(None, max_length=MAX_ID_LIST, description="recommend only these ids")
    exclude: list[ItemId] | None = Field(None, max_length=MAX_ID_LIST, description="never recommend these ids")

    @model_validator(mode="after")
    def _bounded_content(self):
        n = sum(isinstance(h, ItemContent) for h in self.history)
        if n > MAX_CONTENT_ENTRIES:
            raise ValueError(f"the history holds {n} content entries; at most {MAX_CONTENT_ENTRIES} per request")
        return self


class NewItem(ItemContent):
    """An item to add to the catalogue (ID-free models only)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"item_id": "new-1", "title": "Heat", "year": 1995, "genres": ["Action", "Crime"]}]
        },
    )

    item_id: str = Field(
        min_length=1,
        max_length=256,
        pattern=NEW_ID_PATTERN,
        examples=["new-1"],
        description="a new id: no '/' and no leading or trailing white space",
    )

    def fields(self) -> dict[str, Any]:
        return {"item_id": self.item_id, **super().fields()}


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"items": [{"item_id": "new-1", "title": "Heat", "year": 1995, "genres": ["Action"]}]}]
        },
    )

    items: list[NewItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_ADD)


class ItemOut(BaseModel):
    item_id: str
    text: str = Field(description="the text the model reads")
    is_new: bool = Field(description="added after training (the model never saw it)")
    has_image: bool = Field(description="GET /items/{item_id}/image returns an image")
    title: str = Field("", description="for display: the catalogue's title field (else the text)")
    year: str = Field("", description="for display: the catalogue's year field, if it has one")
    genres: str = Field("", description="for display: the catalogue's genres, comma-separated, if it has them")


class RecommendationOut(ItemOut):
    score: float = Field(description="the model's score (cosine for /similar); higher is better")
    rank: int = Field(ge=1, description="1 = best")


class RecommendResponse(BaseModel):
    items: list[RecommendationOut] = Field(description="best first")
    model: str
    n_items: int = Field(ge=0, description="catalogue size")


class ItemsResponse(BaseModel):
    items: list[ItemOut]


class AddItemsResponse(BaseModel):
    added: list[str]
    n_items: int = Field(ge=0)
    warnings: list[str] = Field(
        default_factory=list,
        description="added, but worth a look: e.g. a new item whose "
        "content matches an item already in the catalogue (same text, or same title and year)",
    )


class RemoveItemsResponse(BaseModel):
    removed: list[str]
    n_items: int = Field(ge=0)


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: str
    n_items: int = Field(ge=0)
    can_add_items: bool
    index: dict = Field(
        description='how items are searched: {"kind": "exact"}, or the FAISS settings with the '
        "recall@10 against exact search measured on validation users"
    )


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong, in words")
    errors: list[ErrorDetail] | None = Field(None, description="schema violations, one per field")
    unknown_item_ids: list[str] | None = Field(
        None, max_length=100, description="the ids that are not in the catalogue (the first 100)"
    )


_STATUS_TEXT = {
    400: "the body cannot be parsed (not valid JSON, or a broken form)",
    404: "no such item",
    409: "the item id exists already",
    413: "the body is too large",
    422: "the request cannot be answered as asked",
}


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorResponse, "description": _STATUS_TEXT[c]} for c in codes}


class ApiError(Exception):
    """An error response: status, a message, optional extra fields for the JSON body."""

    def __init__(self, status: int, detail: str, **extra):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def _loc_text(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "body"


def _validation_response(exc: RequestValidationError, content_type: str) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (e.get("ctx") or {}).get("error", "JSON decode error")
        pos = e["loc"][-1] if e.get("loc") else "?"
        return error_response(400, f"the request body is not valid JSON: {reason} (at character {pos})")
    if (
        len(errors) == 1
        and tuple(errors[0].get("loc", ())) == ("body",)
        and "json" not in content_type
        and errors[0].get("type") in ("model_attributes_type", "dict_type", "model_type")
    ):
        got = f"'{content_type}'" if content_type else "none"
        return error_response(
            422, f"the body must be a JSON object sent with 'Content-Type: application/json' (content type: {got})"
        )
    clean, parts = [], []
    for e in errors:
        loc = [p if isinstance(p, (int, str)) else str(p) for p in e.get("loc", ()) if p not in _TAGS]
        msg = str(e.get("msg", "invalid"))
        clean.append({"loc": loc, "msg": msg, "type": str(e.get("type", ""))})
        inp = e.get("input")
        shown = (
            f" (got {inp!r})" if isinstance(inp, (int, float, bool)) or (isinstance(inp, str) and len(inp) < 60) else ""
        )
        if e.get("type") == "missing":
            shown = ""
        parts.append(f"{_loc_text(loc)}: {msg}{shown}")
    head = "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")
    return error_response(422, f"invalid request: {head}", errors=clean)


def _call(fn, *args, unknown_status: int = 404, **kwargs):
    """Call the recommender; its input errors become :class:`ApiError` (never a 500)."""
    try:
        return fn(*args, **kwargs)
    except UnknownItemError as e:
        raise ApiError(unknown_status, str(e), unknown_item_ids=e.item_ids) from None
    except RequestError as e:  # 400 there means "cannot answer this content": 422 in this API
        raise ApiError(422 if e.status == 400 else e.status, str(e)) from None
    except (ValueError, KeyError) as e:  # an input problem the recommender did not phrase: still 4xx
        log.warning("request rejected by %s: %r", getattr(fn, "__name__", fn), e, exc_info=True)
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise ApiError(422, f"the request cannot be answered: {msg}") from None


# -- body size limit -----------------------------------------------------------------------------


TRIM_AFTER_BYTES = 64 * 1024


@functools.cache
def _libc():
    """The C library, looked up once (``find_library`` may run ``ldconfig`` in a subprocess); None if absent."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_memory() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``); a no-op elsewhere. Without it the
    peak of one large request stays in the process's RSS. It can take a while on a large heap: callers in
    the event loop run it in a thread (ctypes releases the GIL), so other requests are not held."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


TIDY_EVERY_S = 30.0


@asynccontextmanager
async def _tidy_memory(app):
    """Every TIDY_EVERY_S seconds after requests were answered: collect garbage and give freed memory back
    to the system, so a burst (thousands of connections, large uploads) does not stay in the RSS."""
    seen = {"requests": 0}

    async def loop():
        while True:
            await asyncio.sleep(TIDY_EVERY_S)
            if BodySizeLimit.requests != seen["requests"]:
                seen["requests"] = BodySizeLimit.requests
                await asyncio.to_thread(_collect_and_trim)

    quiet_accept_errors(asyncio.get_running_loop())
    count_repeated_warning("uvicorn.error", "Exceeded concurrency limit.")
    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


def _is_power_of_two(n: int) -> bool:
    """1, 2, 4, 8 ...: the counts at which a repeated event is logged, so a flood of them gives a few lines."""
    return n & (n - 1) == 0


class _PowersOfTwo(logging.Filter):
    """Lets one message through on its 1st, 2nd, 4th, 8th ... occurrence, with the count; other messages pass."""

    def __init__(self, message: str):
        super().__init__()
        self.message, self.count = message, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != self.message:
            return True
        self.count += 1
        if not _is_power_of_two(self.count):
            return False
        record.msg, record.args = f"{self.message} ({self.count} so far; one line per power of two)", ()
        return True


def count_repeated_warning(logger: str, message: str) -> None:
    """uvicorn logs one line per connection it turns away at the connection limit: count them instead."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, _PowersOfTwo) and f.message == message for f in target.filters):
        target.addFilter(_PowersOfTwo(message))


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """When file descriptors run out, asyncio logs a traceback for every connection it cannot accept (a
    flood of them fills the log). Those become one line per power of two; other errors go on as before."""
    previous = loop.get_exception_handler()
    refused = 0

    def handler(loop, context):
        nonlocal refused
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            refused += 1
            if _is_power_of_two(refused):
                log.warning(
                    "out of file descriptors: %d connection(s) could not be accepted yet (raise the "
                    "open-files limit, or expect fewer connections at once)",
                    refused,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _collect_and_trim() -> None:
    import gc

    gc.collect()
    release_memory()


async def within(awaitable, seconds: float):
    """``await awaitable``, or asyncio.TimeoutError after ``seconds``. On Python 3.11+ in the caller's own task
    (``asyncio.timeout``); ``asyncio.wait_for`` (3.10) wraps it in a task of its own, held while it waits."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


class OneValuePerQueryParameter:
    """ASGI middleware: no endpoint takes a list in its query, so a repeated parameter (``?k=5&k=9``) is a
    422, never one of its values picked silently."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            counts = Counter(k for k, _ in QueryParams(scope.get("query_string", b"")).multi_items())
            twice = sorted(k for k, n in counts.items() if n > 1)  # a Counter: a long query costs linear time
            if twice:
                detail = f"query parameter(s) given more than once: {', '.join(twice)[:200]}"
                await error_response(422, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, judged by ``Content-Length`` and by counting.

    The body is read (and counted) before the app sees it, then replayed, so the limit holds for
    chunked uploads without a ``Content-Length`` too; memory per request stays under ``max_bytes``.
    """

    BUSY = 1000  # requests waiting for their bodies beyond which a new one waits only SHORT_TIMEOUT_S
    SHORT_TIMEOUT_S = 2.0

    requests = 0  # answered by any instance (the memory tidier watches it)

    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0):
        self.app, self.max_bytes, self.timeout_s = app, int(max_bytes), float(timeout_s)
        self._stalled = 0  # bodies dropped; logged once per power of two (not one line per attempt)
        self._waiting = 0  # requests now reading their bodies

    def _timeout(self) -> float:
        """The full timeout normally; a short one when many connections are waiting for bodies at once (a
        flood of stalled uploads must not hold every file descriptor for the whole timeout)."""
        return self.timeout_s if self._waiting < self.BUSY else min(self.timeout_s, self.SHORT_TIMEOUT_S)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        BodySizeLimit.requests += 1
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await error_response(400, f"Content-Length {declared[:40]!r} is not a number")(scope, receive, send)
                return
            if n > self.max_bytes:
                await self._too_large(scope, receive, send, f"{n} bytes")
                return
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self._timeout()
        self._waiting += 1
        try:
            while True:
                try:
                    message = await within(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
                except asyncio.TimeoutError:
                    await self._stalled_body(scope, receive, send)
                    return
                if message["type"] == "http.disconnect":
                    # nobody reads this answer, but the HTTP middleware outside must see one (else it raises)
                    gone = self._closing(400, "the client closed the connection before its request body arrived")
                    await gone(scope, receive, send)
                    return
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_bytes:
                    await self._too_large(scope, receive, send, f"more than {self.max_bytes} bytes")
                    return
                chunks.append(body)
                if not message.get("more_body", False):
                    break
        finally:
            self._waiting -= 1
        await self.app(scope, replaying(b"".join(chunks), receive), send)
        if size > TRIM_AFTER_BYTES:  # a large body (images, many texts): give its memory back to the system,
            await asyncio.to_thread(release_memory)  # off the event loop, which serves everyone else

    @staticmethod
    def _closing(status: int, detail: str):
        """An error response that closes the connection (its stream cannot be trusted any more)."""
        return error_response(status, detail, headers={"connection": "close"})

    async def _stalled_body(self, scope, receive, send) -> None:
        self._stalled += 1
        if _is_power_of_two(self._stalled):
            log.warning("dropped %d request(s) whose body did not arrive within %.0f s", self._stalled, self.timeout_s)
        await self._closing(408, "the request body did not arrive in time")(scope, receive, send)

    async def _too_large(self, scope, receive, send, size: str) -> None:
        await self._closing(
            413,
            f"the request body ({size}) is larger than the limit of {self.max_bytes} bytes; "
            "send fewer items or smaller images per request",
        )(scope, receive, send)


# -- the app -------------------------------------------------------------------------------------

FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
    b'fill="#2b5797"/><path d="M3 12V4l5 5 5-5v8" fill="none" stroke="#fff" stroke-width="2"/></svg>'
)

DESCRIPTION = """\
Recommendations from a trained modalrec run. Items are catalogue ids, or (ID-free models: pmmrec,
missrec, unisrec inductive) the raw content of items the model never saw. New items can be added
at run time and are recommendable at once; `modalrec serve` keeps them with the run, and they can be
removed again.

Errors are JSON `{"detail": "..."}`: 400 body is not JSON, 401 adding or removing items needs the token, 403 write
refused (read-only server, or sent from another site), 404 unknown item in the URL, 408 body did not
arrive in time, 409 item id exists already, 413 body too large, 422 anything else that cannot be
answered (the detail says what).
"""


def create_app(
    rec: Recommender,
    *,
    max_body_bytes: int = 8 * 2**20,
    token: str | None = None,
    read_only: bool = False,
    body_timeout_s: float = 30.0,
    journal: AddedItems | None = None,
) -> FastAPI:
    """The HTTP service (JSON API under ``/``, OpenAPI at ``/openapi.json``, its reference page at ``/docs``, web
    page at ``/``) for ``rec``.

    ``journal``: where items added and removed through the service are kept (the run's ``added/``
    folder, :mod:`modalrec.serve.added`), so that they are back after a restart.

    Writes (adding items) need ``token`` when one is given, never come from another site's page, and are
    refused on a ``read_only`` server (:mod:`modalrec.serve.security`). A body that has not arrived
    within ``body_timeout_s`` is answered 408 and its connection closed."""
    from modalrec.serve.forms import StrictFormText
    from modalrec.serve.security import WriteGuard

    app = FastAPI(
        title="modalrec",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=_tidy_memory,
    )
    app.state.recommender = rec
    # plain ASGI middlewares only, never @app.middleware("http"): Starlette's BaseHTTPMiddleware runs the app
    # in a task group of its own, which doubles what each request waiting for its body holds (issue 21)
    app.add_middleware(StrictFormText)  # inside the size limit: it reads the body the limit has counted
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(OneValuePerQueryParameter)
    app.add_middleware(WriteGuard, token=token, read_only=read_only)  # outermost: every response gets its headers

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        return _validation_response(exc, request.headers.get("content-type", ""))

    @app.exception_handler(ApiError)
    async def _on_api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.detail, **exc.extra)

    @app.exception_handler(Exception)
    async def _on_bug(request: Request, exc: Exception):  # a bug, never bad input: keep the JSON shape
        log.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(RequestError)
    async def _on_request_error(request: Request, exc: RequestError):  # raised outside _call
        status = 422 if exc.status == 400 else exc.status
        return error_response(status, str(exc), unknown_item_ids=getattr(exc, "item_ids", None))

    def _item_out(info) -> ItemOut:
        return ItemOut(**info.to_dict())

    def _recs_out(recs) -> RecommendResponse:
        return RecommendResponse(
            items=[RecommendationOut(**r.to_dict(), rank=n) for n, r in enumerate(recs, 1)],
            model=rec.model_name,
            n_items=rec.n_items,
        )

    def _exists(item_id: str) -> bool:
        try:
            rec.item(item_id)
            return True
        except UnknownItemError:
            return False

    def _add(rows: list[dict]) -> AddItemsResponse:
        ids = [r["item_id"] for r in rows]
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise ApiError(422, f"item id(s) given twice in this request: {', '.join(twice[:10])}")
        taken = [i for i in ids if _exists(i)] if rec.can_add_items else []
        if taken:
            raise ApiError(409, f"item id(s) already in the catalogue: {', '.join(taken[:10])}; pick new ids")
        same = rec.same_content(rows) if rec.can_add_items else {}
        try:
            added = _call(rec.add_items, rows)
        except ApiError:
            taken = [i for i in ids if _exists(i)] if rec.can_add_items else []
            if taken:  # another request added them in the meantime
                raise ApiError(409, f"item id(s) already in the catalogue: {', '.join(taken[:10])}") from None
            raise
        if journal is not None:
            journal.record_add(rows, {r["item_id"]: r["image"] for r in rows if isinstance(r.get("image"), bytes)})
        warnings = [
            f"{new!r} has the same content as catalogue item {old!r} ({rec.item(old).text[:120]}); both are kept"
            for new, old in same.items()
        ]
        return AddItemsResponse(added=added, n_items=rec.n_items, warnings=warnings)

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        tags=["recommend"],
        responses=_errors(400, 413, 422),
        summary="Top-k items after a history",
    )
    def recommend(req: RecommendRequest) -> RecommendResponse:
        """The ``k`` best items after ``history`` (oldest first), best first. Unknown ids in ``history``,
        ``include`` or ``exclude`` give 422 (listed in ``unknown_item_ids``); ``k`` larger than the catalogue
        returns the whole ranked catalogue."""
        history = [h if isinstance(h, str) else h.fields() for h in req.history]
        k = min(req.k, max(rec.n_items, 1))
        recs = _call(
            rec.recommend,
            history,
            k=k,
            exclude_seen=req.exclude_seen,
            include=req.include,
            exclude=req.exclude,
            unknown_status=422,
        )
        return _recs_out(recs)

    @app.post(
        "/items",
        response_model=AddItemsResponse,
        status_code=201,
        tags=["items"],
        responses=_errors(400, 409, 413, 422),
        summary="Add new items (JSON)",
    )
    def add_items(req: AddItemsRequest) -> AddItemsResponse:
        """Encode new items with the model's towers; they are searchable and recommendable at once.
        All or nothing. 409 when an id exists already; 422 for ids repeated in the request, images that
        cannot be decoded, or a model that gives every item a learnt ID embedding (sasrec, pop)."""
        return _add([it.fields() for it in req.items])

    @app.post(
        "/items/form",
        response_model=AddItemsResponse,
        status_code=201,
        tags=["items"],
        responses=_errors(400, 409, 413, 422),
        summary="Add one new item (HTML form upload)",
    )
    def add_item_form(
        title: Annotated[str, Form(min_length=1, max_length=500, description="the title")],
        year: Annotated[int | None, Form(ge=1800, le=2200)] = None,
        genres: Annotated[
            str | None, Form(max_length=5000, description="comma-separated, e.g. 'Action, Crime'")
        ] = None,
        item_id: Annotated[
            str | None,
            Form(
                min_length=1,
                max_length=256,
                pattern=NEW_ID_PATTERN,
                description="a new id (default: 'new-' and 8 random hex digits)",
            ),
        ] = None,
        image: Annotated[UploadFile | None, File(description="a PNG, JPEG, WebP or GIF file")] = None,
    ) -> AddItemsResponse:
        """The web page's form: one item from ``multipart/form-data`` (or url-encoded, without image)."""
        if not title.strip():
            raise ApiError(422, "title: must not be blank")
        row: dict[str, Any] = {"item_id": item_id or f"new-{uuid.uuid4().hex[:8]}", "title": title.strip()}
        if year is not None:
            row["year"] = year
        if genres:
            row["genres"] = [g.strip() for g in genres.replace("|", ",").split(",") if g.strip()]
        if image is not None:
            data = image.file.read()
            if data:
                where = f"uploaded image {image.filename!r}" if image.filename else "uploaded image"
                try:
                    row["image"] = _check_image(data, where)
                except ValueError as e:
                    raise ApiError(422, str(e)) from None
        return _add([row])

    @app.delete(
        "/items/{item_id}",
        response_model=RemoveItemsResponse,
        tags=["items"],
        responses=_errors(404, 422),
        summary="Remove an item added since training",
    )
    def remove_item(item_id: ItemIdPath) -> RemoveItemsResponse:
        """An item added through this service (or the Python API) is never recommended, searched or
        accepted in a history again; its id may be added anew. Items the model was trained on cannot be
        removed (422): leave them out with ``exclude``."""
        removed = _call(rec.remove_items, [item_id])
        if journal is not None:
            journal.record_remove(removed)
        return RemoveItemsResponse(removed=removed, n_items=rec.n_items)

    @app.get(
        "/items/search",
        response_model=ItemsResponse,
        tags=["items"],
        responses=_errors(422),
        summary="Find items by text",
    )
    def search(
        q: Annotated[str, Query(min_length=1, max_length=200, description="case-insensitive text", examples=["star"])],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> ItemsResponse:
        """Items whose text contains ``q`` (texts that start with it first), new items included."""
        return ItemsResponse(items=[_item_out(i) for i in _call(rec.search, q, limit)])

    @app.get(
        "/items/{item_id}", response_model=ItemOut, tags=["items"], responses=_errors(404, 422), summary="One item"
    )
    def get_item(item_id: ItemIdPath) -> ItemOut:
        return _item_out(_call(rec.item, item_id))

    image_content = {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES}
    image_content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}

    @app.get(
        "/items/{item_id}/image",
        response_class=Response,
        tags=["items"],
        summary="An item's image",
        responses={200: {"content": image_content, "description": "the encoded image file"}, **_errors(404, 422)},
    )
    def get_image(item_id: ItemIdPath) -> Response:
        """The image file as stored; the media type comes from its magic bytes. 404 when the item is
        unknown or has no image."""
        data = _call(rec.item_image, item_id)
        if data is None:
            raise ApiError(404, f"item {item_id!r} has no image")
        return Response(
            content=data,
            media_type=image_media_type(data) or "application/octet-stream",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @app.get(
        "/items/{item_id}/similar",
        response_model=RecommendResponse,
        tags=["items"],
        responses=_errors(404, 422),
        summary="Items similar to an item",
    )
    def similar(item_id: ItemIdPath, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> RecommendResponse:
        """The ``k`` items closest to ``item_id`` by the cosine of the model's item vectors (itself left out)."""
        return _recs_out(_call(rec.similar_items, item_id, k=min(k, max(rec.n_items, 1))))

    @app.get("/health", response_model=HealthResponse, tags=["service"], summary="Liveness and catalogue size")
    def health() -> HealthResponse:
        return HealthResponse(
            status="ok",
            model=rec.model_name,
            n_items=rec.n_items,
            can_add_items=rec.can_add_items,
            index=rec.index_info,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> FileResponse:
        """The API reference, rendered in the browser from /openapi.json (nothing loaded from other hosts)."""
        return FileResponse(WEB_DIR / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
