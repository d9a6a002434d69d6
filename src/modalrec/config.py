"""Typed configuration: dataclasses, YAML files and ``a.b=c`` overrides.

Every run is described by one :class:`RunConfig`. It is built from defaults, then an optional
YAML file, then command-line overrides, in that order. Unknown keys are an error (with a
suggestion); values are parsed as YAML scalars (never ``eval``). The resolved config is written
into every run dir as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from modalrec.models.base import ModelConfig


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, bad value)."""


# --------------------------------------------------------------------------------------------
# Sections


@dataclass
class InteractionsSpec:
    """Where the interaction table is and which columns hold user, item and time."""

    path: str = ""
    format: str = "auto"  # auto | csv | tsv | parquet | jsonl | atomic
    sep: str = ""  # csv/tsv delimiter; empty = by format
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"  # empty: file order is time order


@dataclass
class ItemsSpec:
    """The item catalogue: id column, which fields form the item text, where images are."""

    path: str = ""
    format: str = "auto"
    sep: str = ""
    item_col: str = "item_id"
    text_fields: list[str] = field(default_factory=list)
    text_template: str = ""  # e.g. "{title} ({year}). Genres: {genres}"; empty: fields joined by ". "
    image_col: str = ""  # column with an image path (relative to image_dir or the table's folder)
    image_dir: str = ""  # folder of <item_id>.jpg|png|webp
    keep_fields: list[str] = field(default_factory=list)  # raw columns kept in the catalogue (display, search);
    # the text's own fields are always kept


@dataclass
class DataConfig:
    """Which data set, and how it is prepared and split."""

    dataset: str = "ml-100k"  # built-in name, a data-spec YAML, or a folder of RecBole atomic files
    interactions: InteractionsSpec = field(default_factory=InteractionsSpec)
    items: ItemsSpec = field(default_factory=ItemsSpec)
    dedup: str = "first"  # first | last | none: repeated (user, item) events
    min_user_inter: int = 5  # iterative k-core: users
    min_item_inter: int = 5  # iterative k-core: items
    min_seq_len: int = 3  # users with fewer events after filtering are dropped
    max_seq_len: int = 0  # keep only the most recent N events per user (0 = all)
    user_fraction: float = 1.0  # keep about this share of the users (fixed hash of the id): sparse targets
    split: str = "loo"  # loo | time | cold
    time_cut: float = 0.9  # time split: quantile of event times where test begins
    cold_item_ratio: float = 0.1  # cold split: share of items (the newest) held out of training
    drop_unknown_items: bool = False  # interactions with items missing from the catalogue
    posters: bool = False  # MovieLens built-ins: attach posters rendered from metadata (rendered on first use)
    text: str = "basic"  # MovieLens built-ins: basic ("Title (Year). Genres: a, b") | rich (+ film credits);
    # items.text_template replaces a built-in's template (columns: see modalrec.datasets.credits)
    extra_sources: list[str] = field(default_factory=list)  # more data sets trained on at once (content
    # models only; each keeps its own item space; validation and test use `dataset`)
    cache: bool = True  # reuse a prepared copy when inputs and options are unchanged


@dataclass
class TrainConfig:
    """Optimisation, schedule, early stopping, device, and where per-epoch metrics go (``loggers``:
    :mod:`modalrec.train.loggers`)."""

    epochs: int = 50
    batch_size: int = 128  # windows (sequences of up to model.max_len items) per step
    window_stride: int = 0  # targets per training window (0 = model.max_len, no overlap); smaller
    # values give every target up to max_len - window_stride items of extra context
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (both after a linear warm-up)
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    patience: int = 10  # early stopping: evaluations without improvement of valid NDCG@10
    eval_every: int = 1  # epochs between validations
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast (bf16/fp16) where the device supports it; no-op on CPU
    cpu_bf16: bool = False  # on a CPU, autocast to bfloat16 too (faster where the CPU has bf16 instructions;
    # losses stay float32)
    threads: int = 0  # torch intra-op threads (0 = leave as is)
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])  # where per-epoch metrics go besides
    # metrics.jsonl (always written): tensorboard (RUN/tensorboard), mlflow (RUN/mlruns or $MLFLOW_TRACKING_URI)


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    exclude_history: bool = True  # items already in the history cannot be recommended
    batch_size: int = 1024  # users per chunk
    item_chunk: int = 0  # items per chunk (0 = all at once); bounds peak memory
    per_user: bool = False  # also write per-user ranks


@dataclass
class TransferConfig:
    """Start from a pre-trained run: which named components to load and which to freeze."""

    init_from: str = ""  # run folder (its best.pt) or a checkpoint file; "" = train from scratch
    components: list[str] = field(default_factory=list)  # e.g. [text_encoder, fusion]; [all] = every one
    freeze: list[str] = field(default_factory=list)  # components whose parameters do not train


@dataclass
class RunConfig:
    model: Any = None  # a model's own config dataclass; `model.name` selects it
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def to_dict(self) -> dict:
        return to_dict(self)


