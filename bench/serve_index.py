"""Retrieval index speed and quality, in-process: exact search vs FAISS IVF and HNSW.

For catalogues of 10k, 100k and 1M random *clustered* item vectors (d = 128, float32: 2,000
Gaussian clusters around unit-norm centres, noise as large as the centre, then L2-normalised, so
the geometry has the structure IVF relies on) it builds each index of
:mod:`modalrec.serve.index` with its default settings and reports:

* build seconds;
* latency of ``search(one query, k=10)`` (p50 / p99 over ``--queries`` queries, after a warm-up),
  without exclusions and with a 50-item history excluded (what serving does);
* recall@10 against exact search, for queries drawn from the item distribution (a user with one
  main interest) and, harder, for "mixed" queries halfway between three cluster centres.

No HTTP: this is the index alone (``bench/serve_latency.py`` measures the whole service).

    python bench/serve_index.py                  # 10k, 100k, 1M (about 10 minutes, ~2 GB of RAM)
    python bench/serve_index.py --quick          # 10k and 100k
    python bench/serve_index.py --sizes 300000 --kinds exact ivf

Prints a table and writes bench/results/serve_index.json (with the machine's description).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from harness.output import write_result

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000, 1_000_000)
QUICK = (10_000, 100_000)


def clustered_catalogue(
    n_items: int, d: int = 128, n_clusters: int = 2000, seed: int = 0, block: int = 100_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """(items [n_items + 1, d] with a zero padding row 0, cluster centres [n_clusters, d]).

    Each item: a random centre plus Gaussian noise of the centre's norm, L2-normalised. Built in
    blocks of ``block`` rows, so the temporaries stay small next to the result.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_clusters, d, generator=g), dim=1)
    items = torch.zeros(n_items + 1, d)
    for s in range(1, n_items + 1, block):
        m = min(block, n_items + 1 - s)
        x = centres[torch.randint(0, n_clusters, (m,), generator=g)]
        x += torch.randn(m, d, generator=g) / d**0.5
        items[s : s + m] = torch.nn.functional.normalize(x, dim=1)
    return items, centres


def draw_queries(centres: torch.Tensor, n: int, seed: int, mixed: bool = False) -> torch.Tensor:
    """User vectors [n, d]: like items (one centre + noise), or ``mixed``: the mean of three centres + noise."""
    g = torch.Generator().manual_seed(seed)
    n_clusters, d = centres.shape
    base = centres[torch.randint(0, n_clusters, (n, 3 if mixed else 1), generator=g)].mean(1)
    return torch.nn.functional.normalize(base + torch.randn(n, d, generator=g) / d**0.5, dim=1)


def _latency_ms(index, queries: torch.Tensor, exclude=None, warmup: int = 5) -> tuple[float, float]:
    """p50 and p99 (ms) of one-query searches, k = 10."""
    for i in range(min(warmup, len(queries))):
        index.search(queries[i : i + 1], 10, exclude=None if exclude is None else exclude[i : i + 1])
    times = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        index.search(queries[i : i + 1], 10, exclude=None if exclude is None else exclude[i : i + 1])
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def index_report(
    n_items: int, d: int = 128, kinds=("exact", "ivf", "hnsw"), n_queries: int = 200, seed: int = 0
) -> list[dict]:
    """One row per index kind for a clustered catalogue of ``n_items`` (see the module docstring)."""
    from modalrec.serve.index import ExactIndex, build_index, recall_at_k

    items, centres = clustered_catalogue(n_items, d, seed=seed)
    queries = draw_queries(centres, n_queries, seed + 1)
    mixed = draw_queries(centres, n_queries, seed + 2, mixed=True)
    g = torch.Generator().manual_seed(seed + 3)
    history = [torch.randint(1, n_items + 1, (50,), generator=g) for _ in range(n_queries)]
    exact = ExactIndex(items)
    rows = []
    for kind in kinds:
        gc.collect()
        t0 = time.perf_counter()
        index = exact if kind == "exact" else build_index(items, kind=kind)
        build_s = time.perf_counter() - t0
        p50, p99 = _latency_ms(index, queries)
        p50_ex, p99_ex = _latency_ms(index, queries, exclude=history)
        row = {
            "items": n_items,
            "dim": d,
            "kind": kind,
            "params": {"chunk": index.chunk} if kind == "exact" else index.params,
            "build_s": round(build_s, 3),
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "p50_ms_excl50": round(p50_ex, 3),
            "p99_ms_excl50": round(p99_ex, 3),
            "recall@10": 1.0 if kind == "exact" else round(recall_at_k(index, exact, queries, k=10), 4),
            "recall@10_mixed": 1.0 if kind == "exact" else round(recall_at_k(index, exact, mixed, k=10), 4),
            "queries": n_queries,
        }
        rows.append(row)
        print(
            f"{n_items:>9,} {kind:>5}: build {row['build_s']:7.2f} s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
            f"p99 (50 excluded) {p99_ex:7.2f} ms  recall@10 {row['recall@10']:.3f}  "
            f"mixed {row['recall@10_mixed']:.3f}  {row['params']}",
            flush=True,
        )
        del index
    del exact, items
    gc.collect()
    return rows


def machine_info(threads: int, load_start) -> dict:
    """Where the numbers come from: platform, CPUs, threads, load average at the start and end, date."""
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss_version,
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "loadavg_start": list(load_start) if load_start else None,
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="catalogue sizes (items)")
    ap.add_argument("--quick", action="store_true", help=f"sizes {', '.join(map(str, QUICK))} only")
    ap.add_argument("--kinds", nargs="+", default=["exact", "ivf", "hnsw"], help="exact, ivf, hnsw")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200, help="queries per (size, index)")
    ap.add_argument("--threads", type=int, default=1, help="torch (and FAISS) threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_index.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    sizes = list(QUICK) if args.quick else args.sizes
    rows = []
    for n in sizes:
        rows += index_report(n, args.dim, tuple(args.kinds), args.queries, args.seed)

    print(
        "\n| items | index | settings | build s | p50 ms | p99 ms | p99 ms, 50 excluded | recall@10 | recall@10 mixed |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "kind")
        print(
            f"| {r['items']:,} | {r['kind']} | {settings} | {r['build_s']:.2f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['p99_ms_excl50']:.2f} | {r['recall@10']:.3f} | {r['recall@10_mixed']:.3f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bench": "serve_index",
        "machine": machine_info(args.threads, load_start),
        "settings": {
            "sizes": sizes,
            "dim": args.dim,
            "clusters": 2000,
            "queries": args.queries,
            "k": 10,
            "seed": args.seed,
            "kinds": args.kinds,
        },
        "rows": rows,
    }
    write_result(out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
