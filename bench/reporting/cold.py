"""Cold items: zero-shot HR@10 on movies never seen in pre-training (the transfer files' cold_ml_latest_small)."""

from __future__ import annotations

from typing import Any

from modalrec.report import plots

from .fmt import f4, is_num, md_table, num
from .page import Page
from .results import MISS, PMM


def _entries(page: Page) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """([(file, model, result)], the transfer files present)."""
    entries, srcs = [], []
    for fname in (PMM, MISS):
        d = page.get(fname)
        if isinstance(d, dict):
            srcs.append(fname)
            for k, v in (d.get("cold_ml_latest_small") or {}).items():
                entries.append((fname, k, v))
    return entries, srcs


def _table(entries: list) -> tuple[list[list], list[float], list[tuple[str, float]]]:
    """(table rows, random-ranking HR@10 of every entry, (name, cold HR@10) bars)."""
    rows, rnd, bars = [], [], []
    for fname, k, v in entries:
        if isinstance(v, dict):
            rows.append(
                [
                    k,
                    num(v.get("cold_test_targets")),
                    num(v.get("cold_items_in_catalogue")),
                    f4(v.get("cold_hr@10")),
                    f4(v.get("cold_ndcg@10")),
                    f4(v.get("all_hr@10")),
                ]
            )
            if is_num(v.get("random_cold_hr@10")):
                rnd.append(v["random_cold_hr@10"])
            if is_num(v.get("cold_hr@10")):
                bars.append((k, v["cold_hr@10"]))
        else:
            rows.append([k, "", "", str(v), "", ""])
    return rows, rnd, bars


def _zero_shot_ratios(page: Page, entries: list, random_hr: float | None) -> None:
    zs = [(k, v) for _, k, v in entries if isinstance(v, dict) and "zero-shot" in k and is_num(v.get("cold_hr@10"))]
    pop = next(
        (v for _, k, v in entries if isinstance(v, dict) and k.startswith("pop") and is_num(v.get("cold_hr@10"))), None
    )
    for k, v in zs:
        bits = []
        if pop and pop["cold_hr@10"] > 0:
            bits.append(f"{v['cold_hr@10'] / pop['cold_hr@10']:.1f}x Pop's")
        if random_hr is not None and random_hr > 0:
            bits.append(f"{v['cold_hr@10'] / random_hr:.0f}x a random ranking's")
        if bits:
            page.para(
                f"{k}: HR@10 on never-seen movies {' and '.join(bits)}. A content model can rank a movie from "
                "its title, genres and poster alone; an ID model has no embedding for it."
            )
    _all_targets_caveat(page, zs, pop)


def _all_targets_caveat(page: Page, zs: list, pop: dict | None) -> None:
    """Say so when Pop beats the zero-shot models over all test targets (the cold subset is a small part)."""
    best = max((v for _, v in zs if is_num(v.get("all_hr@10"))), key=lambda v: v["all_hr@10"], default=None)
    if not best or not pop or not is_num(pop.get("all_hr@10")) or pop["all_hr@10"] <= best["all_hr@10"]:
        return
    page.para(
        f"**Over all test targets, Pop beats every zero-shot model** (HR@10 {pop['all_hr@10']:.4f} against "
        f"{best['all_hr@10']:.4f} for the best): the never-seen movies are a small part of the targets, and "
        "without training on the target a content model does not know which movies are popular there. The "
        "popularity prior (the section above) gives a zero-shot model both."
    )


def section_cold(page: Page) -> None:
    page.add("### Cold items: movies never seen in pre-training", "")
    entries, srcs = _entries(page)
    if not srcs:
        page.not_run("pmmrec_transfer.py")
        return
    if not entries:
        page.para(
            "**Not run yet** (the transfer JSON has no cold-item results: run without `--skip-cold` / "
            "`--quick`): `python bench/pmmrec_transfer.py`"
        )
        return
    for fname in srcs:
        if not (page.get(fname).get("cold_ml_latest_small")):
            page.para(f"`{fname}`: no cold-item results (not run yet).")
    page.para(
        "Zero-shot transfer to ml-latest-small-2016 (every movie kept): metrics over the test targets whose "
        "movie (title and year) never occurs in the pre-training data. Sources: "
        + ", ".join(f"`{s}`" for s in srcs)
        + "."
    )
    rows, rnd, bars = _table(entries)
    distinct_rnd = sorted(set(round(x, 12) for x in rnd))
    random_hr = rnd[0] if len(distinct_rnd) == 1 else None  # one expected value for every model: shown once
    if random_hr is not None:
        rows.append(["random ranking (expected)", "", "", f4(random_hr), "", ""])
        bars.append(("random ranking (expected)", random_hr))
    page.add(
        *md_table(
            [
                "model",
                "cold test targets",
                "cold items in the catalogue",
                "HR@10 on cold targets",
                "NDCG@10 on cold targets",
                "HR@10 on all targets",
            ],
            rows,
            right=(1, 2, 3, 4, 5),
        ),
        "",
    )
    _zero_shot_ratios(page, entries, random_hr)
    path = (
        page.plot(
            "cold_hr10",
            lambda p: plots.hbar(
                p,
                [b[0] for b in bars],
                [b[1] for b in bars],
                groups=[b[0].split(" ")[0] for b in bars],
                annotations=[f"{b[1]:.4f}" for b in bars],
                title="HR@10 on test targets never seen in pre-training",
                xlabel="HR@10 (cold targets)",
            ),
        )
        if bars
        else None
    )
    page.image(path, "cold-item HR@10")
