"""The config of a fine-tuning run: the pre-trained run's model on a target data set, with named
components transferred and frozen."""

from __future__ import annotations

from pathlib import Path


def source_config_file(source: str | Path) -> Path:
    """The config of a pre-trained run given as its folder or one of its checkpoint files."""
    src = Path(source)
    folder = src if src.is_dir() else (src.parent.parent if src.parent.name == "checkpoints" else src.parent)
    for name in ("config.json", "config.yaml"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{source} is not a run folder with a config.json or config.yaml")


def finetune_config(
    source_run: str | Path,
    dataset: str | None = None,
    transfer=("all",),
    freeze=(),
    overrides=(),
    base: dict | None = None,
):
    """The RunConfig that fine-tunes ``source_run``'s model on ``dataset``.

    The model section comes from the source run (``base["model"]`` and ``model.*`` overrides win); a
    model pre-trained with ``stage=pretrain`` is fine-tuned unless ``model.stage`` is overridden.
    ``transfer``: components to load (``["all"]``: every one both sides have); ``freeze``: components
    that do not train. ``base``: other config sections (e.g. from a ``--config`` YAML).
    """
    import json

    from modalrec.config import build_config, load_yaml, to_dict
    from modalrec.train.transfer import checkpoint_path

    cfg_file = source_config_file(source_run)
    checkpoint_path(source_run)  # fails early, naming the folder, when it holds no weights
    saved = json.loads(cfg_file.read_text()) if cfg_file.suffix == ".json" else load_yaml(cfg_file)
    base = dict(base or {})
    finetuned = build_config({"model": saved["model"]}).model.for_finetune()  # e.g. pre-training -> fine-tuning
    base["model"] = {**to_dict(finetuned), **(base.get("model") or {})}  # the --config YAML and overrides win
    comps = [c.strip() for c in transfer if c.strip()]
    frozen = [c.strip() for c in freeze if c.strip()]
    tr = [
        f"transfer.init_from={Path(source_run).resolve()}",
        f"transfer.components=[{','.join(comps)}]",
        f"transfer.freeze=[{','.join(frozen)}]",
    ]
    return build_config(base, ([f"data.dataset={dataset}"] if dataset else []) + tr + list(overrides))
