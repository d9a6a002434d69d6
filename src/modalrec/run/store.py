"""Save a finished run as a self-contained model, and load it back without the data it was trained on.

A finished run folder holds (see docs/architecture.md, "The run folder"): ``config.json`` (and
``config.yaml``), ``model.safetensors``, ``item_state.safetensors``, ``assets/``, ``catalogue.npz``,
``histories.npz``, ``dataset.json`` (data fingerprint and origin), ``results.json``, ``README.md``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modalrec.core import checkpoint as ckpt_io
from modalrec.run.fingerprint import check_data, data_fingerprint
from modalrec.run.folder import RunDir
from modalrec.utils import atomic_dir, atomic_path, atomic_write_json

if TYPE_CHECKING:
    from modalrec.config import RunConfig
    from modalrec.data.dataset import PreparedDataset
    from modalrec.models.base import SequentialRecommender

SEP = "__"  # catalogue.npz key of a dict-valued catalogue field's entry: <field>__<key>


class RunLoadError(ValueError):
    """A run folder that cannot be loaded (not a run, unfinished, or written by an incompatible version)."""


@dataclass
class LoadedRun:
    """A run rebuilt from its folder: ``dataset`` is the run's own copy of its data (catalogue and
    histories), enough to recommend; evaluation reads the real data (:func:`modalrec.run.data.run_data`)."""

    path: Path
    cfg: RunConfig
    model: SequentialRecommender
    dataset: PreparedDataset
    record: dict = field(default_factory=dict)  # dataset.json
    results: dict = field(default_factory=dict)

    @property
    def catalogue(self):
        return self.dataset.catalogue


# ---------------------------------------------------------------------------------------------- save


def _tensor_file(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # clone: no shared storage
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata={"format": "modalrec"})


def catalogue_arrays(cat) -> dict[str, np.ndarray]:
    """Every array the catalogue holds (dict-valued fields as ``<field>__<key>``), whatever its fields."""
    out = {}
    for f in dataclasses.fields(cat):
        v = getattr(cat, f.name)
        if isinstance(v, np.ndarray):
            out[f.name] = v
        elif isinstance(v, dict):
            out.update({f"{f.name}{SEP}{k}": np.asarray(a) for k, a in v.items()})
    return out


def history_arrays(ds) -> dict[str, np.ndarray]:
    """Users' sequences and the split, with each distinct flat item array stored once."""
    out = {
        "user_ids": np.asarray(ds.user_ids, dtype=str),
        "offsets": ds.offsets,
        "items": ds.items,
        "timestamps": ds.timestamps,
        "split_kind": np.asarray([ds.split.kind]),
    }
    for name in ("train", "valid", "test"):
        s = getattr(ds.split, name)
        if s.items is not ds.items:
            out[f"{name}_items"] = s.items
        out.update({f"{name}_start": s.start, f"{name}_end": s.end, f"{name}_users": s.users})
        if s.targets is not None:
            out[f"{name}_targets"] = s.targets
    return out


