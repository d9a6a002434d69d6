"""`make bench`: run every benchmark under bench/, then regenerate docs/results.md (bench/report.py).

Each benchmark prints a table and writes JSON to bench/results/. The order: the fast ones first
(CLI start-up, data preparation, evaluation, item content, interest discovery, the retrieval
index), then training (SASRec against RecBole, the PMMRec transfer, whose run folders the MISSRec /
UniSRec bench reuses for its baselines and the serving bench serves), then the HTTP service.
A benchmark that fails does not stop the others; the report is written in any case.

    python bench/run_all.py                     # everything (many hours on 2 CPU cores)
    python bench/run_all.py --quick             # one seed, fewer epochs, smaller settings:
                                                # bench/results/quick/ and docs/results-quick.md
    python bench/run_all.py --report-only       # no benchmark: only regenerate the report
    python bench/run_all.py --recbole-time-budget 1800 --seeds 0   # other arguments: sasrec_vs_recbole.py

Arguments this script does not know are passed to sasrec_vs_recbole.py.

The script times itself: the wall time of every benchmark and of the whole run goes to
bench/results/bench_run.json (--quick: bench/results/quick/bench_run.json), with how many finished run
folders were already there (the transfer benchmarks reuse them, so only a run without any is the time
of a fresh `make bench`); docs/results.md shows it under "Bench run time".
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from modalrec.utils import atomic_write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS = [
    "cli_startup.py",
    "prepare_speed.py",
    "eval_speed.py",
    "content_speed.py",
    "train_speed.py",
    "interest_discovery.py",
    "serve_index.py",
    "sasrec_vs_recbole.py",
    "tune_sasrec.py",
    "pmmrec_transfer.py",
    "missrec_unisrec_transfer.py",
    "zero_shot_prior.py",
    "serve_latency.py",
    "serve_abuse.py",
    "robustness.py",
]
RESULTS = HERE / "results"
QUICK_RESULTS = RESULTS / "quick"
QUICK_RUNS = ROOT / "runs" / "bench" / "quick"  # quick runs never reuse (or overwrite) the full runs' folders

# --quick: the reduced options each script already supports (None: the script has no --out)
QUICK_ARGS: dict[str, list[str]] = {
    "cli_startup.py": [],
    "prepare_speed.py": ["--repeat", "1"],
    "eval_speed.py": ["--cases", "small"],
    "content_speed.py": ["--quick"],
    "train_speed.py": ["--quick"],
    "interest_discovery.py": ["--ratios", "0.1", "--repeats", "2"],
    "serve_index.py": ["--quick"],
    # one RecBole epoch alone takes about 4 minutes here: the quick report has our side only
    "sasrec_vs_recbole.py": [
        "--seeds",
        "0",
        "--skip-ml1m",
        "--skip-recbole",
        "--ours-epochs",
        "10",
        "--work",
        str(QUICK_RUNS / "sasrec"),
    ],
    "tune_sasrec.py": ["--quick", "--work", str(QUICK_RUNS / "tune_sasrec")],
    "pmmrec_transfer.py": ["--quick", "--work", str(QUICK_RUNS / "pmmrec")],
    "missrec_unisrec_transfer.py": [
        "--quick",
        "--work",
        str(QUICK_RUNS / "missrec_unisrec"),
        "--baselines",
        str(QUICK_RUNS / "pmmrec"),
    ],
    "zero_shot_prior.py": [
        "--pretrain",
        str(QUICK_RUNS / "missrec_unisrec" / "unisrec-pretrain-ml1m"),
        "--work",
        str(QUICK_RUNS / "zero_shot"),
    ],
    "serve_latency.py": ["--sizes", "10000", "100000", "--requests", "100"],
    "serve_abuse.py": ["--quick", "--work", str(QUICK_RUNS / "serve_abuse"), "--port", "8767"],
    "robustness.py": ["--quick"],
}
NO_OUT = {"cli_startup.py"}  # writes bench/results/cli_startup.json, whatever is asked
FULL_RUNS = ROOT / "runs" / "bench"
TARGET_S = {False: 3 * 3600, True: 20 * 60}  # issue 7: full within 3 hours, --quick within 20 minutes
TIMING = "bench_run.json"  # this script's own record: wall time per benchmark and in all


def finished_runs(folder: Path) -> int:
    """How many finished run folders (results.json) already lie under the benchmarks' work folder:
    the transfer benchmarks reuse them, so a run_all over existing folders is not a fresh run."""
    if not folder.is_dir():
        return 0
    return sum(1 for _ in folder.rglob("results.json"))


def command(script: str, quick: bool, extra: list[str]) -> list[str]:
    cmd = [sys.executable, str(HERE / script)]
    if quick:
        cmd += QUICK_ARGS.get(script, [])
        if script == "serve_latency.py":
            ft = QUICK_RUNS / "pmmrec" / "pmmrec-both-ft-s0"
            if (ft / "config.yaml").is_file():  # serve the quick run's model, else the script's default
                cmd += ["--run", str(ft)]
        if script not in NO_OUT:
            cmd += ["--out", str(QUICK_RESULTS / script.replace(".py", ".json"))]
    if script == "sasrec_vs_recbole.py":
        cmd += extra
    return cmd


def run_no_out(cmd: list[str], script: str) -> int:
    """--quick for a script without --out: run it, move its JSON into the quick folder and put the
    reference file back as it was."""
    ref = HERE / "results" / script.replace(".py", ".json")
    saved = ref.read_bytes() if ref.is_file() else None
    try:
        rc = subprocess.run(cmd).returncode
        if rc == 0 and ref.is_file():
            QUICK_RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ref, QUICK_RESULTS / ref.name)
    finally:
        if saved is not None:
            tmp = ref.with_name(f".{ref.name}.restore")
            tmp.write_bytes(saved)
            os.replace(tmp, ref)
        elif ref.is_file():
            ref.unlink()
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )  # unknown options go to sasrec_vs_recbole.py whole
    ap.add_argument(
        "--quick",
        action="store_true",
        help="reduced settings; JSON to bench/results/quick/, report to docs/results-quick.md",
    )
    ap.add_argument("--report-only", action="store_true", help="run no benchmark: only regenerate the report")
    ap.add_argument("--only", nargs="+", metavar="SCRIPT", choices=SCRIPTS, help="run only these benchmarks")
    args, extra = ap.parse_known_args(argv)

    failed = []
    if not args.report_only:
        work = QUICK_RUNS if args.quick else FULL_RUNS
        record = {
            "quick": args.quick,
            "only": args.only,
            "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "finished_runs_before": finished_runs(work),
            "work": str(work.relative_to(ROOT)),
            "target_s": TARGET_S[args.quick],
            "scripts": [],
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_1min_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            },
        }
        timing = (QUICK_RESULTS if args.quick else RESULTS) / TIMING
        t_all = time.perf_counter()
        for script in args.only or SCRIPTS:
            cmd = command(script, args.quick, extra)
            print(f"\n=== bench/{script}" + (" (quick)" if args.quick else ""), flush=True)
            print("$ " + " ".join(cmd[1:]), flush=True)
            t0 = time.perf_counter()
            rc = run_no_out(cmd, script) if args.quick and script in NO_OUT else subprocess.run(cmd).returncode
            wall = time.perf_counter() - t0
            print(f"--- bench/{script}: {wall:.0f} s, exit {rc}", flush=True)
            record["scripts"].append(
                {
                    "script": script,
                    "command": "python "
                    + " ".join([os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd[1:]]),
                    "wall_s": round(wall, 1),
                    "returncode": rc,
                }
            )
            if rc != 0:
                failed.append(script)
            record["total_s"] = round(time.perf_counter() - t_all, 1)
            atomic_write_json(timing, record)  # after every script: an interrupted run keeps what it measured
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        record["complete"] = True
        atomic_write_json(timing, record)
        print(
            f"\nall benchmarks: {record['total_s']:.0f} s ({record['total_s'] / 60:.1f} min); "
            f"{record['finished_runs_before']} finished run folder(s) under {record['work']} were there before "
            f"(reused, not recomputed)",
            flush=True,
        )

    report = [sys.executable, str(HERE / "report.py")]
    if args.quick:
        report += [
            "--results",
            str(QUICK_RESULTS),
            "--out",
            str(ROOT / "docs" / "results-quick.md"),
            "--no-readme",
            "--quick",
        ]
    print("\n=== bench/report.py", flush=True)
    if subprocess.run(report).returncode != 0:
        failed.append("report.py")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
