"""Numbers and markdown pieces as the results page shows them."""

from __future__ import annotations

import math
import re
import statistics
from typing import Any


def is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def f4(x) -> str:
    return "n/a" if not is_num(x) else f"{x:.4f}"


def pm(stat: dict | None, runs: int | None = None) -> str:
    """'mean ± std' of a {"mean","std"} summary (one run: the value alone)."""
    if not stat or not is_num(stat.get("mean")):
        return "n/a"
    if runs is not None and runs <= 1:
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat.get('std', 0.0):.4f}"


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def secs(x) -> str:
    """A duration for reading: ms below a second, minutes beside long ones."""
    if not is_num(x):
        return "n/a"
    if x == 0:
        return "0 s"
    if x < 1:
        return f"{x * 1000:.0f} ms" if x >= 0.01 else f"{x * 1000:.2f} ms"
    if x < 10:
        return f"{x:.2f} s"
    if x < 120:
        return f"{x:.1f} s"
    return f"{x:.0f} s ({x / 60:.1f} min)"


def num(x, nd: int = 1) -> str:
    if not is_num(x):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def times(x) -> str:
    """A ratio as '3.81x'."""
    if not is_num(x):
        return "n/a"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def md_table(headers: list[str], rows: list[list[Any]], right: tuple[int, ...] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return out


def code(cmds: list[str]) -> list[str]:
    return ["```bash", *cmds, "```"]


def details(summary: str, lines: list[str]) -> list[str]:
    return ["<details><summary>" + summary + "</summary>", "", *lines, "", "</details>"]


def slug(title: str) -> str:
    s = re.sub(r"[^\w\- ]", "", title.lower()).strip()
    return re.sub(r" ", "-", s)
