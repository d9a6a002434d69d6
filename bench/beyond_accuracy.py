"""Beyond-accuracy metrics of finished runs (issue 22): what the top-10 lists look like, and accuracy per segment.

For every run folder given, `modalrec evaluate RUN --beyond --json` on the test split: catalogue coverage,
average popularity and novelty of the recommended items, intra-list diversity (cosine, in each model's own
item space: comparable between runs of one model, not across models), and HR/NDCG for short and long
histories and for cold and warm targets. Prints a table and writes JSON.

    python bench/beyond_accuracy.py NAME=RUN [NAME=RUN ...] [--out bench/results/beyond_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.output import write_result
from harness.runs import ROOT, evaluate_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN", help="a label and a finished run folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "beyond_accuracy.json"))
    args = ap.parse_args(argv)
    for spec in args.runs:
        name, _, run = spec.partition("=")
        if not (name and run and (Path(run) / "results.json").is_file()):
            ap.error(f"{spec!r}: give NAME=RUN with RUN a finished run folder (with results.json)")
    return args


def beyond(run: str) -> dict:
    """`modalrec evaluate RUN --beyond --json` (test split) as a dict, with the command."""
    res = evaluate_json(run, "--beyond")
    made = json.loads((Path(run) / "results.json").read_text())
    return {
        "run": run,
        "command": f"modalrec evaluate {run} --beyond --json --quiet",
        "metrics": res["metrics"],
        "beyond": res["beyond"],
        "dataset": made.get("dataset"),
        "model": made.get("model"),
    }


def print_table(rows: dict) -> None:
    print(f"\n{'run':<22}{'NDCG@10':>9}{'coverage':>10}{'avg pop':>9}{'novelty':>9}{'diversity':>10}{'mean cos':>10}")
    for name, r in rows.items():
        lists, k = r["beyond"]["lists"], r["beyond"]["k"]
        print(
            f"{name:<22}{r['metrics'][f'ndcg@{k}']:>9.4f}{lists[f'coverage@{k}']:>10.4f}"
            f"{lists[f'avg_popularity@{k}']:>9.1f}{lists[f'novelty@{k}']:>9.2f}{lists[f'diversity@{k}']:>10.4f}"
            f"{r['beyond']['catalogue_mean_cosine']:>10.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = {}
    for spec in args.runs:
        name, _, run = spec.partition("=")
        rows[name] = beyond(run)
    print_table(rows)
    write_result(
        args.out,
        {
            "rows": rows,
            "protocol": "test split, history excluded, top-10 lists of the exact scorer",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
