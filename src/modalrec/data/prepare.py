"""Raw tables -> :class:`PreparedDataset`: dedup, iterative k-core, chronological CSR sequences, splits.

Steps, in this order (all vectorised with NumPy/pandas, no Python loop per user or event):

1. read interactions (and the catalogue, if any); drop or reject events of unknown items;
2. sort events by (user, timestamp, row order in the file). The sort is stable, so events of one
   user with equal timestamps keep their file order: this is the documented tie-break;
3. dedup repeated (user, item) events: keep the ``first`` or ``last`` in time, or ``none``;
4. iterative k-core: drop users with < ``min_user_inter`` and items with < ``min_item_inter``
   events until nothing changes (a threshold of 0 or 1 disables that side);
5. keep each user's most recent ``max_seq_len`` events (if > 0), then drop users with fewer than
   ``min_seq_len`` events (at least 3 for the leave-one-out split);
6. index: items that remain, by ascending raw id (numerically if every id is an integer, else
   lexicographically), index 0 = ``[PAD]``; users likewise from 0;
7. CSR arrays (``offsets`` int64, ``items`` int32, ``timestamps`` int64) and the split.

:func:`load_or_prepare` caches the result under ``<modalrec_home>/prepared/<name>-<key>/`` where
the key hashes the format version, the source files' contents and every preparation option.
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.config import ConfigError, DataConfig, InteractionsSpec, ItemsSpec, to_dict, update_dataclass
from modalrec.data.dataset import FORMAT_VERSION, PAD, Catalogue, PreparedDataset, SeqSet, Split
from modalrec.data.tables import FIELD_PREFIX, DataError, check_file, check_known_items, read_interactions, read_items
from modalrec.data.cache import remove_stale_temps
from modalrec.utils import bars_on, file_digest, file_lock, hash_strings, modalrec_home

PREPARE_VERSION = 1  # bump when preparation logic changes: old cache entries are then ignored
TIE_BREAK = (
    "events of a user are sorted by (timestamp, row order in the source file) with a stable sort: "
    "equal timestamps keep file order"
)

__all__ = [
    "Source",
    "resolve_source",
    "prepare",
    "prepare_frames",
    "load_or_prepare",
    "cache_key",
    "cache_path",
    "TIE_BREAK",
]


# --------------------------------------------------------------------------------------------
# Where the data comes from


@dataclass
class Source:
    """Resolved input: a name and the table specs with absolute paths."""

    name: str
    kind: str  # builtin | yaml | folder | spec
    interactions: InteractionsSpec
    items: ItemsSpec | None

    def files(self) -> list[Path]:
        out = [Path(self.interactions.path)]
        if self.items is not None:
            out.append(Path(self.items.path))
        return out


def _abs(path: str, base: Path) -> str:
    if not path:
        return path
    p = Path(os.path.expanduser(path))
    return str((p if p.is_absolute() else base / p).resolve())


def _absolute_specs(inter: InteractionsSpec, items: ItemsSpec | None, base: Path):
    inter = replace(inter, path=_abs(inter.path, base))
    if items is not None:
        items = replace(
            items,
            path=_abs(items.path, base),
            image_dir=_abs(items.image_dir, base),
            text_fields=list(items.text_fields),
        )
    return inter, items


def _load_spec_yaml(path: Path) -> Source:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a valid YAML data spec ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: a data spec is a mapping with keys name, interactions, items")
    unknown = set(data) - {"name", "interactions", "items"}
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; use name, interactions, items")
    if not isinstance(data.get("interactions"), dict) or not data["interactions"].get("path"):
        raise DataError(f"{path}: give 'interactions:' with at least a 'path:' of the interaction table")
    inter = InteractionsSpec()
    items = ItemsSpec() if data.get("items") else None
    try:
        update_dataclass(inter, data["interactions"], "interactions")
        if items is not None:
            update_dataclass(items, data["items"], "items")
    except ConfigError as e:
        raise DataError(f"{path}: {e}") from e
    if items is not None and not items.path:
        raise DataError(f"{path}: 'items:' needs a 'path:' of the item table")
    name = data.get("name")
    if name is not None and (isinstance(name, bool) or not isinstance(name, (str, int))):
        raise DataError(f"{path}: 'name' must be a text such as my-data, not {name!r}")
    inter, items = _absolute_specs(inter, items, path.parent.resolve())
    return Source(str(name or path.stem), "yaml", inter, items)


def _atomic_folder(folder: Path) -> Source:
    from modalrec.data.tables import _read_header, _split_atomic_header

    folder = folder.resolve()
    inter_path = folder / f"{folder.name}.inter"
    if not inter_path.is_file():
        found = sorted(folder.glob("*.inter"))
        if len(found) != 1:
            raise DataError(
                f"{folder}: expected RecBole atomic files <name>.inter (and optionally <name>.item); "
                + ("found none" if not found else f"found several: {', '.join(p.name for p in found)}")
            )
        inter_path = found[0]
    stem = inter_path.stem
    cols, _ = _split_atomic_header(_read_header(inter_path, "\t", False))
    inter = InteractionsSpec(path=str(inter_path), format="atomic", time_col="timestamp" if "timestamp" in cols else "")
    item_path = folder / f"{stem}.item"
    items = None
    if item_path.is_file():
        icols, _ = _split_atomic_header(_read_header(item_path, "\t", False))
        items = ItemsSpec(path=str(item_path), format="atomic", text_fields=[c for c in icols if c != "item_id"])
    return Source(stem, "folder", inter, items)


def resolve_source(cfg: DataConfig, name: str | None = None) -> Source:
    """Find the tables behind ``cfg``.

    An explicit ``cfg.interactions.path`` wins (``cfg.items`` is used if it has a path; relative
    paths are taken from the working folder). Otherwise ``cfg.dataset`` is a built-in name, a
    data-spec YAML file (relative paths inside are taken from the YAML's folder), or a folder of
    RecBole atomic files ``<name>.inter`` [+ ``<name>.item``].
    """
    from modalrec.datasets import builtin

    if cfg.interactions.path:
        items = cfg.items if cfg.items.path else None
        inter, items = _absolute_specs(cfg.interactions, items, Path.cwd())
        default = (
            cfg.dataset
            if cfg.dataset and cfg.dataset not in builtin.BUILTINS and not Path(cfg.dataset).exists()
            else Path(inter.path).stem
        )
        return Source(name or default, "spec", inter, items)
    ds = cfg.dataset
    if ds in builtin.BUILTINS:
        if cfg.posters and builtin.BUILTINS[ds].kind != "generated":
            from modalrec.datasets.posters import render_posters

            render_posters(ds)  # no-op when current posters exist
        inter, items = builtin.specs(
            ds,
            posters=cfg.posters and builtin.BUILTINS[ds].kind != "generated",
            text=cfg.text,
            template=cfg.items.text_template,
        )
        return Source(name or ds, "builtin", inter, items)
    p = Path(os.path.expanduser(ds))
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        src = _load_spec_yaml(p)
    elif p.is_dir():
        src = _atomic_folder(p)
    elif p.suffix.lower() in (".yaml", ".yml"):
        raise DataError(f"Data spec file not found: {p}")
    else:
        raise DataError(
            f"data.dataset={ds!r} is neither a built-in data set ({', '.join(builtin.BUILTINS)}), "
            "a data-spec YAML file, nor a folder of RecBole atomic files"
        )
    if name:
        src.name = name
    return src


# --------------------------------------------------------------------------------------------
# Core


def _order_raw_ids(uniques: np.ndarray) -> np.ndarray:
    """Permutation sorting raw ids: numerically if all are integers, else lexicographically."""
    s = pd.Series(uniques, dtype=str)
    if len(s) and s.str.fullmatch(r"[+-]?\d{1,18}").all():
        vals = s.astype(np.int64).to_numpy()
        lex = np.argsort(np.asarray(uniques, dtype=str), kind="stable")
        return lex[np.argsort(vals[lex], kind="stable")]  # numeric, ties ("07" vs "7") by string
    return np.argsort(np.asarray(uniques, dtype=str), kind="stable")


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique raw ids): codes index the sorted uniques, so code order = id order."""
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques, dtype=object).astype(str)
    perm = _order_raw_ids(uniques)
    rank = np.empty(len(perm), dtype=np.int64)
    rank[perm] = np.arange(len(perm))
    return rank[codes], uniques[perm]


