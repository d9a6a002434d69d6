"""Run a declared grid of settings over seeds, pick the winner on validation, report test with paired diffs.

A grid is a YAML file written (and committed) before it runs, under ``bench/grids/``::

    name: unisrec-text
    question: does richer item text help UniSRec on ml-100k?
    seeds: [0, 1, 2]
    baseline: basic            # the variant the others are compared with (paired by seed)
    variants:                  # each: the modalrec command line without --out and train.seed
      basic: train --model unisrec --dataset ml-100k model.mode=inductive
      rich: train --model unisrec --dataset ml-100k model.mode=inductive data.text=rich

Each (variant, seed) trains into ``runs/grid/<name>/<variant>-s<seed>``; a finished run of the same config is
reused and an interrupted one continued (``--reuse``), so an interrupted grid continues. The winner is the variant with the highest mean
*validation* NDCG@10; test metrics are only reported. Results go to ``bench/results/grid_<name>.json``.

    python bench/grid.py bench/grids/unisrec-text.yaml [--jobs 2] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from harness.runs import run_cli

ROOT = Path(__file__).resolve().parent.parent
KEY = "ndcg@10"


def load_grid(path: Path) -> dict:
    grid = yaml.safe_load(path.read_text())
    for key in ("name", "seeds", "variants"):
        if key not in grid:
            raise SystemExit(f"{path}: the grid needs '{key}'")
    if grid.get("baseline") and grid["baseline"] not in grid["variants"]:
        raise SystemExit(f"{path}: baseline {grid['baseline']!r} is not one of the variants")
    return grid


def command(grid: dict, variant: str, seed: int, threads: int) -> list[str]:
    out = ROOT / "runs" / "grid" / grid["name"] / f"{variant}-s{seed}"
    # the variant's key=value overrides and these must stay contiguous (argparse positionals)
    return [
        *shlex.split(grid["variants"][variant]),
        f"train.seed={seed}",
        f"train.threads={threads}",
        "--out",
        str(out),
        "--quiet",
    ]


def out_dir(cmd: list[str]) -> Path:
    return Path(cmd[cmd.index("--out") + 1])


def run_one(cmd: list[str]) -> dict:
    """The run of ``cmd`` (made, continued or reused by the library: harness.runs.run_cli), with its wall time."""
    folder = out_dir(cmd)
    r = run_cli(cmd, folder, folder.parent / f"{folder.name}.log")
    if r["wall_s"] is None and (folder / "grid_meta.json").is_file():  # a run made by this script before run_cli
        r["wall_s"] = json.loads((folder / "grid_meta.json").read_text())["wall_s"]
    return r


def summarise(grid: dict, runs: dict) -> dict:
    """Per variant: mean/std of validation and test NDCG@10 and HR@10; the validation winner; paired diffs."""
    table = {}
    for variant, by_seed in runs.items():
        valid = [r["valid"]["metrics"][KEY] for r in by_seed.values()]
        test = [r["test"]["metrics"][KEY] for r in by_seed.values()]
        hr = [r["test"]["metrics"]["hr@10"] for r in by_seed.values()]
        table[variant] = {
            "valid_ndcg@10": _ms(valid),
            "test_ndcg@10": _ms(test),
            "test_hr@10": _ms(hr),
            "best_epochs": [r["best_epoch"] for r in by_seed.values()],
            "wall_s": round(float(np.mean([r["wall_s"] for r in by_seed.values()])), 1),
        }
        cold = [(r["test"].get("cold_metrics") or {}).get("hr@10") for r in by_seed.values()]
        if all(c is not None for c in cold):  # examples whose target is a cold item (cold split, cold items)
            table[variant]["test_cold_hr@10"] = _ms(cold)
            table[variant]["test_cold_count"] = [r["test"]["cold_count"] for r in by_seed.values()]
    winner = max(table, key=lambda v: table[v]["valid_ndcg@10"]["mean"])
    base = grid.get("baseline")
    if base:
        for variant, by_seed in runs.items():
            d = [by_seed[s]["test"]["metrics"][KEY] - runs[base][s]["test"]["metrics"][KEY] for s in by_seed]
            table[variant]["paired_test_diff_vs_baseline"] = {"per_seed": [round(x, 4) for x in d], **_ms(d)}
    return {"winner_on_validation": winner, "variants": table}


def _ms(xs: list[float]) -> dict:
    return {"mean": round(float(np.mean(xs)), 4), "std": round(float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, 4)}


def print_table(grid: dict, summary: dict) -> None:
    print(f"\n{grid['name']}: {grid.get('question', '')}")
    print(f"{'variant':<24}{'valid NDCG@10':>18}{'test NDCG@10':>18}{'test HR@10':>18}{'paired test diff':>20}")
    for v, row in summary["variants"].items():
        diff = row.get("paired_test_diff_vs_baseline")
        mark = " *" if v == summary["winner_on_validation"] else ""
        cells = [
            f"{row[k]['mean']:.4f} ± {row[k]['std']:.4f}".rjust(18)
            for k in ("valid_ndcg@10", "test_ndcg@10", "test_hr@10")
        ]
        print(f"{v + mark:<24}" + "".join(cells) + (f"{diff['mean']:>+20.4f}" if diff else ""))
    print("* chosen on mean validation NDCG@10")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores // jobs threads)")
    ap.add_argument("--only", nargs="*", help="variants to run (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (default: cores // jobs)")
    args = ap.parse_args(argv)
    grid = load_grid(args.grid)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    variants = args.only or list(grid["variants"])
    cmds = {(v, s): command(grid, v, s, threads) for v in variants for s in grid["seeds"]}
    with ThreadPoolExecutor(args.jobs) as pool:
        done = dict(zip(cmds, pool.map(run_one, cmds.values())))
    runs = {v: {s: done[(v, s)] for s in grid["seeds"]} for v in variants}
    summary = summarise({**grid, "baseline": grid.get("baseline") if grid.get("baseline") in variants else None}, runs)
    print_table(grid, summary)
    out = ROOT / "bench" / "results" / f"grid_{grid['name']}.json"
    record = {
        "grid": grid,
        "grid_file": str(args.grid),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commands": {f"{v}-s{s}": "modalrec " + shlex.join(c) for (v, s), c in cmds.items()},
        "summary": summary,
        "runs": {
            v: {
                str(s): {
                    "valid": r["valid"]["metrics"],
                    "test": r["test"]["metrics"],
                    "best_epoch": r["best_epoch"],
                    "wall_s": round(r["wall_s"], 1),
                    "curve": r["curve"],
                }
                for s, r in by_seed.items()
            }
            for v, by_seed in runs.items()
        },
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
