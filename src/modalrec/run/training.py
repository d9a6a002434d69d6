"""Training into a run folder: a clean start (or a checked resume), one writer at a time, and a
self-contained run at the end. ``train_or_resume`` reuses, continues or starts a run as needed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from modalrec.core.distributed import DistInfo, barrier, init_from_env
from modalrec.run.folder import RunDir, RunDirError, run_lock, choose_start

log = logging.getLogger("modalrec.run")


def _resumed_config(rd: RunDir, overrides):
    """The saved config with ``overrides`` (train/eval only) applied."""
    from modalrec.config import build_config, load_yaml, to_dict

    saved = load_yaml(rd.config)
    cfg = build_config(saved, overrides)
    for section in ("model", "data"):
        if to_dict(getattr(cfg, section)) != saved.get(section):
            raise RunDirError(f"--resume cannot change the '{section}' section of {rd.config}")
    return cfg


def _check_transfer_data(cfg, dataset) -> None:
    """A model that loads item ID embeddings from another run needs the very same item ids (the
    interactions may differ: fine-tuning on newer events of the same catalogue is fine). Whether the
    source has an ID table is read from its weights (MISSRec and UniSRec have one only when transductive)."""
    from modalrec.run.data import run_ids
    from modalrec.run.fingerprint import check_ids
    from modalrec.train.transfer import checkpoint_path

    tr = cfg.transfer
    if not tr.init_from or not ({"all", "item_embedding"} & set(tr.components or ["all"])):
        return
    if not _has_item_ids(checkpoint_path(tr.init_from)):
        return
    src = Path(tr.init_from)
    src = src if src.is_dir() else (src.parent.parent if src.parent.name == "checkpoints" else src.parent)
    ids = run_ids(RunDir(src))
    if ids is not None:
        check_ids(ids, dataset, where=f"the run {src} (whose item embeddings are loaded)")


def _has_item_ids(checkpoint: Path) -> bool:
    """Whether a checkpoint holds an item ID table (``item_embedding``)."""
    from modalrec.train.transfer import source_state

    return any(k.split(".")[0] == "item_embedding" for k in source_state(checkpoint)[1])


def _load(cfg, dist_info: DistInfo, show: bool, what: str):
    from modalrec.run.data import load_data

    ds = None
    if dist_info.is_main:
        ds = load_data(cfg.data, {}, what, progress=show)
    barrier(dist_info)
    return ds if ds is not None else load_data(cfg.data, {}, what, progress=False)


def _write_start(rd: RunDir, cfg, dataset, origin: dict) -> None:
    """What a resume needs besides the checkpoint: the config, the data record and the item ids."""
    from modalrec.config import save_config
    from modalrec.run.store import _npz, catalogue_arrays, data_record
    from modalrec.utils import atomic_write_json

    save_config(cfg, rd.config)
    atomic_write_json(rd.dataset, data_record(dataset, origin))
    _npz(rd.catalogue, catalogue_arrays(dataset.catalogue))


def train(
    cfg,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    overrides=(),
    dataset=None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    command: str = "",
) -> dict:
    """Train ``cfg`` (or, with ``resume``, the run's saved config plus train/eval ``overrides``) into
    the run folder ``out``; returns the results dict. ``dataset``: a prepared data set to train on
    instead of ``cfg.data`` (recorded like any other, so the run loads and is checked the same way).

    A folder without a checkpoint (a failed start) is started fresh; ``overwrite`` replaces a run.
    Data met on resume or when loading an ID model's item embeddings is checked against the run's
    record first: a mismatch stops before anything is written.
    """
    from tqdm.auto import tqdm

    from modalrec.run.curve import write_learning_curve
    from modalrec.run.data import checked_data
    from modalrec.run.paths import resolve_paths
    from modalrec.run.store import save_run
    from modalrec.train.loggers import require as require_loggers
    from modalrec.train.trainer import fit, select_key

    rd = RunDir(out)
    resume, note = choose_start(rd, resume, overwrite)
    if resume:
        cfg = _resumed_config(rd, overrides)
    elif cfg is None:  # --resume of a folder whose start failed: its saved config, started fresh
        from modalrec.config import build_config, load_yaml

        if not rd.config.is_file():
            raise ValueError("a config is needed for a new run")
        cfg = resolve_paths(build_config(load_yaml(rd.config), overrides))
    else:
        cfg = resolve_paths(cfg)
    require_loggers(cfg.train.loggers)  # before the data is prepared
    dist_info = init_from_env(cfg.train.device)
    show = progress and dist_info.is_main
    if note and dist_info.is_main:
        tqdm.write(note, file=sys.stderr)
    origin = {"kind": "given"} if dataset is not None else {"kind": "config"}
    if resume:
        dataset = checked_data(rd, cfg.data, f"resuming {rd.path}", dataset, progress=show)
    elif dataset is None:
        dataset = _load(cfg, dist_info, show, f"training into {rd.path}")
    _check_transfer_data(cfg, dataset)

    with run_lock(rd) if dist_info.is_main else nullcontext():
        if dist_info.is_main:
            again, _ = choose_start(rd, resume, overwrite)  # under the lock: nobody changed it meanwhile
            if again != resume:
                raise RunDirError(f"{rd.path} was changed by another process while this one prepared its data")
            if not resume:
                rd.clear()
                _write_start(rd, cfg, dataset, origin)
        barrier(dist_info)
        results, model, dataset = fit(
            cfg, rd, resume=resume, dataset=dataset, dist_info=dist_info, progress=progress, callbacks=callbacks
        )
        if dist_info.is_main:
            if resume:
                origin = json.loads(rd.dataset.read_text()).get("origin", origin) if rd.dataset.is_file() else origin
            save_run(rd, cfg, model, dataset, results, origin=origin, command=command or "modalrec.run.train")
            write_learning_curve(
                rd, select_key(cfg.eval.ks), show, title=f"{cfg.model.name} on {dataset.name}: {rd.path.name}"
            )
        barrier(dist_info)
    return results


def train_or_resume(
    cfg,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log_to: Callable[[str], None] = print,
    **kwargs,
) -> dict:
    """Reuse a finished run in ``out``, continue an interrupted one, or start a fresh one (a folder
    without a checkpoint is started again). Returns the results. ``cfg`` may be a callable that
    builds the config.

    A run in ``out`` made with another config (any setting but how it computes: threads, device,
    evaluation batch sizes) is never reused or continued: a RunDirError names the first difference, or
    with ``overwrite`` the run is replaced.
    """
    from modalrec.run.paths import resolve_paths

    rd = RunDir(out)
    cfg = resolve_paths(cfg() if callable(cfg) else cfg)
    if rd.started:
        diff = config_difference(rd, cfg)
        if diff and not overwrite:
            raise RunDirError(
                f"{rd.path} holds a run of another config ({diff}); pass --overwrite to replace it, "
                "or choose another --out"
            )
        if diff:
            log_to(f"{rd.path} holds a run of another config ({diff}); replacing it")
            return train(cfg, out, overwrite=True, progress=progress, **kwargs)
    if rd.finished:
        log_to(f"reusing finished run {rd.path} (delete it to retrain)")
        return json.loads(rd.results.read_text())
    if rd.last.is_file():
        log_to(f"{rd.path} holds an unfinished run; resuming it")
        return train(None, out, resume=True, progress=progress, **kwargs)
    return train(cfg, out, progress=progress, **kwargs)


# settings that change how a run computes, not what it computes (a run is reused whatever they are)
HOW_NOT_WHAT = ("train.threads", "train.device", "train.loggers", "eval.batch_size", "eval.item_chunk", "data.cache")


def config_difference(rd: RunDir, cfg) -> str:
    """The first setting in which ``cfg`` differs from the run saved in ``rd`` ("train.epochs: 3 in the
    run, 5 asked"), ignoring :data:`HOW_NOT_WHAT`; "" when they agree."""
    from modalrec.config import flatten, load_yaml, to_dict

    if rd.config_json.is_file():
        saved = json.loads(rd.config_json.read_text())
    elif rd.config.is_file():
        saved = load_yaml(rd.config)
    else:
        return "it has no config.json or config.yaml"
    saved, asked = flatten(saved), flatten(json.loads(json.dumps(to_dict(cfg))))  # tuples as lists, as saved
    for key in sorted(set(saved) | set(asked)):
        if key in HOW_NOT_WHAT:
            continue
        a, b = saved.get(key, "(unset)"), asked.get(key, "(unset)")
        if a != b:
            return f"{key}: {a!r} in the run, {b!r} asked"
    return ""
