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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODALREC = [sys.executable, "-m", "modalrec.cli"]


# --quick (bench/run_all.py --quick must stay under 20 minutes on 2 CPU cores)
QUICK_FT_EPOCHS = 3
QUICK_SASREC = ["train.epochs=10"]


def finished(args: list[str], out: Path) -> bool:
    """``out`` holds a finished run that `modalrec ARGS` made (the command is kept in bench_meta.json)."""
    try:
        meta = json.loads((out / "bench_meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / "results.json").is_file() and meta.get("command") == "modalrec " + " ".join(args)


def run_cli(args: list[str], out: Path, log: Path) -> dict:
    """Run `modalrec ...` unless ``out`` already holds a finished run of the same command; returns
    results + wall time + peak RSS. A finished run of a different command (the script's settings
    changed since) is not reused: its folder is removed and the run made again."""
    res_file = out / "results.json"
    meta_file = out / "bench_meta.json"
    resumed, command = False, "modalrec " + " ".join(args)
    if finished(args, out):
        return {**json.loads(res_file.read_text()), **json.loads(meta_file.read_text()), "reused": True}
    if res_file.is_file():
        print(f"    (the finished run in {out} was made by another command: running it again)", flush=True)
        shutil.rmtree(out)
    if out.exists():  # a run interrupted earlier (this script is meant to be stopped and rerun)
        if args[0] == "train" and (out / "checkpoints" / "last.pt").is_file():
            args, resumed = [args[0], "--resume", *args[1:]], True
            print(f"    (continuing the interrupted run in {out} from its last checkpoint)", flush=True)
        else:  # nothing to continue from (or `finetune`, which has no --resume): start it again
            print(f"    (removing the unfinished run folder {out}: nothing to continue from)", flush=True)
            shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a" if resumed else "w") as f:
        p = subprocess.Popen([*MODALREC, *args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"`modalrec {' '.join(args)}` failed; see {log}")
    meta = {"wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "command": command}
    if resumed:  # wall_s covers the continued part only
        meta["resumed"] = True
    meta_file.write_text(json.dumps(meta, indent=2))
    return {**json.loads(res_file.read_text()), **meta, "reused": False}


def summary(rows: list[dict], key: str) -> dict:
    vals = np.array([r["test"]["metrics"][key] for r in rows], dtype=float)
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "values": vals.round(4).tolist()}


def cold_eval(run_dir: Path, source_titles: set[str]) -> dict:
    """Test metrics restricted to targets whose movie is not in the source catalogue."""
    import torch

    from modalrec.evaluate.ranking import evaluate
    from modalrec.serve.recommender import Recommender

    rec = Recommender.load(run_dir)
    ds = rec.dataset
    titles = [t.split(". Genres:")[0] for t in ds.catalogue.text]
    cold = torch.tensor([i > 0 and titles[i] not in source_titles for i in range(len(titles))])
    res = evaluate(rec.model, ds.split.test, max_len=rec.cfg.model.max_len, ks=[10, 20, 50], cold_items=cold,
                   progress=False)
    test = ds.split.test
    # a uniformly random ranking of the candidates (catalogue minus history) puts the target in
    # the top 10 with probability 10 / #candidates
    n = ds.n_items
    hist_sizes = np.array([len(set(test.sequence(s).tolist())) for s in range(len(test))])
    tgt_cold = cold.numpy()[test.targets]
    rand = float(np.mean(np.minimum(1.0, 10.0 / (n - hist_sizes[tgt_cold]))))
    return {"cold_items_in_catalogue": int(cold.sum()), "cold_test_targets": int(res.cold_count),
            "cold_hr@10": res.cold_metrics.get("hr@10"), "cold_ndcg@10": res.cold_metrics.get("ndcg@10"),
            "all_hr@10": res.metrics["hr@10"], "random_cold_hr@10": rand}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "pmmrec"))
    ap.add_argument("--pretrain", default="", help="use this finished ml-1m pre-train run instead of training one")
    ap.add_argument("--ft-epochs", type=int, default=12, help="fine-tune / scratch epochs (patience 3)")
    ap.add_argument("--single-modality-seeds", type=int, default=3,
                    help="how many of --seeds also run the text-only and image-only models")
    ap.add_argument("--quick", action="store_true",
                    help="one seed, 3 fine-tune epochs, SASRec capped at 10 epochs, no single-modality runs, no ablations; "
                         "without --pretrain, a short pre-train (1 epoch, each user's 20 most recent events)")
    ap.add_argument("--skip-cold", action="store_true")
    abl = ap.add_mutually_exclusive_group()
    abl.add_argument("--ablations", dest="ablations", action="store_true", default=True,
                     help="pre-train without NICL, without NID and without RCL (each its own ml-1m pre-train), "
                          "then fine-tune each on ml-100k with every seed and evaluate it zero-shot (the default)")
    abl.add_argument("--skip-ablations", dest="ablations", action="store_false", help="leave the ablations out")
    ap.add_argument("--ablation-epochs", type=int, default=1,
                    help="pre-training epochs of the ablations; when > 0 a full-loss pre-train with the same budget "
                         "is added as their reference (0: the model default, like the main pre-train, no reference)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: report the runs already finished under --work (the table says how many)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pmmrec_transfer.json"))
    args = ap.parse_args()
    if args.quick:
        args.ft_epochs, args.seeds, args.single_modality_seeds = QUICK_FT_EPOCHS, args.seeds[:1], 0
        args.ablations = False
    work = Path(args.work)
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

    pre = Path(args.pretrain) if args.pretrain else work / "pretrain-ml1m"
    if not args.pretrain:
        # --quick: one epoch over each user's 20 most recent ml-1m events (minutes, not an hour)
        quick_pre = ["train.epochs=1", "data.max_seq_len=20"] if args.quick else []
        go("pretrain ml-1m", ["train", "--model", "pmmrec", "--dataset", "ml-1m", "--out", str(pre), "--quiet",
                              "data.posters=true", *quick_pre], pre)
    pre_res = json.loads((pre / "results.json").read_text())
    pre_cfg_windows = None
    try:
        from modalrec.config import load_run_config
        from modalrec.data.batches import training_windows
        from modalrec.data.prepare import load_or_prepare

        pcfg = load_run_config(pre / "config.yaml")
        pds = load_or_prepare(pcfg.data, progress=False)
        pre_cfg_windows = len(training_windows(pds.split.train, pcfg.model.max_len, pcfg.train.window_stride)[0])
    except Exception as e:  # throughput is informative only
        print(f"(could not count pre-training windows: {e})")
    ft = ["train.epochs=%d" % args.ft_epochs, "train.patience=3", "data.posters=true"]
    for seed in args.seeds:
        s = f"train.seed={seed}"
        go("pop", ["train", "--model", "pop", "--dataset", "ml-100k", "--out", str(work / f"pop-s{seed}"), "--quiet", s],
           work / f"pop-s{seed}")
        go("sasrec", ["train", "--model", "sasrec", "--dataset", "ml-100k", "--out", str(work / f"sasrec-s{seed}"),
                      "--quiet", s, "train.window_stride=25", *QUICK_SASREC * args.quick], work / f"sasrec-s{seed}")
        mods = [("both", [])]
        if seed in args.seeds[: args.single_modality_seeds]:
            mods += [("text", ["model.modalities=text"]), ("image", ["model.modalities=image"])]
        for tag, mo in mods:
            name = f"pmmrec-{tag}"
            go(f"{name} scratch", ["train", "--model", "pmmrec", "--dataset", "ml-100k", "--out",
                                   str(work / f"{name}-scratch-s{seed}"), "--quiet", s, *ft, *mo],
               work / f"{name}-scratch-s{seed}")
            go(f"{name} pretrained+finetuned", ["finetune", "--from", str(pre), "--dataset", "ml-100k", "--out",
                                                str(work / f"{name}-ft-s{seed}"), "--quiet", s, *ft, *mo],
               work / f"{name}-ft-s{seed}")
            if seed == args.seeds[0]:  # zero-shot is deterministic: one run
                go(f"{name} zero-shot", ["finetune", "--from", str(pre), "--dataset", "ml-100k", "--out",
                                         str(work / f"{name}-zs"), "--quiet", "train.epochs=0",
                                         "data.posters=true", *mo], work / f"{name}-zs")

    if args.ablations:
        variants = [("without NICL", "model.nicl=false"), ("without NID", "model.nid=false"),
                    ("without RCL", "model.rcl=false")]
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
        # seed-major: every variant gets its pre-train, zero-shot and first seed before any gets a second,
        # so an interrupted run still has a complete (one-seed) ablation table
        for seed in args.seeds:
            for label, opts, apre, name in ablations:
                if seed == args.seeds[0]:
                    if go(f"pretrain ml-1m, {label}", ["train", "--model", "pmmrec", "--dataset", "ml-1m", "--out",
                                                        str(apre), "--quiet", "data.posters=true", *budget, *opts],
                          apre) is None:
                        continue
                    out = work / f"ablation-{apre.name}-zs"
                    go(f"{name}, zero-shot", ["finetune", "--from", str(apre), "--dataset", "ml-100k", "--out",
                                              str(out), "--quiet", "train.epochs=0", "data.posters=true"], out)
                elif not (apre / "results.json").is_file():
                    continue
                out = work / f"ablation-{apre.name}-ft-s{seed}"
                go(f"{name}, fine-tuned", ["finetune", "--from", str(apre), "--dataset", "ml-100k", "--out", str(out),
                                            "--quiet", f"train.seed={seed}", *ft], out)

    cold = {}
    if not args.skip_cold:
        from modalrec.data.prepare import load_or_prepare
        from modalrec.config import build_config

        src = load_or_prepare(build_config({}, ["data.dataset=ml-1m"]).data, progress=False)
        source_titles = {t.split(". Genres:")[0] for t in src.catalogue.text[1:]}
        # every movie of ml-latest-small-2016 stays in the catalogue (no item k-core): the cold
        # movies are mostly rare ones, and a 5-core filter would drop most of them
        all_items = ["data.min_item_inter=1"]
        zs = work / "pmmrec-both-zs-mlsmall-all"
        r_zs = go("ml-latest-small zero-shot", ["finetune", "--from", str(pre), "--dataset", "ml-latest-small-2016",
                                                "--out", str(zs), "--quiet", "train.epochs=0", "data.posters=true",
                                                *all_items], zs)
        pop = work / "pop-mlsmall-all"
        r_pop = go("ml-latest-small pop", ["train", "--model", "pop", "--dataset", "ml-latest-small-2016", "--out",
                                           str(pop), "--quiet", *all_items], pop)
        if r_zs is not None and r_pop is not None:
            cold = {"pmmrec zero-shot (pre-trained on ml-1m)": cold_eval(zs, source_titles),
                    "pop (trained on ml-latest-small)": cold_eval(pop, source_titles),
                    "sasrec (trained on ml-1m)": "cannot score: the movies have no ID embedding in ml-1m"}

    table = {}
    for name, rs in runs.items():
        table[name] = {"ndcg@10": summary(rs, "ndcg@10"), "hr@10": summary(rs, "hr@10"), "runs": len(rs),
                       "best_epochs": [r["best_epoch"] for r in rs], "wall_s": [r["wall_s"] for r in rs],
                       "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                       "commands": [r["command"] for r in rs]}
    pre_thr = None
    if pre_cfg_windows and pre_res.get("train_time_s"):
        pre_thr = pre_cfg_windows * pre_res["epochs_run"] / pre_res["train_time_s"]
    print("\n| setting (ml-100k test, history excluded) | runs | NDCG@10 | HR@10 |")
    print("|---|---|---|---|")
    for name, t in table.items():
        print(f"| {name} | {t['runs']} | {t['ndcg@10']['mean']:.4f} ± {t['ndcg@10']['std']:.4f} | "
              f"{t['hr@10']['mean']:.4f} ± {t['hr@10']['std']:.4f} |")
    if cold:
        print("\nml-latest-small-2016, test targets never seen in ml-1m:")
        for k, v in cold.items():
            print(f"  {k}: {v if isinstance(v, str) else {a: (round(b, 4) if isinstance(b, float) else b) for a, b in v.items()}}")
    if pre_thr:
        print(f"\npre-training throughput: {pre_thr:.1f} windows (sequences of <= 20 items)/s; "
              f"pre-train wall {runs.get('pretrain ml-1m', [{}])[0].get('wall_s', 'n/a')} s")
    import torch

    out = {"protocol": "leave-one-out, exact full ranking, history excluded, pessimistic ties; select on valid NDCG@10",
           "seeds": args.seeds, "ft_epochs": args.ft_epochs, "quick": args.quick, "pretrain_run": str(pre),
           "single_modality_seeds": min(args.single_modality_seeds, len(args.seeds)),
           "ablations": args.ablations, "ablation_epochs": args.ablation_epochs if args.ablations else None,
           "report_only": args.report_only,  # true: only the runs finished so far (see "runs" per row)
           "pretrain": {"best_epoch": pre_res.get("best_epoch"), "epochs_run": pre_res.get("epochs_run"),
                        "train_time_s": pre_res.get("train_time_s"), "windows_per_epoch": pre_cfg_windows,
                        "windows_per_s": pre_thr, "valid": pre_res["valid"]["metrics"],
                        "test_ml1m": pre_res["test"]["metrics"]},
           "table": table, "cold_ml_latest_small": cold,
           "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                       "threads": torch.get_num_threads()},
           "command": "python " + " ".join([f"bench/{Path(__file__).name}", *sys.argv[1:]]),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
