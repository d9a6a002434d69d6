"""Concurrency and crash trials of the real CLI (issue 20's targets); prints a table, writes JSON.

- two `modalrec train` into one --out at once (seeds 1 and 2): the folder must end with one consistent
  run (its config's seed, metrics once per epoch, results equal to an undisturbed run of that seed) and
  a process that cannot write must exit with one `error:` line, never a traceback;
- two `modalrec encode` of one feature store at once: both succeed (one waits and reuses) or one fails
  with a clear message; the store equals a single encode's, byte for byte;
- `kill -9` at a random moment of `train`, `encode` and `data prepare`, then the same command again
  (train with --reuse, as always): the results equal an undisturbed run's.

Every trial uses its own MODALREC_HOME (the raw data and encoder weights are linked from the user's cache,
nothing is written there).

    python bench/robustness.py [--trials 10 --kills 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness.output import write_result

from modalrec.utils import modalrec_home

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "modalrec.cli"]
TRAIN = [
    "train",
    "--model",
    "sasrec",
    "--dataset",
    "synthetic",
    "--quiet",
    "--reuse",
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.max_len=8",
    "train.batch_size=32",
    "train.epochs=4",
    "train.threads=1",
]
ENCODE = ["encode", "--dataset", "ml-100k", "--towers", "text", "--quiet", "--json"]
PREPARE = ["data", "prepare", "--dataset", "ml-100k", "--quiet"]


# ------------------------------------------------------------------------------------------ helpers


def fresh_home(parent: Path) -> Path:
    """An empty MODALREC_HOME with the user's raw data, downloads and weights linked in (read only)."""
    home = Path(tempfile.mkdtemp(dir=parent))
    for sub in ("raw", "downloads", "weights", "emoji"):
        if (modalrec_home() / sub).exists():
            (home / sub).symlink_to(modalrec_home() / sub)
    return home


