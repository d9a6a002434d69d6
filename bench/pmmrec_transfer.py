"""PMMRec transfer experiments: ml-1m -> ml-100k and ml-1m -> ml-latest-small-2016 (cold items).

Every run is the `modalrec` command line in a subprocess (its peak RSS is measured with wait4);
run folders live under --work and are reused when finished (results.json present), so the script
can be interrupted and rerun. Protocol: leave-one-out, exact full ranking, history excluded
(modalrec's default), pessimistic ties; model selection on validation NDCG@10.

Settings on ml-100k (posters rendered from metadata give the image modality), per seed:
  pop, sasrec                            baselines on the same split
  pmmrec scratch                         trained on ml-100k only
  pmmrec pretrained + fine-tuned         all components from the ml-1m pre-train
  pmmrec zero-shot                       the ml-1m pre-train evaluated as is (train.epochs=0)
  text-only / image-only                 the same three for single-modality models (a text-only
                                         model starts from the multi-modal checkpoint)
  ablations                              pre-trained without NICL / NID / RCL, then fine-tuned and
                                         zero-shot; their pre-trains are --ablation-epochs long (default
                                         1: three more full pre-trains would take 2.5 hours here), beside
                                         a full-loss pre-train of the same budget as their reference
                                         (--skip-ablations leaves them out)
ml-latest-small-2016 (every movie kept: data.min_item_inter=1): zero-shot from the ml-1m
pre-train, and pop trained on the target; HR@10 on the test targets whose movie ("Title (Year)") never occurs in ml-1m; random ranking's expected
HR@10 for comparison. SASRec trained on ml-1m cannot score those movies at all (no embedding).

    python bench/pmmrec_transfer.py                     # the reference tables: 3 seeds, 12 fine-tune
                                                        # epochs, ablations (about 5 hours on 2 CPU cores)
    python bench/pmmrec_transfer.py --quick             # one seed, 3 fine-tune epochs, short pre-train
"""

from __future__ import annotations

import argparse
import json
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "pmmrec"))
    ap.add_argument("--pretrain", default="", help="use this finished ml-1m pre-train run instead of training one")
    ap.add_argument("--ft-epochs", type=int, default=12, help="fine-tune / scratch epochs (patience 3)")
    ap.add_argument(
        "--single-modality-seeds",
        type=int,
        default=3,
        help="how many of --seeds also run the text-only and image-only models",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one seed, 3 fine-tune epochs, SASRec capped at 10 epochs, no single-modality runs, no ablations; "
        "without --pretrain, a short pre-train (1 epoch, each user's 20 most recent events)",
    )
    ap.add_argument("--skip-cold", action="store_true")
    abl = ap.add_mutually_exclusive_group()
    abl.add_argument(
        "--ablations",
        dest="ablations",
        action="store_true",
        default=True,
        help="pre-train without NICL, without NID and without RCL (each its own ml-1m pre-train), "
        "then fine-tune each on ml-100k with every seed and evaluate it zero-shot (the default)",
    )
    abl.add_argument("--skip-ablations", dest="ablations", action="store_false", help="leave the ablations out")
    ap.add_argument(
        "--ablation-epochs",
        type=int,
        default=1,
        help="pre-training epochs of the ablations; when > 0 a full-loss pre-train with the same budget "
        "is added as their reference (0: the model default, like the main pre-train, no reference)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: report the runs already finished under --work (the table says how many)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pmmrec_transfer.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.ft_epochs, args.seeds, args.single_modality_seeds = QUICK_FT_EPOCHS, args.seeds[:1], 0
        args.ablations = False
    return args


def pretrain_windows(pre: Path) -> int | None:
    """How many training windows one epoch of the pre-train run had (for its throughput; informative only)."""
    try:
        from modalrec.config import load_run_config
        from modalrec.data.batches import training_windows
        from modalrec.data.prepare import load_or_prepare

        pcfg = load_run_config(pre / "config.yaml")
        pds = load_or_prepare(pcfg.data, progress=False)
        return len(training_windows(pds.split.train, pcfg.model.max_len, pcfg.train.window_stride)[0])
    except Exception as e:
        print(f"(could not count pre-training windows: {e})")
        return None


def finetune_options(args: argparse.Namespace) -> list[str]:
    """The options of every fine-tune and from-scratch PMMRec run on the target."""
    return ["train.epochs=%d" % args.ft_epochs, "train.patience=3", "data.posters=true"]


def seed_runs(r: TransferRuns, args: argparse.Namespace, work: Path, pre: Path, seed: int) -> None:
    """Pop, SASRec and PMMRec (scratch, fine-tuned, zero-shot; single-modality too) with one seed."""
    s = f"train.seed={seed}"
    ft = finetune_options(args)
    r.go(
        "pop",
        ["train", "--model", "pop", "--dataset", "ml-100k", "--out", str(work / f"pop-s{seed}"), "--quiet", s],
        work / f"pop-s{seed}",
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
            str(work / f"sasrec-s{seed}"),
            "--quiet",
            s,
            "train.window_stride=25",
            *QUICK_SASREC * args.quick,
        ],
        work / f"sasrec-s{seed}",
    )
    mods = [("both", [])]
    if seed in args.seeds[: args.single_modality_seeds]:
        mods += [("text", ["model.modalities=text"]), ("image", ["model.modalities=image"])]
    for tag, mo in mods:
        name = f"pmmrec-{tag}"
        r.go(
            f"{name} scratch",
            [
                "train",
                "--model",
                "pmmrec",
                "--dataset",
                "ml-100k",
                "--out",
                str(work / f"{name}-scratch-s{seed}"),
                "--quiet",
                s,
                *ft,
                *mo,
            ],
            work / f"{name}-scratch-s{seed}",
        )
        r.go(
            f"{name} pretrained+finetuned",
            [
                "finetune",
                "--from",
                str(pre),
                "--dataset",
                "ml-100k",
                "--out",
                str(work / f"{name}-ft-s{seed}"),
                "--quiet",
                s,
                *ft,
                *mo,
            ],
            work / f"{name}-ft-s{seed}",
        )
        if seed == args.seeds[0]:  # zero-shot is deterministic: one run
            r.go(
                f"{name} zero-shot",
                [
                    "finetune",
                    "--from",
                    str(pre),
                    "--dataset",
                    "ml-100k",
                    "--out",
                    str(work / f"{name}-zs"),
                    "--quiet",
                    "train.epochs=0",
                    "data.posters=true",
                    *mo,
                ],
                work / f"{name}-zs",
            )


