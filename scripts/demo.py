"""`make demo`: fetch ml-100k, train Pop and SASRec, print test metrics and recommendations.

Runs are kept in runs/demo/<model>; a finished run is reused (delete runs/demo to retrain).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from modalrec.config import build_config
from modalrec.serve.recommender import Recommender
from modalrec.train.trainer import RunDir, train

MODELS = {
    "pop": [],
    "sasrec": ["train.epochs=200", "train.patience=5", "train.batch_size=128", "train.lr=1e-3",
               "train.window_stride=25"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    rows = {}
    for name, overrides in MODELS.items():
        out = Path(args.out) / name
        rd = RunDir(out)
        if rd.results.is_file():
            print(f"[{name}] reusing finished run {out} (delete it to retrain)")
            results = json.loads(rd.results.read_text())
        else:
            if out.exists():
                print(f"[{name}] {out} holds an unfinished run; resuming it")
            t0 = time.perf_counter()
            cfg = build_config(model=name, overrides=[f"data.dataset={args.dataset}", *overrides])
            results = train(None if out.exists() else cfg, out, resume=out.exists(), progress=not args.quiet)
            print(f"[{name}] trained in {time.perf_counter() - t0:.1f}s (best epoch {results['best_epoch']})")
        rows[name] = results

    first = next(iter(rows.values()))
    proto = first["test"]["protocol"]
    print()
    print(f"Test metrics on {first['dataset']} ({first['test']['count']} users; leave-one-out; "
          f"full ranking over {proto.get('n_items', '?')} items; history "
          f"{'excluded' if proto.get('exclude_history') else 'included'}; pessimistic ties)")
    keys = ["hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50"]
    print(f"{'model':<10}" + "".join(f"{k:>10}" for k in keys))
    for name, res in rows.items():
        m = res["test"]["metrics"]
        print(f"{name:<10}" + "".join(f"{m[k]:>10.4f}" for k in keys))

    rec = Recommender.load(Path(args.out) / "sasrec")
    ds = rec.dataset
    u = 0
    hist_idx = ds.split.test.sequence(u)
    history = [str(ds.catalogue.item_ids[i]) for i in hist_idx]
    print(f"\nUser {ds.user_ids[ds.split.test.users[u]]}: last 5 of {len(history)} movies watched")
    for i in hist_idx[-5:]:
        print(f"   {ds.catalogue.text[i]}")
    print("SASRec recommends:")
    for n, r in enumerate(rec.recommend(history, k=5), 1):
        print(f"{n:>3}. {r.text}  (score {r.score:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
