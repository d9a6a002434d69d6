"""Rows of the transfer result files (pmmrec_transfer.json, missrec_unisrec_transfer.json) and the
tables, headline and learning curves built from them."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from modalrec.report import plots

from .fmt import code, details, f4, is_num, md_table, num, pm
from .page import Page
from .results import MISS, PMM, parse_command, run_folder, short

MODEL_LABELS = {
    "pop": "Pop",
    "sasrec": "SASRec (item IDs)",
    "pmmrec-both": "PMMRec, text + image",
    "pmmrec-text": "PMMRec, text only",
    "pmmrec-image": "PMMRec, image only",
    "missrec": "MISSRec",
    "unisrec": "UniSRec",
}


def split_name(name: str) -> tuple[str, str]:
    model, _, setting = name.partition(" ")
    return model, setting


def setting_label(setting: str, dataset: str | None) -> str:
    s = setting.replace("pretrained+finetuned", "pre-trained + fine-tuned")
    s = s.replace("pre-trained+fine-tuned", "pre-trained + fine-tuned")
    s = re.sub(r"\bscratch\b", "from scratch", s)
    return s or (f"trained on {dataset}" if dataset else "trained on the target")


def transfer_rows(d: dict, source: str) -> list[dict]:
    rows = []
    for name, r in (d.get("table") or {}).items():
        cmds = r.get("commands") or []
        pc = parse_command(cmds[0]) if cmds else {"options": [], "dataset": None, "out": None}
        model, setting = split_name(name)
        label = (
            f"{MODEL_LABELS[model]}, {setting_label(setting, pc['dataset'])}" if model in MODEL_LABELS else name
        )  # e.g. "ml-latest-small zero-shot": shown as named
        rows.append(
            {
                "name": name,
                "model": model,
                "setting": setting,
                "source": source,
                "r": r,
                "dataset": pc["dataset"],
                "options": pc["options"],
                "commands": cmds,
                "label": label,
                "runs": r.get("runs", len(cmds)),
            }
        )
    return rows


def main_dataset(rows: list[dict]) -> str | None:
    counts: dict[str, int] = {}
    for r in rows:
        if r["dataset"]:
            counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
    return max(counts, key=counts.get) if counts else None


def is_variant(row: dict) -> bool:
    """An ablation row (e.g. "pmmrec-both ablation, pre-trained without RCL (1 epoch), fine-tuned"): the
    benches name those with a ", " in the setting; they stay out of the headline, the zero-shot line
    and the learning curves."""
    return "," in row["setting"]


def is_bench_pretrain(name: str) -> bool:
    """A pre-train the transfer bench ran itself ("pretrain ml-1m[, <variant>]"), a row of its table."""
    return name.startswith("pretrain ")


def ndcg_mean(row: dict):
    return (row["r"].get("ndcg@10") or {}).get("mean")


def headline(page: Page) -> tuple[list[dict], str | None]:
    """Rows of the headline: every setting on the target data set but single-modality variants
    (model.modalities=...) and ablations (', ' in the name); baselines shown once."""
    rows: list[dict] = []
    seen: set[str] = set()
    target = None
    for fname in (PMM, MISS):
        d = page.get(fname)
        if not isinstance(d, dict):
            continue
        rs = transfer_rows(d, fname)
        ds = main_dataset(rs)
        target = target or ds
        for r in rs:
            single = any(o.startswith("model.modalities=") for o in r["options"])
            if r["dataset"] != ds or single or is_variant(r):
                continue
            if r["commands"] and set(r["commands"]) <= seen:
                continue
            seen.update(r["commands"])
            r["quick"], r["partial"] = bool(d.get("quick")), bool(d.get("report_only"))
            rows.append(r)
    return rows, target


def headline_table(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        flag = " (quick)" if r.get("quick") else ""
        out.append(
            [
                MODEL_LABELS.get(r["model"], r["model"]) + flag,
                setting_label(r["setting"], r["dataset"]),
                r["runs"],
                pm(r["r"].get("ndcg@10"), r["runs"]),
                pm(r["r"].get("hr@10"), r["runs"]),
            ]
        )
    return md_table(["model", "setting", "runs", "test NDCG@10", "test HR@10"], out, right=(2, 3, 4))


def plot_headline(page: Page, rows: list[dict], target: str | None) -> Path | None:
    rows = [r for r in rows if is_num(ndcg_mean(r))]
    if not rows:
        return None
    return page.plot(
        "ndcg_test",
        lambda p: plots.hbar(
            p,
            [r["label"] for r in rows],
            [r["r"]["ndcg@10"]["mean"] for r in rows],
            errors=[r["r"]["ndcg@10"].get("std", 0.0) if r["runs"] > 1 else 0.0 for r in rows],
            groups=[r["model"] for r in rows],
            annotations=[pm(r["r"]["ndcg@10"], r["runs"]) + f"  (n={r['runs']})" for r in rows],
            title=f"{target or ''} test NDCG@10 (mean ± std over runs)",
            xlabel="test NDCG@10",
        ),
    )


def detail_table(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        x = r["r"]
        walls = [w for w in x.get("wall_s") or [] if is_num(w)]
        vals = (x.get("ndcg@10") or {}).get("values") or []
        out.append(
            [
                r["label"],
                " ".join(f"`{o}`" for o in r["options"]) or "",
                r["runs"],
                pm(x.get("ndcg@10"), r["runs"]),
                pm(x.get("hr@10"), r["runs"]),
                ", ".join(f"{v:.4f}" for v in vals),
                ", ".join(str(e) for e in x.get("best_epochs") or []),
                num(statistics.fmean(walls), 0) if walls else "n/a",
                num(x.get("peak_rss_mib"), 0),
            ]
        )
    return md_table(
        [
            "setting",
            "options",
            "runs",
            "NDCG@10",
            "HR@10",
            "NDCG@10 per run",
            "best epoch per run",
            "wall s (mean)",
            "peak RSS MiB",
        ],
        out,
        right=(2, 3, 4, 7, 8),
    )


def per_seed(row: dict) -> dict:
    """{seed: test NDCG@10} of a table row (values are in the order of its commands)."""
    vals = (row["r"].get("ndcg@10") or {}).get("values") or []
    seeds = [parse_command(c)["seed"] for c in row["commands"]]
    return {s: v for s, v in zip(seeds, vals) if s is not None}


def metrics_pair(m: dict | None) -> str:
    if not isinstance(m, dict):
        return "n/a"
    return f"NDCG@10 {f4(m.get('ndcg@10'))}, HR@10 {f4(m.get('hr@10'))}"


def commands_block(rows: list[dict]) -> list[str]:
    cmds = [short(c) for r in rows for c in r["commands"]]
    return (
        details(
            f"the {len(cmds)} `modalrec` commands of this table (paths relative to the repository root)", code(cmds)
        )
        + [""]
        if cmds
        else []
    )


def trained(rows: list[dict]) -> list[dict]:
    """The rows whose best epoch was after some training (zero-shot and Pop have no learning curve)."""
    return [r for r in rows if r["r"].get("best_epochs") and max(r["r"]["best_epochs"]) > 0]


def _row_curves(row: dict) -> list[tuple[str, list, list]]:
    """(seed label, epochs, validation NDCG@10) of every run of a table row: from the curves the result file
    keeps, else from the run folders named by its commands (older result files), where they are here."""
    seeds = [parse_command(c)["seed"] for c in row["commands"]]
    stored = row["r"].get("curves")
    if stored:
        pairs = [(s, c["epochs"], c["ndcg@10"]) for s, c in zip(seeds, stored)]
    else:
        pairs = []
        for s, cmd in zip(seeds, row["commands"]):
            folder = run_folder(parse_command(cmd)["out"])
            if folder is not None:
                pairs.append((s, *plots.validation_curve(folder / "metrics.jsonl", "ndcg@10")))
    return [(f"seed {s}" if s is not None else "run", xs, ys) for s, xs, ys in pairs if xs]


def learning_curves(page: Page, rows: list[dict], name: str, title: str) -> None:
    """Validation NDCG@10 per epoch, one small panel per setting with its seeds as lines."""
    panels, missing = [], []
    for r in rows:
        series = _row_curves(r)
        if series:
            panels.append((r["label"], series))
        else:
            missing.append(r["label"])
    if panels:
        path = page.plot(
            name,
            lambda p: plots.curve_panels(
                p, panels, title=title, xlabel="epoch", ylabel="valid NDCG@10", integer_x=True
            ),
        )
        page.image(path, title)
    if missing and not panels:
        page.para(
            "_Learning curves: the run folders named by `--out` in the commands are not on this machine "
            "(run folders are not part of the repository) and this result file predates curves being kept "
            "in it, so this plot is skipped._"
        )
    elif missing:
        page.para("_Learning curves: no curve kept for " + ", ".join(missing) + "._")
