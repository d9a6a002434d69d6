"""The transfer sections under Quality details: PMMRec, then MISSRec and UniSRec."""

from __future__ import annotations

import json
from pathlib import Path

from .fmt import code, is_num, md_table, num, secs
from .page import Page
from .reading import ablation_reading, reading
from .results import MISS, PMM, run_folder, short
from .transfer import (
    MODEL_LABELS,
    commands_block,
    detail_table,
    is_bench_pretrain,
    is_variant,
    learning_curves,
    main_dataset,
    metrics_pair,
    trained,
    transfer_rows,
)


def _protocol(page: Page, d: dict) -> None:
    if d.get("protocol"):
        page.para(f"Protocol (from the JSON): {d['protocol']}.")


def _source_dataset(pretrain_run: str) -> str | None:
    """The data set a pre-train run folder was trained on, if that folder is on this machine."""
    f = run_folder(pretrain_run)
    if f is None or not (f / "results.json").is_file():
        return None
    try:
        return json.loads((f / "results.json").read_text()).get("dataset")
    except Exception:
        return None


def _pmmrec_pretrain(page: Page, d: dict) -> None:
    pre = d.get("pretrain") or {}
    if not pre:
        return
    src = _source_dataset(str(d.get("pretrain_run") or ""))
    bits = [
        f"pre-trained run `{short(str(d.get('pretrain_run', '')))}`" + (f" on {src}" if src else ""),
        f"best epoch {pre.get('best_epoch')} of {pre.get('epochs_run')}",
        f"training time {secs(pre.get('train_time_s'))}",
    ]
    if is_num(pre.get("windows_per_s")):
        bits.append(
            f"{pre['windows_per_s']:.1f} training windows/s ({num(pre.get('windows_per_epoch'))} windows per epoch)"
        )
    bits.append(f"validation on the source data {metrics_pair(pre.get('valid'))}")
    bits.append(f"test on the source data {metrics_pair(pre.get('test_ml1m') or pre.get('test'))}")
    page.para("Pre-training: " + "; ".join(bits) + ".")


def _pmmrec_other_tables(page: Page, others: list[dict]) -> None:
    """The bench's own pre-trains, then one table per other data set (the cold-item runs)."""
    pre_rows = [r for r in others if is_bench_pretrain(r["name"])]
    if pre_rows:
        page.para(
            "The pre-trains the bench ran itself (the ablations', and the main one when no finished "
            "`--pretrain` run was given), test metrics on their source data set:"
        )
        page.add(*detail_table(pre_rows), "")
    others = [r for r in others if not is_bench_pretrain(r["name"])]
    for ds in sorted({r["dataset"] or "?" for r in others}):
        page.para(f"On {ds} (all test targets; the cold-item subset is under Cold items):")
        page.add(*detail_table([r for r in others if (r["dataset"] or "?") == ds]), "")


def _readings(page: Page, main: list[dict], ablations: bool) -> None:
    rd = reading(main)
    if rd:
        page.para("Reading (computed from the table):")
        page.add(*rd, "")
    ab = ablation_reading(main) if ablations else []
    if ab:
        page.para(
            "Pre-training loss ablations, each against the all-losses pre-train of the same budget "
            "(computed from the table):"
        )
        page.add(*ab, "")


def _script(page: Page, d: dict, rebuilt: list[str]) -> None:
    """The bench script's own command line, or one rebuilt from the JSON's fields by older files."""
    if d.get("command"):
        page.para("Script:")
        page.add(*code([str(d["command"])]), "")
        return
    page.para("Script (arguments reconstructed from the JSON's fields):")
    page.add(*code([" ".join(rebuilt)]), "")


