"""The page being written: the result files it reads (and which of them it used), its lines, its plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from modalrec.report import plots

from .results import ROOT, date_of, labels, load_of


class Page:
    def __init__(
        self, results: dict[str, Any], errors: dict[str, str], folder: Path, out: Path, img_dir: Path, draw: bool
    ):
        self.results, self.errors, self.folder = results, errors, folder
        self.out, self.img_dir, self.draw = out, img_dir, draw
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.images: dict[str, Path] = {}
        self.matplotlib_missing = False

    def child(self) -> "Page":
        """A page sharing this one's data, used files and plots, with lines of its own."""
        c = Page(self.results, self.errors, self.folder, self.out, self.img_dir, self.draw)
        c.used, c.images = self.used, self.images
        return c

    # data
    def get(self, name: str) -> Any:
        if name in self.results:
            self.used.add(name)
            return self.results[name]
        return None

    def has(self, name: str) -> bool:
        return name in self.results

    # text
    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def para(self, *lines: str) -> None:
        self.lines.extend([*lines, ""])

    def rel(self, path: Path, base: Path | None = None) -> str:
        return Path(os.path.relpath(path, (base or self.out.parent))).as_posix()

    def script(self, name: str) -> str:
        return f"python bench/{name}"

    def not_run(self, script: str, extra: str = "") -> None:
        self.para(f"**Not run yet:** `{self.script(script)}`{extra}")

    def header(self, d: dict, fname: str) -> None:
        """Source file, date, machine load, labels for quick / partial runs."""
        for lab in labels(d):
            self.para(lab)
        bits = [f"Source: `{self.rel(self.folder / fname, ROOT)}`", f"date: {date_of(d) or 'not recorded in the JSON'}"]
        ld = load_of(d)
        if ld:
            bits.append(ld)
        self.para("; ".join(bits) + ".")

    def section(self, title: str, fname: str, script: str) -> dict | None:
        """Open a section on one result file: its heading, then its header, or "not run yet" (None)."""
        self.add(f"### {title}", "")
        d = self.get(fname)
        if not isinstance(d, dict):
            self.not_run(script)
            return None
        self.header(d, fname)
        return d

    # plots
    def plot(self, name: str, draw: Callable[[Path], Any]) -> Path | None:
        if not self.draw:
            return None
        path = self.img_dir / f"{name}.png"
        try:
            if draw(path) is None and not path.is_file():
                return None
        except plots.MatplotlibMissing:
            self.matplotlib_missing = True
            return None
        self.images[name] = path
        return path

    def image(self, path: Path | None, alt: str) -> None:
        if path is not None:
            self.para(f"![{alt}]({self.rel(path)})")


def guarded(page: Page, fn: Callable[[Page], None]) -> None:
    """A section that cannot be rendered says so instead of stopping the whole report."""
    n = len(page.lines)
    try:
        fn(page)
    except Exception as e:  # a result file in an unexpected shape
        del page.lines[n + 2 :]
        page.para(f"**Could not render this section:** {type(e).__name__}: {e}")