def _empty_set(items: np.ndarray, with_targets: bool) -> SeqSet:
    z = np.zeros(0, dtype=np.int64)
    return SeqSet(
        items, z, z.copy(), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32) if with_targets else None
    )


def _seqset(items, start, end, users, targets=None) -> SeqSet:
    return SeqSet(
        items,
        np.asarray(start, dtype=np.int64),
        np.asarray(end, dtype=np.int64),
        np.asarray(users, dtype=np.int32),
        None if targets is None else np.asarray(targets, dtype=np.int32),
    )


def _split_loo(items, offsets):
    n_users = len(offsets) - 1
    users = np.arange(n_users, dtype=np.int32)
    start, end = offsets[:-1], offsets[1:]
    train = _seqset(items, start, end - 2, users)
    valid = _seqset(items, start, end - 2, users, items[end - 2])
    test = _seqset(items, start, end - 1, users, items[end - 1])
    return Split("loo", train, valid, test), {}


def _split_time(items, offsets, timestamps, user_of, q):
    n_users = len(offsets) - 1
    t_cut = float(np.quantile(timestamps, q))
    pre = timestamps < t_cut
    n_pre = np.bincount(user_of[pre], minlength=n_users).astype(np.int64)
    counts = np.diff(offsets)
    pre_end = offsets[:-1] + n_pre  # pre-cut events are a prefix of each (time-sorted) sequence
    has_train = n_pre >= 2  # the last pre-cut event is the validation target; train keeps >= 1
    u = np.flatnonzero(has_train)
    train = _seqset(items, offsets[u], pre_end[u] - 1, u)
    valid = _seqset(items, offsets[u], pre_end[u] - 1, u, items[pre_end[u] - 1])
    ut = np.flatnonzero(has_train & (counts > n_pre))
    test = _seqset(items, offsets[ut], pre_end[ut], ut, items[pre_end[ut]])
    info = {
        "t_cut": t_cut,
        "time_cut": q,
        "events_before_cut": int(pre.sum()),
        "users_without_train": int(n_users - len(u)),
    }
    return Split("time", train, valid, test), info