# --------------------------------------------------------------------------------------------
# Conversion


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict/list/scalars (YAML- and JSON-safe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _suggest(key: str, options: list[str] | tuple[str, ...], known: str = "keys") -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else f" Known {known}: {', '.join(sorted(options))}."


def flatten(tree: dict, prefix: str = "", sep: str = ".") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (an empty mapping stays a value)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}{sep}", sep))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a parsed value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit type {tp}")
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):  # "a,b,c" on the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def update_dataclass(obj: Any, values: dict, where: str = "") -> Any:
    """Apply a nested mapping onto a dataclass instance in place; unknown keys raise."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, val in values.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"Unknown config key '{path}'.{_suggest(key, list(fields))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            update_dataclass(current, val, path)
        else:
            setattr(obj, key, _coerce(val, hints[key], path))
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], parsed c). Values are YAML scalars: 3, 0.1, true, [10,20], text."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"Override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def nest(parts: list[str], value: Any) -> dict:
    out: dict = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (model, data, train, eval)")
    return data


def model_config_class(name: str) -> type[ModelConfig]:
    """The config class of the registered model ``name``; an unknown name is a ConfigError with a suggestion."""
    from modalrec.core.registry import UnknownModelError, get_model_class

    try:
        return get_model_class(name).config_class
    except UnknownModelError as e:
        raise ConfigError(str(e)) from None


def build_config(
    base: dict | None = None, overrides: list[str] | tuple[str, ...] = (), model: str | None = None
) -> RunConfig:
    """Defaults <- ``base`` mapping (e.g. from YAML) <- ``overrides`` (``a.b=c`` strings).

    ``model`` (if given) selects the model before overrides; ``model.name=...`` works too.
    """

    tree: dict = dict(base or {})
    for ov in overrides:
        parts, value = parse_override(ov)
        tree = deep_merge(tree, nest(parts, value))
    model_tree = tree.pop("model", {}) or {}
    if isinstance(model_tree, str):
        model_tree = {"name": model_tree}
    if model:
        model_tree = {**model_tree, "name": model}
    name = model_tree.get("name", "sasrec")
    cfg = RunConfig()
    cfg.model = model_config_class(name)()
    update_dataclass(cfg.model, model_tree, "model")
    # a model may ship its own training defaults (e.g. PMMRec: few, large-batch epochs), possibly
    # depending on its settings (MISSRec: pre-training or fine-tuning); the user's train section
    # and overrides still win
    update_dataclass(cfg.train, dict(cfg.model.train_defaults()), "train")
    unknown = set(tree) - {"data", "train", "eval", "transfer"}
    if unknown:
        k = sorted(unknown)[0]
        raise ConfigError(f"Unknown config section '{k}'.{_suggest(k, ['model', 'data', 'train', 'eval', 'transfer'])}")
    for section in ("data", "train", "eval", "transfer"):
        if section in tree:
            update_dataclass(getattr(cfg, section), tree[section] or {}, section)
    validate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Ranges


@dataclass(frozen=True)
class Range:
    """The interval a numeric config value must lie in; ``None`` leaves a side open-ended."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: ``lo`` itself is not allowed
    hi_open: bool = False
    note: str = ""  # what the edge means, e.g. "0 = all"

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def __str__(self) -> str:
        if self.hi is None:
            text = f"{'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.lo is None:
            text = f"{'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            text = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        return f"{text} ({self.note})" if self.note else text


AT_LEAST_1 = Range(1)
AT_LEAST_0 = Range(0)
POSITIVE = Range(0, lo_open=True)
PROBABILITY = Range(0, 1, hi_open=True)  # a dropout-like rate: 1 would drop everything