def ablation_settings(args: argparse.Namespace, work: Path) -> list[tuple[str, list[str], Path, str]]:
    """(label, options, pre-train folder, setting name) of every pre-training ablation."""
    variants = [
        ("without NICL", "model.nicl=false"),
        ("without NID", "model.nid=false"),
        ("without RCL", "model.rcl=false"),
    ]
    budget = [f"train.epochs={args.ablation_epochs}"] if args.ablation_epochs else []
    if budget:  # the reference for a shortened pre-training: all losses, same budget
        variants.insert(0, ("all losses", ""))
    ablations = []
    for label, off in variants:
        tag = (off.split("=")[0].split(".")[1] if off else "all") + (f"-e{args.ablation_epochs}" if budget else "")
        apre = work / f"pretrain-ml1m-{'no-' if off else ''}{tag}"
        e = args.ablation_epochs
        name = f"pmmrec-both ablation, pre-trained {label}" + (f" ({e} epoch{'s' * (e != 1)})" if budget else "")
        ablations.append((label, [off] if off else [], apre, name))
    return ablations


def ablation_runs(r: TransferRuns, args: argparse.Namespace, work: Path) -> None:
    """Seed-major: every variant gets its pre-train, zero-shot and first seed before any gets a second,
    so an interrupted run still has a complete (one-seed) ablation table."""
    budget = [f"train.epochs={args.ablation_epochs}"] if args.ablation_epochs else []
    ft = finetune_options(args)
    for seed in args.seeds:
        for label, opts, apre, name in ablation_settings(args, work):
            if seed == args.seeds[0]:
                if (
                    r.go(
                        f"pretrain ml-1m, {label}",
                        [
                            "train",
                            "--model",
                            "pmmrec",
                            "--dataset",
                            "ml-1m",
                            "--out",
                            str(apre),
                            "--quiet",
                            "data.posters=true",
                            *budget,
                            *opts,
                        ],
                        apre,
                    )
                    is None
                ):
                    continue
                out = work / f"ablation-{apre.name}-zs"
                r.go(
                    f"{name}, zero-shot",
                    [
                        "finetune",
                        "--from",
                        str(apre),
                        "--dataset",
                        "ml-100k",
                        "--out",
                        str(out),
                        "--quiet",
                        "train.epochs=0",
                        "data.posters=true",
                    ],
                    out,
                )
            elif not (apre / "results.json").is_file():
                continue
            out = work / f"ablation-{apre.name}-ft-s{seed}"
            r.go(
                f"{name}, fine-tuned",
                [
                    "finetune",
                    "--from",
                    str(apre),
                    "--dataset",
                    "ml-100k",
                    "--out",
                    str(out),
                    "--quiet",
                    f"train.seed={seed}",
                    *ft,
                ],
                out,
            )


