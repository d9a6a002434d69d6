"""MISSRec interest discovery: time of one k-means pass over every item's adapted text and image vectors.

The issue's target: all ml-latest-small-2016 items (9,066 x 2 vectors, the catalogue without item
k-core: data.min_item_inter=1) in under 2 s on this machine. The model is a freshly initialised
MISSRec with its default settings (adapter width 300, interest_ratio 0.1 -> K = ceil(2 N 0.1),
5 mini-batch steps + one exact assignment pass); the frozen MiniLM text and EfficientNet-Lite0
poster features come from the feature store (encoded on first use: minutes for the posters).
Timed: ``MISSRec.discover_interests()`` (adapting all vectors, k-means, writing the assignments),
median of --repeats runs, at the default ratio and at the reference's fine-tuning ratio 0.5.

    python bench/interest_discovery.py            # writes bench/results/interest_discovery.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from harness.output import write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-latest-small-2016")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "interest_discovery.json"))
    args = ap.parse_args()

    import torch

    from modalrec.config import build_config
    from modalrec.data.prepare import load_or_prepare
    from modalrec.models.registry import build_model

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    overrides = ["data.min_item_inter=1", "data.posters=true"]
    cfg = build_config(model="missrec", overrides=[f"data.dataset={args.dataset}", *overrides])
    ds = load_or_prepare(cfg.data, progress=True)
    rows = []
    for ratio in args.ratios:
        cfg.model.interest_ratio = ratio
        torch.manual_seed(0)
        model = build_model(cfg.model, ds).eval()
        n_vec = sum(int(model._present[m][1:].sum()) for m in model.modalities)
        times = []
        for r in range(args.repeats):
            model.discover_interests()
            times.append(model.last_discovery_s)
        k = int(model.centroids.shape[0] - 1)
        used = len(torch.unique(torch.cat([model.text_interest[1:], model.image_interest[1:]])))
        rows.append(
            {
                "ratio": ratio,
                "items": ds.n_items,
                "vectors": n_vec,
                "dim": cfg.model.hidden_size,
                "k": k,
                "clusters_used": used,
                "kmeans_steps": cfg.model.kmeans_steps,
                "median_s": round(statistics.median(times), 3),
                "times_s": [round(t, 3) for t in times],
            }
        )
    print(f"\nMISSRec interest discovery on {args.dataset} ({args.threads} thread(s), median of {args.repeats})")
    print(f"{'ratio':>6} {'items':>7} {'vectors':>8} {'K':>6} {'used':>6} {'median s':>9}")
    for r in rows:
        print(
            f"{r['ratio']:>6} {r['items']:>7} {r['vectors']:>8} {r['k']:>6} {r['clusters_used']:>6} {r['median_s']:>9.3f}"
        )
    out = {
        "dataset": args.dataset,
        "overrides": overrides,
        "threads": args.threads,
        "rows": rows,
        "target": "default ratio under 2 s",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": load0},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python bench/interest_discovery.py",
    }
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
