"""`make demo`: modalrec's main job in under ten minutes on 2 CPU cores (5 min 54 s measured, install included).

A content model (UniSRec: item text through a frozen sentence encoder, a small adapter and a
Transformer) is pre-trained on ml-1m, transferred to ml-100k (zero-shot, then fine-tuned with an ID
embedding beside the text, dropped half the time so that text alone also scores) and compared with
SASRec (item IDs) and Pop trained on ml-100k, at the same budget of 10 epochs; then it recommends for a
user and takes a movie that no data set here contains, which an ID model could not score at all.

`make demo-full` (``--full``) runs the longer pipeline instead: PMMRec (text + poster images) pre-trained
on ml-1m for 2 epochs, then zero-shot and fine-tuned on ml-100k, against the same SASRec and Pop.

Each stage prints what it does, how long it usually takes here and when it should end; each training
epoch prints one line. Runs are kept in runs/demo/<name> (runs/demo-full/...): a finished run is reused
and an unfinished one continued, so a second `make demo` prints the results in seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from modalrec.config import build_config
from modalrec.run.finetune import finetune_config
from modalrec.run.training import train_or_resume
from modalrec.serve.recommender import Recommender

TARGET, SOURCE = "ml-100k", "ml-1m"
# the same budget for the ID model and the content model: 10 epochs over overlapping windows
BUDGET = ["train.window_stride=10", "train.epochs=10", "train.patience=2"]
SASREC = ["model.norm_first=false", *BUDGET]
# UniSRec as the results page recommends it for warm data that also gets new items: text + an ID
# embedding dropped half the time in training (model.id_dropout), so an item without one (a new item)
# is scored from its text alone
HYBRID = ["model.mode=transductive", "model.id_dropout=0.5", *BUDGET]
# a brand-new movie (2003): in neither data set, so no model here has seen it
NEW_MOVIE = {
    "item_id": "new-finding-nemo",
    "title": "Finding Nemo",
    "year": 2003,
    "genres": ["Animation", "Children's", "Comedy"],
}


@dataclass
class Stage:
    name: str
    about_s: int  # how long the stage took on 2 idle cores here (for the ETA)
    run: Callable[[], dict | None]


class Progress:
    """One line when a stage starts (what, usual time, ETA of the whole demo) and one when it ends."""

    def __init__(self, stages: list[Stage]):
        self.stages, self.t0 = stages, time.time()

    def run(self) -> dict:
        results = {}
        for k, st in enumerate(self.stages, 1):
            left = sum(s.about_s for s in self.stages[k - 1 :])
            eta = time.strftime("%H:%M", time.localtime(time.time() + left))
            print(
                f"\n[{k}/{len(self.stages)}] {st.name}: usually about {_dur(st.about_s)}; "
                f"the demo should end near {eta}",
                flush=True,
            )
            t = time.time()
            out = st.run()
            if out is not None:
                results[st.name] = out
            print(
                f"[{k}/{len(self.stages)}] done in {_dur(time.time() - t)} "
                f"({_dur(time.time() - self.t0)} since the start)",
                flush=True,
            )
        return results


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _train(out: Path, make_cfg, label: str) -> dict:
    """A finished run of the same config is reused, an interrupted one continued; a run the demo made
    with other settings (an older version of it) is replaced: the demo's folder is its own."""
    return train_or_resume(
        make_cfg, out, overwrite=True, progress=False, log_to=lambda m: print(f"    {label}: {m}", flush=True)
    )


def baseline_stages(out: Path, rows: dict) -> list[Stage]:
    """Pop and SASRec on the target, the references of both demos."""

    def pop():
        rows["Pop"] = _train(
            out / "pop", lambda: build_config(model="pop", overrides=[f"data.dataset={TARGET}"]), "pop"
        )

    def sasrec():
        rows["SASRec (item IDs)"] = _train(
            out / "sasrec",
            lambda: build_config(model="sasrec", overrides=[f"data.dataset={TARGET}", *SASREC]),
            "sasrec",
        )

    return [
        Stage(f"Pop on {TARGET} (also fetches and prepares the data)", 10, pop),
        Stage(f"SASRec (item IDs) on {TARGET}, 10 epochs", 110, sasrec),
    ]


def quick_stages(out: Path) -> tuple[list[Stage], dict]:
    pre = out / f"unisrec-{SOURCE}"
    rows: dict[str, dict] = {}

    def pretrain():
        _train(
            pre,
            lambda: build_config(
                model="unisrec",
                overrides=[f"data.dataset={SOURCE}", "model.stage=pretrain", "train.epochs=2", "data.max_seq_len=50"],
            ),
            "pre-train",
        )

    def zero_shot():
        rows["UniSRec zero-shot"] = _train(
            out / "unisrec-zero-shot", lambda: finetune_config(pre, TARGET, overrides=["train.epochs=0"]), "zero-shot"
        )

    def finetune():
        rows["UniSRec pre-trained + fine-tuned"] = _train(
            out / "unisrec", lambda: finetune_config(pre, TARGET, overrides=HYBRID), "fine-tune"
        )

    stages = [
        *baseline_stages(out, rows),
        Stage(f"UniSRec pre-training on {SOURCE} (encodes every item's text once, then 2 epochs)", 70, pretrain),
        Stage(f"UniSRec zero-shot on {TARGET} (no training on it)", 10, zero_shot),
        Stage(f"UniSRec fine-tuning on {TARGET}, 10 epochs (text + IDs with ID dropout)", 100, finetune),
    ]
    return stages, rows


