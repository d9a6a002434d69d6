"""Training speed: windows/s of each model's training step at its defaults, and where a step's time goes.

For every model (default: pmmrec, missrec, unisrec, sasrec) on ml-1m at the model's own training
defaults (PMMRec with posters, as the transfer bench pre-trains it), a worker process builds the
trainer exactly as `modalrec train` does (data, model, features, loader, optimizer), runs
``--warmup`` steps, then times ``--steps`` optimizer steps of the trainer's own step. windows/s =
training windows consumed / wall time (data loading included).

Side by side: ``--baseline REF`` also runs the same workers on the code of git commit REF (checked
out into a temporary worktree, imported from there), alternating with the current code,
``--repeats`` times each; the table gives the median windows/s of each and their ratio.
``--variant NAME:OVERRIDES`` adds PMMRec with config overrides on the current code to the same
alternation (e.g. ``bf16:train.cpu_bf16=true``, ``b512:train.batch_size=512``).

Where the time goes (``--breakdown``, current code only): one more worker times each phase of a
step: data (next batch), the forward of each top-level component (module hooks, so a component
called twice counts twice), the rest of the forward (losses and glue), backward, optimizer; and,
for PMMRec, each auxiliary loss by switching it off (the step-time difference is that loss's whole
cost, forward and backward).

    python bench/train_speed.py                                   # current code, all models
    python bench/train_speed.py --models pmmrec --baseline d179546 --breakdown --variant bf16:train.cpu_bf16=true
Quality (``--quality-from RUN ...``): a speed setting counts only at the same validation quality, which
takes whole pre-training runs (``modalrec train``, about 20 minutes each here); this records what
finished runs reached (settings, training time, validation and test NDCG@10) in the same JSON.
Writes bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("pmmrec", "missrec", "unisrec", "sasrec")
IMAGE_MODELS = ("pmmrec", "missrec")  # their defaults read images: posters on the built-in data sets
PMMREC_LOSSES = ("nicl", "nid", "rcl")


# ------------------------------------------------------------------------------------------ worker


def _trainer(model: str, dataset: str, overrides: list[str]):
    """A Trainer set up as `modalrec train` sets it up, short of running epochs."""
    from modalrec.config import build_config
    from modalrec.train.trainer import Trainer
    from modalrec.utils import seed_everything

    extra = ["data.posters=true"] if model in IMAGE_MODELS else []
    cfg = build_config(model=model, overrides=[f"data.dataset={dataset}", *extra, *overrides])
    tr = Trainer(cfg, None, progress=False)
    if cfg.train.threads > 0:
        import torch

        torch.set_num_threads(cfg.train.threads)
    tr._load_data()
    seed_everything(cfg.train.seed)
    tr._build_model(False)
    tr._make_loader()
    tr._make_optimizer()
    tr.model.train()
    tr.model.on_epoch_start(1)
    tr.sampler.set_epoch(1)
    return tr


def _batches(tr, n: int):
    """``n`` batches from the epoch's loader (cycled if the epoch is shorter)."""
    while True:
        for batch in tr.loader:
            yield batch
            n -= 1
            if n <= 0:
                return


def _windows(batch) -> int:
    return int(batch["items"].shape[0])


def measure(model: str, dataset: str, overrides: list[str], warmup: int, steps: int) -> dict:
    """windows/s of the trainer's own step (data loading included) over ``steps`` steps after ``warmup``."""
    tr = _trainer(model, dataset, overrides)
    it = _batches(tr, warmup + steps)
    for _ in range(warmup):
        tr._train_step(next(it), 1)
    t0 = time.perf_counter()
    windows = 0
    losses = []
    for batch in it:
        windows += _windows(batch)
        losses.append(float(tr._train_step(batch, 1)))
    wall = time.perf_counter() - t0
    return {
        "windows": windows,
        "steps": steps,
        "wall_s": wall,
        "windows_per_s": windows / wall,
        "batch_size": tr.cfg.train.batch_size,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "steps_per_epoch": len(tr.loader),
    }


