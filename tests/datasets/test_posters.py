"""Posters rendered from metadata: determinism, layout, genres, the emoji fetch (with a fake npm
tarball, so npm is not needed) and the poster folder of a built-in data set."""

from __future__ import annotations

import io
import json
import tarfile
import warnings

import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from modalrec.cli import main  # noqa: E402
from modalrec.datasets import posters as P  # noqa: E402
from modalrec.datasets import builtin  # noqa: E402
from modalrec.data.tables import read_items  # noqa: E402

LONG = (
    "Old Lady Who Walked in the Sea, The (Vieille qui marchait dans la mer, La) and a Great Many "
    "Other Words That Go On and On Beyond Any Sensible Length for a Poster"
)


# ----------------------------------------------------------------------------- a fake npm package


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), colour).save(buf, "PNG")
    return buf.getvalue()


def _fake_tarball(path, names) -> None:
    """A tiny emoji-datasource-google tarball: emoji.json plus one 64 px PNG per short name."""
    table = [
        {"short_name": n, "short_names": [n], "image": f"{k:05x}.png", "has_img_google": True}
        for k, n in enumerate(names)
    ]
    table.append(
        {"short_name": "no_google", "short_names": ["no_google"], "image": "fffff.png", "has_img_google": False}
    )
    files = {"package/emoji.json": json.dumps(table).encode(), "package/img/google/64/fffff.png": _png("red")}
    for k, n in enumerate(names):
        files[f"package/img/google/64/{k:05x}.png"] = _png((40 * k % 256, 200, 90, 255))
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_npm(monkeypatch, tmp_path):
    """``npm pack`` replaced by copying a fake tarball; returns the list of calls."""
    calls = []
    src = tmp_path / "fake.tgz"
    _fake_tarball(src, sorted(set(P.GENRE_EMOJI.values()) | {P.FALLBACK_EMOJI}))
    # the fake stands in for the real tarball: its digest is the pinned one for this test
    monkeypatch.setitem(builtin.PINNED_SHA256, P._tarball_name(), builtin.file_sha256(src))

    def pack(dest):
        calls.append(dest)
        (builtin.Path(dest) / P._tarball_name()).write_bytes(src.read_bytes())

    monkeypatch.setattr(P, "_npm_pack", pack)
    monkeypatch.setattr(P.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    P._ICON_CACHE.clear()
    yield calls
    P._ICON_CACHE.clear()


def _fake_builtin(name="ml-100k", items=None):
    """A fetched-looking built-in in the (isolated) cache, without any download."""
    import pandas as pd

    items = items or [
        ("1", "Toy Story", "1995", "Animation, Children's, Comedy"),
        ("2", "Usual Suspects, The", "1995", "Crime, Thriller"),
        ("3", "Alien", "1979", "Action, Horror, Sci-Fi, Thriller"),
        ("4", "unkonwn", "", "unknown"),
        ("5", LONG, "1991", "Comedy"),
    ]
    folder = builtin.raw_dir(name)
    folder.mkdir(parents=True)
    df = builtin.movie_frame(
        [i[0] for i in items], [i[1] for i in items], [i[2] for i in items], [i[3].split(", ") for i in items]
    )
    df.to_csv(folder / "items.csv", index=False)
    pd.DataFrame(
        {"user_id": ["u"] * len(items), "item_id": df["item_id"], "timestamp": range(len(items)), "rating": 4.0}
    ).to_csv(folder / "interactions.csv", index=False)
    man = {"name": name, "raw_format": builtin.RAW_FORMAT, "files": {"interactions.csv": {}, "items.csv": {}}}
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


# ----------------------------------------------------------------------------- single posters


def test_same_inputs_same_png_bytes():
    a = P.poster_png("Toy Story", 1995, "Animation, Children's, Comedy")
    b = P.poster_png("Toy Story", "1995", ["Animation", "Children's", "Comedy"])
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_and_mode():
    img = P.render_poster("Heat", 1995, "Action, Crime, Thriller")
    assert img.size == (224, 224) and img.mode == "RGB"
    small = P.render_poster("Heat", 1995, "Action", size=96)
    assert small.size == (96, 96) and small.mode == "RGB"


def test_different_titles_give_different_images():
    a = P.poster_png("Heat", 1995, "Action")
    b = P.poster_png("Heath", 1995, "Action")
    c = P.poster_png("Heat", 1996, "Action")
    d = P.poster_png("Heat", 1995, "Romance")
    assert len({a, b, c, d}) == 4
    # the background alone already differs (hash of title and year), not just the lettering
    assert (
        P._background(["Action"], P._digest("Heat", "1995"), 64)
        != P._background(["Action"], P._digest("Heath", "1995"), 64)
    ).any()


@pytest.mark.parametrize(
    "title",
    [
        LONG,
        "Supercalifragilisticexpialidociousandevenlongerwordthatneverends" * 3,
        "Dragon Ball Z the Movie: The World's Strongest (a.k.a. Dragon Ball Z: The "
        "Strongest Guy in The World) (Doragon bôru Z: Kono yo de ichiban tsuyoi yatsu)",
    ],
)
@pytest.mark.parametrize("size", [224, 128])
def test_long_titles_fit_inside_the_image(title, size):
    lay = P.layout_poster(title, "1991", 3, size)
    assert lay.text_boxes and lay.title.lines
    for x0, y0, x1, y1 in lay.text_boxes:
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
    title_boxes = lay.text_boxes[:-1]  # the year comes last
    assert max(b[3] for b in title_boxes) <= lay.year_box[1]  # title never runs into the year badge
    assert min(b[1] for b in title_boxes) >= lay.icon_boxes[0][3]  # nor into the icons
    assert P.render_poster(title, 1991, "Comedy", size=size).size == (size, size)


def test_short_words_are_not_cut_when_a_smaller_font_fits():
    lay = P.layout_poster("Guantanamera", "1994", 1)
    assert lay.title.lines == ["Guantanamera"]


def test_display_title_moves_articles_and_splits_alternative_titles():
    assert P.display_title("Usual Suspects, The") == ("The Usual Suspects", "")
    assert P.display_title("Seven (Se7en)") == ("Seven", "Se7en")
    assert P.display_title("Double vie de Véronique, La (Double Life of Veronique, The)") == (
        "La Double vie de Véronique",
        "The Double Life of Veronique",
    )
    assert P.display_title("  ") == ("Untitled", "")


def test_genre_spellings_and_unknown_genres():
    assert P.canonical_genres("Children's|Sci-Fi|Film-Noir") == ["Children", "Sci-Fi", "Film-Noir"]
    assert P.canonical_genres(["Children", "children's", "(no genres listed)"]) == ["Children", "unknown"]
    assert P.canonical_genres(None) == [] and P.canonical_genres("") == []
    assert P.genre_icons(["Sci-Fi"]) == ["rocket"] and P.genre_icons(["Horror"]) == ["ghost"]
    assert P.genre_icons(["Western"]) == ["face_with_cowboy_hat"]
    assert P.genre_icons(["Space Opera", "Bollywood"]) == [P.FALLBACK_EMOJI]
    assert P.genre_icons([]) == [P.GENRE_EMOJI["unknown"]]
    assert len(P.genre_icons(["Action", "Adventure", "Comedy", "Drama", "War"])) == 3
    for genres in (["Space Opera"], [], "unknown", None):
        assert P.render_poster("Heat", 1995, genres).size == (224, 224)


@pytest.mark.parametrize("year", [None, "", float("nan"), "1995.0"])
def test_missing_year(year):
    lay = P.layout_poster("Heat", year, 0)
    if year == "1995.0":
        assert lay.year == "1995"
    else:
        assert lay.year == "" and lay.year_box == (0, 0, 0, 0) and len(lay.text_boxes) == len(lay.title.lines)
    assert P.render_poster("Heat", year, "Action").size == (224, 224)


def test_missing_fonts_fall_back_to_the_default_font_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "_font_dirs", lambda: [tmp_path])
    P.find_fonts.cache_clear()
    P._font.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="fonts-dejavu-core"):
            img = P.render_poster("Heat", 1995, "Action")
        assert img.size == (224, 224)
    finally:
        P.find_fonts.cache_clear()
        P._font.cache_clear()


