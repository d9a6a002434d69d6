"""SASRec on ml-1m against the published SASRec+ figure (sasrec_vs_recbole.json's ml1m, else sasrec_ml1m.json)."""

from __future__ import annotations

from modalrec.report import plots

from .fmt import code, f4, is_num, md_table, secs
from .page import Page
from .results import SVR, SVR_ML1M, short


def _from_comparison(page: Page, d: dict, m: dict) -> None:
    """The ml1m part of sasrec_vs_recbole.json."""
    page.header(d, SVR)
    test, ref = m.get("test") or {}, m.get("published_sasrec_plus_hr@10")
    rows = [
        [
            "ours, history excluded",
            f4(test.get("hr@10")),
            f4(test.get("ndcg@10")),
            m.get("best_epoch"),
            m.get("epochs_run"),
            secs(m.get("train_time_s")),
        ]
    ]
    page.add(*md_table(["", "test HR@10", "test NDCG@10", "best epoch", "epochs run", "training time"], rows), "")
    if is_num(ref) and is_num(test.get("hr@10")):
        page.para(
            f"Published full-ranking SASRec+ HR@10: {ref:.4f}; ours {test['hr@10']:.4f} "
            f"({(test['hr@10'] / ref - 1) * 100:+.0f}%)."
        )
    page.para("Options: " + " ".join(f"`{o}`" for o in d.get("ours_overrides_ml1m") or []))
    page.add(*code(["python bench/sasrec_vs_recbole.py"]), "")


def _metrics_table(page: Page, d: dict) -> None:
    rows = []
    for key, lab in (
        ("valid_at_best", "validation (best checkpoint)"),
        ("test_history_excluded", "test, history excluded"),
        ("test_history_included", "test, history included"),
    ):
        if isinstance(d.get(key), dict):
            rows.append([lab, f4(d[key].get("hr@10")), f4(d[key].get("ndcg@10"))])
    page.add(*md_table(["", "HR@10", "NDCG@10"], rows, right=(1, 2)), "")
    ref = d.get("published_sasrec_plus_hr@10")
    ours = (d.get("test_history_excluded") or {}).get("hr@10")
    if is_num(ref) and is_num(ours):
        page.para(
            f"Published full-ranking SASRec+ HR@10: {ref:.4f}; ours (history excluded) {ours:.4f} "
            f"({(ours / ref - 1) * 100:+.0f}%). History excluded is the published protocol: the SASRec+ "
            "code (antklen/sasrec-bert4rec-recsys23, `SeqRecBase(filter_seen=True)`) drops the items a "
            "user has seen before ranking."
        )


def _training(page: Page, d: dict) -> None:
    bits = []
    if d.get("best_epoch") is not None:
        bits.append(f"best epoch {d['best_epoch']} of {d.get('epochs_run')}")
    if is_num(d.get("elapsed_train_s_at_best")):
        bits.append(f"training time to the best epoch {secs(d['elapsed_train_s_at_best'])}")
    if is_num(d.get("mean_epoch_s")):
        bits.append(f"{secs(d['mean_epoch_s'])} per epoch")
    if bits:
        page.para("; ".join(bits).capitalize() + ".")
    if d.get("note_on_load"):
        page.para(f"Note: {d['note_on_load']}.")


def _curve(page: Page, d: dict) -> None:
    curve = d.get("curve_valid_ndcg@10")
    if isinstance(curve, list) and curve:
        path = page.plot(
            "curve_sasrec_ml1m",
            lambda p: plots.curves(
                p,
                [("SASRec, ml-1m", list(range(1, len(curve) + 1)), curve)],
                title="SASRec on ml-1m: validation NDCG@10 per epoch",
                xlabel="epoch",
                ylabel="validation NDCG@10",
                integer_x=True,
            ),
        )
        page.image(path, "SASRec ml-1m learning curve")


def _from_ml1m_file(page: Page, d: dict) -> None:
    """sasrec_ml1m.json, a run recorded on its own."""
    page.header(d, SVR_ML1M)
    if d.get("what"):
        page.para(d["what"][:1].upper() + d["what"][1:] + ".")
    if d.get("status"):
        page.para(f"**Status: {d['status']}.**")
    _metrics_table(page, d)
    _training(page, d)
    _curve(page, d)
    if d.get("command"):
        page.add(*code([c.strip() for c in short(d["command"]).split("; then ")]), "")


def section_sasrec_ml1m(page: Page) -> None:
    page.add("### SASRec on ml-1m against the published figure", "")
    d = page.get(SVR)
    m = d.get("ml1m") if isinstance(d, dict) else None
    if isinstance(m, dict):
        _from_comparison(page, d, m)
        return
    d = page.get(SVR_ML1M)
    if not isinstance(d, dict):
        page.not_run("sasrec_vs_recbole.py")
        return
    _from_ml1m_file(page, d)
