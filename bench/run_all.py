"""`make bench`: run every benchmark under bench/; each prints a table and writes JSON to bench/results/.

Extra arguments are passed to sasrec_vs_recbole.py (e.g. --recbole-time-budget 1800 --seeds 0).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["cli_startup.py", "prepare_speed.py", "eval_speed.py", "content_speed.py", "sasrec_vs_recbole.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"\n=== bench/{script}", flush=True)
        extra = sys.argv[1:] if script == "sasrec_vs_recbole.py" else []
        if subprocess.run([sys.executable, str(HERE / script), *extra]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