def full_stages(out: Path, pretrain_epochs: int) -> tuple[list[Stage], dict]:
    pre = out / f"pmmrec-{SOURCE}"
    rows: dict[str, dict] = {}
    post = ["data.posters=true"]

    def pretrain():
        _train(
            pre,
            lambda: build_config(
                model="pmmrec", overrides=[f"data.dataset={SOURCE}", *post, f"train.epochs={pretrain_epochs}"]
            ),
            "pre-train",
        )

    def zero_shot():
        rows["PMMRec zero-shot"] = _train(
            out / "pmmrec-zero-shot",
            lambda: finetune_config(pre, TARGET, overrides=[*post, "train.epochs=0"]),
            "zero-shot",
        )

    def finetune():
        rows["PMMRec pre-trained + fine-tuned"] = _train(
            out / "pmmrec",
            lambda: finetune_config(pre, TARGET, overrides=[*post, "train.epochs=15", "train.patience=3"]),
            "fine-tune",
        )

    stages = [
        *baseline_stages(out, rows),
        Stage(
            f"PMMRec pre-training on {SOURCE} (renders posters, encodes text and images once, "
            f"then {pretrain_epochs} epochs)",
            600 + 300 * pretrain_epochs,
            pretrain,
        ),
        Stage(f"PMMRec zero-shot on {TARGET}", 60, zero_shot),
        Stage(f"PMMRec fine-tuning on {TARGET}", 600, finetune),
    ]
    return stages, rows


def print_table(rows: dict[str, dict]) -> None:
    first = next(iter(rows.values()))
    proto = first["test"]["protocol"]
    print(
        f"\nTest metrics on {first['dataset']} ({first['test']['count']} users; leave-one-out; full ranking over "
        f"{proto.get('n_items', '?')} items; history {'excluded' if proto.get('exclude_history') else 'included'}; "
        'pessimistic ties).\nShort runs with a short pre-training: docs/results.md ("Which model should I use?") '
        "has every model trained to convergence, over 3 seeds."
    )
    keys = ["hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50"]
    print(f"{'model':<34}" + "".join(f"{k:>9}" for k in keys))
    for name, res in rows.items():
        m = res["test"]["metrics"]
        print(f"{name:<34}" + "".join(f"{m[k]:>9.4f}" for k in keys))


def show_recommendations(run: Path, label: str) -> None:
    """Top 10 for one test user, then a movie no model here has seen added, its neighbours and rank."""
    rec = Recommender.load(run)
    ds = rec.dataset
    fields = ds.catalogue.fields
    test = ds.split.test  # the user with the most animated films among their last 10
    u = max(
        range(len(test.users)),
        key=lambda i: sum("Animation" in str(fields["genres"][j]) for j in test.sequence(i)[-10:]),
    )
    history = [str(ds.catalogue.item_ids[i]) for i in ds.split.test.sequence(u)]
    print(f"\nUser {ds.user_ids[ds.split.test.users[u]]} of {TARGET}: last 5 of {len(history)} movies watched")
    for i in ds.split.test.sequence(u)[-5:]:
        print(f"    {fields['title_year'][i]}  ({fields['genres'][i]})")
    print(f"{label} recommends:")
    for n, r in enumerate(rec.recommend(history, k=10), 1):
        print(f"  {n:>3}. {_title(ds, r)}")
    added = rec.add_items([NEW_MOVIE])[0]
    print(
        f"\nAdded a movie that is in no data set here, from its title, year and genres only: "
        f"{NEW_MOVIE['title']} ({NEW_MOVIE['year']}). Most similar catalogue movies by the model's item vectors:"
    )
    for r in rec.similar_items(added, k=5):
        print(f"    {_title(ds, r)}  (cosine {r.score:.2f})")
    ranked = [r.item_id for r in rec.recommend(history, k=min(rec.n_items, 1000))]
    where = f"ranks {ranked.index(added) + 1}" if added in ranked else f"ranks below {len(ranked)}"
    print(
        f"For the user above it now {where} of {rec.n_items} movies, scored from its text alone "
        "(an ID model cannot score it at all)."
    )


def _title(ds, r) -> str:
    """ "Title (Year)" of a recommended catalogue movie (an added one: its text)."""
    try:
        return str(ds.catalogue.fields["title_year"][ds.catalogue.index_of(r.item_id)])
    except KeyError:
        return r.text


def _show_epochs() -> None:
    """modalrec's messages (one line per training epoch) on the terminal, indented under their stage."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("    %(message)s"))
    logger = logging.getLogger("modalrec")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="PMMRec with poster images (make demo-full)")
    ap.add_argument("--pretrain-epochs", type=int, default=2, help="--full: PMMRec pre-training epochs")
    ap.add_argument("--out", default="", help="runs folder (default runs/demo or runs/demo-full)")
    args = ap.parse_args()
    out = Path(args.out or ("runs/demo-full" if args.full else "runs/demo"))
    _show_epochs()
    stages, rows = full_stages(out, args.pretrain_epochs) if args.full else quick_stages(out)
    t0 = time.time()
    try:
        Progress(stages).run()
        print_table(rows)
        show_recommendations(out / ("pmmrec" if args.full else "unisrec"), next(reversed(rows)))
    except KeyboardInterrupt:
        print(f"\nstopped; `make demo` again continues from the runs in {out}/", file=sys.stderr)
        return 130
    except Exception as e:  # one line, as the CLI does (MODALREC_DEBUG=1 shows the traceback)
        if os.environ.get("MODALREC_DEBUG"):
            raise
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    print(f"\nThe demo took {_dur(time.time() - t0)} (after the install). Runs: {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
