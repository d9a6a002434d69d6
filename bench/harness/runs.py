"""Run-or-resume of a `modalrec` command line: the one place the benchmarks make a run folder.

A finished run folder of the same command is reused; one of another command (the script's settings
changed since) is made again; an interrupted `train` is continued from its last checkpoint, an
interrupted `finetune` started again. When the library has its own run-or-resume (`modalrec.run`),
`run_cli` is the function to swap for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from modalrec.utils import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
MODALREC = [sys.executable, "-m", "modalrec.cli"]  # the CLI in a subprocess: its own peak RSS, its own crash


def command_line(args: list[str]) -> str:
    return "modalrec " + " ".join(args)


def finished(args: list[str], out: Path) -> bool:
    """``out`` holds a finished run that `modalrec ARGS` made (the command is kept in bench_meta.json)."""
    try:
        meta = json.loads((out / "bench_meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / "results.json").is_file() and meta.get("command") == command_line(args)


def _prepare_folder(args: list[str], out: Path) -> tuple[list[str], bool]:
    """Clear what cannot be reused in ``out``; (the arguments to run, whether they continue a train)."""
    if (out / "results.json").is_file():
        print(f"    (the finished run in {out} was made by another command: running it again)", flush=True)
        shutil.rmtree(out)
    if not out.exists():  # else a run interrupted earlier (the scripts are meant to be stopped and rerun)
        return args, False
    if args[0] == "train" and (out / "checkpoints" / "last.pt").is_file():
        print(f"    (continuing the interrupted run in {out} from its last checkpoint)", flush=True)
        return [args[0], "--resume", *args[1:]], True
    # nothing to continue from (or `finetune`, which has no --resume): start it again
    print(f"    (removing the unfinished run folder {out}: nothing to continue from)", flush=True)
    shutil.rmtree(out)
    return args, False


def _run(args: list[str], log: Path, append: bool) -> tuple[float, float]:
    """Run `modalrec ARGS` with its output in ``log``; (wall seconds, peak RSS MiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a" if append else "w") as f:
        p = subprocess.Popen([*MODALREC, *args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"`{command_line(args)}` failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def run_cli(args: list[str], out: Path, log: Path) -> dict:
    """Run `modalrec ARGS` into ``out`` unless it already holds a finished run of the same command;
    its results.json + bench_meta.json (wall time, peak RSS, command) + "reused"."""
    res_file, meta_file = out / "results.json", out / "bench_meta.json"
    if finished(args, out):
        return {**json.loads(res_file.read_text()), **json.loads(meta_file.read_text()), "reused": True}
    run_args, resumed = _prepare_folder(args, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wall, rss = _run(run_args, log, append=resumed)
    meta = {"wall_s": round(wall, 1), "peak_rss_mib": round(rss, 1), "command": command_line(args)}
    if resumed:  # wall_s covers the continued part only
        meta["resumed"] = True
    atomic_write_json(meta_file, meta)
    return {**json.loads(res_file.read_text()), **meta, "reused": False}
