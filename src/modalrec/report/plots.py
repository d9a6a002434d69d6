"""Small, deterministic PNG plots for run folders and benchmark reports.

matplotlib is optional (``pip install 'modalrec[report]'``) and imported only when a plot is drawn,
never at module import (``modalrec --help`` stays fast). Figures are drawn on matplotlib's Agg
canvas directly (``matplotlib.figure.Figure``), without pyplot: nothing global is changed, so this
is safe inside a notebook or a training process. Files are written atomically (a temp file in the
same folder, then a rename) and without the "Software" PNG tag, so the same data give the same
bytes with the same matplotlib.

* :func:`learning_curve`: a run folder's ``metrics.jsonl`` -> ``learning_curve.png`` (validation
  metric and training loss per epoch); the trainer calls it after every run.
* :func:`hbar`, :func:`curves`: the building blocks of ``bench/report.py``'s plots.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence, TypeGuard

from modalrec.utils import atomic_path

SIZE = (7.0, 4.0)  # inches
DPI = 110
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


class MatplotlibMissing(ImportError):
    """matplotlib is not installed: plots are skipped."""


def _figure_classes():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MatplotlibMissing("matplotlib is not installed (pip install 'modalrec[report]')") from e
    return Figure, FigureCanvasAgg


def available() -> bool:
    """True if matplotlib can be imported."""
    try:
        _figure_classes()
    except MatplotlibMissing:
        return False
    return True


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = SIZE):
    """(figure, 2-D array of axes) on an Agg canvas, constrained layout."""
    Figure, Canvas = _figure_classes()
    fig = Figure(figsize=size, layout="constrained")
    Canvas(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def file_mode(path: Path) -> int:
    """The permissions a rewritten ``path`` keeps: its own, or rw-r--r-- for a new file (the temp file
    of an atomic write is created private)."""
    return path.stat().st_mode & 0o777 if path.exists() else 0o644


def save_figure(fig, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; returns the path."""
    path = Path(path)
    mode = file_mode(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
        os.chmod(tmp, mode)
    return path


def read_epochs(metrics: str | Path) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` (the final record and unreadable lines left out).

    A missing or empty file gives ``[]``.
    """
    metrics = Path(metrics)
    if not metrics.is_file():
        return []
    out = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and not rec.get("final") and isinstance(rec.get("epoch"), int):
            out.append(rec)
    return out


def _finite(x) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and math.isfinite(x)


def validation_curve(metrics: str | Path, key: str = "ndcg@10") -> tuple[list[int], list[float]]:
    """(epochs, validation ``key``) of the epochs that were evaluated."""
    xs, ys = [], []
    for r in read_epochs(metrics):
        v = (r.get("valid") or {}).get(key)
        if _finite(v):
            xs.append(r["epoch"])
            ys.append(float(v))
    return xs, ys


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curve(
    run_dir: str | Path, out: str | Path | None = None, key: str = "ndcg@10", title: str | None = None
) -> Path | None:
    """Plot validation ``key`` and the training loss per epoch from ``run_dir/metrics.jsonl``.

    Writes ``out`` (default ``run_dir/learning_curve.png``) and returns its path; returns None and
    writes nothing when the file is missing or holds no epoch (e.g. a zero-shot run with
    ``train.epochs=0``). Raises :class:`MatplotlibMissing` without matplotlib.
    """
    run_dir = Path(run_dir)
    recs = read_epochs(run_dir / "metrics.jsonl")
    loss = [(r["epoch"], float(r["train_loss"])) for r in recs if _finite(r.get("train_loss"))]
    val = [
        (r["epoch"], float(r["valid"][key]))
        for r in recs
        if isinstance(r.get("valid"), dict) and _finite(r["valid"].get(key))
    ]
    if not loss and not val:
        return None
    fig, axes = new_figure(1, 2)
    ax_v, ax_l = axes[0]
    if val:
        xs, ys = zip(*val)
        ax_v.plot(xs, ys, marker="o", markersize=3, color=PALETTE[0])
        best = max(range(len(ys)), key=lambda i: (ys[i], -i))  # first epoch with the best value
        ax_v.plot(
            [xs[best]],
            [ys[best]],
            marker="*",
            markersize=11,
            color=PALETTE[3],
            linestyle="none",
            label=f"best: epoch {xs[best]}, {ys[best]:.4f}",
        )
        ax_v.legend(loc="lower right", fontsize=8)
    else:
        ax_v.text(0.5, 0.5, "no validation", ha="center", va="center", transform=ax_v.transAxes)
    ax_v.set_xlabel("epoch")
    ax_v.set_ylabel(f"validation {key}")
    ax_v.grid(alpha=0.3)
    if loss:
        xs, ys = zip(*loss)
        ax_l.plot(xs, ys, marker="o", markersize=3, color=PALETTE[1])
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss")
    ax_l.grid(alpha=0.3)
    for ax in (ax_v, ax_l):
        _integer_epochs(ax)
    fig.suptitle(title or run_dir.name, fontsize=10)
    return save_figure(fig, out if out is not None else run_dir / "learning_curve.png")


def _group_colours(groups: Sequence[str] | None, n: int) -> list[str]:
    if groups is None:
        return [PALETTE[0]] * n
    order: dict[str, int] = {}
    for g in groups:
        order.setdefault(g, len(order))
    return [PALETTE[order[g] % len(PALETTE)] for g in groups]


def hbar(
    path: str | Path,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    errors: Sequence[float] | None = None,
    groups: Sequence[str] | None = None,
    annotations: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    log: bool = False,
    reference: float | None = None,
    reference_label: str = "",
    width: float = SIZE[0],
) -> Path:
    """Horizontal bars, first label on top; ``errors`` as error bars, ``groups`` pick the colours,
    ``annotations`` are written at the end of each bar, ``reference`` draws a vertical line."""
    n = len(values)
    height = min(8.0, max(2.4, 0.38 * n + 1.3))
    fig, axes = new_figure(1, 1, size=(width, height))
    ax = axes[0][0]
    ys = list(range(n))
    errs = [e if _finite(e) and e > 0 else 0.0 for e in errors] if errors is not None else [0.0] * n
    ax.barh(ys, values, color=_group_colours(groups, n), height=0.7)
    for y, v, e in zip(ys, values, errs):  # one error bar per bar that has one
        if e > 0:
            ax.errorbar([v], [y], xerr=[e], color="#222222", capsize=3, elinewidth=1, linestyle="none")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if reference is not None:
        ax.axvline(reference, color="#444444", linewidth=1, linestyle="--", label=reference_label or None)
        if reference_label:
            ax.legend(loc="lower right", fontsize=8)
    if annotations is not None:
        top = max([v + e for v, e in zip(values, errs)] or [1.0])
        for y, v, e, a in zip(ys, values, errs, annotations):
            x = (v + e) * 1.12 if log else v + e + 0.03 * top
            ax.text(x, y, a, va="center", fontsize=8)
        lo, hi = ax.get_xlim()
        longest = max((len(a) for a in annotations), default=0)
        ax.set_xlim(lo, hi * 3.0 if log else hi + top * (0.1 + 0.018 * longest))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def curve_panels(
    path: str | Path,
    panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[float], Sequence[float]]]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    integer_x: bool = False,
    ncols: int = 3,
) -> Path:
    """Small multiples: one panel per ``(panel title, series)``, each series ``(label, xs, ys)`` (e.g. one per
    seed) in shades of the panel's colour, its best point starred; every panel on the same y axis."""
    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, size=(SIZE[0], 1.9 * nrows + 0.5))
    ys_all = [y for _, series in panels for _, _, ys in series for y in ys]
    lo, hi = (min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        name, series = panels[k]
        colour = PALETTE[k % len(PALETTE)]
        for j, (label, xs, ys) in enumerate(series):
            alpha = 1.0 - 0.25 * (j % 3)
            ax.plot(xs, ys, marker="o", markersize=2, linewidth=1.0, color=colour, alpha=alpha, label=label)
            if ys:
                b = max(range(len(ys)), key=lambda i: (ys[i], -i))
                ax.plot([xs[b]], [ys[b]], marker="*", markersize=7, color=colour, alpha=alpha, linestyle="none")
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if integer_x:
            _integer_epochs(ax)
        if k % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=7)
        if k >= n - ncols:
            ax.set_xlabel(xlabel, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def curves(
    path: str | Path,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    integer_x: bool = False,
    log_x: bool = False,
) -> Path:
    """One line per ``(label, xs, ys)``; the best point of each line is starred; the legend goes below."""
    ncol = 2 if len(series) > 3 else 1
    legend_rows = math.ceil(len(series) / ncol)
    fig, axes = new_figure(1, 1, size=(SIZE[0], SIZE[1] + 0.22 * legend_rows))
    ax = axes[0][0]
    for i, (label, xs, ys) in enumerate(series):
        c = PALETTE[i % len(PALETTE)]
        ax.plot(xs, ys, marker="o", markersize=2.5, linewidth=1.2, color=c, label=label)
        if ys:
            b = max(range(len(ys)), key=lambda j: (ys[j], -j))
            ax.plot([xs[b]], [ys[b]], marker="*", markersize=9, color=c, linestyle="none")
    if log_x:
        ax.set_xscale("log")
    if integer_x:
        _integer_epochs(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)
    return save_figure(fig, path)