def _pmmrec_invocation(d: dict) -> list[str]:
    inv = ["python bench/pmmrec_transfer.py"]
    pr = str(d.get("pretrain_run") or "")
    if pr and Path(pr).name != "pretrain-ml1m":
        inv.append(f"--pretrain {short(pr)}")
    if d.get("seeds"):
        inv.append("--seeds " + " ".join(str(s) for s in d["seeds"]))
    if d.get("ft_epochs") is not None and not d.get("quick"):
        inv.append(f"--ft-epochs {d['ft_epochs']}")
    if d.get("single_modality_seeds") is not None and not d.get("quick"):
        inv.append(f"--single-modality-seeds {d['single_modality_seeds']}")
    if d.get("ablations") is False and not d.get("quick"):
        inv.append("--skip-ablations")
    elif d.get("ablations"):
        inv.append(f"--ablation-epochs {d.get('ablation_epochs')}")
    if d.get("quick"):
        inv.append("--quick")
    if d.get("report_only"):
        inv.append("--report-only")
    return inv


def section_pmmrec(page: Page) -> None:
    d = page.section("PMMRec transfer", PMM, "pmmrec_transfer.py")
    if d is None:
        return
    _protocol(page, d)
    rows = transfer_rows(d, PMM)
    target = main_dataset(rows)
    _pmmrec_pretrain(page, d)
    main = [r for r in rows if r["dataset"] == target]
    page.para(f"Test metrics on {target}, mean ± std over runs (one run: the value alone):")
    page.add(*detail_table(main), "")
    _pmmrec_other_tables(page, [r for r in rows if r["dataset"] != target])
    _readings(page, main, ablations=True)
    learning_curves(
        page,
        [r for r in trained(main) if not is_variant(r)],
        "curves_pmmrec",
        f"PMMRec transfer on {target}: validation NDCG@10 per epoch, a panel per setting, a line per seed",
    )
    page.add(*commands_block(rows))
    _script(page, d, _pmmrec_invocation(d))


def _missrec_pretrain(page: Page, d: dict) -> None:
    pre = d.get("pretrain") or {}
    if not pre:
        return
    prow = [
        [
            MODEL_LABELS.get(m, m),
            secs(p.get("wall_s")),
            p.get("epochs_run"),
            num(p.get("peak_rss_mib"), 0),
            metrics_pair(p.get("valid_ml1m")),
            metrics_pair(p.get("test_ml1m")),
        ]
        for m, p in pre.items()
    ]
    page.para("Pre-training on the source data set:")
    page.add(
        *md_table(
            ["model", "wall time", "epochs", "peak RSS MiB", "source validation", "source test"], prow, right=(2, 3)
        ),
        "",
    )


def _missrec_invocation(d: dict) -> list[str]:
    inv = ["python bench/missrec_unisrec_transfer.py"]
    if d.get("quick"):
        inv.append("--quick")
    elif d.get("seeds"):
        inv.append("--seeds " + " ".join(str(s) for s in d["seeds"]))
    if d.get("report_only"):
        inv.append("--report-only")
    return inv


def section_missrec(page: Page) -> None:
    d = page.section("MISSRec and UniSRec transfer", MISS, "missrec_unisrec_transfer.py")
    if d is None:
        return
    _protocol(page, d)
    page.para(
        f"Seeds: {', '.join(str(s) for s in d.get('seeds') or [])}; fine-tune / scratch epochs: {d.get('ft_epochs')}."
    )
    _missrec_pretrain(page, d)
    rows = transfer_rows(d, MISS)
    target = main_dataset(rows)
    main = [r for r in rows if r["dataset"] == target]
    if main:
        page.para(f"Test metrics on {target}, mean ± std over runs (one run: the value alone):")
        page.add(*detail_table(main), "")
        _readings(page, main, ablations=False)
        learning_curves(
            page,
            trained(main),
            "curves_missrec_unisrec",
            f"MISSRec / UniSRec on {target}: validation NDCG@10 per epoch, a panel per setting, a line per seed",
        )
    else:
        page.para("No finished run in the table yet.")
    page.add(*commands_block(rows))
    _script(page, d, _missrec_invocation(d))