def start(args: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "MODALREC_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=1800)
    return p.returncode, err


def clean_failure(err: str) -> bool:
    """One `error:` line and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    return len(lines) == 1 and "Traceback" not in err


def train_outcome(out: Path) -> dict:
    """The seed, the epochs of metrics.jsonl and the test metrics of the run in ``out``."""
    cfg = json.loads((out / "config.json").read_text())
    epochs = [
        json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines() if "epoch" in json.loads(ln)
    ]
    res = json.loads((out / "results.json").read_text())
    return {"seed": cfg["train"]["seed"], "epochs": epochs, "test": res["test"]["metrics"]}


def store_bytes(home: Path) -> dict[str, bytes]:
    """Every complete feature store under ``home``: its values and presence, by folder name."""
    out = {}
    for man in sorted((home / "features").glob("*/*/manifest.json")):
        folder = man.parent
        out[folder.name] = (folder / "values.npy").read_bytes() + (folder / "present.npy").read_bytes()
    return out


def prepared_arrays(home: Path) -> dict[str, bytes]:
    """Every array of the prepared ml-100k entries under ``home``, by entry number (not by name: the cache key
    holds the raw files' paths, which differ between homes) and array (contents: zip headers hold times)."""
    out = {}
    for n, folder in enumerate(sorted((home / "prepared").glob("ml-100k-*"))):
        for f in sorted(folder.glob("*.npz")):
            with np.load(f, allow_pickle=False) as z:
                out.update({f"{n}/{f.name}/{k}": z[k].tobytes() + str(z[k].dtype).encode() for k in z.files})
    return out


# ------------------------------------------------------------------------------------------ trials


def references(work: Path) -> dict:
    """Undisturbed runs: train with seeds 1 and 2, one encode, one preparation (and their durations)."""
    ref = {"train": {}, "seconds": {}}
    for seed in (1, 2):
        home = fresh_home(work)
        t0 = time.time()
        code, err = finish(start([*TRAIN, f"train.seed={seed}", "--out", str(home / "run")], home))
        if code:
            raise SystemExit(f"reference train failed: {err}")
        ref["seconds"]["train"] = time.time() - t0
        ref["train"][seed] = train_outcome(home / "run")
    for name, args, read in (("encode", ENCODE, store_bytes), ("prepare", PREPARE, prepared_arrays)):
        home = fresh_home(work)
        if name == "encode":  # the preparation is not what is timed or killed here
            finish(start(PREPARE, home))
        t0 = time.time()
        code, err = finish(start(args, home))
        if code:
            raise SystemExit(f"reference {name} failed: {err}")
        ref["seconds"][name] = time.time() - t0
        ref[name] = read(home)
    return ref


def concurrent_trains(work: Path, ref: dict, trials: int) -> list[dict]:
    rows = []
    for t in range(trials):
        home = fresh_home(work)
        out = home / "run"
        procs = [start([*TRAIN, f"train.seed={seed}", "--out", str(out)], home) for seed in (1, 2)]
        ends = [finish(p) for p in procs]
        ok = [code == 0 for code, _ in ends]
        got = train_outcome(out) if (out / "results.json").is_file() else None
        consistent = (
            got is not None
            and got["epochs"] == sorted(set(got["epochs"]))
            and got["test"] == ref["train"][got["seed"]]["test"]
        )
        clean = all(code == 0 or clean_failure(err) for code, err in ends)
        rows.append(
            {
                "trial": t,
                "succeeded": sum(ok),
                "consistent": consistent,
                "clean_errors": clean,
                "errors": [err.strip().splitlines()[-1] for code, err in ends if code][:2],
            }
        )
        shutil.rmtree(home)
    return rows


def concurrent_encodes(work: Path, ref: dict, trials: int) -> list[dict]:
    rows = []
    for t in range(trials):
        home = fresh_home(work)
        finish(start(PREPARE, home))
        ends = [finish(p) for p in [start(ENCODE, home) for _ in range(2)]]
        same = store_bytes(home) == ref["encode"]
        rows.append(
            {
                "trial": t,
                "succeeded": sum(code == 0 for code, _ in ends),
                "identical_store": same,
                "clean_errors": all(code == 0 or clean_failure(err) for code, err in ends),
                "errors": [err.strip().splitlines()[-1] for code, err in ends if code][:2],
            }
        )
        shutil.rmtree(home)
    return rows


def kill_trials(work: Path, ref: dict, kills: int, rng: random.Random) -> list[dict]:
    rows = []
    for k in range(kills):
        what = ("train", "encode", "prepare")[k % 3]
        home = fresh_home(work)
        args = {"train": [*TRAIN, "train.seed=1", "--out", str(home / "run")], "encode": ENCODE, "prepare": PREPARE}[
            what
        ]
        if what == "encode":
            finish(start(PREPARE, home))
        delay = rng.uniform(0.2, 0.7) * max(1.0, ref["seconds"][what])
        for _ in range(4):  # a command that finished before the kill is no trial: again, killed sooner
            p = start(args, home)
            time.sleep(delay)
            killed = p.poll() is None
            if killed:
                p.kill()
            p.communicate()
            if killed:
                break
            shutil.rmtree(home)
            home = fresh_home(work)
            args = {
                "train": [*TRAIN, "train.seed=1", "--out", str(home / "run")],
                "encode": ENCODE,
                "prepare": PREPARE,
            }[what]
            if what == "encode":
                finish(start(PREPARE, home))
            delay /= 2
        code, err = finish(start(args, home))
        if what == "train":
            same = code == 0 and train_outcome(home / "run")["test"] == ref["train"][1]["test"]
        else:
            same = code == 0 and (store_bytes if what == "encode" else prepared_arrays)(home) == ref[what]
        rows.append(
            {
                "trial": k,
                "what": what,
                "delay_s": round(delay, 2),
                "killed": killed,
                "recovered": same,
                "error": err.strip().splitlines()[-1] if code else "",
            }
        )
        shutil.rmtree(home)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="trials of each concurrency case (issue: 10)")
    ap.add_argument("--kills", type=int, default=20, help="kill -9 trials across train, encode, prepare (issue: 20)")
    ap.add_argument("--quick", action="store_true", help="2 trials each, 3 kills (a smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "robustness.json"))
    args = ap.parse_args(argv)
    trials, kills = (2, 3) if args.quick else (args.trials, args.kills)
    with tempfile.TemporaryDirectory(prefix="modalrec-robustness-") as tmp:
        work = Path(tmp)
        ref = references(work)
        trains = concurrent_trains(work, ref, trials)
        encodes = concurrent_encodes(work, ref, trials)
        crashes = kill_trials(work, ref, kills, random.Random(args.seed))
    summary = {
        "concurrent_train": {
            "trials": trials,
            "consistent": sum(r["consistent"] for r in trains),
            "clean_errors": sum(r["clean_errors"] for r in trains),
        },
        "concurrent_encode": {
            "trials": trials,
            "identical_store": sum(r["identical_store"] for r in encodes),
            "clean_errors": sum(r["clean_errors"] for r in encodes),
        },
        "kill_9": {
            "trials": kills,
            "killed": sum(r["killed"] for r in crashes),
            "recovered": sum(r["recovered"] for r in crashes),
        },
    }
    print(f"{'case':<20}{'trials':>8}{'good':>8}{'clean errors':>14}")
    print(
        f"{'concurrent train':<20}{trials:>8}{summary['concurrent_train']['consistent']:>8}"
        f"{summary['concurrent_train']['clean_errors']:>14}"
    )
    print(
        f"{'concurrent encode':<20}{trials:>8}{summary['concurrent_encode']['identical_store']:>8}"
        f"{summary['concurrent_encode']['clean_errors']:>14}"
    )
    print(
        f"{'kill -9, rerun':<20}{kills:>8}{summary['kill_9']['recovered']:>8}{'':>14}"
        f"   ({summary['kill_9']['killed']} killed while running)"
    )
    write_result(
        args.out,
        {
            "summary": summary,
            "reference_seconds": {k: round(v, 1) for k, v in ref["seconds"].items()},
            "concurrent_train": trains,
            "concurrent_encode": encodes,
            "kill_9": crashes,
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "seed": args.seed,
            "numpy": np.__version__,
        },
    )
    bad = (
        summary["concurrent_train"]["consistent"] < trials
        or summary["concurrent_encode"]["identical_store"] < trials
        or summary["kill_9"]["recovered"] < kills
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