# ----------------------------------------------------------------------------- emoji icons


def test_emoji_fetch_extracts_only_needed_icons(fake_npm):
    icons = P.load_icons(["rocket", "ghost"], quiet=True)
    assert len(fake_npm) == 1 and (builtin.downloads_dir() / P._tarball_name()).is_file()
    assert set(icons.images) == {"rocket", "ghost"}
    cached = sorted(p.name for p in P.emoji_cache_dir().iterdir())
    assert len(cached) == 3 and "index.json" in cached  # two PNGs, not the whole package
    assert icons.get("rocket", 40).size == (40, 40) and icons.get("heart", 40) is None

    P._ICON_CACHE.clear()
    again = P.load_icons(["rocket", "ghost"], quiet=True)  # from the icon cache: no npm, no tarball read
    assert len(fake_npm) == 1 and set(again.images) == {"rocket", "ghost"}

    with pytest.warns(RuntimeWarning, match="no_google"):
        partial = P.load_icons(["heart", "no_google"], quiet=True)  # tarball reused, not fetched again
    assert len(fake_npm) == 1 and set(partial.images) == {"heart"}

    with_icons = P.poster_png("Alien", 1979, "Horror, Sci-Fi", icons=P.load_icons(quiet=True))
    assert with_icons != P.poster_png("Alien", 1979, "Horror, Sci-Fi")
    assert with_icons == P.poster_png("Alien", 1979, "Horror, Sci-Fi", icons=P.load_icons(quiet=True))


def test_missing_npm_names_the_exact_command(monkeypatch):
    monkeypatch.setattr(P.shutil, "which", lambda cmd: None)
    with pytest.raises(builtin.FetchError) as e:
        P.emoji_tarball(quiet=True)
    msg = str(e.value)
    assert "npm pack emoji-datasource-google@16.0.0" in msg and str(builtin.downloads_dir()) in msg


