"""Zero-shot with the popularity prior (zero_shot_prior.json) and the settings grids (grid_*.json)."""

from __future__ import annotations

from pathlib import Path

from modalrec.report import plots

from .fmt import f4, md_table
from .page import Page

ZERO_SHOT = "zero_shot_prior.json"


def section_zero_shot_prior(page: Page) -> None:
    d = page.section("Zero-shot transfer with the target's popularity prior", ZERO_SHOT, "zero_shot_prior.py")
    if d is None:
        return
    pres = d.get("pretrains") or {"": d.get("pretrain", {})}
    page.para(
        "Pre-trained runs: "
        + "; ".join(f"{name + ': ' if name else ''}{p.get('model')} on {p.get('dataset')}" for name, p in pres.items())
        + ". Each is moved to each target with no gradient step (`train.epochs=0`), then evaluated as it is "
        "and with `modalrec evaluate --pop-prior`: score + beta * log(1 + training count of the item on the "
        "target), beta (in units of the spread of the model's scores) chosen on the target's validation "
        "NDCG@10 before test was read."
        + (
            " With several pre-trained runs, the zero-shot model of a target is the one with the highest "
            "validation NDCG@10 with its prior (marked chosen)."
            if len(pres) > 1
            else ""
        )
    )
    rows = []
    for target, chosen in d.get("table", {}).items():
        only = chosen.get("pretrain") or Path(str((d.get("pretrain") or {}).get("run", ""))).name
        cands = (d.get("candidates") or {}).get(target) or {only: chosen}
        for name, r in cands.items():
            mark = " (chosen)" if len(cands) > 1 and name == chosen.get("pretrain") else ""
            valid = _prior_valid(r["prior"])
            rows.append(
                [
                    target,
                    (name or "") + mark,
                    f4(chosen["pop"]["ndcg@10"]),
                    f4(valid),
                    f4(r["zero_shot"]["ndcg@10"]),
                    f4(r["zero_shot_prior"]["ndcg@10"]),
                    f"{r['prior']['beta']:g}",
                    f"{r['ratio_to_pop']['zero_shot_prior']:.2f}x",
                    f4(r["zero_shot_prior"]["hr@10"]),
                ]
            )
    page.add(
        *md_table(
            [
                "target",
                "pre-trained run",
                "Pop NDCG@10",
                "+ prior valid NDCG@10",
                "zero-shot (test)",
                "zero-shot + prior (test)",
                "beta",
                "vs Pop",
                "+ prior HR@10",
            ],
            rows,
        ),
        "",
    )
    cmds = [c for t, r in d.get("table", {}).items() for c in r["commands"]]
    cmds += [
        c
        for t, cs in (d.get("candidates") or {}).items()
        for n, r in cs.items()
        if n != d["table"][t].get("pretrain")
        for c in r["commands"]
    ]
    page.para("Commands: " + "; ".join(f"`{c}`" for c in cmds))


def _prior_valid(prior: dict) -> float | None:
    """Validation NDCG@10 at the chosen beta (JSON keys of the per-beta table are strings)."""
    by_beta = {float(b): v for b, v in (prior.get("valid_ndcg@10_by_beta") or {}).items()}
    return by_beta.get(float(prior.get("beta", float("nan"))))


def section_grids(page: Page) -> None:
    names = sorted(n for n in page.results if n.startswith("grid_"))
    page.add("### Settings chosen on validation (declared grids)", "")
    if not names:
        page.not_run("grid.py bench/grids/NAME.yaml")
        return
    page.para(
        "Each grid was written into `bench/grids/` and committed before it ran; every variant runs on the "
        "same seeds; the choice is made on mean validation NDCG@10 and test is only reported, with the "
        "paired per-seed difference to the grid's baseline."
    )
    for name in names:
        _grid(page, name)


def _grid(page: Page, fname: str) -> None:
    d = page.get(fname)
    grid, summary = d["grid"], d["summary"]
    page.para(f"**{grid['name']}** (`{fname}`, {d.get('date', '')}): {grid.get('question', '').strip()}")
    cold = any("test_cold_hr@10" in row for row in summary["variants"].values())
    rows = []
    for v, row in summary["variants"].items():
        diff = row.get("paired_test_diff_vs_baseline")
        rows.append(
            [
                v + (" (chosen)" if v == summary["winner_on_validation"] else ""),
                f"{row['valid_ndcg@10']['mean']:.4f} ± {row['valid_ndcg@10']['std']:.4f}",
                f"{row['test_ndcg@10']['mean']:.4f} ± {row['test_ndcg@10']['std']:.4f}",
                "" if diff is None else f"{diff['mean']:+.4f} ({', '.join(f'{x:+.4f}' for x in diff['per_seed'])})",
            ]
            + ([_cold_cell(row)] if cold else [])
            + [f"`{grid['variants'][v]}`"]
        )
    page.add(
        *md_table(
            ["variant", "valid NDCG@10", "test NDCG@10", "paired test diff vs baseline"]
            + (["HR@10 on new-item targets"] if cold else [])
            + ["command"],
            rows,
        ),
        "",
    )
    _grid_curves(page, d)


def _grid_curves(page: Page, d: dict) -> None:
    """Validation NDCG@10 per epoch: a panel per trained variant, a line per seed (grid files that keep curves)."""
    panels = []
    for variant, by_seed in d.get("runs", {}).items():
        series = [
            (f"seed {seed}", r["curve"]["epochs"], r["curve"]["ndcg@10"])
            for seed, r in by_seed.items()
            if (r.get("curve") or {}).get("epochs")
        ]
        if series:
            panels.append((variant, series))
    if panels:
        name = d["grid"]["name"]
        title = f"{name}: validation NDCG@10 per epoch, a panel per variant, a line per seed"
        path = page.plot(
            f"curves_grid_{name}",
            lambda p: plots.curve_panels(
                p, panels, title=title, xlabel="epoch", ylabel="valid NDCG@10", integer_x=True
            ),
        )
        page.image(path, title)


def _cold_cell(row: dict) -> str:
    c = row.get("test_cold_hr@10")
    return "" if c is None else f"{c['mean']:.4f} ± {c['std']:.4f}"
