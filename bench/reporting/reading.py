"""The "Reading" bullets under the transfer tables: comparisons computed from the table rows, never typed."""

from __future__ import annotations

import re

from .fmt import is_num, pm
from .transfer import is_variant, ndcg_mean, per_seed

ABLATION = re.compile(r"^ablation, pre-trained (.+?)( \(\d+ epochs?\))?, (fine-tuned|zero-shot)$")


def _ablations(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    """{(budget, "fine-tuned"|"zero-shot", variant): row} of the rows named
    "<model> ablation, pre-trained <variant>[ (<budget>)], fine-tuned|zero-shot"."""
    found = {}
    for r in rows:
        m = ABLATION.match(r["setting"])
        if m:
            found[(m.group(2) or "", m.group(3), m.group(1))] = r
    return found


def _against_all_losses(found: dict) -> list[str]:
    out = []
    for (budget, kind, variant), r in sorted(found.items()):
        ref = found.get((budget, kind, "all losses"))
        if variant == "all losses" or ref is None:
            continue
        a, b = ndcg_mean(r), ndcg_mean(ref)
        if not (is_num(a) and is_num(b)) or b == 0:
            continue
        pa, pb = per_seed(r), per_seed(ref)
        common = [k for k in pa if k in pb]
        paired = (
            f"; lower in {sum(pa[k] < pb[k] for k in common)} of {len(common)} paired runs"
            if kind == "fine-tuned" and common
            else ""
        )
        out.append(
            f"* Pre-trained {variant}{budget}, {kind}: {pm(r['r'].get('ndcg@10'), r['runs'])} vs all losses "
            f"{pm(ref['r'].get('ndcg@10'), ref['runs'])} ({(a / b - 1) * 100:+.1f}% test NDCG@10{paired})."
        )
    return out


def _budget(found: dict, rows: list[dict]) -> list[str]:
    """The short all-losses pre-train against training from scratch and the main pre-train."""
    by = {r["name"]: r for r in rows}
    out = []
    for (budget, kind, variant), ref in sorted(found.items()):
        if variant != "all losses" or kind != "fine-tuned" or not budget:
            continue
        prefix = ref["name"].split(" ablation,")[0]
        scratch, main = by.get(f"{prefix} scratch"), by.get(f"{prefix} pretrained+finetuned")
        if scratch is None or main is None:
            continue
        out.append(
            f"* Budget: the all-losses pre-train ({budget.strip(' ()')}) fine-tunes to {pm(ref['r'].get('ndcg@10'), ref['runs'])}, "
            f"against {pm(scratch['r'].get('ndcg@10'), scratch['runs'])} from scratch and "
            f"{pm(main['r'].get('ndcg@10'), main['runs'])} from the main pre-train: these ablations measure "
            "each loss in a short pre-train, not in the main one."
        )
    return out


def ablation_reading(rows: list[dict]) -> list[str]:
    """Each pre-training ablation against the all-losses pre-train of the same budget."""
    found = _ablations(rows)
    return _against_all_losses(found) + _budget(found, rows)


def _pretraining_gain(rows: list[dict], by: dict, mean) -> list[str]:
    """Every pre-trained + fine-tuned setting against the same model trained from scratch."""
    out = []
    for r in rows:
        if "pretrained+finetuned" not in r["setting"] and "pre-trained+fine-tuned" not in r["setting"]:
            continue
        scratch = r["name"].replace("pretrained+finetuned", "scratch").replace("pre-trained+fine-tuned", "scratch")
        a, b = mean(r["name"]), mean(scratch)
        if not (is_num(a) and is_num(b)) or b == 0:
            continue
        pa, pb = per_seed(r), per_seed(by[scratch])
        common = [k for k in pa if k in pb]
        n = len(common)
        wins = sum(pa[k] > pb[k] for k in common)
        out.append(
            f"* {r['label']}: {(a / b - 1) * 100:+.0f}% test NDCG@10 over the same model trained from "
            f"scratch ({a:.4f} vs {b:.4f}; higher in {wins} of {n} paired run{'s' if n != 1 else ''})."
        )
    return out


def _ids_against_content(rows: list[dict], mean) -> tuple[list[str], bool]:
    """The ID baseline against the best content-based setting; True if the IDs are ahead."""
    ids = [r for r in rows if r["model"] == "sasrec"]
    content = [r for r in rows if r["model"] not in ("sasrec", "pop") and is_num(mean(r["name"]))]
    if not (ids and content and is_num(mean(ids[0]["name"]))):
        return [], False
    best = max(content, key=lambda r: mean(r["name"]))
    s, c = mean(ids[0]["name"]), mean(best["name"])
    if s > c:
        return [
            f"* The ID baseline SASRec ({s:.4f}) is ahead of every content-based setting here; the "
            f"best of those is {best['label']} ({c:.4f}, {best['runs']} "
            f"run{'s' if best['runs'] != 1 else ''})."
        ], True
    return [f"* {best['label']} ({c:.4f}) reaches or passes the ID baseline SASRec ({s:.4f})."], False


def _zero_shot_against_pop(rows: list[dict], mean) -> tuple[list[str], bool]:
    """Every zero-shot setting against Pop; True if all of them are at or below it."""
    zs = [r for r in rows if "zero-shot" in r["setting"] and is_num(mean(r["name"])) and not is_variant(r)]
    pop = next((r for r in rows if r["model"] == "pop"), None)
    if not (pop and is_num(mean(pop["name"])) and zs):
        return [], False
    p = mean(pop["name"])
    below = [r for r in zs if mean(r["name"]) <= p]
    line = (
        "* Zero-shot (no training on the target) against Pop ("
        + f"{p:.4f}"
        + "): "
        + "; ".join(
            f"{r['label'].split(', zero-shot')[0]} {mean(r['name']):.4f} "
            f"({'above' if mean(r['name']) > p else 'below'})"
            for r in zs
        )
        + "."
    )
    return [line], len(below) == len(zs)


def reading(rows: list[dict]) -> list[str]:
    """Comparisons computed from the table (no number typed here)."""
    by = {r["name"]: r for r in rows}

    def mean(name):
        return ndcg_mean(by[name]) if name in by else None

    out = _pretraining_gain(rows, by, mean)
    ids, id_ahead = _ids_against_content(rows, mean)
    zs, zs_below = _zero_shot_against_pop(rows, mean)
    out += ids + zs
    if id_ahead and zs_below:
        out.append(
            "* A likely reading: these MovieLens histories are dominated by popularity and collaborative "
            "signal, which titles, genres and rendered posters carry only in part."
        )
    return out
