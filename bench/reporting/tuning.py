"""`modalrec tune` against the hand-declared SASRec grid (tune_sasrec_ml100k.json, bench/tune_sasrec.py)."""

from __future__ import annotations

from .fmt import f4, md_table
from .page import Page

TUNE = "tune_sasrec_ml100k.json"


def section_tune(page: Page) -> None:
    d = page.section("Hyperparameter search against a hand-declared grid (SASRec, ml-100k)", TUNE, "tune_sasrec.py")
    if d is None:
        return
    grid, ep, valid = d["grid"], d["epochs"], d["valid_ndcg@10"]
    page.para(
        f"`modalrec tune` (Optuna TPE, median pruning on the per-epoch validation) over the space "
        f"`bench/tune/sasrec-ml100k.yaml`, with the fixed settings of the SASRec-vs-RecBole bench (history not "
        f"excluded, as there) and an epoch budget of {d['budget']} for the search; the best trial's config is then "
        f"trained on seeds 0, 1, 2, as the grid trained each of its settings. The grid's figures are quoted from "
        f"bench/recbole/README.md (its runs are not kept): {grid['runs']} runs with patience 10, so at least "
        f"{grid['min_epochs']} epochs."
    )
    rows = [
        [
            f"hand-declared grid (best: {grid['best']})",
            f"≥ {grid['min_epochs']}",
            f4(valid["grid_best_mean_3_seeds"]),
            "",
        ],
        [
            f"modalrec tune ({len(d['trials'])} trials, {ep['search']} epochs) + 3-seed confirmation ({ep['confirm']})",
            str(ep["total"]),
            f4(valid["tuned_mean_3_seeds"]),
            f4(d["test_ndcg@10_tuned_mean_3_seeds"]),
        ],
    ]
    page.add(*md_table(["search", "epochs", "valid NDCG@10 (mean of seeds 0-2)", "test NDCG@10"], rows, (1, 2, 3)), "")
    best = d["best_trial"]
    page.para(
        f"Best trial {best['trial']} (valid {f4(best['valid_ndcg@10'])} on seed 0): "
        + ", ".join(f"`{k}={v}`" for k, v in best["params"].items())
        + f". Target (as high on validation, within the grid's epochs): **{'met' if d['met'] else 'not met'}**."
    )
