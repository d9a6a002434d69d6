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
import json
import os
import platform
import sys
import time
from pathlib import Path

from pmmrec_transfer import QUICK_FT_EPOCHS, QUICK_SASREC, cold_eval, finished, run_cli, summary

ROOT = Path(__file__).resolve().parents[1]

# model -> (extra options for every run, components frozen when fine-tuning, components transferred
# into a transductive model: everything but the ID table, whose size is the catalogue's)
MODELS = {
    "missrec": (["data.posters=true"], "encoder,decoder,position",
                "text_adapter,image_adapter,position,item_norm,encoder,decoder,fusion"),
    "unisrec": ([], "user_encoder", "text_encoder,adaptor,user_encoder"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "missrec_unisrec"))
    ap.add_argument("--baselines", default=str(ROOT / "runs" / "bench" / "pmmrec"),
                    help="folder of bench/pmmrec_transfer.py's pop-s*/sasrec-s* runs (reused)")
    ap.add_argument("--ft-epochs", type=int, default=0, help="fine-tune/scratch epochs (0: the model's default)")
    ap.add_argument("--quick", action="store_true",
                    help=f"one seed, {QUICK_FT_EPOCHS} epochs, inductive only, no ablations, no cold items, a short "
                         "pre-train (1 epoch, each user's 20 most recent events)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-ablations", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "missrec_unisrec_transfer.json"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.ft_epochs, args.skip_ablations, args.skip_cold = args.seeds[:1], QUICK_FT_EPOCHS, True, True
    work, base = Path(args.work), Path(args.baselines)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {}

    def go(name: str, cli: list[str], out: Path) -> dict | None:
        if args.report_only and not finished(cli, out):
            print(f"(no finished run of this command, left out: {name} -> {out})")
            return None
        print(f"[{time.strftime('%H:%M:%S')}] {name}: modalrec {' '.join(cli)}", flush=True)
        r = run_cli(cli, out, logs / f"{out.name}.log")
        m = r["test"]["metrics"]
        print(f"    test ndcg@10 {m['ndcg@10']:.4f} hr@10 {m['hr@10']:.4f}  best epoch {r['best_epoch']}  "
              f"wall {r['wall_s']:.0f}s  peak {r['peak_rss_mib']:.0f} MiB{'  (reused)' if r['reused'] else ''}",
              flush=True)
        runs.setdefault(name, []).append(r)
        return r

    epochs = [f"train.epochs={args.ft_epochs}"] if args.ft_epochs else []
    pretrains = {}
    for model in args.models:
        extra = MODELS[model][0]
        pre = work / f"{model}-pretrain-ml1m"
        quick_pre = ["train.epochs=1", "data.max_seq_len=20"] if args.quick else []  # minutes, not half an hour
        r = go(f"{model} pre-train ml-1m", ["train", "--model", model, "--dataset", "ml-1m", "--out", str(pre),
                                            "--quiet", "model.stage=pretrain", *extra, *quick_pre], pre)
        if r is not None:
            pretrains[model] = {"wall_s": r["wall_s"], "train_time_s": r.get("train_time_s"),
                                "epochs_run": r.get("epochs_run"), "peak_rss_mib": r["peak_rss_mib"],
                                "valid_ml1m": r["valid"]["metrics"], "test_ml1m": r["test"]["metrics"]}

    for seed in args.seeds:
        s = f"train.seed={seed}"
        go("pop", ["train", "--model", "pop", "--dataset", "ml-100k", "--out", str(base / f"pop-s{seed}"), "--quiet", s],
           base / f"pop-s{seed}")
        go("sasrec", ["train", "--model", "sasrec", "--dataset", "ml-100k", "--out", str(base / f"sasrec-s{seed}"),
                      "--quiet", s, "train.window_stride=25", *QUICK_SASREC * args.quick], base / f"sasrec-s{seed}")
        for model in args.models:
            extra, freeze, transfer_td = MODELS[model]
            pre = work / f"{model}-pretrain-ml1m"
            for mode in ("inductive",) if args.quick else ("inductive", "transductive"):
                mo = [f"model.mode={mode}"]
                tag = f"{model} {mode}"
                out = work / f"{model}-{mode}-scratch-s{seed}"
                go(f"{tag} scratch", ["train", "--model", model, "--dataset", "ml-100k", "--out", str(out), "--quiet",
                                      s, *epochs, *extra, *mo], out)
                if (pre / "results.json").is_file():
                    tr = ["--transfer", transfer_td] if mode == "transductive" else []
                    out = work / f"{model}-{mode}-ft-s{seed}"
                    go(f"{tag} pre-trained+fine-tuned", ["finetune", "--from", str(pre), "--dataset", "ml-100k",
                                                         "--out", str(out), "--quiet", "--freeze", freeze, *tr, s,
                                                         *epochs, *extra, *mo], out)
            if seed == args.seeds[0] and (pre / "results.json").is_file():
                out = work / f"{model}-zs"
                go(f"{model} inductive zero-shot", ["finetune", "--from", str(pre), "--dataset", "ml-100k", "--out",
                                                    str(out), "--quiet", "train.epochs=0", *extra], out)
            if model == "missrec" and not args.skip_ablations:
                for abl, opt in (("no interest tokens", "model.interests=false"), ("static fusion", "model.fusion=static")):
                    out = work / f"missrec-{opt.split('=')[0].split('.')[1]}-off-s{seed}"
                    go(f"missrec inductive scratch, {abl}", ["train", "--model", "missrec", "--dataset", "ml-100k",
                                                             "--out", str(out), "--quiet", s, *epochs, *extra, opt], out)

    cold = {}
    if not args.skip_cold:
        from modalrec.config import build_config
        from modalrec.data.prepare import load_or_prepare

        src = load_or_prepare(build_config({}, ["data.dataset=ml-1m"]).data, progress=False)
        source_titles = {t.split(". Genres:")[0] for t in src.catalogue.text[1:]}
        for model in args.models:
            pre = work / f"{model}-pretrain-ml1m"
            if not (pre / "results.json").is_file():
                continue
            out = work / f"{model}-zs-mlsmall-all"
            r = go(f"{model} ml-latest-small zero-shot", ["finetune", "--from", str(pre), "--dataset",
                                                          "ml-latest-small-2016", "--out", str(out), "--quiet",
                                                          "train.epochs=0", "data.min_item_inter=1", *MODELS[model][0]],
                   out)
            if r is not None:
                cold[f"{model} zero-shot (pre-trained on ml-1m)"] = cold_eval(out, source_titles)

    table = {}
    for name, rs in runs.items():
        if "pre-train ml-1m" in name or "ml-latest-small" in name:
            continue
        table[name] = {"ndcg@10": summary(rs, "ndcg@10"), "hr@10": summary(rs, "hr@10"), "runs": len(rs),
                       "best_epochs": [r["best_epoch"] for r in rs], "wall_s": [r["wall_s"] for r in rs],
                       "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "commands": [r["command"] for r in rs]}
    print("\n| setting (ml-100k test, history excluded) | runs | NDCG@10 | HR@10 | wall s (mean) |")
    print("|---|---|---|---|---|")
    for name, t in table.items():
        print(f"| {name} | {t['runs']} | {t['ndcg@10']['mean']:.4f} ± {t['ndcg@10']['std']:.4f} | "
              f"{t['hr@10']['mean']:.4f} ± {t['hr@10']['std']:.4f} | {sum(t['wall_s']) / len(t['wall_s']):.0f} |")
    for model, p in pretrains.items():
        print(f"{model} pre-train on ml-1m: {p['wall_s']:.0f} s wall ({p['epochs_run']} epochs), "
              f"peak {p['peak_rss_mib']:.0f} MiB")
    for k, v in cold.items():
        print(f"cold ml-latest-small, {k}: " + ", ".join(
            f"{a} {b:.4f}" if isinstance(b, float) else f"{a} {b}" for a, b in v.items()))
    import torch

    out = {"protocol": "leave-one-out, exact full ranking, history excluded, pessimistic ties; select on valid NDCG@10",
           "seeds": args.seeds, "ft_epochs": args.ft_epochs or "model default", "quick": args.quick,
           "report_only": args.report_only, "pretrain": pretrains, "table": table, "cold_ml_latest_small": cold,
           "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
           "command": "python " + " ".join([f"bench/{Path(__file__).name}", *sys.argv[1:]]),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
