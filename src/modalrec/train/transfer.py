"""Transfer: load named components of a pre-trained model, keep the rest freshly initialised, freeze some.

A component is a top-level named submodule of a model (PMMRec: ``text_encoder``, ``image_encoder``,
``fusion``, ``user_encoder``, ``nicl_head``, ``nid_head``; SASRec: ``item_embedding``,
``user_encoder``). Loading is strict per component: every weight of a requested component must be
in the checkpoint with the same shape, or the load fails naming what is missing (the reference
PMMRec code silently loads nothing for ``user_encoder``; we never do a partial load). Components
not requested keep the fresh initialisation of the newly built model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modalrec.core import checkpoint as ckpt_io
from modalrec.core.checkpoint import CheckpointError


def components(model: torch.nn.Module) -> list[str]:
    """Names of the model's top-level submodules that hold parameters."""
    return [n for n, m in model.named_children() if any(True for _ in m.parameters())]


def checkpoint_path(init_from: str | Path) -> Path:
    """The weights of a pre-trained run: its ``best.pt``, ``checkpoints/last.pt`` or (a run saved by
    ``Recommender.save``, or copied without its checkpoints) ``model.safetensors``; or the file given."""
    p = Path(init_from)
    if p.is_dir():
        for name in ("best.pt", "checkpoints/last.pt", "model.safetensors"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(
            f"{p} holds no best.pt, checkpoints/last.pt or model.safetensors: is it a modalrec run folder?"
        )
    return p


def source_state(init_from: str | Path) -> tuple[Path, dict[str, torch.Tensor], str]:
    """(the weights file, its state dict, the model's name) of a pre-trained run (see :func:`checkpoint_path`)."""
    path = checkpoint_path(init_from)
    if path.suffix != ".safetensors":
        ck = ckpt_io.load(path)
        return path, ck["model"], ck.get("model_name") or ""
    import json

    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # a damaged or foreign file: name it
        raise CheckpointError(f"{path}: cannot read the weights ({e})") from e
    try:
        name = json.loads((path.parent / "config.json").read_text())["model"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        name = ""
    return path, state, name


def load_components(model: torch.nn.Module, init_from: str | Path, names: list[str]) -> dict:
    """Load ``names`` (or ``["all"]``: every component both sides have) from a checkpoint into ``model``.

    Returns ``{"checkpoint", "model_name", "loaded": [...], "fresh": [...]}``.
    """
    path, state, model_name = source_state(init_from)
    in_ckpt = sorted({k.split(".", 1)[0] for k in state})
    own = model.state_dict()
    have = components(model)
    if names == ["all"] or names == "all":
        names = [n for n in have if n in in_ckpt]
    unknown = [n for n in names if n not in have]
    if unknown:
        raise CheckpointError(
            f"this {type(model).__name__} model has no component(s) {unknown}; it has: {', '.join(have)}"
        )
    lacking = [n for n in names if n not in in_ckpt]
    if lacking:
        raise CheckpointError(
            f"{path} has no component(s) {lacking} (a '{model_name}' checkpoint with "
            f"{', '.join(in_ckpt)}); nothing was loaded"
        )
    new_state = {}
    for n in names:
        keys = [k for k in own if k.split(".", 1)[0] == n]
        missing = [k for k in keys if k not in state]
        shapes = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in keys
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        extra = [k for k in state if k.split(".", 1)[0] == n and k not in own]
        if missing or shapes or extra:
            detail = "; ".join(
                filter(
                    None,
                    [
                        f"missing {missing[:4]}" if missing else "",
                        f"unexpected {extra[:4]}" if extra else "",
                        f"shape mismatch {shapes[:3]}" if shapes else "",
                    ],
                )
            )
            raise CheckpointError(f"component '{n}' of {path} does not fit this model ({detail}); nothing was loaded")
        new_state.update({k: state[k] for k in keys})
    merged = {**own, **new_state}
    model.load_state_dict(merged)
    return {
        "checkpoint": str(path),
        "model_name": model_name,
        "loaded": list(names),
        "fresh": [n for n in have if n not in names],
    }


def freeze(model: torch.nn.Module, names: list[str]) -> int:
    """Stop the gradients of the named components; returns the number of frozen parameters."""
    have = components(model)
    unknown = [n for n in names if n not in have]
    if unknown:
        raise CheckpointError(f"cannot freeze {unknown}: the model's components are {', '.join(have)}")
    count = 0
    for n in names:
        for p in getattr(model, n).parameters():
            if p.requires_grad:
                count += p.numel()
            p.requires_grad_(False)
    return count
