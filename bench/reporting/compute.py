"""Bench run time: how long `make bench` took (bench/run_all.py's record) and the compute behind the tables
(the training wall times the result files record)."""

from __future__ import annotations

from typing import Any

from .fmt import is_num, md_table, runs, secs, verdict
from .page import Page
from .results import MISS, PMM, RECBOLE_RE, ROOT, RUN_ALL, SVR, SVR_ML1M
from .sasrec_recbole import sasrec_recbole
from .transfer import is_bench_pretrain


def _walls(x: Any) -> float:
    """Sum of the run wall times a transfer result file records: every `wall_s` (a number or a list
    of per-seed numbers), and a pre-train's `train_time_s` where its dict has no `wall_s`."""
    if isinstance(x, dict):
        if "wall_s" in x:
            w = x["wall_s"]
            own = sum(v for v in w if is_num(v)) if isinstance(w, list) else (w if is_num(w) else 0.0)
        elif is_num(x.get("train_time_s")):
            own = x["train_time_s"]
        else:
            own = 0.0
        return own + sum(_walls(v) for k, v in x.items() if k not in ("wall_s", "train_time_s"))
    if isinstance(x, list):
        return sum(_walls(v) for v in x)
    return 0.0


def _not_comparable(d: dict) -> str:
    """Why the recorded total cannot be checked against the target ("" if it can)."""
    before = d.get("finished_runs_before")
    failed = sum(1 for r in d["scripts"] if r.get("returncode") != 0)
    if before != 0:
        return (
            f"{before} finished run folder(s) under `{d.get('work')}` were reused, so this is not the time "
            "of a fresh run"
        )
    if d.get("only") or not d.get("complete"):
        return "a partial run (`--only`) or an interrupted one"
    if failed:
        return f"{failed} benchmark(s) failed"
    return ""


def _run_all(page: Page, d: dict) -> None:
    page.para(
        f"Source: `{page.rel(page.folder / RUN_ALL, ROOT)}`; started {d.get('started', 'n/a')}"
        + (
            f", 1-min load average before: {d['machine']['loadavg_1min_before']:.2f}"
            if is_num((d.get("machine") or {}).get("loadavg_1min_before"))
            else ""
        )
        + "."
    )
    cmd = "python bench/run_all.py" + "".join(f" {a}" for a in d.get("argv") or [])
    rows = [
        [
            f"`{r.get('script')}`",
            secs(r.get("wall_s")),
            "ok" if r.get("returncode") == 0 else f"failed (exit {r.get('returncode')})",
        ]
        for r in d["scripts"]
    ]
    total, target = d.get("total_s"), d.get("target_s")
    why = _not_comparable(d)
    ok = (total < target) if (not why and is_num(total) and is_num(target)) else None
    rows.append(["**all**", f"**{secs(total)}**", "" if d.get("complete") else "interrupted"])
    page.add(*md_table(["benchmark", "wall", "status"], rows, right=(1,)), "")
    page.para(
        f"`{cmd}`: target < {secs(target)}" + (f": {verdict(ok)}." if ok is not None else f"; not comparable: {why}.")
    )


def _transfer_compute(fname: str, t: dict, results: dict) -> tuple[float, float]:
    """(pre-training, other runs) seconds of one transfer result file."""
    table = t.get("table") or {}
    if fname == MISS and PMM in results and isinstance(table, dict):
        # its Pop / SASRec rows are the PMMRec bench's runs, reused: count them once
        table = {k: v for k, v in table.items() if k not in ("pop", "sasrec")}
    # pre-trains run by the bench itself (the ablations', or the main one without --pretrain) are
    # table rows named "pretrain ..."; the main one is also in "pretrain" when it was given
    pre_rows, rest = {}, table
    if isinstance(table, dict):
        pre_rows = {k: v for k, v in table.items() if is_bench_pretrain(str(k))}
        rest = {k: v for k, v in table.items() if k not in pre_rows}
    own_pre = 0.0 if "pretrain ml-1m" in pre_rows else _walls(t.get("pretrain"))
    return own_pre + _walls(pre_rows), _walls(rest)


def sasrec_compute(page: Page) -> list[tuple[str, list[str], float, bool]]:
    """The SASRec benchmark's training wall times: (what, source files, seconds, stopped early?)."""
    out = []
    x = sasrec_recbole(page)
    if x is not None:
        src = [f for f in x["files"] if not RECBOLE_RE.match(f)]
        t = [r["train_time_s"] for r in x["ours"] if is_num(r.get("train_time_s"))]
        if t:
            out.append((f"SASRec ml-100k, modalrec ({runs(len(t))})", src, sum(t), False))
        rb = [r for r in x["recbole"] if is_num(r.get("fit_seconds"))]
        if rb:
            rb_src = sorted({f for f in x["files"] if RECBOLE_RE.match(f)}) or src
            out.append(
                (
                    f"SASRec ml-100k, RecBole ({runs(len(rb))})",
                    rb_src,
                    sum(r["fit_seconds"] for r in rb),
                    any(r.get("stopped_by_time_budget") for r in rb),
                )
            )
    d = page.get(SVR)
    m = d.get("ml1m") if isinstance(d, dict) else None
    if isinstance(m, dict) and is_num(m.get("train_time_s")):
        out.append(("SASRec ml-1m, modalrec", [SVR], m["train_time_s"], False))
    else:
        d = page.get(SVR_ML1M)
        if isinstance(d, dict) and is_num(d.get("mean_epoch_s")) and isinstance(d.get("epochs_run"), int):
            out.append(
                (
                    "SASRec ml-1m, modalrec",
                    [SVR_ML1M],
                    d["mean_epoch_s"] * d["epochs_run"],
                    d.get("best_epoch") == d.get("epochs_run"),
                )
            )  # best = last epoch: not early-stopped
    return out


def _compute(page: Page) -> None:
    rows, total_s, lower = [], 0.0, False
    for fname in (PMM, MISS):
        t = page.results.get(fname)
        if isinstance(t, dict):
            page.used.add(fname)
            pre_s, runs_s = _transfer_compute(fname, t, page.results)
            rows.append([f"`{fname}`", secs(pre_s), secs(runs_s), secs(pre_s + runs_s)])
            total_s += pre_s + runs_s
    for name, files, wall, partial in sasrec_compute(page):
        rows.append(
            [
                f"{name}: " + ", ".join(f"`{f}`" for f in files),
                "",
                secs(wall) + (" (at least)" if partial else ""),
                secs(wall),
            ]
        )
        total_s += wall
        lower |= partial
    if not rows:
        return
    rows.append(["**all**", "", "", f"**{secs(total_s)}**" + (" (at least)" if lower else "")])
    page.para(
        "Compute behind the tables: the sum of the wall times the result files record for their "
        "training runs (pre-trains; every seed of every setting, ablations and cold items included; "
        "both SASRec libraries). A fresh `make bench` recomputes all of them one after the other, so "
        'this bounds its duration from below. "At least": a run in the sum was stopped (by a time '
        "budget, or before early stopping ended it), so a complete one takes longer:"
    )
    page.add(
        *md_table(
            ["result file", "pre-training", "fine-tune / scratch / eval / training runs", "total"],
            rows,
            right=(1, 2, 3),
        ),
        "",
    )


def section_bench_time(page: Page) -> None:
    """How long `make bench` took (bench/run_all.py's own record) and the compute behind the tables."""
    d = page.get(RUN_ALL)
    if isinstance(d, dict) and d.get("scripts"):
        _run_all(page, d)
    else:
        page.para("**Not timed yet:** `python bench/run_all.py` records its own wall time per benchmark here.")
    _compute(page)