def cold_runs(r: TransferRuns, work: Path, pre: Path) -> dict:
    """ml-latest-small-2016 with every movie kept (no item k-core: the cold movies are mostly rare ones,
    and a 5-core filter would drop most of them): zero-shot and Pop, on the movies ml-1m never had."""
    all_items = ["data.min_item_inter=1"]
    zs = work / "pmmrec-both-zs-mlsmall-all"
    r_zs = r.go(
        "ml-latest-small zero-shot",
        [
            "finetune",
            "--from",
            str(pre),
            "--dataset",
            "ml-latest-small-2016",
            "--out",
            str(zs),
            "--quiet",
            "train.epochs=0",
            "data.posters=true",
            *all_items,
        ],
        zs,
    )
    pop = work / "pop-mlsmall-all"
    r_pop = r.go(
        "ml-latest-small pop",
        ["train", "--model", "pop", "--dataset", "ml-latest-small-2016", "--out", str(pop), "--quiet", *all_items],
        pop,
    )
    if r_zs is None or r_pop is None:
        return {}
    titles = source_titles()
    return {
        "pmmrec zero-shot (pre-trained on ml-1m)": cold_eval(zs, titles),
        "pop (trained on ml-latest-small)": cold_eval(pop, titles),
        "sasrec (trained on ml-1m)": "cannot score: the movies have no ID embedding in ml-1m",
    }


def pretrain_record(pre: Path, windows: int | None) -> dict:
    pre_res = json.loads((pre / "results.json").read_text())
    thr = None
    if windows and pre_res.get("train_time_s"):
        thr = windows * pre_res["epochs_run"] / pre_res["train_time_s"]
    return {
        "best_epoch": pre_res.get("best_epoch"),
        "epochs_run": pre_res.get("epochs_run"),
        "train_time_s": pre_res.get("train_time_s"),
        "windows_per_epoch": windows,
        "windows_per_s": thr,
        "valid": pre_res["valid"]["metrics"],
        "test_ml1m": pre_res["test"]["metrics"],
    }


def print_summary(table: dict, cold: dict, pretrain: dict, r: TransferRuns) -> None:
    print_table(table)
    if cold:
        print("\nml-latest-small-2016, test targets never seen in ml-1m:")
        for k, v in cold.items():
            print(
                f"  {k}: {v if isinstance(v, str) else {a: (round(b, 4) if isinstance(b, float) else b) for a, b in v.items()}}"
            )
    if pretrain["windows_per_s"]:
        print(
            f"\npre-training throughput: {pretrain['windows_per_s']:.1f} windows (sequences of <= 20 items)/s; "
            f"pre-train wall {r.runs.get('pretrain ml-1m', [{}])[0].get('wall_s', 'n/a')} s"
        )


def main() -> int:
    args = parse_args()
    work = Path(args.work)
    r = TransferRuns(work / "logs", args.report_only)
    pre = Path(args.pretrain) if args.pretrain else work / "pretrain-ml1m"
    if not args.pretrain:
        r.go(
            "pretrain ml-1m",
            [
                "train",
                "--model",
                "pmmrec",
                "--dataset",
                "ml-1m",
                "--out",
                str(pre),
                "--quiet",
                "data.posters=true",
                *QUICK_PRETRAIN * args.quick,
            ],
            pre,
        )
    pretrain = pretrain_record(pre, pretrain_windows(pre))
    for seed in args.seeds:
        seed_runs(r, args, work, pre, seed)
    if args.ablations:
        ablation_runs(r, args, work)
    cold = {} if args.skip_cold else cold_runs(r, work, pre)
    table = r.table()
    print_summary(table, cold, pretrain, r)
    import torch

    write_result(
        args.out,
        {
            "protocol": PROTOCOL,
            "seeds": args.seeds,
            "ft_epochs": args.ft_epochs,
            "quick": args.quick,
            "pretrain_run": str(pre),
            "single_modality_seeds": min(args.single_modality_seeds, len(args.seeds)),
            "ablations": args.ablations,
            "ablation_epochs": args.ablation_epochs if args.ablations else None,
            "report_only": args.report_only,  # true: only the runs finished so far (see "runs" per row)
            "pretrain": pretrain,
            "table": table,
            "cold_ml_latest_small": cold,
            "machine": {
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
            },
            "command": "python " + " ".join([f"bench/{Path(__file__).name}", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
