"""The benchmark result files: their names, loading them, and what every file records alike
(date, machine, load, quick/partial labels, the `modalrec` commands and the run folders they name)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from .fmt import is_num

ROOT = Path(__file__).resolve().parents[2]

PMM = "pmmrec_transfer.json"
MISS = "missrec_unisrec_transfer.json"
SVR = "sasrec_vs_recbole.json"
SVR_OURS = "sasrec_ml100k_ours.json"
RUN_ALL = "bench_run.json"
SVR_ML1M = "sasrec_ml1m.json"
RECBOLE_RE = re.compile(r"^recbole_.*\.json$")


def load_results(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """({file name: parsed JSON}, {file name: why it could not be read}) of ``folder/*.json``."""
    data, errors = {}, {}
    for f in sorted(folder.glob("*.json")):
        try:
            data[f.name] = json.loads(f.read_text(encoding="utf-8"))
        except Exception as e:
            errors[f.name] = f"{type(e).__name__}: {e}"
    return data, errors


def short(cmd: str) -> str:
    """Paths of this checkout shown relative to the repository root."""
    return cmd.replace(str(ROOT) + os.sep, "")


def parse_command(cmd: str) -> dict:
    """--dataset, --out and the key=value overrides of a `modalrec ...` command line."""
    try:
        toks = shlex.split(cmd)
    except ValueError:
        toks = cmd.split()
    out: dict[str, Any] = {"options": [], "dataset": None, "out": None, "seed": None, "from": None}
    for i, t in enumerate(toks):
        if t in ("--dataset", "--out", "--from") and i + 1 < len(toks):
            out[t[2:]] = toks[i + 1]
        elif "=" in t and not t.startswith("-"):
            if t.startswith("train.seed="):
                out["seed"] = t.split("=", 1)[1]
            else:
                out["options"].append(t)
    return out


def run_folder(path: str | None) -> Path | None:
    """A run folder named in a command, found in this checkout (absolute paths of another checkout
    are re-anchored at its 'runs' component); None if absent."""
    if not path:
        return None
    p = Path(path)
    cands = [p if p.is_absolute() else ROOT / p]
    if "runs" in p.parts:
        cands.append(ROOT.joinpath(*p.parts[p.parts.index("runs") :]))
    return next((c for c in cands if c.is_dir()), None)


def machine_of(d: dict) -> dict:
    """The machine description of a result file, whatever its key."""
    m: dict = {}
    for k in ("versions", "environment", "env", "machine"):
        if isinstance(d.get(k), dict):
            m.update(d[k])
    return m


def date_of(d: dict) -> str | None:
    for k in ("date", "measured_at", "started"):
        if isinstance(d.get(k), str):
            return d[k]
    m = machine_of(d)
    return m.get("date") if isinstance(m.get("date"), str) else None


def load_of(d: dict) -> str | None:
    m = machine_of(d)
    for k in ("load_average_at_start", "loadavg_start"):
        if isinstance(m.get(k), list) and m[k]:
            return "load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in m[k])
    if is_num(m.get("loadavg_1min_before")):
        s = f"1-min load average before: {m['loadavg_1min_before']:.2f}"
        if is_num(m.get("loadavg_1min_after")):
            s += f", after: {m['loadavg_1min_after']:.2f}"
        return s
    return None


def labels(d: dict) -> list[str]:
    """The bold warnings of a quick or partial (report-only) result file."""
    out = []
    if d.get("quick"):
        seeds = d.get("seeds")
        bits = []
        if isinstance(seeds, list):
            bits.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
        if d.get("ft_epochs") not in (None, ""):
            bits.append(f"fine-tune epochs {d['ft_epochs']}")
        out.append(f"**Quick run ({', '.join(bits) or 'reduced settings'}): not the reference numbers.**")
    if d.get("report_only"):
        out.append("**Partial: only the runs finished so far (see the runs column).**")
    return out
