"""A run's config names its files by absolute paths, so the run works from any working folder."""

from __future__ import annotations

import copy
import os
from pathlib import Path


def _absolute(value: str) -> str:
    if not value:
        return value
    p = Path(os.path.expanduser(value))
    return value if p.is_absolute() else str(p.resolve())


def _dataset_name(value: str) -> str:
    """A built-in name stays a name; a data-spec YAML or a folder of atomic files becomes absolute."""
    from modalrec.datasets import builtin

    if value in builtin.BUILTINS:
        return value
    p = Path(os.path.expanduser(value))
    return _absolute(value) if p.exists() or p.suffix.lower() in (".yaml", ".yml") else value


def resolve_paths(cfg):
    """A copy of ``cfg`` whose data and transfer paths are absolute (relative ones are taken from the
    working folder, as when they are read)."""
    cfg = copy.deepcopy(cfg)
    d = cfg.data
    d.dataset = _dataset_name(d.dataset)
    d.extra_sources = [_dataset_name(s) for s in d.extra_sources]
    d.interactions.path = _absolute(d.interactions.path)
    d.items.path = _absolute(d.items.path)
    d.items.image_dir = _absolute(d.items.image_dir)
    cfg.transfer.init_from = _absolute(cfg.transfer.init_from)
    return cfg