# Allowed values by field name, for every section and every model config (nested tower configs too).
# ``"<ConfigClass>.<field>"`` wins over the bare name; a field's own ``metadata={"range": Range(...)}``
# wins over both. Fields not named here are not range-checked (strings, booleans, free numbers).
RANGES: dict[str, Range] = {
    # data
    "min_user_inter": Range(0, note="0 or 1 = no filter"),
    "min_item_inter": Range(0, note="0 or 1 = no filter"),
    "min_seq_len": AT_LEAST_0,
    "max_seq_len": Range(0, note="0 = all"),
    "user_fraction": Range(0, 1, lo_open=True),
    "time_cut": Range(0, 1, lo_open=True, hi_open=True),
    "cold_item_ratio": Range(0, 1, lo_open=True, hi_open=True),
    # train
    "epochs": Range(0, note="0 = evaluate only"),
    "TrainConfig.batch_size": AT_LEAST_1,
    "window_stride": Range(0, note="0 = model.max_len"),
    "lr": POSITIVE,
    "weight_decay": AT_LEAST_0,
    "warmup_steps": AT_LEAST_0,
    "grad_clip": Range(0, note="0 = no clipping"),
    "patience": AT_LEAST_1,
    "eval_every": AT_LEAST_1,
    "seed": AT_LEAST_0,
    "threads": Range(0, note="0 = leave as is"),
    # eval
    "ks": AT_LEAST_1,
    "EvalConfig.batch_size": AT_LEAST_1,
    "item_chunk": Range(0, note="0 = all items at once"),
    # models: sizes and counts
    "max_len": AT_LEAST_1,
    "hidden_size": AT_LEAST_1,
    "n_layers": AT_LEAST_1,
    "n_heads": AT_LEAST_1,
    "inner_size": AT_LEAST_1,
    "PMMRecConfig.inner_size": Range(0, note="0 = 4 x hidden_size"),
    "n_experts": AT_LEAST_1,
    "encoder_layers": Range(0, note="0 = interest tokens go to the decoder as they are"),
    "decoder_layers": AT_LEAST_1,
    "fusion_layers": AT_LEAST_1,
    "fusion_heads": AT_LEAST_1,
    "image_grid": Range(1, 7, note="the pooled feature map is at most 7 x 7"),
    "interest_ratio": Range(0, 0.5, lo_open=True),
    "interest_every": AT_LEAST_1,
    "kmeans_steps": AT_LEAST_1,
    "nicl_max_anchors": Range(0, note="0 = all"),
    "encode_chunk": AT_LEAST_1,
    "encode_buckets": AT_LEAST_1,
    # models: rates, weights, temperatures
    "dropout": PROBABILITY,
    "attn_dropout": PROBABILITY,
    "adaptor_dropout": PROBABILITY,
    "fusion_dropout": PROBABILITY,
    "item_drop": PROBABILITY,
    "id_dropout": Range(0, 1, note="1 = scored from text alone"),
    "noise_ratio": Range(0, 1),
    "text_noise": AT_LEAST_0,
    "init_std": POSITIVE,
    "temperature": POSITIVE,
    "nicl_temperature": POSITIVE,
    "rcl_temperature": POSITIVE,
    "rec_weight": AT_LEAST_0,
    "seq_seq_weight": AT_LEAST_0,
    "reg_weight": AT_LEAST_0,
    "nicl_weight": AT_LEAST_0,
    "nid_weight": AT_LEAST_0,
    "rcl_weight": AT_LEAST_0,
    # towers
    "max_tokens": Range(2, note="special tokens included"),
    "image_size": Range(8),
    "trainable_layers": AT_LEAST_0,
}

# train.loggers: where per-epoch metrics go (modalrec.train.loggers); metrics.jsonl is written whatever is listed
LOGGERS = ("jsonl", "tensorboard", "mlflow")

# (size, heads): attention heads must split the width evenly, wherever both fields occur
DIVIDES = (("hidden_size", "n_heads"), ("hidden_size", "fusion_heads"))


def _range_of(obj: Any, f: dataclasses.Field) -> Range | None:
    return f.metadata.get("range") or RANGES.get(f"{type(obj).__name__}.{f.name}") or RANGES.get(f.name)


def check_ranges(obj: Any, where: str) -> None:
    """ConfigError naming key, value and allowed range for the first out-of-range field of a dataclass tree."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, key)
            continue
        allowed = _range_of(obj, f)
        if allowed is None:
            continue
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in allowed:
                name = key if i is None else f"{key}[{i}]"
                raise ConfigError(f"{name}={v!r} is out of range: it must be {allowed}")
    for size, heads in DIVIDES:
        n, h = getattr(obj, size, None), getattr(obj, heads, None)
        if isinstance(n, int) and isinstance(h, int) and h > 0 and n % h:
            raise ConfigError(
                f"{where}.{heads}={h} must divide {where}.{size}={n} (each attention head gets "
                f"{where}.{size} / {where}.{heads} dimensions)"
            )


def validate(cfg: RunConfig) -> None:
    """Choices and ranges of every section and of the model's config."""
    for section in ("data", "train", "eval", "transfer", "model"):
        if dataclasses.is_dataclass(getattr(cfg, section)):
            check_ranges(getattr(cfg, section), section)
    d, t, e = cfg.data, cfg.train, cfg.eval
    choices = {
        "data.dedup": (d.dedup, ("first", "last", "none")),
        "data.split": (d.split, ("loo", "time", "cold")),
        "data.text": (d.text, ("basic", "rich")),
        "train.schedule": (t.schedule, ("constant", "cosine")),
    }
    for key, (val, allowed) in choices.items():
        if val not in allowed:
            raise ConfigError(f"{key}={val!r}: choose one of {', '.join(allowed)}")
    for name in t.loggers:
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r}.{_suggest(name, LOGGERS, 'loggers')}")
    if not e.ks:
        raise ConfigError(f"eval.ks={e.ks}: give positive cut-offs, e.g. [10,20,50]")


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from modalrec.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_run_config(path: str | Path) -> RunConfig:
    """Rebuild a RunConfig from a run dir's config.yaml."""
    return build_config(load_yaml(path))
