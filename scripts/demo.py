"""`make demo`: the transfer pipeline. Pre-train PMMRec on ml-1m, fine-tune it on ml-100k, and
compare it with SASRec and Pop trained on ml-100k; then recommend for one user, including movies
the pre-trained model never saw.

Runs are kept in runs/demo/<name>; a finished run is reused and an unfinished one resumed
(delete runs/demo to retrain). On 2 CPU cores the first run takes about half an hour, mostly the
ml-1m pre-training (--pretrain-epochs; the full default is 4 epochs); later runs take seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from modalrec.config import build_config
from modalrec.run.data import load_data, read_record
from modalrec.run.finetune import finetune_config
from modalrec.run.folder import RunDir
from modalrec.run.store import read_config
from modalrec.run.training import train_or_resume
from modalrec.serve.recommender import Recommender

MODELS = {
    "pop": [],
    "sasrec": ["train.epochs=200", "train.patience=5", "train.batch_size=128", "train.lr=1e-3",
               "train.window_stride=25"],
}


def _run(name: str, out: Path, make_cfg, quiet: bool) -> dict:
    t0 = time.perf_counter()
    results = train_or_resume(make_cfg, out, progress=not quiet, log_to=lambda m: print(f"[{name}] {m}"))
    print(f"[{name}] done in {time.perf_counter() - t0:.1f}s (best epoch {results['best_epoch']})")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-100k", help="target data set")
    ap.add_argument("--source", default="ml-1m", help="pre-training data set")
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)

    rows = {}
    for name, overrides in MODELS.items():
        rows[name] = _run(name, out / name, lambda: build_config(
            model=name, overrides=[f"data.dataset={args.dataset}", *overrides]), args.quiet)

    pre = out / f"pmmrec-{args.source}"
    print(f"\n[pmmrec] pre-training on {args.source} ({args.pretrain_epochs} epochs; images are posters rendered "
          "from metadata)")
    _run("pmmrec pre-train", pre, lambda: build_config(model="pmmrec", overrides=[
        f"data.dataset={args.source}", "data.posters=true", f"train.epochs={args.pretrain_epochs}"]), args.quiet)
    rows["pmmrec zero-shot"] = _run("pmmrec zero-shot", out / "pmmrec-zero-shot", lambda: finetune_config(
        pre, args.dataset, overrides=["data.posters=true", "train.epochs=0"]), args.quiet)
    rows["pmmrec"] = _run("pmmrec fine-tune", out / "pmmrec", lambda: finetune_config(
        pre, args.dataset, overrides=["data.posters=true", "train.epochs=15", "train.patience=3"]), args.quiet)

    first = next(iter(rows.values()))
    proto = first["test"]["protocol"]
    print()
    print(f"Test metrics on {first['dataset']} ({first['test']['count']} users; leave-one-out; "
          f"full ranking over {proto.get('n_items', '?')} items; history "
          f"{'excluded' if proto.get('exclude_history') else 'included'}; pessimistic ties)")
    keys = ["hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50"]
    print(f"{'model':<18}" + "".join(f"{k:>10}" for k in keys))
    for name, res in rows.items():
        m = res["test"]["metrics"]
        print(f"{name:<18}" + "".join(f"{m[k]:>10.4f}" for k in keys))

    src_data = load_data(read_config(RunDir(pre)).data, read_record(RunDir(pre)), "the demo", progress=False)
    source_titles = set(src_data.catalogue.fields["title_year"][1:].tolist())
    rec = Recommender.load(out / "pmmrec")
    ds = rec.dataset
    new = {i for i, t in enumerate(ds.catalogue.fields["title_year"]) if i and t not in source_titles}
    u = 0
    hist_idx = ds.split.test.sequence(u)
    history = [str(ds.catalogue.item_ids[i]) for i in hist_idx]
    print(f"\n{len(new)} of the {ds.n_items} {args.dataset} movies never occur in {args.source}: the pre-trained "
          "model never saw them, an ID model could not score them.")
    print(f"User {ds.user_ids[ds.split.test.users[u]]}: last 5 of {len(history)} movies watched")
    for i in hist_idx[-5:]:
        print(f"   {ds.catalogue.text[i]}")
    print("PMMRec (pre-trained on %s, fine-tuned) recommends  [* = never in %s]:" % (args.source, args.source))
    recs = rec.recommend(history, k=200)
    shown = recs[:10]
    unseen = [r for r in recs if ds.catalogue.index_of(r.item_id) in new]
    if unseen and unseen[0] not in shown:
        shown = shown + [unseen[0]]
    for r in shown:
        n = recs.index(r) + 1
        star = "*" if ds.catalogue.index_of(r.item_id) in new else " "
        print(f"{n:>4}.{star} {r.text}  (score {r.score:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
