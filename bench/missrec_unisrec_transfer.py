"""MISSRec and UniSRec transfer experiments: ml-1m -> ml-100k, ml-1m -> ml-latest-small-2016 (cold items),
and MISSRec ablations. Same protocol, splits and run mechanics as bench/pmmrec_transfer.py (every run
is the `modalrec` command line in a subprocess, run folders under --work are reused when finished,
so the script can be interrupted and rerun); Pop and SASRec come from that script's folders
(--baselines) when they exist there, else they are trained here.

Per model (missrec, unisrec) and seed, on ml-100k (posters rendered from metadata for MISSRec):
  scratch, inductive / transductive          trained on ml-100k only
  pre-trained + fine-tuned, ind. / trans.    parameter-efficient: the ml-1m pre-train's encoder,
                                             decoder and positions (UniSRec: user encoder) frozen
  zero-shot (inductive, one run)             the pre-train evaluated as is
MISSRec ablations (scratch, inductive): no interest tokens (model.interests=false), static fusion
(model.fusion=static). ml-latest-small-2016 with every movie kept: zero-shot HR@10 on the test
targets whose movie never occurs in ml-1m.

    python bench/missrec_unisrec_transfer.py                     # 3 seeds (hours on 2 CPU cores)
    python bench/missrec_unisrec_transfer.py --quick             # one seed, 3 epochs, inductive only
    python bench/missrec_unisrec_transfer.py --report-only       # tabulate what has finished
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from harness.output import write_result
from harness.transfer import (
    PROTOCOL,
    QUICK_FT_EPOCHS,
    QUICK_PRETRAIN,
    QUICK_SASREC,
    TransferRuns,
    cold_eval,
    print_table,
    source_titles,
)

ROOT = Path(__file__).resolve().parents[1]

# model -> (extra options for every run, components frozen when fine-tuning, components transferred
# into a transductive model: everything but the ID table, whose size is the catalogue's)
MODELS = {
    "missrec": (
        ["data.posters=true"],
        "encoder,decoder,position",
        "text_adapter,image_adapter,position,item_norm,encoder,decoder,fusion",
    ),
    "unisrec": ([], "user_encoder", "text_encoder,adaptor,user_encoder"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "missrec_unisrec"))
    ap.add_argument(
        "--baselines",
        default=str(ROOT / "runs" / "bench" / "pmmrec"),
        help="folder of bench/pmmrec_transfer.py's pop-s*/sasrec-s* runs (reused)",
    )
    ap.add_argument("--ft-epochs", type=int, default=0, help="fine-tune/scratch epochs (0: the model's default)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"one seed, {QUICK_FT_EPOCHS} epochs, inductive only, no ablations, no cold items, a short "
        "pre-train (1 epoch, each user's 20 most recent events)",
    )
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-ablations", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "missrec_unisrec_transfer.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.ft_epochs, args.skip_ablations, args.skip_cold = args.seeds[:1], QUICK_FT_EPOCHS, True, True
    return args


def pretrain_runs(r: TransferRuns, args: argparse.Namespace, work: Path) -> dict:
    """Every model's pre-train on ml-1m (--quick: minutes, not half an hour); {model: its record}."""
    pretrains = {}
    for model in args.models:
        pre = work / f"{model}-pretrain-ml1m"
        x = r.go(
            f"{model} pre-train ml-1m",
            [
                "train",
                "--model",
                model,
                "--dataset",
                "ml-1m",
                "--out",
                str(pre),
                "--quiet",
                "model.stage=pretrain",
                *MODELS[model][0],
                *QUICK_PRETRAIN * args.quick,
            ],
            pre,
        )
        if x is not None:
            pretrains[model] = {
                "wall_s": x["wall_s"],
                "train_time_s": x.get("train_time_s"),
                "epochs_run": x.get("epochs_run"),
                "peak_rss_mib": x["peak_rss_mib"],
                "valid_ml1m": x["valid"]["metrics"],
                "test_ml1m": x["test"]["metrics"],
            }
    return pretrains


def baseline_runs(r: TransferRuns, args: argparse.Namespace, seed: int) -> None:
    """Pop and SASRec, reused from bench/pmmrec_transfer.py's folders when it made them with the same command."""
    base, s = Path(args.baselines), f"train.seed={seed}"
    r.go(
        "pop",
        ["train", "--model", "pop", "--dataset", "ml-100k", "--out", str(base / f"pop-s{seed}"), "--quiet", s],
        base / f"pop-s{seed}",
    )
    r.go(
        "sasrec",
        [
            "train",
            "--model",
            "sasrec",
            "--dataset",
            "ml-100k",
            "--out",
            str(base / f"sasrec-s{seed}"),
            "--quiet",
            s,
            "train.window_stride=25",
            *QUICK_SASREC * args.quick,
        ],
        base / f"sasrec-s{seed}",
    )


