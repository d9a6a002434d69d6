"""SASRec: modalrec against RecBole 1.2.1 on ml-100k, and modalrec alone on ml-1m.

Part 1 (ml-100k, same data, same protocol, same model size, several seeds):
  * our pipeline prepares ml-100k (defaults: 5-core, leave-one-out) and the prepared sequences are
    exported as a RecBole atomic file whose timestamps are each event's position in its user's
    sequence, so both libraries see exactly the same sequences and the same split;
  * both are evaluated by exact full ranking with the history NOT excluded (RecBole's behaviour for
    sequential models); RecBole's test metrics are taken pessimistic (its own re-scoring, see
    bench/recbole/README.md), ours are pessimistic by construction;
  * measured: wall time from the start of training to the end of the validation pass of the best
    epoch (training and validation passes included, data preparation excluded), test NDCG@10 and
    HR@10. RecBole runs in its own venv (bench/recbole/setup_venv.sh) and never becomes a
    dependency of modalrec.
  RecBole turns every prefix into a training sample, so one of its epochs costs minutes here; give
  it a time budget with --recbole-time-budget. A run cut by its budget is reported as such: its
  time to best is then a lower bound and its metrics are those of an unconverged model.
  Each finished RecBole run is also kept as bench/results/recbole_ml100k_s<SEED>.json (a converged run
  replaces one cut by a budget, never the reverse); a later call reuses a kept run that converged on
  the same data and setting instead of spending hours on it again (--rerun-recbole: run it anyway).

Part 2 (ml-1m): our SASRec alone, leave-one-out, full ranking (history excluded, the default), test
HR@10 and NDCG@10 against the published full-ranking SASRec+ figure HR@10 = 0.2853 (Klenitskiy and
Vasilev, RecSys 2023).

Prints a table and writes JSON (bench/results/sasrec_vs_recbole.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from harness.output import write_result
from harness.runs import run_cli
from reporting.fmt import mean_sd

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_ML1M_HR10 = 0.2853

# The same model size on both sides (RecBole's names in brackets).
SIZE = {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.2, "max_len": 50, "lr": 1e-3}
OURS_100K = [
    f"model.hidden_size={SIZE['hidden']}",
    f"model.n_layers={SIZE['layers']}",
    f"model.n_heads={SIZE['heads']}",
    f"model.inner_size={SIZE['inner']}",
    f"model.dropout={SIZE['dropout']}",
    f"model.attn_dropout={SIZE['dropout']}",
    f"model.max_len={SIZE['max_len']}",
    f"train.lr={SIZE['lr']}",
    "train.batch_size=64",
    "train.epochs=300",
    "train.patience=10",
    "train.window_stride=10",
    "model.norm_first=false",
    "eval.exclude_history=false",
]
# window_stride=10 (every target sees at least 40 items of context) and post-LN blocks (norm_first=false, as
# RecBole's SASRec) were picked on VALIDATION NDCG@10, mean of seeds 0-2, in two rounds each declared before it
# ran (bench/recbole/README.md, "Our side's settings").
# ml-1m: the SASRec+ shape (window 200, one head), every position a target.
OURS_1M = [
    "model.max_len=200",
    "model.n_heads=1",
    "model.hidden_size=64",
    "model.n_layers=2",
    "model.inner_size=256",
    "model.dropout=0.2",
    "model.attn_dropout=0.2",
    "train.batch_size=128",
    "train.lr=1e-3",
    "train.epochs=200",
    "train.patience=10",
]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def export_atomic(out_dir: Path, name: str) -> dict:
    """Write our prepared ml-100k as NAME.inter: rows in sequence order, timestamp = position."""
    import numpy as np

    from modalrec.config import build_config
    from modalrec.data.prepare import load_or_prepare

    ds = load_or_prepare(build_config(overrides=["data.dataset=ml-100k"]).data, progress=False)
    lens = np.diff(ds.offsets)
    users = np.repeat(ds.user_ids, lens)
    pos = np.arange(len(ds.items)) - np.repeat(ds.offsets[:-1], lens)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"{name}.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, i, t in zip(users.tolist(), ds.catalogue.item_ids[ds.items].tolist(), pos.tolist()):
            f.write(f"{u}\t{i}\t{t}\n")
    return ds.summary()


def ours(dataset: str, overrides: list[str], seed: int, out: Path, threads: int = 0) -> dict:
    """Train our SASRec into ``out``, or reuse the finished run there if the same command made it
    (the transfer benchmarks' run-or-resume, harness.runs.run_cli; its output goes to ``out``'s logs/)."""
    args = [
        "train",
        "--model",
        "sasrec",
        "--dataset",
        dataset,
        "--out",
        str(out),
        "--quiet",
        *overrides,
        f"train.seed={seed}",
        f"train.threads={threads}",
    ]
    print(f"$ modalrec {' '.join(args)}", flush=True)
    res = run_cli(args, out, out.parent / "logs" / f"{out.name}.log")
    return {
        "seed": seed,
        "time_to_best_s": res["time_to_best_s"],
        "train_time_s": res["train_time_s"],
        "best_epoch": res["best_epoch"],
        "epochs_run": res["epochs_run"],
        "parameters": res["parameters"],
        "test": res["test"]["metrics"],
        "valid": res["valid"]["metrics"],
        "run_dir": str(out),
    }


# Finished RecBole runs are kept beside the other results (and committed): one converged RecBole seed
# takes hours on this CPU, more than one working session, so the seeds are built up over several.
KEPT = ROOT / "bench" / "results"


def kept_recbole(seed: int) -> Path:
    return KEPT / f"recbole_ml100k_s{seed}.json"


def converged(r: dict) -> bool:
    """RecBole stopped by its own early stopping (or ran every epoch asked), not by a time budget."""
    return not r["timing"]["stopped_by_time_budget"]


def reusable(kept: Path, data_sha: str, wanted: dict) -> bool:
    """A kept run counts as this seed's result only if it converged, on the same data and setting."""
    try:
        r = json.loads(kept.read_text())
        return (
            converged(r)
            and r["data"]["source_sha256"] == data_sha
            and all(r["args"].get(k) == v for k, v in wanted.items())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def keep(out: Path, kept: Path) -> None:
    """Keep a finished run unless the kept one is at least as good: converged beats cut by a budget, and
    between two cut runs the one with more epochs wins."""
    from modalrec.utils import atomic_write_text

    text = out.read_text()
    new = json.loads(text)
    try:
        old = json.loads(kept.read_text())
        better = converged(new) or (not converged(old) and new["timing"]["epochs_run"] >= old["timing"]["epochs_run"])
    except (OSError, ValueError, KeyError, TypeError):
        better = True
    if better:
        atomic_write_text(kept, text)
        print(f"kept {kept.relative_to(ROOT)}", flush=True)


def recbole(
    venv: Path,
    data_dir: Path,
    name: str,
    seed: int,
    out: Path,
    budget: float,
    epochs: int,
    threads: int = 0,
    rerun: bool = False,
) -> dict:
    # the runner's arguments that define the run: passed to it, and compared with a kept run's `args`
    setting = {
        "epochs": epochs,
        "hidden_size": SIZE["hidden"],
        "n_layers": SIZE["layers"],
        "n_heads": SIZE["heads"],
        "inner_size": SIZE["inner"],
        "dropout": SIZE["dropout"],
        "max_len": SIZE["max_len"],
        "batch_size": 2048,
        "lr": SIZE["lr"],
        "stopping_step": 10,
        "threads": threads,
        "time_order": "exact",
    }
    kept = kept_recbole(seed)
    if not out.is_file() and not rerun:
        with open(data_dir / f"{name}.inter", "rb") as f:
            data_sha = hashlib.file_digest(f, "sha256").hexdigest()
        if reusable(kept, data_sha, setting):
            print(
                f"RecBole seed {seed}: reusing the converged run kept in {kept.relative_to(ROOT)} "
                "(--rerun-recbole runs it again)",
                flush=True,
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(kept.read_text())
    if not out.is_file():
        py = venv / "bin" / "python"
        if not py.exists():
            run(["bash", str(ROOT / "bench/recbole/setup_venv.sh"), str(venv)])
        cmd = [
            str(py),
            str(ROOT / "bench/recbole/run_recbole_sasrec.py"),
            "--data-dir",
            str(data_dir),
            "--dataset",
            name,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--quiet",
        ]
        for k, v in setting.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        if budget > 0:
            cmd += ["--time-budget", str(budget)]
        run(cmd)
        keep(out, kept)
    r = json.loads(out.read_text())
    pess = r["diagnostics"]["test"]["pessimistic"]
    return {
        "seed": seed,
        "time_to_best_s": r["timing"]["time_to_best_s"],
        "fit_seconds": r["timing"]["fit_seconds"],
        "epochs_run": r["timing"]["epochs_run"],
        "best_epoch": r["best"]["epoch"],
        "stopped_by_time_budget": r["timing"]["stopped_by_time_budget"],
        "mean_epoch_seconds": r["timing"]["mean_epoch_seconds"],
        "parameters": r["model_info"]["n_parameters"],
        "test": {k.lower(): v for k, v in pess.items()},
        "json": str(out),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "runs/bench/sasrec"), help="run folders (reused if finished)")
    ap.add_argument(
        "--recbole-venv", default=os.environ.get("RECBOLE_VENV", str(Path.home() / ".cache/modalrec/recbole-venv"))
    )
    ap.add_argument("--recbole-time-budget", type=float, default=0.0, help="seconds per RecBole run (0 = none)")
    ap.add_argument("--recbole-epochs", type=int, default=200)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both libraries on ml-100k (same on both sides; 0 = torch default)",
    )
    ap.add_argument(
        "--ours-epochs",
        type=int,
        default=0,
        help="cap our SASRec's epochs on ml-100k (0 = the comparison's default, early stopping decides)",
    )
    ap.add_argument("--skip-recbole", action="store_true")
    ap.add_argument(
        "--rerun-recbole",
        action="store_true",
        help="run RecBole even for seeds whose converged run is kept in bench/results/",
    )
    ap.add_argument("--skip-ml1m", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench/results/sasrec_vs_recbole.json"))
    return ap.parse_args(argv)


def run_ml100k(args: argparse.Namespace, work: Path, data_dir: Path) -> dict[str, list[dict]]:
    """Both libraries on ml-100k, seed by seed: {"ours": [...], "recbole": [...]}."""
    ml100k: dict[str, list[dict]] = {"ours": [], "recbole": []}
    cap = [f"train.epochs={args.ours_epochs}"] if args.ours_epochs else []
    for seed in args.seeds:
        ml100k["ours"].append(ours("ml-100k", [*OURS_100K, *cap], seed, work / f"ours-ml100k-s{seed}", args.threads))
        if not args.skip_recbole:
            ml100k["recbole"].append(
                recbole(
                    Path(args.recbole_venv),
                    data_dir,
                    "mr_ml100k",
                    seed,
                    work / f"recbole-ml100k-s{seed}.json",
                    args.recbole_time_budget,
                    args.recbole_epochs,
                    args.threads,
                    args.rerun_recbole,
                )
            )
    return ml100k


def summarise(report: dict, ml100k: dict[str, list[dict]]) -> list[tuple]:
    """Mean and std per library into ``report`` (and their ratio when both ran); the rows printed."""
    rows = []
    for side, runs in ml100k.items():
        if not runs:
            continue
        t = mean_sd([r["time_to_best_s"] for r in runs])
        n = mean_sd([r["test"]["ndcg@10"] for r in runs])
        h = mean_sd(
            [r["test"]["hr@10"] if "hr@10" in r["test"] else r["test"]["hit@10"] for r in runs]
        )  # RecBole: hit@10
        cut = any(r.get("stopped_by_time_budget") for r in runs)
        rows.append((side, t, n, h, cut))
        report[f"ml100k_{side}_summary"] = {
            "time_to_best_s": t,
            "test_ndcg@10": n,
            "test_hr@10": h,
            "cut_by_time_budget": cut,
        }
    if len(rows) == 2:
        ours_t, rb_t = rows[0][1][0], rows[1][1][0]
        report["time_ratio_ours_over_recbole"] = ours_t / rb_t
        report["ndcg_ours_minus_recbole"] = rows[0][2][0] - rows[1][2][0]
    return rows


def print_summary(report: dict, rows: list[tuple], seeds: list[int]) -> None:
    print(f"\nml-100k, leave-one-out, full ranking, history not excluded, pessimistic ties, seeds {seeds}")
    print(f"{'':<10}{'time to best (s)':>22}{'test NDCG@10':>20}{'test HR@10':>20}")
    for side, t, n, h, cut in rows:
        note = "  (cut by time budget: lower bound, unconverged)" if cut else ""
        print(f"{side:<10}{t[0]:>14.1f} ± {t[1]:<6.1f}{n[0]:>12.4f} ± {n[1]:.4f}{h[0]:>12.4f} ± {h[1]:.4f}{note}")
    if "time_ratio_ours_over_recbole" in report:
        print(
            f"time ratio ours/RecBole: {report['time_ratio_ours_over_recbole']:.3f}   "
            f"NDCG@10 ours - RecBole: {report['ndcg_ours_minus_recbole']:+.4f}"
        )
    if "ml1m" in report:
        m = report["ml1m"]
        print(
            f"\nml-1m (ours, seed {m['seed']}): test HR@10 {m['test']['hr@10']:.4f}  NDCG@10 "
            f"{m['test']['ndcg@10']:.4f}  (published SASRec+ HR@10 {PUBLISHED_ML1M_HR10}); "
            f"best epoch {m['best_epoch']}, {m['train_time_s']:.0f}s"
        )


def main() -> int:
    args = parse_args()
    work = Path(args.work)
    report: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "threads": args.threads,
        "skip_recbole": args.skip_recbole,
        "model_size": SIZE,
        "ours_overrides_ml100k": OURS_100K + ([f"train.epochs={args.ours_epochs}"] if args.ours_epochs else []),
        "ours_overrides_ml1m": OURS_1M,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    data_dir = work / "recbole-data"
    report["ml100k_summary"] = export_atomic(data_dir, "mr_ml100k")
    report["ml100k"] = run_ml100k(args, work, data_dir)
    rows = summarise(report, report["ml100k"])
    if not args.skip_ml1m:
        report["ml1m"] = ours("ml-1m", OURS_1M, args.seeds[0], work / f"ours-ml1m-s{args.seeds[0]}")
        report["ml1m"]["published_sasrec_plus_hr@10"] = PUBLISHED_ML1M_HR10
    print_summary(report, rows, args.seeds)
    write_result(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
