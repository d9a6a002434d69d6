"""The speed sections: item content, evaluation, data preparation, CLI start-up, MISSRec interest
discovery, and the speed-ratio plot that heads them."""

from __future__ import annotations

import math
import re

from modalrec.report import plots

from .fmt import code, is_num, md_table, num, secs, times, verdict
from .page import Page
from .results import machine_of


def _train_step(page: Page, ts: dict, ratios: list) -> None:
    page.para(
        f"Training step ({ts.get('setting')}): {num(ts.get('slots'))} slots, "
        f"{num(ts.get('padding_slots'))} of "
        f"them padding, {num(ts.get('unique_items'))} unique items."
    )
    rows = [
        [
            "naive: every slot through the full tower",
            secs(ts.get("naive_step_s")),
            len(ts.get("all_naive_s") or []),
            f"{ts.get('loss_naive', float('nan')):.6f}",
        ],
        [
            "cached prefix + deduplicated items (fp16 cache)",
            secs(ts.get("cached_step_s")),
            len(ts.get("all_cached_s") or []),
            f"{ts.get('loss_cached_fp16', float('nan')):.6f}",
        ],
    ]
    page.add(*md_table(["training step", "time (median)", "steps timed", "loss"], rows, right=(1, 2, 3)), "")
    sp = ts.get("speedup")
    if not is_num(sp) and is_num(ts.get("naive_step_s")) and is_num(ts.get("cached_step_s")):
        sp = ts["naive_step_s"] / ts["cached_step_s"]
    g16, g32 = ts.get("grad_diff_fp16_cache") or {}, ts.get("grad_diff_fp32_cache") or {}
    page.para(
        f"Speed-up: **{times(sp)}**. Gradient difference to the naive step (relative norm): "
        f"{g16.get('rel_norm', float('nan')):.1e} with the fp16 cache, "
        f"{g32.get('rel_norm', float('nan')):.1e} "
        f"with an fp32 cache (loss {ts.get('loss_cached_fp32', float('nan')):.6f}): the rest is fp16 "
        f"rounding. Building the prefix store: {secs(ts.get('prefix_store_build_s'))}."
    )
    if is_num(sp):
        ratios.append(("content training step: cached + deduplicated over naive", sp, False))


def _encoding(page: Page, enc: dict, ratios: list) -> None:
    rows = []
    for k, v in enc.items():
        if "skipped" in v:
            rows.append([k, f"skipped: {v['skipped']}", "", "", "", "", ""])
            continue
        rows.append(
            [
                f"{k} ({v.get('tower')})",
                num(v.get("items")),
                secs(v.get("pipeline_s")),
                secs(v.get("raw_s")),
                num(v.get("pipeline_items_per_s")),
                num(v.get("raw_items_per_s")),
                times(v.get("ratio")),
            ]
        )
        if is_num(v.get("ratio")):
            ratios.append((f"{k} encoding: feature-store pipeline over raw forward", v["ratio"], False))
    if rows:
        page.para(
            "Encoding into the feature store (pipeline) against the bare network forward over the same items "
            "(raw); times are medians:"
        )
        page.add(
            *md_table(
                ["tower", "items", "pipeline", "raw", "pipeline items/s", "raw items/s", "pipeline / raw"],
                rows,
                right=(1, 2, 3, 4, 5, 6),
            ),
            "",
        )


