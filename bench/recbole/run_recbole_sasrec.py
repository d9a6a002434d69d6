#!/usr/bin/env python
"""Train RecBole 1.2.1's SASRec with RecBole's own Trainer and time it.

Runs inside the venv made by ``bench/recbole/setup_venv.sh`` (not the project's venv)::

    VENV/bin/python bench/recbole/run_recbole_sasrec.py \
        --data-dir DIR --dataset NAME --seed 2020 --epochs 200 --out result.json

``DIR/NAME.inter`` is a RecBole atomic file with (at least) the columns
``user_id:token``, ``item_id:token`` and ``timestamp:float``; other columns are ignored.
No filtering is applied.  The protocol is RecBole's leave-one-out by time
(``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full, group_by: user}``),
full-sort ranking over all items, CE loss, no negative sampling, early stopping on
NDCG@10.  See bench/recbole/README.md for exactly what RecBole's evaluation does.

Timing: ``fit()`` of RecBole's Trainer is timed from its call; per epoch we record when
training ended and when the validation pass ended (RecBole validates after every epoch,
``eval_step: 1``).  ``time_to_best_s`` is the end of the validation pass of the epoch
whose checkpoint RecBole kept as best (training + all validation passes up to it).

The input is staged into a temporary directory under a private dataset name, because
RecBole silently replaces a dataset called ``ml-100k`` by its own bundled copy and loads
``properties/dataset/<name>.yaml`` for known names.  By default (``--time-order exact``)
the timestamps are rewritten to each user's rank 0..n-1 after a stable float64 sort
(ties keep the file order): RecBole stores float fields as float32, which merges Unix
timestamps less than ~64 s apart and changes the last/second-to-last items of many
users.  ``--time-order raw`` passes the timestamps through unchanged.
"""

from __future__ import annotations

import os

# torch >= 2.6 defaults torch.load(weights_only=True); RecBole's Trainer.evaluate loads its
# own checkpoint (which pickles its Config object) without passing weights_only, so it
# would fail.  This variable only changes call sites that do not pass weights_only; it
# must be set before torch is imported.  Installed RecBole files are never edited.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import argparse
import csv
import hashlib
import json
import logging
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import OrderedDict, defaultdict

REQUIRED_FIELDS = ("user_id:token", "item_id:token", "timestamp:float")
TOPK = (10, 20, 50)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory holding NAME.inter")
    p.add_argument("--dataset", required=True, help="NAME of NAME.inter")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--epochs", type=int, default=200, help="maximum number of epochs")
    p.add_argument("--out", required=True, help="JSON file to write")
    # model size (RecBole SASRec parameter names in brackets)
    p.add_argument("--hidden-size", type=int, default=64, help="[hidden_size] = embedding size")
    p.add_argument("--n-layers", type=int, default=2, help="[n_layers]")
    p.add_argument("--n-heads", type=int, default=2, help="[n_heads]")
    p.add_argument("--inner-size", type=int, default=256, help="[inner_size] feed-forward width")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="sets both hidden and attention dropout unless those are given")
    p.add_argument("--hidden-dropout", type=float, default=None, help="[hidden_dropout_prob]")
    p.add_argument("--attn-dropout", type=float, default=None, help="[attn_dropout_prob]")
    p.add_argument("--hidden-act", default="gelu", help="[hidden_act]")
    p.add_argument("--layer-norm-eps", type=float, default=1e-12, help="[layer_norm_eps]")
    p.add_argument("--initializer-range", type=float, default=0.02, help="[initializer_range]")
    p.add_argument("--max-len", type=int, default=50, help="[MAX_ITEM_LIST_LENGTH]")
    # training
    p.add_argument("--batch-size", type=int, default=2048, help="[train_batch_size]")
    p.add_argument("--eval-batch-size", type=int, default=4096, help="[eval_batch_size]")
    p.add_argument("--lr", type=float, default=1e-3, help="[learning_rate] (Adam)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="[weight_decay]")
    p.add_argument("--stopping-step", type=int, default=10,
                   help="[stopping_step] stop after this many validations without improvement")
    p.add_argument("--metric-decimals", type=int, default=4,
                   help="[metric_decimal_place]; RecBole rounds metrics (and the early-stopping "
                        "score) to this many decimals; 4 is RecBole's default")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0 = leave torch's default)")
    p.add_argument("--time-order", choices=("exact", "raw"), default="exact",
                   help="exact: rewrite timestamps to per-user ranks (stable float64 sort); "
                        "raw: give RecBole the timestamps as they are (float32 inside RecBole)")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds; after an epoch's validation, stop training if another epoch "
                        "of the same length would exceed this budget (0 = no budget). The "
                        "best checkpoint so far is then tested as usual.")
    p.add_argument("--check-split-only", action="store_true",
                   help="build RecBole's dataset and split, write the data section, no training")
    p.add_argument("--work-dir", default=None,
                   help="directory for staged data, checkpoints and logs (default: a temp dir, "
                        "removed at the end)")
    p.add_argument("--keep-work-dir", action="store_true", help="do not delete the work dir")
    p.add_argument("--quiet", action="store_true", help="RecBole logging at WARNING level")
    a = p.parse_args(argv)
    if a.hidden_dropout is None:
        a.hidden_dropout = a.dropout
    if a.attn_dropout is None:
        a.attn_dropout = a.dropout
    return a


