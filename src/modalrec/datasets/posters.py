"""Rendered posters for the built-in MovieLens data sets, drawn from title, year and genres.

No package registry carries movie posters, so the image of a built-in movie is *rendered from its
metadata*: a background gradient whose colours come from the genres (palette) and from a stable
hash of the title (hue shift, angle, soft circles), genre icons, the title (wrapped, the font
shrunk until it fits) and the year. These are NOT real posters: an image tower trained on them
learns genre, era and title typography, never a movie's real artwork (docs/posters.md).

Material: DejaVu fonts (Debian ``fonts-dejavu-core``; DejaVu fonts licence) and Noto emoji PNGs
from the npm package ``emoji-datasource-google@16.0.0`` (images Apache-2.0), fetched once with
``npm pack`` into ``downloads_dir()``; only the icons needed are read from the tarball and kept
in ``modalrec_home()/"emoji"/<package>-<version>/``.

Same inputs, same Pillow/FreeType and font files: byte-identical PNGs (``Layout.BASIC``, no
randomness, no time stamps, PNG without metadata).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from modalrec.datasets import builtin
from modalrec.datasets.builtin import FetchError, downloads_dir
from modalrec.utils import (
    atomic_path,
    atomic_write_json,
    file_digest,
    image_file_stem,
    modalrec_home,
    replace_dir,
    tar_member_bytes,
)

RENDERER_VERSION = 1  # bump when the drawing changes: existing poster folders are then re-rendered
NOTE = builtin.POSTERS_NOTE
SIZE = 224
EMOJI_PACKAGE = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"
EMOJI_LICENCE = "Noto Emoji images (Google), Apache License 2.0; emoji.json by Cal Henderson, MIT"
FONT_LICENCE = "DejaVu fonts licence (Bitstream Vera derived, free to use and redistribute)"
MAX_ICONS = 3

# Canonical genre -> emoji short name (as in emoji.json) and a (dark, light) palette.
GENRE_EMOJI = {
    "Action": "boom",
    "Adventure": "compass",
    "Animation": "art",
    "Children": "teddy_bear",
    "Comedy": "joy",
    "Crime": "oncoming_police_car",
    "Documentary": "earth_americas",
    "Drama": "performing_arts",
    "Fantasy": "unicorn_face",
    "Film-Noir": "tophat",
    "Horror": "ghost",
    "IMAX": "cinema",
    "Musical": "man_dancing",
    "Mystery": "mag",
    "Romance": "heart",
    "Sci-Fi": "rocket",
    "Thriller": "scream",
    "War": "crossed_swords",
    "Western": "face_with_cowboy_hat",
    "unknown": "clapper",
}
FALLBACK_EMOJI = "clapper"  # genres outside the table above
GENRE_PALETTE = {
    "Action": ((120, 16, 20), (236, 96, 36)),
    "Adventure": ((18, 84, 64), (206, 160, 58)),
    "Animation": ((34, 86, 190), (250, 180, 60)),
    "Children": ((40, 120, 200), (120, 210, 150)),
    "Comedy": ((200, 110, 10), (250, 214, 90)),
    "Crime": ((24, 28, 44), (70, 100, 140)),
    "Documentary": ((40, 70, 60), (150, 170, 120)),
    "Drama": ((70, 30, 90), (180, 100, 130)),
    "Fantasy": ((60, 24, 120), (190, 120, 220)),
    "Film-Noir": ((12, 12, 14), (110, 110, 116)),
    "Horror": ((10, 20, 16), (96, 140, 50)),
    "IMAX": ((10, 40, 80), (60, 170, 220)),
    "Musical": ((150, 20, 100), (250, 140, 170)),
    "Mystery": ((20, 30, 70), (90, 70, 150)),
    "Romance": ((150, 20, 60), (250, 130, 150)),
    "Sci-Fi": ((8, 20, 60), (40, 180, 210)),
    "Thriller": ((40, 10, 10), (150, 60, 50)),
    "War": ((50, 54, 30), (150, 140, 90)),
    "Western": ((110, 50, 20), (230, 170, 90)),
    "unknown": ((50, 56, 70), (140, 150, 170)),
}
_ALIASES = {
    "childrens": "Children",
    "children": "Children",
    "scifi": "Sci-Fi",
    "sciencefiction": "Sci-Fi",
    "filmnoir": "Film-Noir",
    "noir": "Film-Noir",
    "nogenreslisted": "unknown",
    "unknown": "unknown",
}
_CANON = {re.sub(r"[^a-z0-9]", "", g.lower()): g for g in GENRE_EMOJI} | _ALIASES

# Fonts: first file found wins; the condensed cut fits more title per line.
FONT_FILES = {
    "title": ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf"),
    "subtitle": (
        "DejaVuSansCondensed-Oblique.ttf",
        "DejaVuSans-Oblique.ttf",
        "DejaVuSansCondensed.ttf",
        "DejaVuSans.ttf",
    ),
    "year": ("DejaVuSans-Bold.ttf", "DejaVuSansCondensed-Bold.ttf"),
}
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/truetype",
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/opt/homebrew/share/fonts",
    "/Library/Fonts",
    "~/Library/Fonts",
    "C:/Windows/Fonts",
)

_ARTICLES = r"The|A|An|La|Le|Les|L'|Il|El|Los|Las|Das|Der|Die|Un|Une"
_TRAILING_ARTICLE = re.compile(rf"^(.+), ({_ARTICLES})$")


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError as e:
        raise ImportError("Rendering posters needs Pillow: pip install 'modalrec[images]'") from e


# --------------------------------------------------------------------------------------------
# Metadata -> what is drawn


def canonical_genres(genres: str | Iterable[str] | None) -> list[str]:
    """Canonical genre names, in order, without repeats; ``"a, b"`` / ``"a|b"`` strings are split.

    MovieLens spellings map to one name ("Children's" and "Children" -> "Children"); a genre
    outside the table is kept as given (it gets the fallback icon and palette).
    """
    if genres is None or (isinstance(genres, float) and genres != genres):
        return []
    parts = re.split(r"[|,]", genres) if isinstance(genres, str) else [str(g) for g in genres]
    out: list[str] = []
    for g in parts:
        g = g.strip()
        if not g:
            continue
        c = _CANON.get(re.sub(r"[^a-z0-9]", "", g.lower()), g)
        if c not in out:
            out.append(c)
    return out


def _front_article(s: str) -> str:
    m = _TRAILING_ARTICLE.match(s.strip())
    if not m:
        return s.strip()
    art = m.group(2)
    return f"{art}{m.group(1)}" if art.endswith("'") else f"{art} {m.group(1)}"


def display_title(title: str) -> tuple[str, str]:
    """(main title, alternative titles) as a poster shows them.

    MovieLens writes "Usual Suspects, The" and "Seven (Se7en)": the article moves to the front
    and a trailing parenthesised part becomes the smaller second line.
    """
    t = " ".join(str(title or "").split())
    if not t:
        return "Untitled", ""
    main, aka = t, ""
    if t.endswith(")"):
        i = t.find(" (")
        if i > 0:
            main, aka = t[:i], t[i + 1 :]
    if aka:
        groups = re.findall(r"\(([^()]*)\)", aka)
        if groups and re.fullmatch(r"(\s*\([^()]*\))+", aka):
            aka = " / ".join(_front_article(g) for g in groups if g.strip())
    return _front_article(main), aka


def _year_text(year) -> str:
    if year is None:
        return ""
    if isinstance(year, float):
        if year != year:
            return ""
        year = int(year)
    y = str(year).strip()
    if y.endswith(".0"):
        y = y[:-2]
    return y


def _digest(title: str, year: str) -> bytes:
    """Stable across processes and machines (never Python's salted ``hash()``)."""
    return hashlib.sha256(f"{title}\0{year}".encode("utf-8")).digest()


# --------------------------------------------------------------------------------------------
# Fonts


def _font_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("MODALREC_FONT_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [Path(d).expanduser() for d in FONT_DIRS]
    try:  # matplotlib ships DejaVu Sans; look without importing it
        import importlib.util

        spec = importlib.util.find_spec("matplotlib")
        if spec and spec.origin:
            dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    except (ImportError, ValueError):
        pass
    return dirs


@lru_cache(maxsize=None)
def find_fonts() -> dict[str, str]:
    """Role (title, subtitle, year) -> TrueType file; ``""`` if none found (a warning is given).

    Looks in ``$MODALREC_FONT_DIR``, the usual font folders (and one level below them) and
    matplotlib's bundled fonts, in that order; the first folder holding a file wins.
    """
    wanted = {f for files in FONT_FILES.values() for f in files}
    index: dict[str, str] = {}
    for d in _font_dirs():
        if not d.is_dir():
            continue
        try:
            subs = [d] + sorted(p for p in d.iterdir() if p.is_dir())
        except OSError:
            subs = [d]
        for sub in subs:
            for f in sorted(wanted - set(index)):
                if (sub / f).is_file():
                    index[f] = str(sub / f)
        if all(files[0] in index for files in FONT_FILES.values()):
            break
    found = {role: next((index[f] for f in files if f in index), "") for role, files in FONT_FILES.items()}
    any_font = next((v for v in found.values() if v), "")
    found = {role: v or any_font for role, v in found.items()}
    if not any_font:
        warnings.warn(
            "No DejaVu TrueType font found (Debian/Ubuntu: apt-get install fonts-dejavu-core; or set "
            "MODALREC_FONT_DIR to a folder with DejaVuSans-Bold.ttf): posters use PIL's default font",
            RuntimeWarning,
            stacklevel=2,
        )
    return found


@lru_cache(maxsize=512)
def _font(role: str, px: int):
    _require_pillow()
    from PIL import ImageFont

    path = find_fonts()[role]
    if path:
        # Pillow < 9.1 has only the constant (gone from newer Pillow and its type hints)
        basic = ImageFont.Layout.BASIC if hasattr(ImageFont, "Layout") else getattr(ImageFont, "LAYOUT_BASIC")
        return ImageFont.truetype(path, px, layout_engine=basic)
    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _text_width(font, s: str) -> float:
    return font.getlength(s)


def _line_height(font) -> int:
    try:
        ascent, descent = font.getmetrics()
        return ascent + descent
    except AttributeError:
        box = font.getbbox("Ag")
        return box[3] - box[1]


def _ellipsis(role: str) -> str:
    return "\u2026" if find_fonts()[role] else "..."


# --------------------------------------------------------------------------------------------
# Layout


def _wrap(words: list[str], font, width: float) -> list[str]:
    """Greedy word wrap; a word wider than the line is cut into pieces."""
    lines: list[str] = []
    cur = ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if _text_width(font, cand) <= width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
            cur = ""
        while _text_width(font, w) > width:  # cut an over-long word: longest prefix that fits
            lo, hi = 1, len(w) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _text_width(font, w[:mid]) <= width:
                    lo = mid
                else:
                    hi = mid - 1
            lines.append(w[:lo])
            w = w[lo:]
        cur = w
    if cur:
        lines.append(cur)
    return lines


def _truncate(line: str, font, width: float, ell: str) -> str:
    while line and _text_width(font, line + ell) > width:
        line = line[:-1].rstrip()
    return line + ell


@dataclass
class TextBlock:
    lines: list[str]
    role: str
    px: int
    line_h: int


def fit_text(
    text: str, role: str, width: float, height: float, max_px: int, min_px: int, max_lines: int = 0
) -> TextBlock:
    """Largest font size (``max_px`` down to ``min_px``) at which ``text`` wraps into the box.

    Words are cut only if no size keeps every word whole; if even ``min_px`` does not fit, the
    lines that fit are kept and the last ends in an ellipsis.
    """
    words = text.split()
    for whole_words in (True, False):
        for px in range(max_px, min_px - 1, -1):
            font = _font(role, px)
            if whole_words and any(_text_width(font, w) > width for w in words):
                continue
            lh = _line_height(font) + max(1, px // 8)
            lines = _wrap(words, font, width)
            if len(lines) * lh <= height and (not max_lines or len(lines) <= max_lines):
                return TextBlock(lines, role, px, lh)
    font = _font(role, min_px)
    lh = _line_height(font) + max(1, min_px // 8)
    lines = _wrap(words, font, width)
    keep = max(1, min(int(height // lh), max_lines or len(lines)))
    if len(lines) > keep:
        lines = lines[:keep]
        lines[-1] = _truncate(lines[-1], font, width, _ellipsis(role))
    return TextBlock(lines, role, min_px, lh)


@dataclass
class PosterLayout:
    """Where everything goes; ``text_boxes`` are the drawn text's pixel boxes (x0, y0, x1, y1)."""

    size: int
    icon_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    title: TextBlock | None = None
    subtitle: TextBlock | None = None
    year: str = ""
    panel: tuple[int, int, int, int] = (0, 0, 0, 0)
    year_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    text_origins: list[tuple[str, str, int, int, int]] = field(default_factory=list)  # text, role, px, x, y
    text_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def layout_poster(title: str, year, n_icons: int, size: int = SIZE) -> PosterLayout:
    """Positions of icons, title panel, title and subtitle lines and the year badge."""
    s = size / SIZE
    m = round(12 * s)
    lay = PosterLayout(size)
    main, aka = display_title(title)
    year = _year_text(year)
    lay.year = year

    icon = round(40 * s)
    gap = round(10 * s)
    top = m
    if n_icons:
        total = n_icons * icon + (n_icons - 1) * gap
        x0 = (size - total) // 2
        lay.icon_boxes = [
            (x0 + k * (icon + gap), top, x0 + k * (icon + gap) + icon, top + icon) for k in range(n_icons)
        ]
        top += icon + round(10 * s)
    bottom = size - m
    if year:
        yfont = _font("year", max(8, round(17 * s)))
        w = _text_width(yfont, year)
        h = _line_height(yfont)
        pad_x, pad_y = round(10 * s), round(3 * s)
        bw, bh = int(w + 2 * pad_x), int(h + 2 * pad_y)
        lay.year_box = ((size - bw) // 2, bottom - bh, (size - bw) // 2 + bw, bottom)
        bottom -= bh + round(10 * s)

    pad = round(8 * s)
    width = size - 2 * m - 2 * pad
    avail = bottom - top - 2 * pad
    sub_h = 0
    if aka:
        lay.subtitle = fit_text(
            aka, "subtitle", width, max(avail * 0.3, 1), max(8, round(13 * s)), max(7, round(9 * s)), max_lines=2
        )
        sub_h = len(lay.subtitle.lines) * lay.subtitle.line_h + round(4 * s)
    lay.title = fit_text(main, "title", width, max(avail - sub_h, 1), max(10, round(32 * s)), max(8, round(11 * s)))
    block_h = len(lay.title.lines) * lay.title.line_h + sub_h
    y = top + pad + max(0, (avail - block_h) // 2)
    lay.panel = (m, y - pad, size - m, y + block_h + pad)
    for block in (lay.title, lay.subtitle):
        if block is None:
            continue
        if block is lay.subtitle:
            y += round(4 * s)
        for line in block.lines:
            _place(lay, line, block.role, block.px, y)
            y += block.line_h
    if year:
        _place(lay, year, "year", max(8, round(17 * s)), lay.year_box[1] + round(3 * s))
    return lay


def _place(lay: PosterLayout, text: str, role: str, px: int, y: int) -> None:
    """Centre ``text`` horizontally with its ascender line at ``y`` (Pillow's default anchor)."""
    font = _font(role, px)
    x = int(round((lay.size - _text_width(font, text)) / 2))
    x0, y0, x1, y1 = font.getbbox(text)
    lay.text_origins.append((text, role, px, x, y))
    lay.text_boxes.append((x + x0, y + y0, x + x1, y + y1))


# --------------------------------------------------------------------------------------------
# Drawing


@lru_cache(maxsize=8)
def _grids(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
    vignette = (1.0 - 0.45 * np.clip(r2 / 0.5, 0, 1) ** 1.5)[..., None]
    return xx, yy, vignette


def _shift(rgb, dh: float, dl: float) -> np.ndarray:
    h, l, s = colorsys.rgb_to_hls(*(c / 255 for c in rgb))
    r, g, b = colorsys.hls_to_rgb((h + dh) % 1.0, min(max(l + dl, 0.0), 1.0), s)
    return np.array([r, g, b], dtype=np.float32) * 255


def _background(genres: list[str], digest: bytes, size: int) -> np.ndarray:
    known = [g for g in genres if g in GENRE_PALETTE]
    first = GENRE_PALETTE[known[0]] if known else GENRE_PALETTE["unknown"]
    second = GENRE_PALETTE[known[1]] if len(known) > 1 else first
    d = np.frombuffer(digest, dtype=np.uint8).astype(np.float32) / 255.0
    dh = (d[0] - 0.5) * 0.10
    c1 = _shift(first[0], dh, (d[1] - 0.5) * 0.10)
    c2 = _shift(second[1], dh, (d[2] - 0.5) * 0.14)
    xx, yy, vignette = _grids(size)
    ang = d[3] * 2 * np.pi
    t = (xx - 0.5) * np.cos(ang) + (yy - 0.5) * np.sin(ang)
    t = np.clip(t / 1.42 + 0.5, 0, 1)[..., None]
    img = c1 * (1 - t) + c2 * t
    for k in range(3):  # soft circles: light or dark, placed by the title's hash
        cx, cy = d[4 + 3 * k], d[5 + 3 * k]
        r = 0.15 + 0.35 * d[6 + 3 * k]
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        mask = np.clip((r - dist) * size / 3.0, 0, 1)[..., None]  # anti-aliased edge
        tone = 255.0 if d[13 + k] > 0.45 else 0.0
        alpha = 0.08 + 0.10 * d[16 + k]
        img = img * (1 - alpha * mask) + tone * alpha * mask
    img = img * vignette
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def genre_icons(genres: list[str], limit: int = MAX_ICONS) -> list[str]:
    """Emoji short names for up to ``limit`` genres (repeats removed)."""
    out: list[str] = []
    for g in genres or ["unknown"]:
        e = GENRE_EMOJI.get(g, FALLBACK_EMOJI)
        if e not in out:
            out.append(e)
        if len(out) == limit:
            break
    return out


def render_poster(title: str, year, genres, size: int = SIZE, *, icons: IconSet | None = None):
    """A ``size`` x ``size`` RGB ``PIL.Image`` drawn from a movie's title, year and genres.

    ``genres``: a list or a ``"a, b"`` / ``"a|b"`` string; ``year``: int, str, or None/"" if unknown.
    ``icons``: from :func:`load_icons`; without it no genre icons are drawn. Deterministic: same
    arguments (and same Pillow, font files and icons), same pixels.
    """
    _require_pillow()
    from PIL import Image, ImageDraw

    genres = canonical_genres(genres)
    title = str(title or "").strip()
    year_s = _year_text(year)
    wanted = genre_icons(genres)
    have = [e for e in wanted if icons is not None and e in icons]
    lay = layout_poster(title, year_s, len(have), size)

    half = max(size // 2, 1)  # the background is smooth: drawn at half size, then scaled up
    img = Image.fromarray(_background(genres, _digest(title, year_s), half), "RGB")
    img = img.resize((size, size), getattr(Image, "Resampling", Image).BILINEAR)
    overlay = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    s = size / SIZE
    for box in lay.icon_boxes:  # a light disc under each icon
        grow = round(4 * s)
        draw.ellipse((box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow), fill=(255, 255, 255, 70))
    draw.rounded_rectangle(lay.panel, radius=round(10 * s), fill=(0, 0, 0, 120))
    if lay.year:
        draw.rounded_rectangle(lay.year_box, radius=round(8 * s), fill=(255, 255, 255, 215))
    img = Image.alpha_composite(img.convert("RGBA"), overlay)
    if icons is not None:
        for e, box in zip(have, lay.icon_boxes):
            img.alpha_composite(icons.get(e, box[2] - box[0]), (box[0], box[1]))
    draw = ImageDraw.Draw(img)
    for text, role, px, x, y in lay.text_origins:
        font = _font(role, px)
        if role == "year":
            draw.text((x, y), text, font=font, fill=(25, 25, 30, 255))
        elif role == "subtitle":
            draw.text((x, y), text, font=font, fill=(225, 225, 232, 255))
        else:
            draw.text((x + max(1, round(s)), y + max(1, round(s))), text, font=font, fill=(0, 0, 0, 150))
            draw.text((x, y), text, font=font, fill=(255, 255, 255, 255))
    return img.convert("RGB")


def poster_png(title: str, year, genres, size: int = SIZE, *, icons: IconSet | None = None) -> bytes:
    """:func:`render_poster` encoded as PNG (no metadata, so the bytes are deterministic too)."""
    buf = io.BytesIO()
    render_poster(title, year, genres, size, icons=icons).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Emoji icons


class IconSet:
    """Emoji images by short name (RGBA, 64 px source), resized on demand and cached."""

    def __init__(self, images: dict, source: str = ""):
        self.images = images
        self.source = source
        self._sized: dict[tuple[str, int], object] = {}

    def get(self, name: str, px: int):
        """The icon ``name`` at ``px`` x ``px`` (None if the set lacks it)."""
        im = self.images.get(name)
        if im is None:
            return None
        key = (name, px)
        if key not in self._sized:
            from PIL import Image

            lanczos = getattr(Image, "Resampling", Image).LANCZOS
            self._sized[key] = im if im.size == (px, px) else im.resize((px, px), lanczos)
        return self._sized[key]

    def __contains__(self, name: str) -> bool:
        return name in self.images


def emoji_spec() -> str:
    return f"{EMOJI_PACKAGE}@{EMOJI_VERSION}"


def emoji_cache_dir() -> Path:
    return modalrec_home() / "emoji" / f"{EMOJI_PACKAGE}-{EMOJI_VERSION}"


def _tarball_name() -> str:
    return f"{EMOJI_PACKAGE}-{EMOJI_VERSION}.tgz"


def _npm_pack(dest: str | Path) -> None:
    """Run ``npm pack`` in ``dest`` (the tarball lands there)."""
    builtin._run(
        ["npm", "pack", emoji_spec()],
        f"Fetching the emoji images ({emoji_spec()}) failed",
        cwd=dest,
        hint=(
            f"Check that this machine reaches the npm registry, or run `npm pack {emoji_spec()}` "
            f"elsewhere and put {_tarball_name()} into {downloads_dir()}."
        ),
    )


def emoji_tarball(*, quiet: bool = False) -> Path:
    """The npm tarball in ``downloads_dir()``, fetched with ``npm pack`` the first time."""
    pattern = re.escape(_tarball_name())
    hit = builtin._find_download(pattern)
    if hit is not None:
        return builtin.check_pinned(hit, quiet)
    cmd = f"npm pack {emoji_spec()}"
    if shutil.which("npm") is None:
        raise FetchError(
            f"The genre icons come from the npm package {emoji_spec()}, but `npm` is not installed. "
            f"Install it (Debian/Ubuntu: apt-get install npm) or run `{cmd}` on a machine that has it "
            f"and put {_tarball_name()} into {downloads_dir()}."
        )
    with tempfile.TemporaryDirectory(prefix="modalrec-dl-") as tmp:
        builtin._say(f"fetching the genre icons: cd {downloads_dir()} && {cmd}", quiet)
        _npm_pack(tmp)
        return builtin.check_pinned(
            builtin._keep_download(
                tmp, pattern, f"`{cmd}` finished but wrote no {_tarball_name()}; run it by hand in {downloads_dir()}"
            ),
            quiet,
        )


def _extract_icons(tgz: Path, names: list[str], dest: Path) -> dict[str, str]:
    """Read ``emoji.json`` and the 64 px PNGs of ``names`` from the tarball into ``dest``."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if "package/emoji.json" not in members:
                raise FetchError(f"{tgz}: no package/emoji.json inside; delete the file and retry")
            table = json.loads(tar_member_bytes(tar, members["package/emoji.json"]))
            by_name: dict[str, str] = {}
            for e in table:
                if e.get("has_img_google") is False or not e.get("image"):
                    continue
                for sn in e.get("short_names") or [e.get("short_name")]:
                    if sn:
                        by_name.setdefault(sn, e["image"])
            index: dict[str, str] = {}
            todo = []
            for n in names:
                img = by_name.get(n)
                m = members.get(f"package/img/google/64/{img}") if img else None
                if img is None or m is None:
                    warnings.warn(
                        f"{tgz.name}: no Google image for emoji {n!r}; that genre gets no icon",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    continue
                todo.append((m.offset_data, n, img, m))
            dest.mkdir(parents=True, exist_ok=True)
            for _, n, img, m in sorted(todo, key=lambda x: x[0]):  # forward reads only
                fname = os.path.basename(img)
                if not (dest / fname).is_file():
                    with atomic_path(dest / fname) as tmp:
                        tmp.write_bytes(tar_member_bytes(tar, m))
                index[n] = fname
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise FetchError(f"{tgz}: cannot read the emoji package ({e}); delete the file and retry") from e
    return index


_ICON_CACHE: dict[tuple[str, tuple[str, ...]], IconSet] = {}


def load_icons(names: Iterable[str] | None = None, *, quiet: bool = False) -> IconSet:
    """The genre icons (or ``names``): from the icon cache, else from the npm tarball (fetched once)."""
    _require_pillow()
    from PIL import Image

    names = tuple(sorted(set(names) if names is not None else set(GENRE_EMOJI.values()) | {FALLBACK_EMOJI}))
    dest = emoji_cache_dir()
    key = (str(dest), names)
    if key in _ICON_CACHE:
        return _ICON_CACHE[key]
    index_path = dest / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    missing = [n for n in names if n not in index or not (dest / index[n]).is_file()]
    if missing and not set(missing) <= set(index.get("_absent", [])):
        tgz = emoji_tarball(quiet=quiet)
        found = _extract_icons(tgz, missing, dest)
        index.update(found)
        index["_absent"] = sorted(set(index.get("_absent", [])) | (set(missing) - set(found)))
        index["_source"] = f"{emoji_spec()} ({tgz.name}, sha256 {file_digest(tgz)})"
        atomic_write_json(index_path, index)
    images = {}
    for n in names:
        if n in index and (dest / index[n]).is_file():
            with Image.open(dest / index[n]) as im:
                images[n] = im.convert("RGBA")
    icons = IconSet(images, index.get("_source", emoji_spec()))
    _ICON_CACHE[key] = icons
    return icons


# --------------------------------------------------------------------------------------------
# A whole built-in data set


def poster_file_name(item_id: str) -> str:
    """``<item_id>.png``, or, if the id cannot be a file name (``/``, too long), a hashed name
    (:func:`modalrec.utils.image_file_stem`, so ``items.image_dir`` finds it)."""
    return image_file_stem(item_id) + ".png"


def _fingerprint(items_digest: str, size: int) -> dict:
    return {"renderer_version": RENDERER_VERSION, "size": size, "items_digest": items_digest}


def posters_ready(name: str) -> bool:
    """True if ``name``'s posters are rendered, complete and of the current renderer version."""
    folder = builtin.posters_dir(name)
    try:
        man = json.loads((folder / "manifest.json").read_text())
        items_digest = file_digest(builtin.raw_dir(name) / "items.csv")
    except (OSError, ValueError):
        return False
    want = _fingerprint(items_digest, SIZE)
    return all(man.get(k) == v for k, v in want.items()) and man.get("count", -1) >= 0


def render_posters(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Render a poster per item of built-in ``name`` into ``raw/<name>/posters/<item_id>.png``.

    Renders into a hidden ``.posters.partial`` folder first (a rerun after an interruption keeps
    the files already written there), writes ``manifest.json`` and renames the folder into place.
    Returns the posters folder; does nothing if current posters exist (unless ``force``).
    """
    _require_pillow()
    import pandas as pd
    import PIL
    from tqdm.auto import tqdm

    b = builtin._get(name)
    if b.kind == "generated":
        raise ValueError(f"{name!r} is generated with its own images; posters are for the MovieLens built-ins")
    folder = builtin.ensure(name, quiet=not progress)
    out = builtin.posters_dir(name)
    if not force and posters_ready(name):
        return out
    items_csv = folder / "items.csv"
    items = pd.read_csv(items_csv, dtype=str, keep_default_na=False)
    fp = _fingerprint(file_digest(items_csv), SIZE)
    files = [poster_file_name(i) for i in items["item_id"]]
    if len(set(files)) != len(files):
        raise ValueError(f"{items_csv}: item ids map to the same poster file name; cannot render posters")
    icons = load_icons(quiet=not progress)
    fonts = find_fonts()

    partial = out.with_name(".posters.partial")
    state = partial / ".state.json"
    try:
        same = json.loads(state.read_text()) == fp and not force
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        atomic_write_json(state, fp)
    done = set(os.listdir(partial))
    t0 = time.time()
    rows = zip(items["title"], items["year"], items["genres"], files)
    todo = [r for r in rows if r[3] not in done]
    from modalrec.utils import bars_on

    bar = tqdm(
        todo,
        desc=f"posters {name}",
        unit="img",
        disable=not bars_on(progress),
        initial=len(files) - len(todo),
        total=len(files),
    )
    for title, year, genres, fname in bar:
        data = poster_png(title, year, genres, icons=icons)
        tmp = partial / f".{fname}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, partial / fname)
    bar.close()
    renamed = {i: f for i, f in zip(items["item_id"], files) if f != f"{i}.png"}
    manifest = {
        "name": name,
        "note": NOTE,
        "description": (
            "Images rendered from each movie's title, year and genres (genre palette and icons, "
            "title and year in DejaVu type). They are not the movies' real posters."
        ),
        "count": len(files),
        **fp,
        "renderer": "modalrec.datasets.posters",
        "fonts": {role: os.path.basename(p) if p else "PIL default font" for role, p in fonts.items()},
        "font_file": fonts["title"] or "PIL default font",
        "font_licence": FONT_LICENCE,
        "emoji": {
            "package": EMOJI_PACKAGE,
            "version": EMOJI_VERSION,
            "licence": EMOJI_LICENCE,
            "source": icons.source,
            "genre_icons": GENRE_EMOJI,
            "missing_icons": sorted(set(GENRE_EMOJI.values()) - set(icons.images)),
        },
        "pillow": PIL.__version__,
        "file_names": "<item_id>.png",
        "renamed": renamed,  # ids that cannot be file names (hashed; items.image_dir finds them)
        "render_seconds": round(time.time() - t0, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    state.unlink()
    replace_dir(partial, out)
    _record_in_raw_manifest(name, manifest)
    return out


def _record_in_raw_manifest(name: str, manifest: dict) -> None:
    """Note in ``raw/<name>/manifest.json`` that posters exist and are rendered, not real."""
    path = builtin.raw_dir(name) / "manifest.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    raw["posters"] = {
        "folder": "posters",
        "count": manifest["count"],
        "note": NOTE,
        "renderer_version": RENDERER_VERSION,
        "created_at": manifest["created_at"],
    }
    atomic_write_json(path, raw)


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m modalrec.datasets.posters ml-100k
    print(render_posters(sys.argv[1] if len(sys.argv) > 1 else "ml-100k"))