def section_content(page: Page, ratios: list) -> None:
    d = page.section("Item content: encoding and the cached training step", "content_speed.json", "content_speed.py")
    if d is None:
        return
    m = machine_of(d)
    if m:
        page.para("Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()) + ".")
    if d.get("note"):
        page.para(f"Note: {d['note']}.")
    ts = d.get("train_step") or {}
    if ts:
        _train_step(page, ts, ratios)
    _encoding(page, d.get("encoding") or {}, ratios)
    page.add(*code(["python bench/content_speed.py"]), "")


def section_eval(page: Page, ratios: list) -> None:
    d = page.section("Evaluation throughput", "eval_speed.json", "eval_speed.py")
    if d is None:
        return
    env = d.get("env") or {}
    page.para(
        "Exact full ranking with history exclusion, pessimistic ties and all metrics (`evaluate`) against a "
        "bare `matmul + topk` over the same random matrices; fastest of the repeats. "
        + (
            f"torch {env.get('torch')}, {env.get('threads')} threads, batch size {env.get('batch_size')}."
            if env
            else ""
        )
    )
    rows = []
    for r in d.get("rows") or []:
        rows.append(
            [
                r.get("case"),
                f"{num(r.get('users'))} x {num(r.get('items'))}",
                r.get("method"),
                secs(r.get("seconds")),
                f"{r.get('pairs_per_s', float('nan')):.3g}",
                f"{r.get('ratio_vs_bare', float('nan')):.2f}",
                r.get("repeats"),
            ]
        )
    page.add(
        *md_table(
            ["case", "users x items", "method", "time", "user-item pairs/s", "throughput / bare", "repeats"],
            rows,
            right=(3, 4, 5, 6),
        ),
        "",
    )
    big = [r for r in d.get("rows") or [] if r.get("method") == "ours" and is_num(r.get("ratio_vs_bare"))]
    if big:
        b = max(big, key=lambda r: (r.get("users") or 0) * (r.get("items") or 0))
        ratios.append(
            (
                f"evaluation {num(b.get('users'))} x {num(b.get('items'))}: full metrics over bare top-k",
                b["ratio_vs_bare"],
                False,
            )
        )
    page.add(*code(["python bench/eval_speed.py"]), "")


def _prepare_row(r: dict) -> list:
    tgt = r.get("target")
    tcell, ok = "", None
    if isinstance(tgt, dict):
        ok = bool(
            r.get("prepare_seconds", math.inf) < tgt.get("seconds", math.inf)
            and r.get("peak_rss_mib", math.inf) < tgt.get("peak_rss_mib", math.inf)
        )
        tcell = f"< {num(tgt.get('seconds'))} s and < {num(tgt.get('peak_rss_mib'), 0)} MiB"
    return [
        r.get("name"),
        num(r.get("events_read")),
        num(r.get("users")),
        num(r.get("items")),
        num(r.get("interactions")),
        secs(r.get("prepare_seconds")),
        ", ".join(f"{x:.2f}" for x in r.get("runs_prepare_seconds") or []),
        secs(r.get("read_seconds")),
        num(r.get("peak_rss_mib"), 0),
        tcell,
        verdict(ok) if tgt else "",
    ]


def section_prepare(page: Page) -> None:
    d = page.section("Data preparation", "prepare_speed.json", "prepare_speed.py")
    if d is None:
        return
    if d.get("note"):
        page.para(f"Note: {d['note']}.")
    rows = [_prepare_row(r) for r in d.get("results") or []]
    page.add(
        *md_table(
            [
                "data set",
                "events read",
                "users",
                "items",
                "interactions kept",
                "prepare (fastest)",
                "prepare s per run",
                "read again (warm)",
                "peak RSS MiB",
                "target",
                "met?",
            ],
            rows,
            right=(1, 2, 3, 4, 5, 7, 8),
        ),
        "",
    )
    inv = (
        "python bench/prepare_speed.py"
        + (f" --repeat {d['repeat']}" if d.get("repeat") else "")
        + (f" --split {d['split']}" if d.get("split") else "")
    )
    page.add(*code([inv]), "")


def section_cli(page: Page) -> None:
    d = page.section("CLI start-up", "cli_startup.json", "cli_startup.py")
    if d is None:
        return
    target = d.get("target_s")
    rows = []
    for name, v in d.items():
        if not isinstance(v, dict) or "median_s" not in v:
            continue
        is_cli = name.startswith("modalrec")
        ok = (v.get("max_s", math.inf) < target) if (is_cli and is_num(target)) else None
        rows.append(
            [
                f"`{name}`",
                secs(v.get("median_s")),
                secs(v.get("max_s")),
                len(v.get("runs") or []),
                f"< {secs(target)} (slowest run)" if is_cli and is_num(target) else "for comparison",
                verdict(ok) if ok is not None else "",
            ]
        )
    page.para("Each command in a fresh interpreter:")
    page.add(*md_table(["command", "median", "slowest", "runs", "target", "met?"], rows, right=(1, 2, 3)), "")
    page.add(*code(["python bench/cli_startup.py"]), "")


def _default_interest_ratio() -> float | None:
    try:
        from modalrec.models.missrec import MISSRecConfig  # noqa: F401 - imports torch

        return MISSRecConfig().interest_ratio
    except Exception:
        try:
            from modalrec.config import build_config

            return build_config(model="missrec").model.interest_ratio
        except Exception:
            return None


def _interest_reference(rows: list[dict]) -> tuple[dict | None, str]:
    """The row the target is checked on (the model's default ratio, else the first) and how it was chosen."""
    default = _default_interest_ratio()
    ref = next((r for r in rows if is_num(default) and abs(r.get("ratio", -1) - default) < 1e-12), None)
    if ref is None and rows:
        return rows[0], "the first ratio measured"
    return ref, "the model's default ratio"


def _interest_limit(tgt) -> float | None:
    """Seconds of a target such as "default ratio under 2 s" (or a bare number)."""
    m = re.search(r"under\s+([0-9.]+)\s*s", tgt) if isinstance(tgt, str) else None
    return float(m.group(1)) if m else (tgt if is_num(tgt) else None)


def section_interest(page: Page) -> None:
    d = page.section("MISSRec interest discovery", "interest_discovery.json", "interest_discovery.py")
    if d is None:
        return
    page.para(
        f"One k-means pass over every item's adapted text and image vectors on {d.get('dataset')} (options: "
        + " ".join(f"`{o}`" for o in d.get("overrides") or [])
        + f"), {d.get('threads')} thread(s), median of "
        "the timed runs."
    )
    rows = d.get("rows") or []
    tgt = d.get("target")
    limit = _interest_limit(tgt)
    ref, how = _interest_reference(rows)
    out = []
    for r in rows:
        is_ref = r is ref
        out.append(
            [
                f"{r.get('ratio')}" + (" (default)" if is_ref and how.startswith("the model") else ""),
                num(r.get("items")),
                num(r.get("vectors")),
                num(r.get("dim")),
                num(r.get("k")),
                num(r.get("clusters_used")),
                secs(r.get("median_s")),
                len(r.get("times_s") or []),
                (f"< {secs(limit)}" if is_ref and limit is not None else ""),
                (verdict(r.get("median_s", math.inf) < limit) if is_ref and limit is not None else ""),
            ]
        )
    page.add(
        *md_table(
            [
                "interest ratio",
                "items",
                "vectors",
                "dim",
                "clusters K",
                "clusters used",
                "median time",
                "runs",
                "target",
                "met?",
            ],
            out,
            right=(1, 2, 3, 4, 5, 6, 7),
        ),
        "",
    )
    if tgt is not None:
        page.para(f'Target (from the JSON): "{tgt}"; checked on {how}.')
    page.add(*code([d.get("command") or "python bench/interest_discovery.py"]), "")


def plot_ratios(page: Page, ratios: list) -> None:
    if not ratios:
        return
    path = page.plot(
        "speed_ratios",
        lambda p: plots.hbar(
            p,
            [r[0] for r in ratios],
            [r[1] for r in ratios],
            groups=[r[0].split(" ")[0] for r in ratios],
            annotations=[("≥ " if r[2] else "") + times(r[1]) for r in ratios],
            log=True,
            reference=1.0,
            reference_label="1x: same speed",
            title="Speed-up of the first named over the second (log scale)",
            xlabel="ratio (log scale)",
            width=8.0,
        ),
    )
    page.image(path, "speed ratios")
    page.para(
        "Speed-up of the first named over the second, each from the section below named in its label "
        '(above 1x: faster); "≥" marks a lower bound (a run cut by its time budget).'
    )
