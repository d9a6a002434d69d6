"""The training loop: one code path for a CPU, a GPU and ``torchrun`` (DDP).

AdamW with decoupled weight decay (no decay on biases, norms), linear warm-up then a constant or
cosine schedule, gradient clipping, autocast on CUDA (bf16 where supported, else fp16 with a
GradScaler; on CPU autocast is off unless ``train.cpu_bf16``), validation every
``eval_every`` epochs with early stopping on NDCG@10, an atomic checkpoint every epoch and exact
resume (model, optimizer, scheduler, scaler, RNG states, early-stopping state, elapsed time).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, TypedDict

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from modalrec.config import RunConfig
from modalrec.core import checkpoint as ckpt_io
from modalrec.core.distributed import DistInfo, barrier, init_from_env
from modalrec.utils import bars_on, resolve_device, seed_everything

if TYPE_CHECKING:
    from modalrec.train.loggers import MetricLogger

log = logging.getLogger("modalrec.train")


class TrainState(TypedDict):
    """Where training stands (saved in every checkpoint, restored on resume)."""

    epoch: int  # epochs done
    step: int  # optimizer steps done
    best: float | None  # best validation score so far (None before the first validation)
    best_epoch: int
    bad_evals: int  # validations since the best one (early stopping)
    elapsed: float  # training and validation seconds
    time_to_best: float
    stopped_early: bool


def select_key(ks: list[int]) -> str:
    """Model selection metric: NDCG@10 (or NDCG at the smallest cut-off if 10 is not asked for)."""
    return f"ndcg@{10 if 10 in ks else min(ks)}"


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return f


def _autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16), False
    return torch.autocast(device.type, enabled=False), False


class Trainer:
    """One training run into a run folder, in small steps (RecBole's split): set up the model, the
    optimizer and (on resume) their saved state, then per epoch train, validate, checkpoint; at the end
    evaluate the best weights on validation and test.

    ``rd``: the run folder's paths (a :class:`modalrec.run.folder.RunDir`); the trainer writes
    ``metrics.jsonl``, ``checkpoints/last.pt`` and ``best.pt`` there, the run layer everything else.
    ``callbacks`` are called as ``cb(epoch, record)`` after each epoch's checkpoint is written
    (tests use this to interrupt a run). Under torchrun only rank 0 writes files.
    """

    def __init__(
        self,
        cfg: RunConfig,
        rd,
        *,
        dataset=None,
        dist_info: DistInfo | None = None,
        progress: bool = True,
        callbacks: Sequence[Callable[[int, dict], None]] = (),
    ):
        self.cfg, self.rd, self.callbacks = cfg, rd, list(callbacks)
        self.dist = dist_info or init_from_env(cfg.train.device)
        self.show = progress and self.dist.is_main
        self.device = resolve_device(cfg.train.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.dataset = dataset
        self.key = select_key(cfg.eval.ks)
        self.state: TrainState = {
            "epoch": 0,
            "step": 0,
            "best": None,
            "best_epoch": 0,
            "bad_evals": 0,
            "elapsed": 0.0,
            "time_to_best": 0.0,
            "stopped_early": False,
        }
        self.stopped_early = False
        self.transfer_info: dict | None = None
        # items never seen in training (the cold-item metrics), made at the first evaluation
        self._cold: torch.Tensor | None = None
        self.loggers: list[MetricLogger] = []  # the train.loggers back-ends, while training (rank 0)

    # ------------------------------------------------------------------------------------ the run

    def fit(self, resume: bool = False):
        """Train (or continue, with ``resume``); ``(results, model, dataset)`` with the best weights loaded."""
        from modalrec.train.loggers import require

        require(self.cfg.train.loggers)  # a missing package stops the run before any work
        if self.cfg.train.threads > 0:
            torch.set_num_threads(self.cfg.train.threads)
        self._load_data()
        seed_everything(self.cfg.train.seed)
        self._build_model(resume)
        if self.dist.is_main and not resume:
            self.rd.metrics.write_text("")
        barrier(self.dist)
        if self.model.trainable and self.cfg.train.epochs > 0:
            self._train(resume)
        elif self.dist.is_main:
            _save_best(self.rd.best, self.model, self.cfg, 0, {})
        barrier(self.dist)
        return self._final(), self.model, self.dataset

    def _load_data(self) -> None:
        from modalrec.data.prepare import load_or_prepare

        if self.dataset is not None:
            return
        if self.dist.is_main:
            self.dataset = load_or_prepare(self.cfg.data, progress=self.show)
        barrier(self.dist)
        if not self.dist.is_main:
            self.dataset = load_or_prepare(self.cfg.data, progress=False)

    def _build_model(self, resume: bool) -> None:
        """The model with its statistics, transferred and frozen components and extra domains."""
        from modalrec.models.registry import build_model

        cfg, tr = self.cfg, self.cfg.transfer
        self.model = build_model(cfg.model, self.dataset, progress=self.show)
        self.model.fit_statistics(self.dataset)
        if tr.init_from and not resume:  # on resume the last checkpoint already holds these weights
            from modalrec.train.transfer import load_components

            self.transfer_info = load_components(self.model, tr.init_from, tr.components or ["all"])
        if tr.freeze:
            from modalrec.train.transfer import freeze

            freeze(self.model, tr.freeze)
        self.extra = _extra_sources(cfg, self.model, self.dist, self.show)
        self.model.to(self.device)
        if self.dist.is_main:
            log.info(self._summary())

    def _summary(self) -> str:
        tr, info, model = self.cfg.transfer, self.transfer_info, self.model
        n_all, n_train = model.num_parameters(), model.num_parameters(trainable_only=True)
        msg = f"{self.cfg.model.name}: {n_train:,} trainable of {n_all:,} parameters"
        if info:
            msg += f"; loaded {', '.join(info['loaded'])} from {info['checkpoint']}" + (
                f"; fresh: {', '.join(info['fresh'])}" if info["fresh"] else ""
            )
        if tr.freeze:
            msg += f"; frozen: {', '.join(tr.freeze)}"
        return msg

    # ------------------------------------------------------------------------------- training

    def _train(self, resume: bool) -> None:
        self._make_loader()
        self._make_optimizer()
        if resume:
            self._restore()
        self.loggers = self._open_loggers(resume) if self.dist.is_main else []
        ok = False
        try:
            while self.state["epoch"] < self.cfg.train.epochs and not self.stopped_early:
                epoch = self.state["epoch"] + 1
                record = self._train_epoch(epoch)
                if epoch % self.cfg.train.eval_every == 0 or epoch == self.cfg.train.epochs:
                    self._validate(epoch, record)
                self._end_epoch(epoch, record)
            ok = True
        finally:
            for logger in self.loggers:
                logger.close(ok)

    def _open_loggers(self, resume: bool) -> list[MetricLogger]:
        """The ``train.loggers`` back-ends; an MLflow experiment is named ``dataset/model``."""
        from modalrec.train.loggers import open_loggers

        return open_loggers(
            self.cfg.train.loggers, self.rd, self.cfg.to_dict(), f"{self.dataset.name}/{self.cfg.model.name}", resume
        )

    def _make_loader(self) -> None:
        from modalrec.data.batches import MultiDomainLoader, train_loader

        t, d = self.cfg.train, self.dist

        def loader_of(ds):
            return train_loader(
                ds.split.train,
                self.cfg.model.max_len,
                t.batch_size,
                t.seed,
                d.rank,
                d.world_size,
                stride=t.window_stride,
            )

        self.loader, self.sampler = loader_of(self.dataset)
        if self.extra:
            parts = [(self.loader, self.sampler)] + [loader_of(ds) for ds in self.extra]
            self.loader = self.sampler = MultiDomainLoader([p[0] for p in parts], [p[1] for p in parts], t.seed)

    def _make_optimizer(self) -> None:
        t, model = self.cfg.train, self.model
        total_steps = len(self.loader) * t.epochs
        self.optimizer = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(t.schedule, t.warmup_steps, total_steps)
        )
        self.autocast, needs_scaler = _autocast(self.device, t.amp, t.cpu_bf16)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_scaler)
        self.net = (
            DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.enabled
            else model
        )

    def _restore(self) -> None:
        """Model, optimizer, scheduler, scaler, RNG and early-stopping state of ``checkpoints/last.pt``."""
        rd = self.rd
        ck = ckpt_io.load(rd.last, expect_model=self.cfg.model.name)
        if self.dist.is_main:
            _truncate_metrics(rd.metrics, ck["state"]["epoch"])
        ckpt_io.load_model_state(self.model, ck["model"], str(rd.last))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.state.update(ck["state"])
        ckpt_io.set_rng_state(ck["rng"])
        self.stopped_early = bool(ck["state"].get("stopped_early", False))

    def _train_epoch(self, epoch: int) -> dict:
        self.model.train()
        self.model.on_epoch_start(epoch)
        self.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        n_batches = 0
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch}/{self.cfg.train.epochs}",
            disable=not bars_on(self.show),
            leave=False,
            unit="batch",
        )
        for batch in bar:
            loss_sum += self._train_step(batch, epoch)
            n_batches += 1
            if self.show and n_batches % 20 == 0:
                bar.set_postfix(loss=f"{(loss_sum / n_batches).item():.4f}")
        self.state["elapsed"] += time.perf_counter() - t0
        self.state["epoch"] = epoch
        return {
            "epoch": epoch,
            "step": self.state["step"],
            "train_loss": (loss_sum / max(1, n_batches)).item(),
            "lr": self.scheduler.get_last_lr()[0],
        }

    def _train_step(self, batch: dict, epoch: int) -> torch.Tensor:
        """One optimizer step; the batch loss (float64, on the CPU)."""
        t = self.cfg.train
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self.autocast:
            loss = self.net(batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at epoch {epoch}, step {self.state['step']}; "
                "lower train.lr or set train.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.state["step"] += 1
        return loss.detach().double().cpu()

    def _validate(self, epoch: int, record: dict) -> None:
        """Validation metrics into ``record``; best.pt and early stopping follow them."""
        state = self.state
        t1 = time.perf_counter()
        res = self._evaluate(self.dataset.split.valid, "valid")
        state["elapsed"] += time.perf_counter() - t1
        record["valid"] = res.metrics
        score = res.metrics[self.key]
        if state["best"] is None or score > state["best"]:
            state.update({"best": score, "best_epoch": epoch, "bad_evals": 0, "time_to_best": state["elapsed"]})
            if self.dist.is_main:
                _save_best(self.rd.best, self.model, self.cfg, epoch, res.metrics)
        else:
            state["bad_evals"] += 1
            if state["bad_evals"] >= self.cfg.train.patience:
                self.stopped_early = True

    def _end_epoch(self, epoch: int, record: dict) -> None:
        """metrics.jsonl, the train.loggers back-ends, checkpoints/last.pt and the epoch line; then the callbacks."""
        record["elapsed_s"] = round(self.state["elapsed"], 3)
        self.state["stopped_early"] = self.stopped_early
        if self.dist.is_main:
            _append_jsonl(self.rd.metrics, record)
            for logger in self.loggers:
                logger.log_epoch(record)
            self._checkpoint()
            log.info(self._epoch_line(epoch, record))  # every mode, --quiet too: one line per epoch
        barrier(self.dist)
        for cb in self.callbacks:
            cb(epoch, record)

    def _checkpoint(self) -> None:
        ckpt_io.save(
            self.rd.last,
            {
                "model_name": self.cfg.model.name,
                "config": self.cfg.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": ckpt_io.rng_state(),
                "state": dict(self.state),
            },
        )

    def _epoch_line(self, epoch: int, record: dict) -> str:
        v, key, state = record.get("valid", {}), self.key, self.state
        line = f"epoch {epoch}: loss {record['train_loss']:.4f}"
        if v:
            line += f"  valid {key} {v[key]:.4f}  (best {state['best']:.4f} @ {state['best_epoch']})"
        return line

    # -------------------------------------------------------------------------- evaluation

    def _evaluate(self, seqset, split_name: str):
        from modalrec.evaluate.ranking import evaluate

        ev = self.cfg.eval
        if self._cold is None:
            self._cold = torch.as_tensor(~self.dataset.seen_in_train())
        return evaluate(
            self.model,
            seqset,
            max_len=self.cfg.model.max_len,
            ks=ev.ks,
            exclude_history=ev.exclude_history,
            batch_size=ev.batch_size,
            item_chunk=ev.item_chunk,
            device=self.device,
            cold_items=self._cold,
            progress=self.show,
            distributed=self.dist.enabled,
            split=split_name,
        )

    def _final(self) -> dict:
        """The best weights evaluated on validation and test: the run's results."""
        best = ckpt_io.load(self.rd.best, expect_model=self.cfg.model.name)
        ckpt_io.load_model_state(self.model, best["model"], str(self.rd.best))
        valid = self._evaluate(self.dataset.split.valid, "valid")
        test = self._evaluate(self.dataset.split.test, "test")
        model, state = self.model, self.state
        results = {
            "model": self.cfg.model.name,
            "dataset": self.dataset.name,
            "split": self.dataset.split.kind,
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "stopped_early": self.stopped_early,
            "train_time_s": round(state["elapsed"], 3),
            "time_to_best_s": round(state["time_to_best"], 3),
            "parameters": model.num_parameters(),
            "trainable_parameters": model.num_parameters(trainable_only=True),
            "transfer": self.transfer_info,
            "world_size": self.dist.world_size,
            "valid": valid.to_dict(),
            "test": test.to_dict(),
        }
        if self.dist.is_main:
            _append_jsonl(self.rd.metrics, {"final": True, "valid": valid.metrics, "test": test.metrics})
        barrier(self.dist)
        return results


def fit(
    cfg: RunConfig,
    rd,
    *,
    resume: bool = False,
    dataset=None,
    dist_info: DistInfo | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
):
    """Train ``cfg.model`` on ``cfg.data`` (or ``dataset``) into the run folder ``rd``; returns
    ``(results, model, dataset)`` with the best weights loaded into ``model``. See :class:`Trainer`."""
    trainer = Trainer(cfg, rd, dataset=dataset, dist_info=dist_info, progress=progress, callbacks=callbacks)
    return trainer.fit(resume)


def _extra_sources(cfg: RunConfig, model, dist_info, show: bool) -> list:
    """Prepare ``data.extra_sources`` and register each with the model as another domain."""
    from dataclasses import replace

    from modalrec.config import ConfigError, InteractionsSpec, ItemsSpec
    from modalrec.data.prepare import load_or_prepare
    from modalrec.models.registry import catalogue_features_for

    if not cfg.data.extra_sources:
        return []
    if not model.supports_domains:
        raise ConfigError(
            f"data.extra_sources: the '{cfg.model.name}' model cannot train on several data sets at "
            "once (it has no item representation shared across catalogues); use a content model "
            "such as pmmrec"
        )
    out = []
    for src in cfg.data.extra_sources:
        dcfg = replace(cfg.data, dataset=src, extra_sources=[], interactions=InteractionsSpec(), items=ItemsSpec())
        if dist_info.is_main:
            ds = load_or_prepare(dcfg, progress=show)
        barrier(dist_info)
        if not dist_info.is_main:
            ds = load_or_prepare(dcfg, progress=False)
        k = model.add_domain(ds, catalogue_features_for(model, ds, progress=show))
        if dist_info.is_main:
            log.info(f"extra source {src}: domain {k}, {ds.n_items} items, {len(ds.split.train)} training sequences")
        out.append(ds)
    return out


def _save_best(path: Path, model, cfg: RunConfig, epoch: int, metrics: dict) -> None:
    ckpt_io.save(
        path,
        {
            "model_name": cfg.model.name,
            "config": cfg.to_dict(),
            "model": model.state_dict(),
            "epoch": epoch,
            "valid": metrics,
        },
    )


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop records of epochs after the checkpoint being resumed (they will be run again)."""
    if not path.is_file():
        return
    keep = [
        ln
        for ln in path.read_text().splitlines()
        if ln.strip() and json.loads(ln).get("epoch", 0) <= last_epoch and not json.loads(ln).get("final")
    ]
    path.write_text("".join(ln + "\n" for ln in keep))
