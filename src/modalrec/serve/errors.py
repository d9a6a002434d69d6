"""The one shape of every error the service answers: ``{"detail": "<what is wrong>"}``, plus optional fields.

The app's handlers, its middlewares and the HTTP parser's own 400 (:mod:`modalrec.serve.protocol`) all
build their bodies here, so a client parses one shape whatever refused its request.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

MAX_LISTED_IDS = 100  # unknown ids named in an error body (the detail gives the count)


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    """A JSON error: ``detail`` and the ``extra`` fields that are not None (a long ``unknown_item_ids`` is cut)."""
    ids = extra.get("unknown_item_ids")
    if ids is not None and len(ids) > MAX_LISTED_IDS:  # never echo a huge list back
        extra = {**extra, "unknown_item_ids": ids[:MAX_LISTED_IDS]}
        detail = f"{detail} ({len(ids)} unknown ids; the first {MAX_LISTED_IDS} are listed)"
    return JSONResponse(
        {"detail": detail, **{k: v for k, v in extra.items() if v is not None}}, status_code=status, headers=headers
    )
