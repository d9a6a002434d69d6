"""The page's opening: which model to use in which situation, in plain words, with the numbers behind it.

Read from the declared grids (grid_*.json: choices made on validation, test reported) and the zero-shot
table (zero_shot_prior.json). A situation whose result file is missing says which script makes it.
"""

from __future__ import annotations

from .page import Page

DENSE = "grid_content-vs-sasrec-ml100k.json"
SPARSE = "grid_sparse-warm-mlls2016.json"
COLD = "grid_cold-split-mlls2016.json"
PRETRAIN = "grid_pretrain-gain-unisrec-ml100k.json"
ZERO = "zero_shot_prior.json"


def _variants(d: dict) -> dict:
    return d["summary"]["variants"]


def _best(variants: dict, names) -> str | None:
    """The variant among ``names`` with the best mean validation NDCG@10."""
    names = [n for n in names if n in variants]
    return max(names, key=lambda n: variants[n]["valid_ndcg@10"]["mean"]) if names else None


def _t(v: dict, key: str = "test_ndcg@10") -> str:
    return f"{v[key]['mean']:.4f} ± {v[key]['std']:.4f}"


def _dense(page: Page) -> str:
    d = page.get(DENSE)
    if not isinstance(d, dict):
        return "**Dense warm data (ml-100k):** not run yet: `python bench/grid.py bench/grids/content-vs-sasrec-ml100k.yaml`."
    v = _variants(d)
    ids = _best(v, [n for n in v if n.startswith("sasrec")])
    content = _best(v, [n for n in v if not n.startswith("sasrec")])
    ratio = v[content]["test_ndcg@10"]["mean"] / v[ids]["test_ndcg@10"]["mean"]
    verdict = (
        "the content-aware model is as good or better, and it also scores new items"
        if ratio >= 1.0
        else f"SASRec is {100 * (1 / ratio - 1):.0f}% better; pick the content-aware model only if new items matter"
    )
    return (
        f"**Dense warm data (ml-100k, every test item seen in training):** SASRec (`{ids}`) test NDCG@10 "
        f"{_t(v[ids])}; the best model that can still score new items (`{content}`, chosen on validation) "
        f"{_t(v[content])} = {ratio:.2f} x SASRec: {verdict}."
    )


def _sparse(page: Page) -> str:
    d = page.get(SPARSE)
    if not isinstance(d, dict):
        return "**Sparse warm data (ml-latest-small-2016):** not run yet: `python bench/grid.py bench/grids/sparse-warm-mlls2016.yaml`."
    v = _variants(d)
    win = d["summary"]["winner_on_validation"]
    cells = ", ".join(f"{n} {v[n]['test_ndcg@10']['mean']:.4f}" for n in v)
    content = _best(v, [n for n in v if n != "pop" and not n.startswith("sasrec")])
    ids = _best(v, [n for n in v if n.startswith("sasrec")])
    versus = ""
    if content and ids:
        ratio = v[content]["test_ndcg@10"]["mean"] / v[ids]["test_ndcg@10"]["mean"]
        versus = f" The best content model on validation, `{content}`, is {ratio:.2f} x SASRec on test."
    return (
        f"**Sparse warm data (ml-latest-small-2016, 671 users, most movies rare):** use `{win}` (best on "
        f"validation). Test NDCG@10: {cells}.{versus}"
    )


def _cold(page: Page) -> str:
    d = page.get(COLD)
    if not isinstance(d, dict):
        return "**New items (cold split of ml-latest-small-2016):** not run yet: `python bench/grid.py bench/grids/cold-split-mlls2016.yaml`."
    v = _variants(d)
    pop = v.get("pop", {}).get("test_cold_hr@10", {}).get("mean")
    best = max((n for n in v if "test_cold_hr@10" in v[n]), key=lambda n: v[n]["test_cold_hr@10"]["mean"])
    cells = ", ".join(f"{n} {v[n]['test_cold_hr@10']['mean']:.4f}" for n in v if "test_cold_hr@10" in v[n])
    ratio = (
        f" ({v[best]['test_cold_hr@10']['mean'] / pop:.1f} x Pop)"
        if pop
        else " (Pop cannot rank an item nobody has interacted with)"
    )
    return (
        f"**New items (cold split: the newest 10% of movies never occur in training):** an ID-free content "
        f"model is the only way to recommend them: best `{best}`{ratio}. HR@10 on test targets that are new "
        f"items: {cells}."
    )


def _zero(page: Page) -> str:
    d = page.get(ZERO)
    if not isinstance(d, dict):
        return "**No training on the target (zero-shot):** not run yet: `python bench/zero_shot_prior.py`."
    cells = "; ".join(
        f"{t}: {r['ratio_to_pop']['zero_shot_prior']:.2f} x Pop (plain {r['ratio_to_pop']['zero_shot']:.2f} x"
        + (f", `{r['pretrain']}` chosen on validation" if r.get("pretrain") and d.get("candidates") else "")
        + ")"
        for t, r in d.get("table", {}).items()
    )
    worse = [t for t, r in d.get("table", {}).items() if r["ratio_to_pop"]["zero_shot"] < 1.0]
    tail = f" Without the prior, Pop beats the zero-shot model on {', '.join(worse)}." if worse else ""
    return (
        "**No training on the target (zero-shot):** a model pre-trained elsewhere plus the target's "
        f"popularity prior (`modalrec evaluate --pop-prior`) against Pop: {cells}.{tail}"
    )


def _pretrain(page: Page) -> str | None:
    d = page.get(PRETRAIN)
    if not isinstance(d, dict):
        return None
    v = _variants(d)
    gain = v["pretrained"]["test_ndcg@10"]["mean"] / v["scratch"]["test_ndcg@10"]["mean"] - 1
    return (
        f"**Pre-training** (UniSRec on ml-1m, then fine-tuned on ml-100k, ID-free): test NDCG@10 "
        f"{_t(v['pretrained'])} against {_t(v['scratch'])} from scratch ({100 * gain:+.1f}%)." + _sparse_gains(page)
    )


def _sparse_gains(page: Page) -> str:
    """The same comparison on the sparse warm grid, for every model it has both arms of."""
    d = page.get(SPARSE)
    if not isinstance(d, dict):
        return ""
    v = _variants(d)
    cells = [
        f"{m} {100 * (v[f'{m}-pretrained']['test_ndcg@10']['mean'] / v[f'{m}-scratch']['test_ndcg@10']['mean'] - 1):+.0f}%"
        for m in ("unisrec", "pmmrec", "missrec")
        if f"{m}-pretrained" in v and f"{m}-scratch" in v
    ]
    return (
        f" On ml-latest-small-2016 (sparse warm grid), pre-trained against scratch: {', '.join(cells)}."
        if cells
        else ""
    )


def section_summary(page: Page) -> None:
    page.add("## Which model should I use?", "")
    page.para(
        "From the declared grids below (settings chosen on validation NDCG@10, 3 seeds, test reported; "
        "leave-one-out, full ranking, history excluded):"
    )
    for line in (_dense(page), _sparse(page), _cold(page), _zero(page), _pretrain(page)):
        if line:
            page.add(f"- {line}")
    page.add("")
