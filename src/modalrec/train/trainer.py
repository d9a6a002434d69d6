"""The training loop: one code path for a CPU, a GPU and ``torchrun`` (DDP).

AdamW with decoupled weight decay (no decay on biases, norms), linear warm-up then a constant or
cosine schedule, gradient clipping, autocast on CUDA (bf16 where supported, else fp16 with a
GradScaler; on CPU autocast is off: it is slower there for these models), validation every
``eval_every`` epochs with early stopping on NDCG@10, an atomic checkpoint every epoch and exact
resume (model, optimizer, scheduler, scaler, RNG states, early-stopping state, elapsed time).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from modalrec.config import RunConfig
from modalrec.core import checkpoint as ckpt_io
from modalrec.core.distributed import DistInfo, barrier, init_from_env
from modalrec.utils import resolve_device, seed_everything

log = logging.getLogger("modalrec.train")


def select_key(ks: list[int]) -> str:
    """Model selection metric: NDCG@10 (or NDCG at the smallest cut-off if 10 is not asked for)."""
    return f"ndcg@{10 if 10 in ks else min(ks)}"


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
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


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    return torch.autocast(device.type, enabled=False), False


def fit(
    cfg: RunConfig,
    rd,
    *,
    resume: bool = False,
    dataset=None,
    dist_info: DistInfo | None = None,
    progress: bool = True,
    callbacks: list[Callable[[int, dict], None]] = (),
):
    """Train ``cfg.model`` on ``cfg.data`` (or ``dataset``); returns ``(results, model, dataset)`` with the
    best weights loaded into ``model``.

    ``rd``: the run folder's paths (a :class:`modalrec.run.folder.RunDir`); the trainer writes
    ``metrics.jsonl``, ``checkpoints/last.pt`` and ``best.pt`` there, the run layer everything else.
    ``callbacks`` are called as ``cb(epoch, record)`` after each epoch's checkpoint is written
    (tests use this to interrupt a run). Under torchrun only rank 0 writes files.
    """
    from modalrec.data.batches import train_loader
    from modalrec.data.prepare import load_or_prepare
    from modalrec.evaluate.ranking import evaluate
    from modalrec.models.registry import build_model

    dist_info = dist_info or init_from_env(cfg.train.device)
    t = cfg.train
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    show = progress and dist_info.is_main

    if dataset is None:
        if dist_info.is_main:
            dataset = load_or_prepare(cfg.data, progress=show)
        barrier(dist_info)
        if not dist_info.is_main:
            dataset = load_or_prepare(cfg.data, progress=False)

    seed_everything(t.seed)
    model = build_model(cfg.model, dataset)
    model.fit_statistics(dataset)
    transfer_info = None
    tr = cfg.transfer
    if tr.init_from and not resume:  # on resume the last checkpoint already holds these weights
        from modalrec.train.transfer import load_components

        transfer_info = load_components(model, tr.init_from, tr.components or ["all"])
    if tr.freeze:
        from modalrec.train.transfer import freeze

        freeze(model, tr.freeze)
    extra = _extra_sources(cfg, model, dist_info, show)
    model.to(device)
    if show:
        n_all, n_train = model.num_parameters(), model.num_parameters(trainable_only=True)
        msg = f"{cfg.model.name}: {n_train:,} trainable of {n_all:,} parameters"
        if transfer_info:
            msg += (f"; loaded {', '.join(transfer_info['loaded'])} from {transfer_info['checkpoint']}"
                    + (f"; fresh: {', '.join(transfer_info['fresh'])}" if transfer_info["fresh"] else ""))
        if tr.freeze:
            msg += f"; frozen: {', '.join(tr.freeze)}"
        tqdm.write(msg)

    if dist_info.is_main and not resume:
        rd.metrics.write_text("")
    barrier(dist_info)

    ev = cfg.eval
    key = select_key(ev.ks)
    max_len = cfg.model.max_len
    cold = torch.as_tensor(~dataset.seen_in_train())

    def run_eval(seqset, split_name: str):
        return evaluate(
            model, seqset, max_len=max_len, ks=ev.ks, exclude_history=ev.exclude_history,
            batch_size=ev.batch_size, item_chunk=ev.item_chunk, device=device, cold_items=cold,
            progress=show, distributed=dist_info.enabled, split=split_name,
        )

    state = {"epoch": 0, "step": 0, "best": None, "best_epoch": 0, "bad_evals": 0, "elapsed": 0.0,
             "time_to_best": 0.0}
    stopped_early = False

    if model.trainable and t.epochs > 0:
        loader, sampler = train_loader(
            dataset.split.train, max_len, t.batch_size, t.seed, dist_info.rank, dist_info.world_size,
            stride=t.window_stride,
        )
        if extra:
            from modalrec.data.batches import MultiDomainLoader

            parts = [(loader, sampler)] + [
                train_loader(d.split.train, max_len, t.batch_size, t.seed, dist_info.rank, dist_info.world_size,
                             stride=t.window_stride) for d in extra]
            loader = sampler = MultiDomainLoader([p[0] for p in parts], [p[1] for p in parts], t.seed)
        steps_per_epoch = len(loader)
        total_steps = steps_per_epoch * t.epochs
        optimizer = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(t.schedule, t.warmup_steps, total_steps))
        autocast, needs_scaler = _autocast(device, t.amp)
        scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else model

        if resume:
            ck = ckpt_io.load(rd.last, expect_model=cfg.model.name)
            if dist_info.is_main:
                _truncate_metrics(rd.metrics, ck["state"]["epoch"])
            ckpt_io.load_model_state(model, ck["model"], str(rd.last))
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            state.update(ck["state"])
            ckpt_io.set_rng_state(ck["rng"])
            stopped_early = bool(ck["state"].get("stopped_early", False))

        writer = _tensorboard(rd.path) if dist_info.is_main else None
        while state["epoch"] < t.epochs and not stopped_early:
            epoch = state["epoch"] + 1
            model.train()
            model.on_epoch_start(epoch)
            sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64)
            n_batches = 0
            bar = tqdm(loader, desc=f"epoch {epoch}/{t.epochs}", disable=not show, leave=False, unit="batch")
            for batch in bar:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast:
                    out = net(batch)
                loss = out.loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} at epoch {epoch}, step {state['step']}; "
                        "lower train.lr or set train.grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if t.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                state["step"] += 1
                loss_sum += loss.detach().double().cpu()
                n_batches += 1
                if show and n_batches % 20 == 0:
                    bar.set_postfix(loss=f"{(loss_sum / n_batches).item():.4f}")
            state["elapsed"] += time.perf_counter() - t0
            state["epoch"] = epoch
            record = {"epoch": epoch, "step": state["step"], "train_loss": (loss_sum / max(1, n_batches)).item(),
                      "lr": scheduler.get_last_lr()[0]}
            if epoch % t.eval_every == 0 or epoch == t.epochs:
                t1 = time.perf_counter()
                res = run_eval(dataset.split.valid, "valid")
                state["elapsed"] += time.perf_counter() - t1
                record["valid"] = res.metrics
                score = res.metrics[key]
                if state["best"] is None or score > state["best"]:
                    state.update(best=score, best_epoch=epoch, bad_evals=0, time_to_best=state["elapsed"])
                    if dist_info.is_main:
                        _save_best(rd.best, model, cfg, epoch, res.metrics)
                else:
                    state["bad_evals"] += 1
                    if state["bad_evals"] >= t.patience:
                        stopped_early = True
            record["elapsed_s"] = round(state["elapsed"], 3)
            state["stopped_early"] = stopped_early
            if dist_info.is_main:
                _append_jsonl(rd.metrics, record)
                if writer is not None:
                    writer.add_scalar("train/loss", record["train_loss"], epoch)
                    for k, v in record.get("valid", {}).items():
                        writer.add_scalar(f"valid/{k}", v, epoch)
                ckpt_io.save(rd.last, {
                    "model_name": cfg.model.name, "config": cfg.to_dict(), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "rng": ckpt_io.rng_state(), "state": dict(state),
                })
                if show:
                    v = record.get("valid", {})
                    tqdm.write(f"epoch {epoch}: loss {record['train_loss']:.4f}"
                               + (f"  valid {key} {v[key]:.4f}  (best {state['best']:.4f} @ {state['best_epoch']})" if v else ""))
            barrier(dist_info)
            for cb in callbacks:
                cb(epoch, record)
        if writer is not None:
            writer.close()
    elif dist_info.is_main:
        _save_best(rd.best, model, cfg, 0, {})
    barrier(dist_info)

    # final: best weights, validation and test
    best = ckpt_io.load(rd.best, expect_model=cfg.model.name)
    ckpt_io.load_model_state(model, best["model"], str(rd.best))
    valid = run_eval(dataset.split.valid, "valid")
    test = run_eval(dataset.split.test, "test")
    results = {
        "model": cfg.model.name,
        "dataset": dataset.name,
        "split": dataset.split.kind,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": stopped_early,
        "train_time_s": round(state["elapsed"], 3),
        "time_to_best_s": round(state["time_to_best"], 3),
        "parameters": model.num_parameters(),
        "trainable_parameters": model.num_parameters(trainable_only=True),
        "transfer": transfer_info,
        "world_size": dist_info.world_size,
        "valid": valid.to_dict(),
        "test": test.to_dict(),
    }
    if dist_info.is_main:
        _append_jsonl(rd.metrics, {"final": True, "valid": valid.metrics, "test": test.metrics})
    barrier(dist_info)
    return results, model, dataset


def _extra_sources(cfg: RunConfig, model, dist_info, show: bool) -> list:
    """Prepare ``data.extra_sources`` and register each with the model as another domain."""
    from dataclasses import replace

    from modalrec.config import ConfigError, InteractionsSpec, ItemsSpec
    from modalrec.data.prepare import load_or_prepare

    if not cfg.data.extra_sources:
        return []
    if not model.supports_domains:
        raise ConfigError(f"data.extra_sources: the '{cfg.model.name}' model cannot train on several data sets at "
                          "once (it has no item representation shared across catalogues); use a content model "
                          "such as pmmrec")
    out = []
    for src in cfg.data.extra_sources:
        dcfg = replace(cfg.data, dataset=src, extra_sources=[], interactions=InteractionsSpec(), items=ItemsSpec())
        if dist_info.is_main:
            ds = load_or_prepare(dcfg, progress=show)
        barrier(dist_info)
        if not dist_info.is_main:
            ds = load_or_prepare(dcfg, progress=False)
        k = model.add_domain(ds, quiet=not show)
        if show:
            tqdm.write(f"extra source {src}: domain {k}, {ds.n_items} items, {len(ds.split.train)} training sequences")
        out.append(ds)
    return out


def _save_best(path: Path, model, cfg: RunConfig, epoch: int, metrics: dict) -> None:
    ckpt_io.save(path, {"model_name": cfg.model.name, "config": cfg.to_dict(), "model": model.state_dict(),
                        "epoch": epoch, "valid": metrics})


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop records of epochs after the checkpoint being resumed (they will be run again)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("epoch", 0) <= last_epoch
            and not json.loads(ln).get("final")]
    path.write_text("".join(ln + "\n" for ln in keep))


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: metrics.jsonl is always written
        return None
    return SummaryWriter(str(path / "tensorboard"))