def breakdown(model: str, dataset: str, overrides: list[str], warmup: int, steps: int) -> dict:
    """Seconds per step in each phase, from module hooks and timers around the step's parts."""
    import torch

    tr = _trainer(model, dataset, overrides)
    spent: dict[str, float] = {}
    starts: dict[str, list[float]] = {}

    def pre(name):
        def hook(_m, _a):
            starts.setdefault(name, []).append(time.perf_counter())

        return hook

    def post(name):
        def hook(_m, _a, _o):
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - starts[name].pop()

        return hook

    for name, child in tr.model.named_children():
        child.register_forward_pre_hook(pre(name))
        child.register_forward_hook(post(name))
    phases = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    it = iter(_batches(tr, warmup + steps))
    timed = 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        if i == warmup:
            spent.clear()
        loss = tr.net(batch).loss
        t2 = time.perf_counter()
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        if tr.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(tr.model.parameters(), tr.cfg.train.grad_clip)
        tr.optimizer.step()
        tr.scheduler.step()
        t4 = time.perf_counter()
        if i >= warmup:
            timed += 1
            for k, a, b in (("data", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("optimizer", t3, t4)):
                phases[k] += b - a
    per = {k: v / timed for k, v in phases.items()}
    components = {k: v / timed for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    per["forward: losses and glue"] = per["forward"] - sum(components.values())
    return {"steps": timed, "batch_size": tr.cfg.train.batch_size, "phases_s": per, "forward_components_s": components}


def worker(args) -> None:
    overrides = json.loads(args.overrides)
    if args.worker == "measure":
        out = measure(args.model, args.dataset, overrides, args.warmup, args.steps)
    else:
        out = breakdown(args.model, args.dataset, overrides, args.warmup, args.steps)
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------ driver


def _run_worker(kind: str, model: str, args, overrides: list[str], src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), TQDM_DISABLE="1")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--model",
        model,
        "--dataset",
        args.dataset,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--overrides",
        json.dumps(overrides),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {kind} {model} ({src}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _baseline_tree(ref: str) -> tuple[Path, str]:
    commit = subprocess.run(
        ["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="train-speed-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True, capture_output=True)
    return tree, commit


def _variants(args) -> dict[str, list[str]]:
    """``--variant NAME:key=value,key=value`` options measured on the current code beside its defaults."""
    out = {}
    for v in args.variant:
        name, _, overrides = v.partition(":")
        out[name] = [o for o in overrides.split(",") if o]
    return out


def _speed_rows(args, baseline: Path | None) -> list[dict]:
    rows = []
    variants = _variants(args)
    for model in args.models.split(","):
        trees = [("baseline", baseline / "src", [])] if baseline else []
        trees += [("current", ROOT / "src", [])]
        if model == "pmmrec":
            trees += [(name, ROOT / "src", ov) for name, ov in variants.items()]
        runs: dict[str, list] = {name: [] for name, _, _ in trees}
        for _ in range(args.repeats):
            for name, src, ov in trees:  # alternating: a slow spell of the machine hits every side alike
                r = _run_worker("measure", model, args, ov, src)
                runs[name].append(r)
                print(f"  {model:8s} {name:10s} {r['windows_per_s']:8.1f} windows/s", flush=True)
        med = {name: statistics.median(r["windows_per_s"] for r in rs) for name, rs in runs.items()}
        row = {"model": model, "current_windows_per_s": med["current"], "current_runs": runs["current"]}
        if baseline:
            row.update(
                baseline_windows_per_s=med["baseline"],
                baseline_runs=runs["baseline"],
                speedup=med["current"] / med["baseline"],
            )
        for name, ov in variants.items() if model == "pmmrec" else []:
            row.setdefault("variants", {})[name] = {
                "overrides": ov,
                "windows_per_s": med[name],
                "runs": runs[name],
                "speedup": med[name] / med["baseline"] if baseline else None,
            }
        rows.append(row)
    return rows


def _breakdowns(args) -> dict:
    out = {}
    for model in (args.breakdown_models or args.models).split(","):
        b = _run_worker("breakdown", model, args, [], ROOT / "src")
        if model == "pmmrec":
            full = _run_worker("measure", model, args, [], ROOT / "src")["windows_per_s"]
            b["loss_cost_s"] = {}
            for loss in PMMREC_LOSSES:
                off = _run_worker("measure", model, args, [f"model.{loss}=false"], ROOT / "src")["windows_per_s"]
                bs = b["batch_size"]
                b["loss_cost_s"][loss] = bs / full - bs / off  # seconds per step this loss adds
        out[model] = b
    return out


def quality_of(run_dirs: list[str]) -> list[dict]:
    """What finished pre-training runs reached (the speed settings' quality side): each run's own
    settings that differ from the model's defaults, its training time and validation/test NDCG@10."""
    from modalrec.config import build_config

    out = []
    for run in run_dirs:
        cfg = json.loads((Path(run) / "config.json").read_text())
        res = json.loads((Path(run) / "results.json").read_text())
        default = build_config(model=cfg["model"]["name"], overrides=[f"data.dataset={cfg['data']['dataset']}"])
        changed = [f"train.{k}={v}" for k, v in cfg["train"].items() if getattr(default.train, k, v) != v]
        out.append(
            {
                "run": str(run),
                "model": cfg["model"]["name"],
                "dataset": res["dataset"],
                "train_overrides": changed,
                "epochs_run": res["epochs_run"],
                "best_epoch": res["best_epoch"],
                "train_time_s": res["train_time_s"],
                "valid_ndcg@10": res["valid"]["metrics"]["ndcg@10"],
                "test_ndcg@10": res["test"]["metrics"]["ndcg@10"],
            }
        )
        print(
            f"  {out[-1]['model']} {' '.join(changed) or 'defaults':28s} valid NDCG@10 "
            f"{out[-1]['valid_ndcg@10']:.4f}  test {out[-1]['test_ndcg@10']:.4f}  {res['train_time_s']:.0f} s"
        )
    return out


def _print(rows: list[dict], parts: dict) -> None:
    print("\nwindows/s per model (median of repeats; data loading included)")
    print(f"{'model':10s}{'current':>10s}{'baseline':>10s}{'speed-up':>10s}")
    for r in rows:
        base = r.get("baseline_windows_per_s")
        print(
            f"{r['model']:10s}{r['current_windows_per_s']:10.1f}"
            + (f"{base:10.1f}{r['speedup']:9.2f}x" if base else f"{'-':>10s}{'-':>10s}")
        )
        for name, v in r.get("variants", {}).items():
            print(
                f"  + {name:6s}{v['windows_per_s']:10.1f}{'':10s}"
                + (f"{v['speedup']:9.2f}x" if v["speedup"] else "")
                + f"  ({' '.join(v['overrides'])})"
            )
    for model, b in parts.items():
        print(f"\n{model}: seconds per step ({b['steps']} steps)")
        for k, v in {
            **b["phases_s"],
            **{f"  forward of {n}": s for n, s in b["forward_components_s"].items()},
            **{f"  loss {n} (fwd+bwd, by switching it off)": s for n, s in b.get("loss_cost_s", {}).items()},
        }.items():
            print(f"  {k:48s}{v:8.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline", default="", help="git commit to measure side by side (temporary worktree)")
    ap.add_argument("--breakdown", action="store_true", help="also time each phase of a step (current code)")
    ap.add_argument(
        "--quality-from",
        nargs="+",
        metavar="RUN",
        help="finished pre-training runs of the settings (e.g. `modalrec train --model pmmrec --dataset "
        "ml-1m data.posters=true train.cpu_bf16=true`): record their validation quality in --out",
    )
    ap.add_argument("--breakdown-models", default="", help="models to break down (default: --models)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:OVERRIDES",
        help="PMMRec with these overrides too, e.g. bf16:train.cpu_bf16=true (repeatable)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed.json"))
    ap.add_argument("--quick", action="store_true", help="pmmrec and sasrec, 5 steps")
    ap.add_argument("--worker", choices=["measure", "breakdown"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.quality_from:  # record finished runs' quality beside the speed already measured in --out
        from harness.output import write_result

        result = json.loads(Path(args.out).read_text())
        result["quality"] = quality_of(args.quality_from)
        result["quality_command"] = "python bench/train_speed.py " + " ".join(sys.argv[1:])
        write_result(args.out, result)
        return 0
    if args.quick:
        args.models, args.steps, args.warmup = "pmmrec,sasrec", 5, 2
    tree, commit = _baseline_tree(args.baseline) if args.baseline else (None, None)
    try:
        t0 = time.time()
        rows = _speed_rows(args, tree)
        parts = _breakdowns(args) if args.breakdown else {}
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    _print(rows, parts)
    import torch

    from harness.output import write_result

    write_result(
        args.out,
        {
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "dataset": args.dataset,
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "baseline_commit": commit,
            "current_commit": _head(),
            "rows": rows,
            "breakdown": parts,
            "command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
            "wall_s": round(time.time() - t0, 1),
            "load_average": os.getloadavg(),
            "machine": {
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "platform": platform.platform(),
            },
        },
    )
    return 0


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
