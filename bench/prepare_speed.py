"""How fast is data preparation? Wall time and peak memory of ``prepare`` on the built-in data sets.

Each data set is prepared in a fresh subprocess (reading the raw files included, the prepared-data
cache excluded: ``cache=False``), so peak RSS is that of one preparation plus the interpreter and
imports (reported separately as "base"). Targets: ml-1m under 10 s and under 1 GiB.

    python bench/prepare_speed.py [--repeat 3] [--split loo] [names ...]

Prints a table and writes bench/results/prepare_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness.output import write_result

DEFAULT = ["ml-100k", "ml-1m", "ml-latest-small-2016"]
TARGET = {"ml-1m": {"seconds": 10.0, "peak_rss_mib": 1024.0}}
HERE = Path(__file__).resolve().parent


def _rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def child(name: str, split: str) -> None:
    """Run in the subprocess: time reading and the full preparation, report JSON on stdout."""
    from modalrec.config import DataConfig
    from modalrec.data.prepare import prepare, resolve_source
    from modalrec.data.tables import read_interactions, read_items

    base = _rss_mib()
    cfg = DataConfig(dataset=name, split=split, cache=False)
    t0 = time.perf_counter()  # first, so it pays the lazy imports (pyarrow.csv, tqdm) like a real run
    ds = prepare(cfg, progress=False)
    prep_s = time.perf_counter() - t0
    peak = _rss_mib()
    src = resolve_source(cfg)
    t0 = time.perf_counter()
    read_interactions(src.interactions)
    if src.items is not None:
        read_items(src.items)
    read_s = time.perf_counter() - t0  # warm: the files are in the page cache by now
    out = {
        "read_seconds": read_s,
        "prepare_seconds": prep_s,
        "base_rss_mib": base,
        "peak_rss_mib": peak,
        "events_read": ds.meta["stats"]["events_read"],
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": int(len(ds.items)),
    }
    print(json.dumps(out))


def run(name: str, split: str) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, __file__, "--child", name, "--split", split],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name}: child failed:\n{res.stderr}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_wall_seconds"] = wall
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3, help="runs per data set; the fastest is reported")
    ap.add_argument("--split", default="loo")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "prepare_speed.json"))
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.split)
        return 0

    from modalrec.datasets import builtin

    for n in args.names:  # fetching is not part of the measurement
        builtin.ensure(n)
    rows = []
    for n in args.names:
        runs = [run(n, args.split) for _ in range(max(1, args.repeat))]
        best = min(runs, key=lambda r: r["prepare_seconds"])
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        best["runs_prepare_seconds"] = [round(r["prepare_seconds"], 3) for r in runs]
        best["name"] = n
        tgt = TARGET.get(n)
        if tgt:
            best["target"] = tgt
            best["meets_target"] = bool(
                best["prepare_seconds"] < tgt["seconds"] and best["peak_rss_mib"] < tgt["peak_rss_mib"]
            )
        rows.append(best)

    head = (
        f"{'data set':<22}{'events':>10}{'users':>7}{'items':>7}{'kept':>10}{'read s':>8}{'prep s':>8}"
        f"{'proc s':>8}{'peak MiB':>10}{'base MiB':>10}  target"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "" if "meets_target" not in r else ("ok" if r["meets_target"] else "MISSED")
        print(
            f"{r['name']:<22}{r['events_read']:>10,}{r['users']:>7,}{r['items']:>7,}{r['interactions']:>10,}"
            f"{r['read_seconds']:>8.2f}{r['prepare_seconds']:>8.2f}{r['process_wall_seconds']:>8.2f}"
            f"{r['peak_rss_mib']:>10.0f}{r['base_rss_mib']:>10.0f}  {ok}"
        )

    import numpy
    import pandas

    try:
        import pyarrow

        pa_version = pyarrow.__version__
    except ImportError:
        pa_version = None
    result = {
        "benchmark": "prepare_speed",
        "split": args.split,
        "repeat": args.repeat,
        "note": "prepare() from the normalised raw files, cache=False, first call in a fresh process; "
        "read_seconds = reading the tables again (warm); peak_rss_mib = max RSS of the subprocess "
        "after prepare (base_rss_mib = after imports)",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
            "pyarrow": pa_version,
        },
        "results": rows,
    }
    out = Path(args.out)
    write_result(out, result)
    return 0 if all(r.get("meets_target", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
