"""Speed of exact full-ranking evaluation against a bare ``matmul + topk`` baseline.

For random user and item matrices it measures, in the same process:

* bare:  ``torch.topk(U_chunk @ V.T, k=50)`` over user chunks (what a top-k evaluator costs);
* ours:  :func:`modalrec.evaluate.ranking.evaluate` through a trivial model (user vector = a row
  of U), with random histories excluded and pessimistic ties: full-catalogue ranks of the targets
  and HR/NDCG/MRR@{10,20,50};
* ours, chunked: the same with ``item_chunk`` (bounded memory).

Throughput is users x items scored per second; ``ratio`` = ours / bare (target >= 0.5).
Prints a table and writes ``bench/results/eval_speed.json``.

    python bench/eval_speed.py            # both cases (about 1.5 min on 2 CPU cores)
    python bench/eval_speed.py --cases small
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modalrec.data.dataset import SeqSet
from modalrec.evaluate.ranking import evaluate

from harness.output import write_result

CASES = {
    # name: (users, items, dim, max history length, item_chunk of the chunked run)
    "small": (6040, 3706, 64, 200, 1024),  # MovieLens-1M sized
    "large": (20000, 100000, 64, 100, 16384),
}


class MatrixModel(nn.Module):
    """The contract over fixed matrices: user vector = U[user index], items = V."""

    def __init__(self, U: torch.Tensor, V: torch.Tensor):
        super().__init__()
        self.U, self.V = U, V
        self.n_items = V.shape[0] - 1

    def item_embeddings(self, items=None):
        return self.V if items is None else self.V[items]

    def user_embeddings(self, batch):
        return self.U[batch["users"]]

    def score(self, users, items):
        return users @ items.T


def random_seqset(n_users: int, n_items: int, max_hist: int, rng) -> SeqSet:
    lens = rng.integers(5, max_hist + 1, size=n_users)
    flat = rng.integers(1, n_items + 1, size=int(lens.sum()) + n_users).astype(np.int32)
    seq_len = lens + 1  # history + target
    off = np.concatenate([[0], np.cumsum(seq_len)])
    start, end = off[:-1], off[1:] - 1
    return SeqSet(flat, start, end, np.arange(n_users, dtype=np.int32), flat[end])


def bare_topk(U: torch.Tensor, V: torch.Tensor, batch_size: int, k: int = 50) -> float:
    t0 = time.perf_counter()
    for b0 in range(0, U.shape[0], batch_size):
        torch.topk(U[b0 : b0 + batch_size] @ V.T, k=k, dim=1)
    return time.perf_counter() - t0


def ours(model, ss: SeqSet, batch_size: int, item_chunk: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = evaluate(model, ss, max_len=50, ks=(10, 20, 50), batch_size=batch_size, item_chunk=item_chunk, progress=False)
    return time.perf_counter() - t0, res.metrics


def run_case(name: str, batch_size: int, item_chunk: int, repeats: int, seed: int) -> list[dict]:
    n_users, n_items, d, max_hist, case_chunk = CASES[name]
    item_chunk = item_chunk or case_chunk
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(n_users, d, generator=g)
    V = torch.randn(n_items + 1, d, generator=g)
    V[0] = 0
    ss = random_seqset(n_users, n_items, max_hist, np.random.default_rng(seed))
    model = MatrixModel(U, V)
    pairs = n_users * n_items
    rows = []
    timings: dict[str, list[float]] = {"bare topk": [], "ours": [], f"ours chunk={item_chunk}": []}
    metrics = None
    for _ in range(repeats):  # interleaved, so drift in machine load hits every method alike
        timings["bare topk"].append(bare_topk(U, V, batch_size))
        sec, metrics = ours(model, ss, batch_size, 0)
        timings["ours"].append(sec)
        sec, m2 = ours(model, ss, batch_size, item_chunk)
        timings[f"ours chunk={item_chunk}"].append(sec)
        assert m2 == metrics, "chunked and unchunked evaluation disagree"
    bare = min(timings["bare topk"])
    for method, ts in timings.items():
        sec = min(ts)
        rows.append(
            {
                "case": name,
                "users": n_users,
                "items": n_items,
                "dim": d,
                "method": method,
                "seconds": round(sec, 4),
                "pairs_per_s": pairs / sec,
                "ratio_vs_bare": bare / sec,
                "repeats": repeats,
                "item_chunk": item_chunk if method.startswith("ours chunk") else 0,
            }
        )
    rows[-1]["mean_history"] = float(ss.lengths.mean())
    rows[-1]["ndcg@10"] = metrics["ndcg@10"]
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="small,large", help="comma-separated: " + ",".join(CASES))
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--item-chunk", type=int, default=0, help="chunked run's item_chunk (0: per case)")
    ap.add_argument("--repeats-small", type=int, default=5)
    ap.add_argument("--repeats-large", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    args = ap.parse_args(argv)

    torch.set_grad_enabled(False)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if name not in CASES:
            raise SystemExit(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        repeats = args.repeats_small if name == "small" else args.repeats_large
        rows += run_case(name, args.batch_size, args.item_chunk, repeats, args.seed)

    print(f"{'case':<6} {'users x items':>16} {'method':<20} {'seconds':>8} {'pairs/s':>10} {'ours/bare':>9}")
    for r in rows:
        print(
            f"{r['case']:<6} {r['users']:>7} x {r['items']:<6} {r['method']:<20} {r['seconds']:>8.3f} "
            f"{r['pairs_per_s']:>10.3g} {r['ratio_vs_bare']:>9.2f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        # other processes on the same cores slow every method, small multi-threaded ops the most
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    write_result(out, {"env": env, "rows": rows})


if __name__ == "__main__":
    main()