# --------------------------------------------------------------------------- data staging

def read_inter(path):
    """Rows (user, item, timestamp_str, timestamp_float) in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        missing = [h for h in REQUIRED_FIELDS if h not in header]
        if missing:
            raise SystemExit(f"{path}: header {header} lacks {missing}")
        iu, ii, it = (header.index(h) for h in REQUIRED_FIELDS)
        rows = []
        for n, r in enumerate(reader, start=2):
            if not r:
                continue
            try:
                rows.append((r[iu], r[ii], r[it], float(r[it])))
            except (IndexError, ValueError) as e:
                raise SystemExit(f"{path}:{n}: bad row {r!r}: {e}")
    return rows


def user_sequences(rows):
    """user -> [(item, ts_str)] ordered by float64 timestamp, ties in file order."""
    seqs = defaultdict(list)
    for pos, (u, i, ts, tf) in enumerate(rows):
        seqs[u].append((tf, pos, i, ts))
    return {u: [(i, ts) for _, _, i, ts in sorted(v)] for u, v in seqs.items()}


def float32_exact(x):
    import numpy as np
    return float(np.float32(x)) == x


def split_fingerprint(targets):
    """sha256 over sorted lines 'user\\tvalid_item\\ttest_item\\n' (original tokens)."""
    h = hashlib.sha256()
    for u in sorted(targets):
        v, t = targets[u]
        h.update(f"{u}\t{v if v is not None else ''}\t{t}\n".encode())
    return h.hexdigest()


def stage_data(args, work):
    src = os.path.join(os.path.abspath(args.data_dir), f"{args.dataset}.inter")
    if not os.path.isfile(src):
        raise SystemExit(f"no such file: {src}")
    rows = read_inter(src)
    if not rows:
        raise SystemExit(f"{src}: no interactions")
    seqs = user_sequences(rows)
    # A private name: 'ml-100k' would make RecBole ignore data_path and use its bundled
    # copy, and a known name would pull in properties/dataset/<name>.yaml.
    internal = "bench_" + re.sub(r"[^A-Za-z0-9_]", "_", args.dataset)
    ddir = os.path.join(work, "data", internal)
    os.makedirs(ddir, exist_ok=True)
    n_not_f32 = sum(1 for r in rows if not float32_exact(r[3]))
    with open(os.path.join(ddir, f"{internal}.inter"), "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        if args.time_order == "exact":
            # users in first-appearance order, each user's interactions in exact time order
            for u, seq in seqs.items():
                for rank, (i, _) in enumerate(seq):
                    f.write(f"{u}\t{i}\t{rank}\n")
        else:
            for u, i, ts, _ in rows:
                f.write(f"{u}\t{i}\t{ts}\n")
    # what a leave-one-out split on the exact time order must give
    # RecBole splits the augmented samples (one per interaction after the first), so a
    # user needs >= 4 interactions for a valid and a test sample, 3 for a test sample only.
    expected = {}
    for u, seq in seqs.items():
        items = [i for i, _ in seq]
        if len(items) >= 4:
            expected[u] = (items[-2], items[-1])
        elif len(items) == 3:
            expected[u] = (None, items[-1])
    with open(src, "rb") as f:
        source_sha256 = hashlib.file_digest(f, "sha256").hexdigest()  # Python >= 3.11 (setup_venv.sh's default)
    info = OrderedDict(
        source_file=src,
        source_sha256=source_sha256,
        internal_dataset_name=internal,
        time_order=args.time_order,
        n_interactions=len(rows),
        n_users=len(seqs),
        n_items=len({r[1] for r in rows}),
        n_timestamps_not_exact_in_float32=n_not_f32,
        expected_split_sha256=split_fingerprint(expected),
    )
    return os.path.join(work, "data"), internal, expected, info


# --------------------------------------------------------------------------- RecBole run

def build_config_dict(args, data_path, work):
    return {
        # environment
        "gpu_id": "",  # CPU
        "use_gpu": False,
        "worker": 0,
        "seed": args.seed,
        "reproducibility": True,
        "data_path": data_path,
        "checkpoint_dir": os.path.join(work, "saved"),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "state": "WARNING" if args.quiet else "INFO",
        "shuffle": True,
        # data: three columns, no filtering, no normalisation
        "field_separator": "\t",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "normalize_all": False,
        "normalize_field": None,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        # protocol
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "mode": "full",
            "group_by": "user",
        },
        # RecBole requires repeatable=True for sequential models: previously seen items
        # stay candidates (no history masking in full-sort evaluation).
        "repeatable": True,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": list(TOPK),
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "metric_decimal_place": args.metric_decimals,
        "eval_batch_size": args.eval_batch_size,
        # training
        "epochs": args.epochs,
        "train_batch_size": args.batch_size,
        "learner": "adam",
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "eval_step": 1,
        "stopping_step": args.stopping_step,
        "clip_grad_norm": None,
        "enable_amp": False,
        "enable_scaler": False,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        # model
        "hidden_size": args.hidden_size,
        "n_layers": args.n_layers,
        "n_heads": args.n_heads,
        "inner_size": args.inner_size,
        "hidden_dropout_prob": args.hidden_dropout,
        "attn_dropout_prob": args.attn_dropout,
        "hidden_act": args.hidden_act,
        "layer_norm_eps": args.layer_norm_eps,
        "initializer_range": args.initializer_range,
    }


class _TimeBudgetReached(Exception):
    pass


def make_timed_trainer_class(Trainer):
    class TimedTrainer(Trainer):
        """RecBole's Trainer, unchanged, with timestamps recorded around its hooks."""

        def __init__(self, config, model):
            super().__init__(config, model)
            self.t0 = None
            self.epoch_log = []
            self.saved_epochs = []  # (epoch, time) each time RecBole saved a new best
            self.history_masked_batches = 0
            self.eval_batches = 0

        def _now(self):
            return time.perf_counter() - self.t0

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            rec = OrderedDict(epoch=epoch_idx, train_start_s=self._now())
            self.epoch_log.append(rec)
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                        show_progress=show_progress)
            rec["train_end_s"] = self._now()
            rec["train_seconds"] = rec["train_end_s"] - rec["train_start_s"]
            rec["train_loss_sum"] = float(sum(loss) if isinstance(loss, tuple) else loss)
            rec["train_batches"] = len(train_data)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            start = self._now()
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
            rec = self.epoch_log[-1]
            rec["valid_start_s"] = start
            rec["valid_end_s"] = self._now()
            rec["valid_seconds"] = rec["valid_end_s"] - start
            rec["valid_score"] = float(score)
            rec["valid_result"] = {k: float(v) for k, v in result.items()}
            return score, result

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
            self.saved_epochs.append((epoch, self._now()))
            if self.epoch_log and self.epoch_log[-1]["epoch"] == epoch:
                self.epoch_log[-1]["new_best"] = True

        def _full_sort_batch_eval(self, batched_data):
            self.eval_batches += 1
            if batched_data[1] is not None:
                self.history_masked_batches += 1
            return super()._full_sort_batch_eval(batched_data)

        def timed_fit(self, train_data, valid_data, time_budget=0.0, **kw):
            self.stopped_by_time_budget = False

            def budget_callback(epoch_idx, valid_score):
                # called by RecBole's fit() after the epoch's validation and checkpoint
                if time_budget > 0:
                    last = self.epoch_log[-1]
                    epoch_len = last["valid_end_s"] - last["train_start_s"]
                    if self._now() + epoch_len > time_budget:
                        raise _TimeBudgetReached()

            self.t0 = time.perf_counter()
            try:
                out = self.fit(train_data, valid_data, callback_fn=budget_callback, **kw)
            except _TimeBudgetReached:
                self.stopped_by_time_budget = True
                out = (self.best_valid_score, self.best_valid_result)
            self.fit_seconds = time.perf_counter() - self.t0
            return out

    return TimedTrainer


