"""SASRec, modalrec against RecBole on ml-100k: per-seed runs, means, the time-to-best ratio and the
learning curves against wall time (sasrec_vs_recbole.json, else sasrec_ml100k_ours.json + recbole_*.json)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from modalrec.report import plots

from .fmt import code, f4, is_num, mean_sd, md_table, num, secs, times
from .page import Page
from .results import RECBOLE_RE, SVR, SVR_OURS, date_of, load_of, run_folder, short


def _recbole_row(r: dict) -> dict:
    """A run_recbole_sasrec.py JSON in the shape of sasrec_vs_recbole.py's rows."""
    t = r.get("timing") or {}
    pess = ((r.get("diagnostics") or {}).get("test") or {}).get("pessimistic") or r.get("test") or {}
    return {
        "seed": (r.get("args") or {}).get("seed"),
        "time_to_best_s": t.get("time_to_best_s"),
        "fit_seconds": t.get("fit_seconds"),
        "epochs_run": t.get("epochs_run"),
        "best_epoch": (r.get("best") or {}).get("epoch"),  # RecBole counts epochs from 0
        "stopped_by_time_budget": t.get("stopped_by_time_budget"),
        "mean_epoch_seconds": t.get("mean_epoch_seconds"),
        "parameters": (r.get("model_info") or {}).get("n_parameters"),
        "test": {k.lower(): v for k, v in pess.items()},
        "_raw": r,
    }


def _hr(test: dict):
    return test.get("hr@10", test.get("hit@10"))


def _read_json(path) -> dict | None:
    if not path or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text())
    except Exception:
        return None


def sasrec_recbole(page: Page) -> dict | None:
    """Ours and RecBole on ml-100k: from sasrec_vs_recbole.json, else from the per-side files."""
    d = page.get(SVR)
    if isinstance(d, dict) and isinstance(d.get("ml100k"), dict):
        rb = [{**r, "_raw": _read_json(r.get("json"))} for r in d["ml100k"].get("recbole") or []]
        return {"files": [SVR], "meta": d, "ours": d["ml100k"].get("ours") or [], "recbole": rb}
    ours_d = page.get(SVR_OURS)
    rb_files = sorted(n for n in page.results if RECBOLE_RE.match(n))
    if not isinstance(ours_d, dict) and not rb_files:
        return None
    rb = [_recbole_row(page.get(n)) for n in rb_files if isinstance(page.get(n), dict)]
    ours = ((ours_d or {}).get("ml100k") or {}).get("ours") or []
    rb += [r for r in ((ours_d or {}).get("ml100k") or {}).get("recbole") or []]
    return {"files": ([SVR_OURS] if ours_d else []) + rb_files, "meta": ours_d or {}, "ours": ours, "recbole": rb}


def _protocol(page: Page, x: dict) -> None:
    meta, rb = x["meta"], x["recbole"]
    page.para(
        "Sources: "
        + ", ".join(f"`{f}`" for f in x["files"])
        + "; date: "
        + (date_of(meta) or "not recorded in the JSON")
        + (f"; {load_of(meta)}" if load_of(meta) else "")
        + "."
    )
    over = meta.get("ours_overrides_ml100k") or []
    rb_proto = next((r["_raw"].get("protocol") for r in rb if r.get("_raw")), None) or {}
    hist_ours = "eval.exclude_history=false" not in over
    proto = [f"same {(meta.get('ml100k_summary') or {}).get('name', 'ml-100k')} sequences and split on both sides"]
    if rb_proto:
        proto.append(
            f"RecBole: {rb_proto.get('split')}, {rb_proto.get('ranking')}, history "
            f"{'excluded' if rb_proto.get('history_masked') else 'not excluded'}, {rb_proto.get('loss')}"
        )
    proto.append(
        f"ours: history {'excluded' if hist_ours else 'not excluded'} (unlike the rest of this page), pessimistic ties"
    )
    if meta.get("threads") is not None:
        proto.append(f"torch threads: {meta['threads']}")
    page.para(
        "Protocol: " + "; ".join(proto) + ". Time to best = wall time from the start of training to the end "
        "of the best epoch's validation pass."
    )
    if meta.get("model_size"):
        page.para(
            "Model size (both sides): " + ", ".join(f"{k} {v}" for k, v in meta["model_size"].items()) + ". "
            "Our side's other training settings (listed under the tables) were chosen on validation NDCG@10; "
            'bench/recbole/README.md, "Our side\'s settings", gives the candidates and their scores.'
        )


