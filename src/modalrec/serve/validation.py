"""The rules every caller's input meets, Python API and HTTP alike (the HTTP schema states the same bounds).

Each function returns the value in the form the recommender uses, or raises :class:`RequestError`
(a ``ValueError``; ``modalrec.serve.recommender`` exports it) naming the argument, the value and what
is allowed. Nothing here touches the recommender's state: a refused call changes nothing.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np

MAX_ID = 256
MAX_TITLE = 500
MAX_TEXT = 20_000
MAX_GENRES = 50
MAX_GENRE = 100
YEARS = (1800, 2200)
NEW_ID = re.compile(r"^[^\s/](?:[^/]*[^\s/])?$")  # addressable in a URL path: no '/', no surrounding space


class RequestError(ValueError):
    """A request the recommender cannot answer as asked; ``status`` is the HTTP status it maps to."""

    status = 400


InvalidInput = RequestError  # what every check raises


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value, what: str, limit: int) -> str:
    """A non-blank string of at most ``limit`` characters, encodable as UTF-8."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise InvalidInput(f"{what} must not be empty or blank")
    if len(value) > limit:
        raise InvalidInput(f"{what} has {len(value)} characters; at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{what} holds a character that is not valid Unicode text at position {e.start}") from None
    return value


def item_id(value, what: str = "item_id") -> str:
    """A new item's id: text (or an integer), no '/', no surrounding white space, at most 256 characters."""
    if isinstance(value, (bool, float)) or _is_missing(value):
        raise InvalidInput(f"{what} must be text or an integer, not {value!r}")
    if isinstance(value, (int, np.integer)):
        value = str(int(value))
    value = _text(value, what, MAX_ID)
    if not NEW_ID.match(value):
        raise InvalidInput(f"{what} {value!r} must have no '/' and no leading or trailing white space")
    return value


def year(value, what: str = "year") -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{what} must be a whole number such as 1995, not {value!r:.60}")
    if not YEARS[0] <= int(value) <= YEARS[1]:
        raise InvalidInput(f"{what}={value} must be between {YEARS[0]} and {YEARS[1]}")
    return int(value)


def genres(value, what: str = "genres") -> list[str]:
    """A list of genre names, or one text with names separated by ',' or '|'."""
    if isinstance(value, str):
        value = [g.strip() for g in value.replace("|", ",").split(",") if g.strip()]
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(f"{what} must be a list of names or a text like 'Action, Crime', not {value!r:.60}")
    if len(value) > MAX_GENRES:
        raise InvalidInput(f"{what} has {len(value)} entries; at most {MAX_GENRES}")
    return [_text(g, f"{what}[{i}]", MAX_GENRE).strip() for i, g in enumerate(value)]


def content(fields: dict, where: str) -> dict[str, Any]:
    """An item's content (``text``, or ``title`` with optional ``year``/``genres``; optional ``image``):
    the fields given, checked; None and NaN count as not given."""
    if not isinstance(fields, dict):
        raise InvalidInput(f"{where}: expected a mapping of fields, got {type(fields).__name__}")
    out = {k: v for k, v in fields.items() if not _is_missing(v)}
    if "text" in out:
        out["text"] = _text(out["text"], f"{where}: text", MAX_TEXT)
    if "title" in out:
        out["title"] = _text(out["title"], f"{where}: title", MAX_TITLE).strip()
    if "text" not in out and "title" not in out:
        raise InvalidInput(f"{where}: an item's content needs a non-empty 'text' or 'title'")
    if "year" in out:
        out["year"] = year(out["year"], f"{where}: year")
    if "genres" in out:
        out["genres"] = genres(out["genres"], f"{where}: genres")
    return out


def positive_int(value, what: str, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{what} must be an integer, not {value!r:.60}")
    if value < 1 or (most is not None and value > most):
        raise InvalidInput(
            f"{what}={value} must be between 1 and {most}" if most else f"{what}={value} must be at least 1"
        )
    return int(value)


def predicate(value, what: str = "filter") -> Callable | None:
    if value is not None and not callable(value):
        raise InvalidInput(f"{what} must be a function of an ItemInfo returning True or False, not {value!r:.60}")
    return value


def id_list(value, what: str) -> list[str] | None:
    """include / exclude: None or a list of ids (a single string is a mistake worth naming)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InvalidInput(f"{what} must be a list of item ids, not {value!r:.60}")
    return [str(v) for v in value]