def check_split(dataset, valid_data, test_data, expected):
    """Compare RecBole's valid/test targets with the exact-time-order leave-one-out."""
    import numpy as np

    def targets(loader):
        feat = loader._dataset.inter_feat
        users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, feat[dataset.iid_field].numpy())
        return dict(zip(np.asarray(users).tolist(), np.asarray(items).tolist()))

    v, t = targets(valid_data), targets(test_data)
    got = {u: (v.get(u), t[u]) for u in t}
    mism_valid = sum(1 for u, (ev, _) in expected.items() if got.get(u, (None, None))[0] != ev)
    mism_test = sum(1 for u, (_, et) in expected.items() if got.get(u, (None, None))[1] != et)
    return OrderedDict(
        recbole_split_sha256=split_fingerprint(got),
        n_valid_users=len(v),
        n_test_users=len(t),
        valid_targets_differing_from_exact_time_order=mism_valid,
        test_targets_differing_from_exact_time_order=mism_test,
    )


def rank_diagnostics(trainer, loader, topk=TOPK):
    """Re-score a loader with the current (best) model and rank the target three ways.

    optimistic: 1 + #items scoring strictly higher than the target;
    pessimistic: 1 + #other items scoring >= the target (ties count against us);
    the value RecBole reports comes from torch.topk, whose order among tied scores is
    unspecified, so it lies between the two.  Scores are exactly what RecBole ranks
    (padding item 0 set to -inf, no history masking for sequential models).
    """
    import torch

    trainer.model.eval()
    opt_ranks, pes_ranks, n_tied_users, n_tied_items = [], [], 0, 0
    n_candidates = None
    with torch.no_grad():
        for batched in loader:
            _, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched)
            tgt = scores[pos_u, pos_i].unsqueeze(1)
            greater = (scores > tgt).sum(1)
            equal = (scores == tgt).sum(1) - 1  # minus the target itself
            opt_ranks.append(1 + greater)
            pes_ranks.append(1 + greater + equal)
            n_tied_users += int((equal > 0).sum())
            n_tied_items += int(equal.sum())
            n_candidates = int(torch.isfinite(scores[0]).sum())
    opt = torch.cat(opt_ranks).double()
    pes = torch.cat(pes_ranks).double()

    def metrics(r):
        out = OrderedDict()
        for k in topk:
            hit = (r <= k).double()
            out[f"hit@{k}"] = float(hit.mean())
            out[f"ndcg@{k}"] = float((hit / torch.log2(r + 1)).mean())
            out[f"mrr@{k}"] = float((hit / r).mean())
        return out

    return OrderedDict(
        n_users=int(opt.numel()),
        n_candidate_items=n_candidates,
        users_with_target_score_tied=n_tied_users,
        tied_items_total=n_tied_items,
        optimistic=metrics(opt),
        pessimistic=metrics(pes),
        mean_rank_pessimistic=float(pes.mean()),
    )


