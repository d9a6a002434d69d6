"""Time `modalrec --help` (cold interpreter each time): the CLI must answer in under 2 s.

Prints a table and writes bench/results/cli_startup.json. For comparison it also times a bare
`python -c pass` and `python -c "import torch"` in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.output import write_result

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)  # no options; --help describes the script
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "modalrec --help": [sys.executable, "-m", "modalrec.cli", "--help"],
        "modalrec train --help": [sys.executable, "-m", "modalrec.cli", "train", "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    rows = {name: timed(cmd) for name, cmd in cases.items()}
    print(f"{'command':<28}{'median s':>10}{'max s':>10}")
    for name, ts in rows.items():
        print(f"{name:<28}{statistics.median(ts):>10.3f}{max(ts):>10.3f}")
    result = {name: {"median_s": statistics.median(ts), "max_s": max(ts), "runs": ts} for name, ts in rows.items()}
    result["target_s"] = 2.0
    result["help_within_target"] = result["modalrec --help"]["max_s"] < 2.0
    out = ROOT / "bench/results/cli_startup.json"
    write_result(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