def _sides(x: dict) -> tuple[tuple[str, list[dict]], ...]:
    return ("modalrec", x["ours"]), ("RecBole", x["recbole"])


def _runs_table(page: Page, x: dict) -> None:
    rows = []
    for side, rs in _sides(x):
        for r in sorted(rs, key=lambda r: (r.get("seed") is None, r.get("seed"))):
            cut = r.get("stopped_by_time_budget")
            best = r.get("best_epoch")
            if side == "RecBole":  # its epochs count from 0; shown from 1 like ours
                best = ((r.get("_raw") or {}).get("timing") or {}).get("epochs_to_best") or (
                    best + 1 if isinstance(best, int) else best
                )
            rows.append(
                [
                    side,
                    r.get("seed"),
                    secs(r.get("time_to_best_s")) + (" (cut by time budget)" if cut else ""),
                    f4((r.get("test") or {}).get("ndcg@10")),
                    f4(_hr(r.get("test") or {})),
                    best,
                    r.get("epochs_run"),
                    num(r.get("parameters")),
                ]
            )
    page.add(
        *md_table(
            [
                "library",
                "seed",
                "time to best",
                "test NDCG@10",
                "test HR@10",
                "best epoch (from 1)",
                "epochs run",
                "parameters",
            ],
            rows,
            right=(1, 3, 4, 5, 6, 7),
        ),
        "",
    )


def _summary_table(page: Page, x: dict) -> None:
    summ = []
    for side, rs in _sides(x):
        t = [r["time_to_best_s"] for r in rs if is_num(r.get("time_to_best_s"))]
        n = [r["test"]["ndcg@10"] for r in rs if is_num((r.get("test") or {}).get("ndcg@10"))]
        h = [_hr(r["test"]) for r in rs if is_num(_hr(r.get("test") or {}))]
        if t:
            (tm, ts), (nm, ns), (hm, hs) = mean_sd(t), mean_sd(n or [float("nan")]), mean_sd(h or [float("nan")])
            summ.append(
                [
                    side,
                    len(t),
                    f"{secs(tm)} ± {secs(ts)}" if len(t) > 1 else secs(tm),
                    f"{nm:.4f} ± {ns:.4f}" if len(n) > 1 else f4(nm),
                    f"{hm:.4f} ± {hs:.4f}" if len(h) > 1 else f4(hm),
                ]
            )
    if summ:
        page.para("Mean ± std over seeds:")
        page.add(*md_table(["library", "runs", "time to best", "test NDCG@10", "test HR@10"], summ, right=(1,)), "")


def _recbole_missing(page: Page, x: dict) -> None:
    if not x["recbole"] and (x.get("meta") or {}).get("skip_recbole"):
        page.para(
            "RecBole: **skipped** in this run (`--skip-recbole`; the quick report skips it, as one RecBole "
            "epoch alone takes minutes here). `python bench/sasrec_vs_recbole.py` runs both sides."
        )
    elif not x["recbole"]:
        page.para("RecBole: **not run yet** (`python bench/sasrec_vs_recbole.py`).")


def _paired_seeds(page: Page, x: dict, ratios: list) -> None:
    """Time to best and NDCG@10 on the seeds both libraries ran; the ratio goes to the speed plot."""
    ours, rb = x["ours"], x["recbole"]
    common = sorted({r.get("seed") for r in ours} & {r.get("seed") for r in rb} - {None})
    if not common:
        return
    to = [next(r for r in ours if r.get("seed") == s) for s in common]
    tr = [next(r for r in rb if r.get("seed") == s) for s in common]
    a = statistics.fmean(r["time_to_best_s"] for r in to)
    b = statistics.fmean(r["time_to_best_s"] for r in tr)
    cut = any(r.get("stopped_by_time_budget") for r in tr)
    dn = statistics.fmean(r["test"]["ndcg@10"] for r in to) - statistics.fmean(r["test"]["ndcg@10"] for r in tr)
    seeds = ", ".join(str(s) for s in common)
    s = (
        f"On the seed{'s' if len(common) > 1 else ''} both sides ran ({seeds}): RecBole needed "
        f"{'at least ' if cut else ''}{times(b / a)} modalrec's time to best ({secs(b)} vs {secs(a)}); "
        f"test NDCG@10 modalrec minus RecBole: {dn:+.4f}."
    )
    if cut:
        s += (
            " RecBole was stopped by its time budget: its time to best is a lower bound and its model had not "
            "converged."
        )
    s += (
        " The two do not train the same way, so the time ratio is not a speed-up of one implementation over "
        "the other: RecBole's SASRec makes every prefix of a user's sequence an example of its own and "
        "computes the loss at that example's last position (batches of 2048 examples, as configured); "
        "modalrec computes it at every position of overlapping windows of up to max_len items (stride 10), so "
        "one forward pass trains up to max_len targets. Both are evaluated the same way (history included, "
        "as RecBole does)."
    )
    page.para(s)
    ratios.append((f"SASRec time to best: modalrec over RecBole (seed {seeds})", b / a, cut))


