"""Run-or-resume of a `modalrec` command line for the benchmarks: the library does it (`--reuse
--overwrite`, i.e. :func:`modalrec.run.train_or_resume`); this adds only what a benchmark records.

A finished run of the same config is reused; one of another config is made again; an interrupted run
is continued from its last checkpoint. Each call records the wall time and peak RSS of the subprocess
in ``bench_meta.json`` beside the run (kept from the first run when the run is reused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from modalrec.report.plots import validation_curve
from modalrec.utils import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
MODALREC = [sys.executable, "-m", "modalrec.cli"]  # the CLI in a subprocess: its own peak RSS, its own crash


def command_line(args: list[str]) -> str:
    return "modalrec " + " ".join(args)


def finished(args: list[str], out: Path) -> bool:
    """``out`` holds a finished run that `modalrec ARGS` made, as this bench recorded it (bench_meta.json);
    for --report-only, which must not start anything."""
    try:
        meta = json.loads((out / "bench_meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / "results.json").is_file() and meta.get("command") == command_line(args)


def _run(args: list[str], log: Path) -> tuple[float, float]:
    """Run `modalrec ARGS` with its output appended to ``log``; (wall seconds, peak RSS MiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a") as f:
        p = subprocess.Popen([*MODALREC, *args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"`{command_line(args)}` failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def run_cli(args: list[str], out: Path, log: Path) -> dict:
    """`modalrec ARGS --reuse --overwrite` into ``out``; its results.json + the bench record (wall time,
    peak RSS, command) + "reused" (and "resumed" when an interrupted run was continued) + "curve" (validation
    NDCG@10 per epoch, kept in the result files so the report draws it without the run folder)."""
    res_file, meta_file = out / "results.json", out / "bench_meta.json"
    before = res_file.stat().st_mtime_ns if res_file.is_file() else None
    interrupted = before is None and (out / "checkpoints" / "last.pt").is_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    wall, rss = _run([*args, "--reuse", "--overwrite"], log)
    reused = before is not None and res_file.stat().st_mtime_ns == before
    if reused:  # the record of the run that made it (none for a run this bench did not make)
        meta = (
            json.loads(meta_file.read_text())
            if meta_file.is_file()
            else {"wall_s": None, "peak_rss_mib": None, "command": command_line(args)}
        )
    else:
        meta = {"wall_s": round(wall, 1), "peak_rss_mib": round(rss, 1), "command": command_line(args)}
        if interrupted:  # wall_s covers the continued part only
            meta["resumed"] = True
        atomic_write_json(meta_file, meta)
    return {**json.loads(res_file.read_text()), **meta, "reused": reused, "curve": curve(out)}


def curve(out: Path) -> dict:
    """{"epochs": [...], "ndcg@10": [...]}: the validation NDCG@10 of every evaluated epoch of the run in ``out``."""
    epochs, values = validation_curve(out / "metrics.jsonl", "ndcg@10")
    return {"epochs": epochs, "ndcg@10": [round(v, 5) for v in values]}


def evaluate_json(run: Path | str, *flags: str) -> dict:
    """`modalrec evaluate RUN --json --quiet FLAGS` (test split) as a dict; a failure raises naming the command."""
    out = subprocess.run(
        [*MODALREC, "evaluate", str(run), "--json", "--quiet", *flags], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"modalrec evaluate {run} {' '.join(flags)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)
