"""Beyond accuracy (beyond_accuracy.json): coverage, popularity, novelty and diversity of the top-10 lists,
and accuracy per segment (short / long histories, cold / warm targets)."""

from __future__ import annotations

from .fmt import f4, md_table, num
from .page import Page

BEYOND = "beyond_accuracy.json"


def section_beyond(page: Page) -> None:
    d = page.section("Beyond accuracy", BEYOND, "beyond_accuracy.py NAME=RUN ...")
    if d is None:
        return
    rows = d.get("rows") or {}
    page.para(
        "Top-10 lists on the test split (history excluded), from `modalrec evaluate RUN --beyond`: catalogue "
        "coverage (share of the catalogue in at least one list), average training count of the recommended "
        "items, novelty (mean self-information, higher = less popular) and intra-list diversity (mean "
        "pairwise 1 - cosine in the model's own item space: comparable between runs of one model, not across "
        "models; Pop has no item space, so its diversity says nothing)."
    )
    out = []
    for name, r in rows.items():
        k = r["beyond"]["k"]
        lists = r["beyond"]["lists"]
        out.append(
            [
                name,
                r.get("dataset") or "",
                f4(r["metrics"].get(f"ndcg@{k}")),
                f4(lists[f"coverage@{k}"]),
                num(lists[f"avg_popularity@{k}"], 1),
                f"{lists[f'novelty@{k}']:.2f}",
                f4(lists[f"diversity@{k}"]),
                f4(r["beyond"].get("catalogue_mean_cosine")),
            ]
        )
    page.add(
        *md_table(
            [
                "run",
                "data set",
                "NDCG@10",
                "coverage@10",
                "avg popularity@10",
                "novelty@10",
                "diversity@10",
                "catalogue mean cosine",
            ],
            out,
            right=(2, 3, 4, 5, 6, 7),
        ),
        "",
    )
    page.para(
        "Catalogue mean cosine: the mean cosine over every pair of items in the same space, the baseline "
        "that list diversity should be read against. Near 1, the item vectors share one dominant direction: "
        "a dot-product score ignores the shared part when it ranks, but cosine diversity does not, so those "
        "lists read as alike whatever they hold."
    )
    _segments(page, rows)
    page.para("Commands: " + "; ".join(f"`{r['command']}`" for r in rows.values()))


def _segments(page: Page, rows: dict) -> None:
    names = []
    for r in rows.values():
        for seg in r["beyond"]["segments"]:
            if seg not in names:
                names.append(seg)
    out = []
    for name, r in rows.items():
        k, segs = r["beyond"]["k"], r["beyond"]["segments"]
        out.append(
            [name] + [f"{f4(segs[s].get(f'ndcg@{k}'))} ({segs[s]['count']})" if s in segs else "" for s in names]
        )
    page.para("Test NDCG@10 per segment (examples in brackets; the history split is at the median length):")
    page.add(*md_table(["run", *names], out), "")