def _split_cold(items, offsets, timestamps, user_of, n_items, ratio):
    n_users = len(offsets) - 1
    first = np.full(n_items + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, items, timestamps)
    idx = np.arange(1, n_items + 1)
    by_age = idx[np.lexsort((idx, first[1:]))]  # oldest first; ties by index
    n_cold = min(max(1, int(math.floor(ratio * n_items + 0.5))), n_items - 1)
    cold_items = np.sort(by_age[n_items - n_cold :])
    is_cold_item = np.zeros(n_items + 1, dtype=bool)
    is_cold_item[cold_items] = True
    cold_ev = is_cold_item[items]

    warm = items[~cold_ev]  # its own flat array: warm events, still grouped by user in time order
    w_cnt = np.bincount(user_of[~cold_ev], minlength=n_users).astype(np.int64)
    w_off = np.concatenate([[0], np.cumsum(w_cnt)]).astype(np.int64)
    u = np.flatnonzero(w_cnt >= 2)  # train (warm minus its last event) must keep >= 1 item
    train = _seqset(warm, w_off[u], w_off[u + 1] - 1, u)
    valid = _seqset(warm, w_off[u], w_off[u + 1] - 1, u, warm[w_off[u + 1] - 1])

    cidx = np.flatnonzero(cold_ev)
    cu = user_of[cidx]
    is_first = np.ones(len(cidx), dtype=bool)
    is_first[1:] = cu[1:] != cu[:-1]
    pos, pu = cidx[is_first], cu[is_first]  # each user's first cold event (global position)
    ok = (pos > offsets[pu]) & (w_cnt[pu] >= 2)
    pos, pu = pos[ok], pu[ok]
    test = _seqset(items, offsets[pu], pos, pu, items[pos])
    info = {"n_cold_items": int(n_cold), "cold_item_ratio": ratio, "cold_events": int(cold_ev.sum())}
    return Split("cold", train, valid, test), info, cold_items


