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
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS = ["cli_startup.py", "prepare_speed.py", "eval_speed.py", "content_speed.py", "interest_discovery.py",
           "serve_index.py", "sasrec_vs_recbole.py", "pmmrec_transfer.py", "missrec_unisrec_transfer.py",
           "serve_latency.py"]
QUICK_RESULTS = HERE / "results" / "quick"
QUICK_RUNS = ROOT / "runs" / "bench" / "quick"  # quick runs never reuse (or overwrite) the full runs' folders

# --quick: the reduced options each script already supports (None: the script has no --out)
QUICK_ARGS: dict[str, list[str]] = {
    "cli_startup.py": [],
    "prepare_speed.py": ["--repeat", "1"],
    "eval_speed.py": ["--cases", "small"],
    "content_speed.py": ["--quick"],
    "interest_discovery.py": ["--ratios", "0.1", "--repeats", "2"],
    "serve_index.py": ["--quick"],
    "sasrec_vs_recbole.py": ["--seeds", "0", "--skip-ml1m", "--recbole-time-budget", "180",
                             "--work", str(QUICK_RUNS / "sasrec")],
    "pmmrec_transfer.py": ["--quick", "--work", str(QUICK_RUNS / "pmmrec")],
    "missrec_unisrec_transfer.py": ["--quick", "--work", str(QUICK_RUNS / "missrec_unisrec"),
                                    "--baselines", str(QUICK_RUNS / "pmmrec")],
    "serve_latency.py": ["--sizes", "10000", "100000", "--requests", "100"],
}
NO_OUT = {"cli_startup.py"}  # writes bench/results/cli_startup.json, whatever is asked


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)  # unknown options go to sasrec_vs_recbole.py whole
    ap.add_argument("--quick", action="store_true",
                    help="reduced settings; JSON to bench/results/quick/, report to docs/results-quick.md")
    ap.add_argument("--report-only", action="store_true", help="run no benchmark: only regenerate the report")
    ap.add_argument("--only", nargs="+", metavar="SCRIPT", choices=SCRIPTS, help="run only these benchmarks")
    args, extra = ap.parse_known_args(argv)

    failed = []
    if not args.report_only:
        for script in args.only or SCRIPTS:
            cmd = command(script, args.quick, extra)
            print(f"\n=== bench/{script}" + (" (quick)" if args.quick else ""), flush=True)
            print("$ " + " ".join(cmd[1:]), flush=True)
            rc = run_no_out(cmd, script) if args.quick and script in NO_OUT else subprocess.run(cmd).returncode
            if rc != 0:
                failed.append(script)

    report = [sys.executable, str(HERE / "report.py")]
    if args.quick:
        report += ["--results", str(QUICK_RESULTS), "--out", str(ROOT / "docs" / "results-quick.md"), "--no-readme",
                   "--quick"]
    print("\n=== bench/report.py", flush=True)
    if subprocess.run(report).returncode != 0:
        failed.append("report.py")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