def _curve_series(x: dict) -> tuple[list, int]:
    """(label, seconds, validation NDCG@10) per run; how many of our run folders are not here."""
    series, missing = [], 0
    for r in sorted(x["ours"], key=lambda r: r.get("seed") or 0):
        f = run_folder(r.get("run_dir"))
        recs = plots.read_epochs(f / "metrics.jsonl") if f else []
        pts = [
            (e["elapsed_s"], e["valid"]["ndcg@10"])
            for e in recs
            if is_num(e.get("elapsed_s")) and is_num((e.get("valid") or {}).get("ndcg@10"))
        ]
        if pts:
            series.append((f"modalrec seed {r.get('seed')}", [p[0] for p in pts], [p[1] for p in pts]))
        else:
            missing += 1
    for r in x["recbole"]:
        eps = (r.get("_raw") or {}).get("epochs") or []
        pts = [
            (e["valid_end_s"], (e.get("valid_result") or {}).get("ndcg@10"))
            for e in eps
            if is_num(e.get("valid_end_s")) and is_num((e.get("valid_result") or {}).get("ndcg@10"))
        ]
        if pts:
            series.append((f"RecBole seed {r.get('seed')}", [p[0] for p in pts], [p[1] for p in pts]))
    return series, missing


def _curves(page: Page, x: dict) -> None:
    series, missing = _curve_series(x)
    if series:
        path = page.plot(
            "curves_sasrec_recbole",
            lambda p: plots.curves(
                p,
                series,
                title="SASRec on ml-100k: validation NDCG@10 against training wall time",
                xlabel="seconds since the start of training (log scale)",
                ylabel="validation NDCG@10",
                log_x=True,
            ),
        )
        page.image(path, "SASRec vs RecBole learning curves")
    if missing:
        page.para(f"_Curves: {missing} modalrec run folder(s) named in the JSON are not on this machine._")


def _recbole_command(args: dict) -> str:
    """run_recbole_sasrec.py's command line rebuilt from the arguments its JSON records."""
    parts = ["RECBOLE_VENV/bin/python bench/recbole/run_recbole_sasrec.py"]
    for k, v in args.items():
        if v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(flag if v is True else f"{flag} {short(str(v))}")
    return " ".join(parts)


def _commands(page: Page, x: dict) -> None:
    over = x["meta"].get("ours_overrides_ml100k") or []
    page.para("modalrec options: " + " ".join(f"`{o}`" for o in over) if over else "")
    cmds = ["python bench/sasrec_vs_recbole.py"]
    for r in x["recbole"]:
        a = (r.get("_raw") or {}).get("args")
        if isinstance(a, dict):
            cmds.append(_recbole_command(a))
    page.para(
        "Commands (the RecBole line is rebuilt from the arguments its JSON records; RECBOLE_VENV is RecBole's "
        "own venv, made by bench/recbole/setup_venv.sh):"
    )
    page.add(*code(cmds), "")


def section_sasrec_recbole(page: Page, ratios: list) -> None:
    page.add("### SASRec: modalrec against RecBole", "")
    x = sasrec_recbole(page)
    if x is None:
        page.not_run("sasrec_vs_recbole.py")
        return
    _protocol(page, x)
    _runs_table(page, x)
    _summary_table(page, x)
    _recbole_missing(page, x)
    _paired_seeds(page, x, ratios)
    _curves(page, x)
    _commands(page, x)