def model_runs(r: TransferRuns, args: argparse.Namespace, work: Path, model: str, seed: int) -> None:
    """One model with one seed: scratch and pre-trained + fine-tuned per mode, zero-shot (first seed)."""
    extra, freeze, transfer_td = MODELS[model]
    epochs = [f"train.epochs={args.ft_epochs}"] if args.ft_epochs else []
    s, pre = f"train.seed={seed}", work / f"{model}-pretrain-ml1m"
    for mode in ("inductive",) if args.quick else ("inductive", "transductive"):
        mo = [f"model.mode={mode}"]
        tag = f"{model} {mode}"
        out = work / f"{model}-{mode}-scratch-s{seed}"
        r.go(
            f"{tag} scratch",
            ["train", "--model", model, "--dataset", "ml-100k", "--out", str(out), "--quiet", s, *epochs, *extra, *mo],
            out,
        )
        if (pre / "results.json").is_file():
            tr = ["--transfer", transfer_td] if mode == "transductive" else []
            out = work / f"{model}-{mode}-ft-s{seed}"
            r.go(
                f"{tag} pre-trained+fine-tuned",
                [
                    "finetune",
                    "--from",
                    str(pre),
                    "--dataset",
                    "ml-100k",
                    "--out",
                    str(out),
                    "--quiet",
                    "--freeze",
                    freeze,
                    *tr,
                    s,
                    *epochs,
                    *extra,
                    *mo,
                ],
                out,
            )
    if seed == args.seeds[0] and (pre / "results.json").is_file():
        out = work / f"{model}-zs"
        r.go(
            f"{model} inductive zero-shot",
            [
                "finetune",
                "--from",
                str(pre),
                "--dataset",
                "ml-100k",
                "--out",
                str(out),
                "--quiet",
                "train.epochs=0",
                *extra,
            ],
            out,
        )


def missrec_ablations(r: TransferRuns, args: argparse.Namespace, work: Path, seed: int) -> None:
    """MISSRec from scratch (inductive) without interest tokens, and with static fusion."""
    epochs = [f"train.epochs={args.ft_epochs}"] if args.ft_epochs else []
    for abl, opt in (("no interest tokens", "model.interests=false"), ("static fusion", "model.fusion=static")):
        out = work / f"missrec-{opt.split('=')[0].split('.')[1]}-off-s{seed}"
        r.go(
            f"missrec inductive scratch, {abl}",
            [
                "train",
                "--model",
                "missrec",
                "--dataset",
                "ml-100k",
                "--out",
                str(out),
                "--quiet",
                f"train.seed={seed}",
                *epochs,
                *MODELS["missrec"][0],
                opt,
            ],
            out,
        )


def cold_runs(r: TransferRuns, args: argparse.Namespace, work: Path) -> dict:
    """Zero-shot on ml-latest-small-2016 (every movie kept), on the movies ml-1m never had."""
    cold, titles = {}, source_titles()
    for model in args.models:
        pre = work / f"{model}-pretrain-ml1m"
        if not (pre / "results.json").is_file():
            continue
        out = work / f"{model}-zs-mlsmall-all"
        x = r.go(
            f"{model} ml-latest-small zero-shot",
            [
                "finetune",
                "--from",
                str(pre),
                "--dataset",
                "ml-latest-small-2016",
                "--out",
                str(out),
                "--quiet",
                "train.epochs=0",
                "data.min_item_inter=1",
                *MODELS[model][0],
            ],
            out,
        )
        if x is not None:
            cold[f"{model} zero-shot (pre-trained on ml-1m)"] = cold_eval(out, titles)
    return cold


def print_summary(table: dict, pretrains: dict, cold: dict) -> None:
    print_table(table, wall=True)
    for model, p in pretrains.items():
        print(
            f"{model} pre-train on ml-1m: {p['wall_s']:.0f} s wall ({p['epochs_run']} epochs), "
            f"peak {p['peak_rss_mib']:.0f} MiB"
        )
    for k, v in cold.items():
        print(
            f"cold ml-latest-small, {k}: "
            + ", ".join(f"{a} {b:.4f}" if isinstance(b, float) else f"{a} {b}" for a, b in v.items())
        )


def main() -> int:
    args = parse_args()
    work = Path(args.work)
    r = TransferRuns(work / "logs", args.report_only)
    pretrains = pretrain_runs(r, args, work)
    for seed in args.seeds:
        baseline_runs(r, args, seed)
        for model in args.models:
            model_runs(r, args, work, model, seed)
            if model == "missrec" and not args.skip_ablations:
                missrec_ablations(r, args, work, seed)
    cold = {} if args.skip_cold else cold_runs(r, args, work)
    table = r.table(leave_out=lambda name: "pre-train ml-1m" in name or "ml-latest-small" in name)
    print_summary(table, pretrains, cold)
    import torch

    write_result(
        args.out,
        {
            "protocol": PROTOCOL,
            "seeds": args.seeds,
            "ft_epochs": args.ft_epochs or "model default",
            "quick": args.quick,
            "report_only": args.report_only,
            "pretrain": pretrains,
            "table": table,
            "cold_ml_latest_small": cold,
            "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
            "command": "python " + " ".join([f"bench/{Path(__file__).name}", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