def main(argv=None):
    args = parse_args(argv)
    out_path = os.path.abspath(args.out)
    cwd = os.getcwd()
    own_work = args.work_dir is None
    work = tempfile.mkdtemp(prefix="recbole_sasrec_") if own_work else os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    t_script = time.perf_counter()
    try:
        data_path, internal, expected, data_info = stage_data(args, work)
        os.chdir(work)  # RecBole writes ./log and ./log_tensorboard relative to the cwd
        result = run(args, data_path, internal, expected, data_info, work)
    finally:
        os.chdir(cwd)
        if own_work and not args.keep_work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result["script_seconds"] = time.perf_counter() - t_script
    result["work_dir"] = None if (own_work and not args.keep_work_dir) else work
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, out_path)
    if args.check_split_only:
        d = result["data"]
        print(f"[recbole-sasrec] split check: valid/test targets differing from exact time order: "
              f"{d['valid_targets_differing_from_exact_time_order']}/"
              f"{d['test_targets_differing_from_exact_time_order']} -> {out_path}")
        return 0
    b, t = result["best"], result["test"]
    print(f"[recbole-sasrec] seed={args.seed} epochs_run={result['timing']['epochs_run']} "
          f"best_epoch={b['epoch']} time_to_best={result['timing']['time_to_best_s']:.1f}s "
          f"total_fit={result['timing']['fit_seconds']:.1f}s valid ndcg@10={b['valid']['ndcg@10']:.4f} "
          f"test ndcg@10={t['ndcg@10']:.4f} hit@10={t['hit@10']:.4f} -> {out_path}")
    return 0