def _npz(path: Path, arrays: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_run(
    rd: RunDir, cfg, model, dataset, results: dict, *, origin: dict, command: str = "", record: dict | None = None
) -> None:
    """Write the self-contained part of a finished run into ``rd`` (the trainer wrote the rest).

    ``record``: the data record to keep (default: computed from ``dataset``; a served run saved with
    items added keeps the record of the data it was trained on)."""
    from modalrec.config import save_config
    from modalrec.run.card import write_card

    save_config(cfg, rd.config)
    atomic_write_json(rd.config_json, cfg.to_dict())
    _tensor_file(rd.weights, model.state_dict())
    item_state = model.item_state()
    if item_state:
        _tensor_file(rd.item_state, item_state)
    elif rd.item_state.exists():
        rd.item_state.unlink()
    with atomic_dir(rd.assets) as tmp:
        model.save_assets(tmp)
    _npz(rd.catalogue, catalogue_arrays(dataset.catalogue))
    _npz(rd.histories, history_arrays(dataset))
    atomic_write_json(rd.dataset, record if record is not None else data_record(dataset, origin))
    atomic_write_json(rd.results, results)
    write_card(rd, cfg, model, dataset, results, command)


def data_record(dataset, origin: dict) -> dict:
    """``dataset.json``: where the data came from, its fingerprint and summary."""
    return {
        "origin": origin,
        "fingerprint": data_fingerprint(dataset),
        "summary": dataset.summary(),
        "meta_key": dataset.meta.get("key"),
        "meta": json.loads(json.dumps(dataset.meta, default=str)),
    }


# ---------------------------------------------------------------------------------------------- load


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise RunLoadError(f"{path} is missing: the run folder is incomplete (copy the whole folder)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_catalogue(path: Path):
    from modalrec.data.dataset import Catalogue

    arrays = _read_npz(path)
    names = {f.name for f in dataclasses.fields(Catalogue) if f.init}
    kwargs: dict = {}
    for key, a in arrays.items():
        head, _, sub = key.partition(SEP)
        if sub and head in names:
            kwargs.setdefault(head, {})[sub] = a
        elif key in names:
            kwargs[key] = a
    return Catalogue(**kwargs)


def dataset_from_run(rd: RunDir, name: str = "run"):
    """The run's own copy of its data: catalogue, users' sequences and split."""
    from modalrec.data.dataset import PreparedDataset, SeqSet, Split

    a = _read_npz(rd.histories)
    sets = {
        n: SeqSet(
            a.get(f"{n}_items", a["items"]), a[f"{n}_start"], a[f"{n}_end"], a[f"{n}_users"], a.get(f"{n}_targets")
        )
        for n in ("train", "valid", "test")
    }
    split = Split(str(a["split_kind"][0]), sets["train"], sets["valid"], sets["test"])
    return PreparedDataset(
        name, load_catalogue(rd.catalogue), a["user_ids"], a["offsets"], a["items"], a["timestamps"], split, {}
    )


def read_config(rd: RunDir):
    from modalrec.config import build_config, load_yaml

    if rd.config_json.is_file():
        return build_config(json.loads(rd.config_json.read_text(encoding="utf-8")))
    if rd.config.is_file():
        return build_config(load_yaml(rd.config))
    raise FileNotFoundError(
        f"{rd.path} is not a run folder (no config.json or config.yaml); train one with `modalrec train`"
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_run(path: str | Path, checkpoint: str = "best", dataset=None) -> LoadedRun:
    """Rebuild a finished run's model from its folder alone (no data, no downloads).

    ``checkpoint``: ``best`` (``model.safetensors``) or ``last`` (``checkpoints/last.pt``).
    ``dataset``: data to serve or evaluate with; it must be the data the run was trained on
    (checked: DataMismatchError names the difference).
    """
    from safetensors.torch import load_file

    from modalrec.models.registry import build_model, get_model_class

    rd = RunDir(path)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    cfg = read_config(rd)
    if not rd.weights.is_file():
        return _load_legacy(rd, cfg, checkpoint, dataset)
    record = _read_json(rd.dataset)
    run_ds = dataset_from_run(rd, name=record.get("fingerprint", {}).get("name", rd.path.name))
    cls = get_model_class(cfg.model.name)
    if rd.assets.is_dir():
        cfg.model = cls.config_from_assets(cfg.model, rd.assets)
    model = build_model(cfg.model, run_ds, features=None)
    if checkpoint == "best":
        ckpt_io.load_model_state(model, load_file(str(rd.weights)), str(rd.weights))
    else:
        ckpt_io.load_model_state(model, ckpt_io.load(rd.last, expect_model=cfg.model.name)["model"], str(rd.last))
    if rd.item_state.is_file():  # after the weights: the item state belongs to them (e.g. MISSRec's interests)
        model.load_item_state(load_file(str(rd.item_state)))
    model.eval()
    if dataset is not None:
        check_data(record.get("fingerprint", {}), run_ds.catalogue.item_ids, dataset, where=f"the run {rd.path}")
    return LoadedRun(rd.path, cfg, model, dataset if dataset is not None else run_ds, record, _read_json(rd.results))


def _load_legacy(rd: RunDir, cfg, checkpoint: str, dataset) -> LoadedRun:
    """A run written before runs were self-contained (best.pt, no model.safetensors): needs its data."""
    from modalrec.data.prepare import load_or_prepare
    from modalrec.models.registry import build_model

    path = rd.best if checkpoint == "best" else rd.last
    if not rd.results.is_file():
        raise RunLoadError(
            f"{rd.path} holds an unfinished run: finish it with `modalrec train --out {rd.path} --resume` first"
        )
    if not path.is_file():
        raise RunLoadError(
            f"{rd.path} holds no finished model (no model.safetensors or {path.name}): train it to the "
            "end (`modalrec train --resume`) first"
        )
    ck = ckpt_io.load(path, expect_model=cfg.model.name)
    ds = dataset if dataset is not None else load_or_prepare(cfg.data, progress=False)
    model = build_model(cfg.model, ds)
    ckpt_io.load_model_state(model, ck["model"], str(path))
    model.eval()
    return LoadedRun(rd.path, cfg, model, ds, _read_json(rd.dataset), _read_json(rd.results))
