"""Content of a new item (one the data set never had) in the shape its data set gives its items.

A built-in MovieLens data set renders an item's text from normalised movie fields (title without the
year, year, genres, ``title_year``) and, with ``data.posters``, shows a poster drawn from them; a new
movie added while serving gets the same. Other data sets render their text template from the fields
the caller gives. Callers (the recommender) ask these two functions and never which data set they hold.
"""

from __future__ import annotations

import pandas as pd


def _movielens(source) -> bool:
    from modalrec.datasets.builtin import BUILTINS

    return source is not None and source.kind == "builtin" and source.name in BUILTINS and source.name != "synthetic"


def _genres(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [g.strip() for g in value.replace("|", ",").split(",") if g.strip()]
    return [str(g) for g in value]


def item_fields(source, fields: dict, need: list[str]) -> pd.DataFrame | None:
    """A one-row frame with the catalogue fields ``need`` (what ``source``'s text template reads), built
    from a new item's ``fields``; None when none of them can be made (the caller falls back to the title)."""
    if _movielens(source) and fields.get("title"):
        from modalrec.datasets.builtin import movie_frame

        df = movie_frame(
            [fields.get("item_id", "new")],
            [str(fields["title"])],
            [fields.get("year") or ""],
            [_genres(fields.get("genres"))],
        )
        if all(f in df.columns for f in need):
            return df
    if need and any(f in fields for f in need):
        return pd.DataFrame([{f: fields.get(f, "") for f in need}])
    return None


def item_poster(source, fields: dict, posters: bool) -> bytes | None:
    """The poster PNG a built-in movie data set with ``data.posters`` shows for a new movie; None otherwise."""
    if not (posters and _movielens(source) and fields.get("title")):
        return None
    from modalrec.datasets.posters import poster_png

    return poster_png(str(fields["title"]), fields.get("year") or "", _genres(fields.get("genres")))
