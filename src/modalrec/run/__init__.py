"""The run folder: training into it, saving a self-contained model, loading it back, checking data.

Import from the submodules (``modalrec.run.training``, ``.store``, ...) or from here; the names
below are loaded on first use, so importing ``modalrec.run`` stays light.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "RunDir": "folder",
    "RunDirError": "folder",
    "run_lock": "folder",
    "train": "training",
    "train_or_resume": "training",
    "save_run": "store",
    "load_run": "store",
    "LoadedRun": "store",
    "RunLoadError": "store",
    "data_fingerprint": "fingerprint",
    "check_data": "fingerprint",
    "DataMismatchError": "fingerprint",
    "finetune_config": "finetune",
    "evaluate_run": "data",
    "checked_data": "data",
    "RunDataError": "data",
    "write_learning_curve": "curve",
    "resolve_paths": "paths",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"modalrec.run.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'modalrec.run' has no attribute {name!r}")