def sample_users(interactions: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The events of about ``fraction`` of the users, picked by a fixed hash of the user id (the same
    users whatever the file order or the run; a smaller fraction keeps a subset of a larger one)."""
    ids = interactions["user_id"].to_numpy(dtype=object)
    keep = pd.util.hash_array(ids) % np.uint64(1_000_000) < np.uint64(round(fraction * 1_000_000))
    if not keep.any():
        raise DataError(f"data.user_fraction={fraction} keeps none of the {len(set(ids))} users")
    return interactions[keep].reset_index(drop=True)


def prepare_frames(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    cfg: DataConfig,
    *,
    name: str = "data",
    progress: bool = False,
    source_meta: dict | None = None,
    paths: tuple[str, str] = ("interactions", "items"),
    _bar=None,
) -> PreparedDataset:
    """Prepare from in-memory tables (``read_interactions`` / ``read_items`` layout).

    ``interactions``: columns user_id (str), item_id (str), timestamp (int64), in file order.
    ``items``: columns item_id, text and optionally image_path, or None (catalogue = the item ids
    of the interactions, without text).
    """
    _check_options(cfg)
    bar = _bar if _bar is not None else _progress_bar(name, progress, 7)

    def step(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    stats: dict = {"events_read": int(len(interactions))}
    n_unknown = 0
    if items is not None:
        interactions, n_unknown = check_known_items(interactions, items, cfg.drop_unknown_items, *paths)
    stats["dropped_unknown_items"] = n_unknown
    if len(interactions) == 0:
        raise DataError(f"{paths[0]}: no interactions left after dropping unknown items")
    if cfg.user_fraction < 1.0:
        interactions = sample_users(interactions, cfg.user_fraction)
        stats["users_sampled"] = int(interactions["user_id"].nunique())
    step("index")

    u, user_uniques = _sorted_codes(interactions["user_id"])
    i, item_uniques = _sorted_codes(interactions["item_id"])
    t = np.asarray(interactions["timestamp"].to_numpy(), dtype=np.int64)
    order = np.lexsort((t, u))  # stable: equal (user, time) keep file order
    u, i, t = u[order], i[order], t[order]
    step("sort")

    n0 = len(u)
    if cfg.dedup != "none":
        key = u * np.int64(len(item_uniques)) + i
        dup = pd.Series(key).duplicated(keep=cfg.dedup).to_numpy()
        keep = ~dup
        u, i, t = u[keep], i[keep], t[keep]
    stats["removed_dedup"] = int(n0 - len(u))
    step("dedup")

    n0, rounds = len(u), 0
    mu, mi = int(cfg.min_user_inter), int(cfg.min_item_inter)
    while len(u) and (mu > 1 or mi > 1):
        keep = np.ones(len(u), dtype=bool)
        if mu > 1:
            keep &= np.bincount(u, minlength=len(user_uniques))[u] >= mu
        if mi > 1:
            keep &= np.bincount(i, minlength=len(item_uniques))[i] >= mi
        rounds += 1
        if keep.all():
            break
        u, i, t = u[keep], i[keep], t[keep]
    stats["removed_kcore"] = int(n0 - len(u))
    stats["kcore_rounds"] = rounds
    step("k-core")

    n0 = len(u)
    if cfg.max_seq_len > 0 and len(u):
        cnt = np.bincount(u, minlength=len(user_uniques))
        ends = np.cumsum(cnt)  # events are grouped by user (sorted codes)
        from_end = ends[u] - 1 - np.arange(len(u))
        keep = from_end < cfg.max_seq_len
        u, i, t = u[keep], i[keep], t[keep]
    stats["removed_max_seq_len"] = int(n0 - len(u))
    n0 = len(u)
    min_len = max(3, cfg.min_seq_len) if cfg.split == "loo" else max(1, cfg.min_seq_len)
    if len(u):
        keep = np.bincount(u, minlength=len(user_uniques))[u] >= min_len
        u, i, t = u[keep], i[keep], t[keep]
    stats["removed_min_seq_len"] = int(n0 - len(u))
    stats["min_seq_len_applied"] = int(min_len)
    if len(u) == 0:
        raise DataError(
            f"{name}: no interactions remain after filtering (min_user_inter={mu}, min_item_inter={mi}, "
            f"min_seq_len={min_len}, max_seq_len={cfg.max_seq_len}); lower these thresholds"
        )
    step("filter")

    kept_u = np.unique(u)
    kept_i = np.unique(i)
    map_u = np.full(len(user_uniques), -1, dtype=np.int64)
    map_u[kept_u] = np.arange(len(kept_u))
    map_i = np.zeros(len(item_uniques), dtype=np.int64)
    map_i[kept_i] = np.arange(1, len(kept_i) + 1)
    user_of = map_u[u].astype(np.int32)
    seq_items = map_i[i].astype(np.int32)
    timestamps = t.astype(np.int64)
    n_users, n_items = len(kept_u), len(kept_i)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_of, minlength=n_users), out=offsets[1:])
    user_ids = user_uniques[kept_u]
    raw_item_ids = item_uniques[kept_i]

    fields = {}
    if items is not None:
        pos = pd.Index(items["item_id"]).get_indexer(raw_item_ids)
        text = np.concatenate([[""], items["text"].to_numpy(dtype=object)[pos]]).astype(str)
        fields = {
            c[len(FIELD_PREFIX) :]: np.concatenate([[""], items[c].to_numpy(dtype=object)[pos]]).astype(str)
            for c in items.columns
            if c.startswith(FIELD_PREFIX)
        }
        if "image_path" in items.columns and (items["image_path"] != "").any():
            images = np.concatenate([[""], items["image_path"].to_numpy(dtype=object)[pos]]).astype(str)
        else:
            images = None
    else:
        text, images = np.full(n_items + 1, "", dtype=str), None
    catalogue = Catalogue(np.concatenate([[PAD], raw_item_ids]).astype(str), text, images, fields)
    step("sequences")

    cold_items = None
    if cfg.split == "loo":
        split, split_info = _split_loo(seq_items, offsets)
    elif cfg.split == "time":
        split, split_info = _split_time(seq_items, offsets, timestamps, user_of, cfg.time_cut)
    else:
        split, split_info, cold_items = _split_cold(
            seq_items, offsets, timestamps, user_of, n_items, cfg.cold_item_ratio
        )
    step("split")
    if _bar is None:
        bar.close()

    stats.update(users=int(n_users), items=int(n_items), interactions=int(len(seq_items)))
    options = to_dict(cfg)
    options.pop("cache", None)
    meta = {
        "name": name,
        "format_version": FORMAT_VERSION,
        "prepare_version": PREPARE_VERSION,
        "options": options,
        "source": source_meta or {},
        "stats": stats,
        "tie_break": TIE_BREAK,
        "split": {"kind": split.kind, **split_info},
    }
    if cold_items is not None:
        meta["cold_items"] = [int(x) for x in cold_items]
    return PreparedDataset(name, catalogue, user_ids.astype(str), offsets, seq_items, timestamps, split, meta)


def _progress_bar(name: str, progress: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"prepare {name}", disable=not bars_on(progress), leave=False, unit="step")


def _check_options(cfg: DataConfig) -> None:
    if cfg.dedup not in ("first", "last", "none"):
        raise DataError(f"data.dedup={cfg.dedup!r}: choose one of first, last, none")
    if cfg.split not in ("loo", "time", "cold"):
        raise DataError(f"data.split={cfg.split!r}: choose one of loo, time, cold")
    if cfg.split == "time" and not 0.0 < cfg.time_cut < 1.0:
        raise DataError(f"data.time_cut={cfg.time_cut}: must be a quantile strictly between 0 and 1")
    if cfg.split == "cold" and not 0.0 < cfg.cold_item_ratio < 1.0:
        raise DataError(f"data.cold_item_ratio={cfg.cold_item_ratio}: must be between 0 and 1")
    for k in ("min_user_inter", "min_item_inter", "min_seq_len", "max_seq_len"):
        if getattr(cfg, k) < 0:
            raise DataError(f"data.{k}={getattr(cfg, k)}: must be >= 0")


def _source_meta(src: Source, digests: dict[str, str]) -> dict:
    out: dict[str, dict | str | None] = {
        "kind": src.kind,
        "interactions": {**to_dict(src.interactions), "digest": digests[src.interactions.path]},
    }
    if src.items is not None:
        items = {**to_dict(src.items), "digest": digests[src.items.path]}
        if src.items.image_dir:
            items["image_dir_fingerprint"] = _dir_fingerprint(src.items.image_dir)
        out["items"] = items
    else:
        out["items"] = None
    return out


def _dir_fingerprint(folder: str) -> str:
    """Names, sizes and modification times of a folder's files (image sets change the catalogue)."""
    p = Path(folder)
    if not p.is_dir():
        return "missing"
    entries = sorted(f"{e.name}\t{e.stat().st_size}\t{e.stat().st_mtime_ns}" for e in os.scandir(p) if e.is_file())
    return hash_strings(*entries)


def _digests(src: Source) -> dict[str, str]:
    out = {}
    for p in src.files():
        what = "Interactions" if str(p) == src.interactions.path else "Items"
        check_file(p, what)
        try:
            out[str(p)] = file_digest(p)
        except OSError as e:
            raise DataError(f"{what} file {p}: cannot read it ({e.strerror or e})") from e
    return out


def prepare(cfg: DataConfig, *, name: str | None = None, progress: bool = True) -> PreparedDataset:
    """Read the tables behind ``cfg`` and prepare them (no cache; see :func:`load_or_prepare`).

    Chronological order within a user: events are sorted by (timestamp, row order in the source
    file) with a stable sort, so equal timestamps keep file order.
    """
    src = resolve_source(cfg, name)
    digests = _digests(src)
    return _prepare_source(cfg, src, digests, progress)


def _prepare_source(cfg: DataConfig, src: Source, digests: dict[str, str], progress: bool) -> PreparedDataset:
    _check_options(cfg)
    bar = _progress_bar(src.name, progress, 8)
    bar.set_postfix_str("read", refresh=True)
    try:
        inter = read_interactions(src.interactions)
        items = read_items(src.items) if src.items is not None else None
        bar.update(1)
        return prepare_frames(
            inter,
            items,
            cfg,
            name=src.name,
            progress=progress,
            source_meta=_source_meta(src, digests),
            paths=(src.interactions.path, src.items.path if src.items else ""),
            _bar=bar,
        )
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# Cache


def cache_key(cfg: DataConfig, src: Source, digests: dict[str, str] | None = None) -> str:
    """Hash of the format versions, the source files' contents and all preparation options."""
    digests = digests if digests is not None else _digests(src)
    options = to_dict(cfg)
    options.pop("cache", None)
    source = _source_meta(src, digests)  # resolved specs (paths included: image paths are absolute)
    options.pop("interactions", None)  # superseded by the resolved specs in `source`
    options.pop("items", None)
    return hash_strings(
        f"format={FORMAT_VERSION}",
        f"prepare={PREPARE_VERSION}",
        f"name={src.name}",
        json.dumps(options, sort_keys=True, default=str),
        json.dumps(source, sort_keys=True, default=str),
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def cache_path(cfg: DataConfig, cache_dir: str | Path | None = None, *, name: str | None = None) -> Path:
    """The folder ``load_or_prepare`` uses for ``cfg`` (fetches a built-in if needed)."""
    src = resolve_source(cfg, name)
    root = Path(cache_dir) if cache_dir is not None else modalrec_home() / "prepared"
    return root / f"{_safe_name(src.name)}-{cache_key(cfg, src)}"


def load_or_prepare(
    cfg: DataConfig,
    cache_dir: str | Path | None = None,
    *,
    name: str | None = None,
    progress: bool = True,
) -> PreparedDataset:
    """Load the prepared data set from the cache, or prepare and store it.

    The cache folder is ``<cache_dir or modalrec_home()/"prepared">/<name>-<key>/``. A cached copy
    that does not load is rebuilt. With ``cfg.cache = False`` it always prepares and never writes.
    """
    src = resolve_source(cfg, name)
    digests = _digests(src)
    if not cfg.cache:
        return _prepare_source(cfg, src, digests, progress)
    key = cache_key(cfg, src, digests)
    root = Path(cache_dir) if cache_dir is not None else modalrec_home() / "prepared"
    folder = root / f"{_safe_name(src.name)}-{key}"
    ds = _load_cached(folder, key)
    if ds is not None:
        return ds
    remove_stale_temps(root)  # leftovers of a writer killed while saving
    with _writer_lock(root / f".{folder.name}.lock", f"the prepared data set {folder}"):
        ds = _load_cached(folder, key)  # another process may have written it meanwhile
        if ds is not None:
            return ds
        ds = _prepare_source(cfg, src, digests, progress)
        ds.meta["key"] = key
        ds.meta["cache_dir"] = str(folder)
        ds.save(folder)
    return ds


@contextmanager
def _writer_lock(lock: Path, what: str):
    """One writer per cache entry; the lock file goes when the writer is done (a stale temp folder whose
    lock file is free or gone belongs to a dead writer)."""
    try:
        with file_lock(lock, wait=True, what=what):
            yield
    finally:
        lock.unlink(missing_ok=True)


def _load_cached(folder: Path, key: str) -> PreparedDataset | None:
    if not folder.exists():
        return None
    try:
        ds = PreparedDataset.load(folder)
    except Exception:  # corrupt or partial copy: rebuilt by the caller
        return None
    return ds if ds.meta.get("key") == key else None
