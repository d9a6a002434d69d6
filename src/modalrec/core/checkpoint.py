"""Checkpoints are plain dicts of tensors and scalars, written atomically, read with
``torch.load(weights_only=True)``: loading a checkpoint never unpickles code."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from modalrec.utils import atomic_path

FORMAT = "modalrec-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (missing, corrupt, or from another model)."""


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):  # a dict only when the global generator is not the legacy MT19937
        raise CheckpointError("NumPy's global random generator is not MT19937: its state cannot be checkpointed")
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save(path: str | Path, payload: dict) -> None:
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, expect_model: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, pickled code...
        raise CheckpointError(f"{path} is not a readable modalrec checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a modalrec checkpoint")
    if expect_model is not None and ckpt.get("model_name") != expect_model:
        raise CheckpointError(
            f"{path} holds a '{ckpt.get('model_name')}' model, but a '{expect_model}' model was asked for"
        )
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, source: str = "checkpoint") -> None:
    """Strict load with an error that names the missing / unexpected / mis-shaped weights."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{source} does not fit this model: " + ", ".join(parts))
    model.load_state_dict(state)
