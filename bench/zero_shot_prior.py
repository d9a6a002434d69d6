"""Zero-shot transfer with and without the target's popularity prior, against Pop (issue 19).

A pre-trained run is moved to each target data set with no gradient step (`modalrec finetune ...
train.epochs=0`), then evaluated as it is and with `modalrec evaluate --pop-prior`: score + beta *
log(1 + training count), beta chosen on the target's validation NDCG@10 (test is only read after).
Pop is trained on each target. Prints a table and writes JSON.

Several pre-trained runs may be given: each is a candidate, and per target the one with the highest
*validation* NDCG@10 (with its prior) is the zero-shot model reported against Pop; every candidate's
figures stay in the JSON.

    python bench/zero_shot_prior.py --pretrain runs/zs/unisrec-pretrain-ml1m [RUN ...] --work runs/zs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.output import write_result
from harness.runs import ROOT, evaluate_json, run_cli

TARGETS = ("ml-100k", "ml-latest-small-2016")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pretrain",
        nargs="+",
        default=[str(ROOT / "runs" / "bench" / "missrec_unisrec" / "unisrec-pretrain-ml1m")],
        help="finished pre-trained run folders, the candidates (default: bench/missrec_unisrec_transfer.py's UniSRec)",
    )
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "zero_shot"))
    ap.add_argument("--extra", nargs="*", default=[], help="key=value overrides for the zero-shot runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "zero_shot_prior.json"))
    return ap.parse_args(argv)


def candidate(args: argparse.Namespace, pretrain: str, target: str, pop_ndcg: float) -> dict:
    """One pre-trained run moved to ``target`` with no gradient step: test plain and with the prior."""
    work = Path(args.work)
    zs_dir = work / f"zero-shot-{Path(pretrain).name}-{target}"
    zs_args = [
        "finetune",
        "--from",
        str(Path(pretrain).resolve()),
        "--dataset",
        target,
        "--out",
        str(zs_dir),
        "--quiet",
        "train.epochs=0",
        *args.extra,
    ]
    zs = run_cli(zs_args, zs_dir, work / "logs" / f"{zs_dir.name}.log")
    plain, prior = evaluate_json(zs_dir), evaluate_json(zs_dir, "--pop-prior")
    choice = prior["protocol"]["popularity_prior"]
    by_beta = {float(b): v for b, v in choice["valid_ndcg@10_by_beta"].items()}
    return {
        "zero_shot": plain["metrics"],
        "zero_shot_prior": prior["metrics"],
        "prior": choice,
        "valid_ndcg@10": {"zero_shot": by_beta[0.0], "zero_shot_prior": by_beta[float(choice["beta"])]},
        "commands": [zs["command"], f"modalrec evaluate {zs_dir} --pop-prior"],
        "ratio_to_pop": {
            "zero_shot": plain["metrics"]["ndcg@10"] / pop_ndcg,
            "zero_shot_prior": prior["metrics"]["ndcg@10"] / pop_ndcg,
        },
    }


def one_target(args: argparse.Namespace, target: str) -> tuple[dict, dict]:
    """(the chosen candidate's record with Pop's, every candidate's record by pre-trained run name)."""
    work = Path(args.work)
    pop = run_cli(
        ["train", "--model", "pop", "--dataset", target, "--out", str(work / f"pop-{target}"), "--quiet"],
        work / f"pop-{target}",
        work / "logs" / f"pop-{target}.log",
    )
    pop_ndcg = pop["test"]["metrics"]["ndcg@10"]
    cands = {Path(p).name: candidate(args, p, target, pop_ndcg) for p in args.pretrain}
    best = max(cands, key=lambda n: cands[n]["valid_ndcg@10"]["zero_shot_prior"])
    chosen = {
        **cands[best],
        "pretrain": best,
        "pop": pop["test"]["metrics"],
        "commands": [pop["command"], *cands[best]["commands"]],
    }
    return chosen, cands


def print_table(table: dict) -> None:
    print(
        f"\n{'target':<22}{'zero-shot model':<34}{'Pop':>9}{'zero-shot':>11}{'+ prior':>9}{'beta':>7}{'x Pop':>8}"
        "   (test NDCG@10; model chosen on validation)"
    )
    for target, r in table.items():
        print(
            f"{target:<22}{r['pretrain']:<34}{r['pop']['ndcg@10']:>9.4f}{r['zero_shot']['ndcg@10']:>11.4f}"
            f"{r['zero_shot_prior']['ndcg@10']:>9.4f}{r['prior']['beta']:>7g}{r['ratio_to_pop']['zero_shot_prior']:>8.2f}"
        )


def pretrain_record(run: str) -> dict:
    pre = json.loads((Path(run) / "results.json").read_text())
    return {
        "run": str(run),
        "model": pre["model"],
        "dataset": pre["dataset"],
        "train_time_s": pre.get("train_time_s"),
        "test": pre.get("test", {}).get("metrics"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table, candidates = {}, {}
    for t in args.targets:
        table[t], candidates[t] = one_target(args, t)
    print_table(table)
    pretrains = {Path(p).name: pretrain_record(p) for p in args.pretrain}
    write_result(
        args.out,
        {
            "pretrain": pretrains[table[args.targets[0]]["pretrain"]],
            "pretrains": pretrains,
            "protocol": "leave-one-out, exact full ranking, history excluded, pessimistic ties; "
            "beta chosen on validation NDCG@10; with several pre-trained runs, the one "
            "with the highest validation NDCG@10 (with its prior) per target",
            "table": table,
            "candidates": candidates,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