def test_failed_npm_names_the_command(monkeypatch):
    monkeypatch.setattr(P.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    monkeypatch.setattr(
        builtin.subprocess,
        "run",
        lambda *a, **k: builtin.subprocess.CompletedProcess(a[0], 1, "", "npm ERR! network request failed"),
    )
    with pytest.raises(builtin.FetchError, match=r"npm pack emoji-datasource-google@16\.0\.0.*\n.*network"):
        P.emoji_tarball(quiet=True)
    assert not (builtin.downloads_dir() / P._tarball_name()).exists()


# ----------------------------------------------------------------------------- a whole built-in


def test_render_posters_for_a_builtin(fake_npm, capsys):
    folder = _fake_builtin()
    default_inter, default_items = builtin.specs("ml-100k")
    assert default_items.image_dir == "" and default_items.image_col == ""
    with pytest.raises(builtin.FetchError, match="modalrec data posters ml-100k"):
        builtin.specs("ml-100k", posters=True)

    out = P.render_posters("ml-100k", progress=False)
    assert out == folder / "posters" and sorted(p.name for p in out.glob("*.png")) == [f"{i}.png" for i in "12345"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["count"] == 5 and man["note"] == "rendered from metadata, not real posters"
    assert man["emoji"]["package"] == "emoji-datasource-google" and man["emoji"]["version"] == "16.0.0"
    assert man["renderer_version"] == P.RENDERER_VERSION and man["font_file"]
    assert json.loads((folder / "manifest.json").read_text())["posters"]["note"] == P.NOTE
    assert not list(folder.glob(".posters*"))
    with Image.open(out / "1.png") as im:
        assert im.size == (224, 224) and im.mode == "RGB"
    assert (out / "1.png").read_bytes() == P.poster_png(
        "Toy Story", "1995", "Animation, Children's, Comedy", icons=P.load_icons()
    )

    # the default specs are unchanged; posters=True points image_dir at the folder
    assert builtin.specs("ml-100k") == (default_inter, default_items)
    _, items = builtin.specs("ml-100k", posters=True)
    assert items.image_dir == str(out)
    table = read_items(items)
    assert [p.rsplit("/", 1)[-1] for p in table["image_path"]] == [f"{i}.png" for i in "12345"]

    stamp = (out / "1.png").stat().st_mtime_ns  # current posters: nothing is rendered again
    assert P.render_posters("ml-100k", progress=False) == out and (out / "1.png").stat().st_mtime_ns == stamp

    assert main(["data", "posters", "ml-100k", "--quiet", "--force"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ml-100k: 5 posters, ") and line.endswith(str(out))
    assert (out / "1.png").stat().st_mtime_ns != stamp


def test_interrupted_render_resumes(fake_npm, monkeypatch):
    _fake_builtin(
        items=[(str(i), f"Movie {i}", "2000", "Drama") for i in range(1, 7)] + [("a/b", "Face/Off", "1997", "Action")]
    )
    real, calls, fail_at = P.poster_png, [], [4]

    def flaky(*a, **k):
        calls.append(a[0])
        if len(calls) == fail_at[0]:
            raise RuntimeError("interrupted")
        return real(*a, **k)

    monkeypatch.setattr(P, "poster_png", flaky)
    with pytest.raises(RuntimeError, match="interrupted"):
        P.render_posters("ml-100k", progress=False)
    assert not builtin.posters_dir("ml-100k").exists()
    calls.clear()
    fail_at[0] = 0
    out = P.render_posters("ml-100k", progress=False)
    assert len(calls) == 4  # three were kept from the first attempt
    man = json.loads((out / "manifest.json").read_text())
    assert man["count"] == 7 and man["renamed"] == {"a/b": P.poster_file_name("a/b")}
    assert len(list(out.glob("*.png"))) == 7


def test_synthetic_has_no_posters():
    with pytest.raises(ValueError, match="own images"):
        P.render_posters("synthetic", progress=False)


# ----------------------------------------------------------------------------- real data


@pytest.mark.builtin
def test_real_posters_for_first_ml100k_items():
    import pandas as pd

    if not builtin.is_fetched("ml-100k"):
        pytest.skip("ml-100k is not fetched (modalrec data fetch ml-100k)")
    if not (builtin.downloads_dir() / P._tarball_name()).is_file() and P.shutil.which("npm") is None:
        pytest.skip(f"neither {P._tarball_name()} in the downloads folder nor npm to fetch it")
    items = pd.read_csv(builtin.raw_dir("ml-100k") / "items.csv", dtype=str, keep_default_na=False).head(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real fonts and every genre icon must be found
        icons = P.load_icons(quiet=True)
        pngs = [P.poster_png(r.title, r.year, r.genres, icons=icons) for r in items.itertuples()]
    assert set(P.GENRE_EMOJI.values()) <= set(icons.images)
    assert len(set(pngs)) == 20
    assert pngs[0] == P.poster_png("Toy Story", "1995", "Animation, Children's, Comedy", icons=icons)
    with Image.open(io.BytesIO(pngs[0])) as im:
        assert im.size == (224, 224) and im.mode == "RGB"