def run(args, data_path, internal, expected, data_info, work):
    import numpy as np
    import torch
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender.sasrec import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    # RecBole's Config also parses sys.argv ('--key=value' overrides any setting); hide
    # our own command line from it so that only the config dict below applies.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]]
    try:
        config = Config(model=SASRec, dataset=internal,
                        config_dict=build_config_dict(args, data_path, work))
    finally:
        sys.argv = saved_argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    log = logging.getLogger()
    log.info(config)

    t = time.perf_counter()
    dataset = create_dataset(config)
    log.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t
    split_info = check_split(dataset, valid_data, test_data, expected)
    data_section = OrderedDict(
        data_info,
        recbole_n_users=int(dataset.user_num - 1),
        recbole_n_items=int(dataset.item_num - 1),
        n_train_samples=len(train_data._dataset),
        n_valid_samples=len(valid_data._dataset),
        n_test_samples=len(test_data._dataset),
        **split_info,
    )
    if args.check_split_only:
        return OrderedDict(tool="recbole", model="SASRec", args=vars(args),
                           data_prep_seconds=data_seconds, data=data_section)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    log.info(model)
    n_params = sum(p.numel() for p in model.parameters())

    trainer = make_timed_trainer_class(Trainer)(config, model)
    best_valid_score, best_valid_result = trainer.timed_fit(
        train_data, valid_data, time_budget=args.time_budget, saved=True, show_progress=False)
    if not trainer.saved_epochs:
        raise SystemExit("RecBole saved no checkpoint (no validation ran?)")
    best_epoch, best_saved_s = trainer.saved_epochs[-1]
    best_rec = next(r for r in trainer.epoch_log if r["epoch"] == best_epoch)

    t = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_seconds = time.perf_counter() - t
    # trainer.model now holds the best checkpoint
    diag = OrderedDict(
        valid=rank_diagnostics(trainer, valid_data),
        test=rank_diagnostics(trainer, test_data),
    )

    epochs_run = len(trainer.epoch_log)
    stopped_early = epochs_run < args.epochs and not trainer.stopped_by_time_budget
    train_only = sum(r["train_seconds"] for r in trainer.epoch_log)
    valid_only = sum(r.get("valid_seconds", 0.0) for r in trainer.epoch_log)
    return OrderedDict(
        tool="recbole",
        model="SASRec",
        protocol=OrderedDict(
            split="leave-one-out by time per user (RecBole LS valid_and_test, order TO)",
            ranking="full sort over all items (padding id excluded)",
            history_masked=trainer.history_masked_batches > 0,
            loss="CE over all items (tied input/output item embeddings, last position only)",
            valid_metric="NDCG@10",
            metric_decimal_place=args.metric_decimals,
            stopping_step=args.stopping_step,
            eval_step=1,
        ),
        args=vars(args),
        versions=OrderedDict(
            recbole=recbole.__version__, torch=torch.__version__, numpy=np.__version__,
            python=platform.python_version(),
        ),
        environment=OrderedDict(
            device=str(config["device"]), torch_threads=torch.get_num_threads(),
            cpu_count=os.cpu_count(), platform=platform.platform(),
        ),
        data=data_section,
        model_info=OrderedDict(n_parameters=int(n_params)),
        timing=OrderedDict(
            data_prep_seconds=data_seconds,
            time_to_best_s=best_rec["valid_end_s"],
            best_checkpoint_saved_s=best_saved_s,
            fit_seconds=trainer.fit_seconds,
            train_seconds_sum=train_only,
            valid_seconds_sum=valid_only,
            test_eval_seconds=test_seconds,
            epochs_run=epochs_run,
            epochs_to_best=best_epoch + 1,
            stopped_early=stopped_early,
            stopped_by_time_budget=trainer.stopped_by_time_budget,
            mean_epoch_seconds=trainer.fit_seconds / max(epochs_run, 1),
        ),
        best=OrderedDict(
            epoch=best_epoch,
            valid_score=float(best_valid_score),
            valid={k: float(v) for k, v in best_valid_result.items()},
        ),
        test={k: float(v) for k, v in test_result.items()},
        diagnostics=diag,
        epochs=trainer.epoch_log,
    )


if __name__ == "__main__":
    sys.exit(main())
