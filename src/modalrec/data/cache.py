"""What the cache folder (``$MODALREC_HOME``) holds, and pruning what can be rebuilt.

Entries: prepared data sets (``prepared/<name>-<key>/``), feature stores
(``features/<data set>/<modality>-<what>-<key>/``, ``.partial`` while being encoded), raw data sets
(``raw/<name>/``), downloaded packages (``downloads/``), encoder weights (``weights/``) and
temporary folders a killed writer left behind (``.<name>.<random>.tmp``, ``.<name>.old``).

Only prepared data sets, feature stores and temporary leftovers are ever pruned: raw data,
downloads and weights are inputs, fetched again only at a cost. Entries being written (their lock
is held) are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from modalrec.utils import modalrec_home

STALE_TEMP_SECONDS = 600  # a temporary folder untouched this long, and unlocked, belongs to a dead writer
PRUNABLE = ("prepared", "features", "temp")
_PURPOSE = {
    "raw": "raw files of data set {name!r} (input of prepare)",
    "download": "downloaded package (source of raw data or weights)",
    "weights": "encoder weights {name!r} (text/image towers)",
    "emoji": "emoji images for rendered posters",
    "synthetic": "generated synthetic data sets",
    "credits": "film credits for rich MovieLens texts",
}


class CacheError(ValueError):
    """A cache request the user can fix (e.g. --keep-run names no run folder)."""


@dataclass
class Entry:
    path: Path
    kind: str  # prepared | features | raw | download | weights | temp | other
    size: int  # bytes, every file below the entry
    mtime: float  # newest modification time below the entry (seconds since the epoch)
    purpose: str
    dataset: str = ""  # prepared, features: the data set name
    lock: Path | None = None  # held while the entry is being written

    def age_days(self, now: float | None = None) -> float:
        return max(0.0, ((now or time.time()) - self.mtime) / 86400)

    def locked(self) -> bool:
        return self.lock is not None and is_locked(self.lock)

    def to_dict(self, now: float | None = None) -> dict:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "size": self.size,
            "age_days": round(self.age_days(now), 3),
            "purpose": self.purpose,
            "dataset": self.dataset,
        }


# ------------------------------------------------------------------------------------------ helpers


def is_locked(lock: Path) -> bool:
    """Whether another process holds the OS lock on ``lock`` (see ``modalrec.utils.file_lock``)."""
    import fcntl

    if not lock.is_file():
        return False
    try:
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _size_and_mtime(path: Path) -> tuple[int, float]:
    try:
        st = path.lstat()
    except OSError:
        return 0, 0.0
    if not path.is_dir() or path.is_symlink():
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            try:
                s = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size, newest = size + s.st_size, max(newest, s.st_mtime)
    return size, newest


def _entry(path: Path, kind: str, purpose: str, dataset: str = "", lock: Path | None = None) -> Entry:
    size, mtime = _size_and_mtime(path)
    return Entry(path, kind, size, mtime, purpose, dataset, lock)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".old"))


def _temp_owner(name: str) -> str:
    """``.ml-1m-<key>.ab12cd.tmp`` / ``.ml-1m-<key>.old`` -> ``ml-1m-<key>`` (the entry being written)."""
    stem = name[1:].rsplit(".", 1)[0]
    return stem.rsplit(".", 1)[0] if name.endswith(".tmp") else stem


# ------------------------------------------------------------------------------------------ listing


def _prepared_entries(root: Path) -> list[Entry]:
    out = []
    for p in sorted(root.iterdir()):
        if _is_temp(p.name):
            out.append(
                _entry(
                    p,
                    "temp",
                    f"unfinished write of prepared/{_temp_owner(p.name)}",
                    lock=root / f".{_temp_owner(p.name)}.lock",
                )
            )
        elif p.is_dir() and not p.name.startswith("."):
            manifest = _read_json(p / "manifest.json")
            name = str(manifest.get("name") or p.name.rsplit("-", 1)[0])
            what = f"{manifest.get('split', '?')} split" if manifest else "incomplete: no manifest"
            out.append(_entry(p, "prepared", f"prepared data set {name!r} ({what})", name, root / f".{p.name}.lock"))
    return out


def _feature_entries(root: Path) -> list[Entry]:
    out = []
    for ds in sorted(root.iterdir()):
        if not ds.is_dir() or ds.name == ".locks":
            continue
        for p in sorted(ds.iterdir()):
            final = p.name.removesuffix(".partial")
            lock = root / ".locks" / f"{ds.name}--{final}.lock"
            if _is_temp(p.name):
                out.append(_entry(p, "temp", f"unfinished write in features/{ds.name}", ds.name, lock))
                continue
            ident = _read_json(p / ("identity.json" if p.name.endswith(".partial") else "manifest.json"))
            ident = ident.get("identity", ident)
            desc = f"{ident.get('modality', '?')} {ident.get('what', '?')} features of {ds.name!r}"
            desc += f" ({ident.get('encoder', '?')}, {ident.get('n_rows', '?')} rows)"
            if p.name.endswith(".partial"):
                desc += "; partial, resumed by the next encode"
            out.append(_entry(p, "features", desc, ds.name, lock))
    return out


def _plain_entries(root: Path, kind: str) -> list[Entry]:
    return [
        _entry(
            p,
            "temp" if _is_temp(p.name) else kind,
            "unfinished write" if _is_temp(p.name) else _PURPOSE[kind].format(name=p.name),
            p.name,
        )
        for p in sorted(root.iterdir())
        if not p.name.endswith(".lock")
    ]


def list_entries(home: str | Path | None = None) -> list[Entry]:
    """Every entry of the cache folder, by kind then path."""
    home = Path(home) if home is not None else modalrec_home()
    if not home.is_dir():
        return []
    out: list[Entry] = []
    for top in sorted(home.iterdir()):
        if top.name == "prepared" and top.is_dir():
            out += _prepared_entries(top)
        elif top.name == "features" and top.is_dir():
            out += _feature_entries(top)
        elif top.name in ("raw", "weights", "downloads") and top.is_dir():
            out += _plain_entries(top, "download" if top.name == "downloads" else top.name)
        elif not top.name.startswith("."):
            out.append(_entry(top, "other", _PURPOSE.get(top.name, "not made by this version of modalrec")))
    return out


# ------------------------------------------------------------------------------------------ runs


@dataclass
class RunUses:
    """What a run folder read from the cache, as far as its records tell."""

    texts: set[str]  # every string of its data record and config (prepared keys and folders are among them)
    datasets: set[str]  # data set names
    encoders: set[str] | None  # tower models of its config; None when the config is unreadable

    def uses(self, entry: Entry) -> bool:
        if entry.kind == "prepared":
            key = entry.path.name.rsplit("-", 1)[-1]
            return key in self.texts or any(entry.path.name in t for t in self.texts)
        if entry.kind == "features":
            if _safe(entry.dataset) not in {_safe(d) for d in self.datasets}:
                return False
            ident = _read_json(entry.path / "manifest.json").get("identity") or {}
            return self.encoders is None or not ident.get("encoder") or ident["encoder"] in self.encoders
        return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _strings(obj) -> set[str]:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(_strings(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_strings(v) for v in obj)) if obj else set()
    return set()


def _run_config(run: Path) -> dict:
    cfg = _read_json(run / "config.json")
    if cfg or not (run / "config.yaml").is_file():
        return cfg
    import yaml

    try:
        data = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def run_uses(run: str | Path) -> RunUses:
    """Read what ``run`` uses from its ``dataset.json`` and config (missing or odd fields are skipped)."""
    run = Path(run)
    record, cfg = _read_json(run / "dataset.json"), _run_config(run)
    if not record and not cfg:
        raise CacheError(f"--keep-run {run}: not a run folder (no readable dataset.json or config.json/yaml)")
    names = {record[k].get("name") for k in ("fingerprint", "meta", "summary") if isinstance(record.get(k), dict)}
    data = cfg.get("data")
    data = data if isinstance(data, dict) else {}
    names |= {data.get("dataset")} | set(data.get("extra_sources") or [])
    names = {str(n) for n in names if isinstance(n, str) and n}
    names |= {Path(n).stem for n in names}  # a data-spec YAML or folder: its stem is the default name
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else None
    encoders = (
        None
        if model is None
        else {
            t["model"]
            for t in (model.get("text"), model.get("image"))
            if isinstance(t, dict) and isinstance(t.get("model"), str)
        }
    )
    return RunUses(_strings(record) | _strings(cfg), names, encoders)


# ------------------------------------------------------------------------------------------ pruning


def prune_candidates(
    entries: list[Entry], *, older_than_days: float | None = None, keep_runs=(), now: float | None = None
) -> list[Entry]:
    """Entries to remove: prepared data and features older than ``older_than_days`` and used by none of
    ``keep_runs`` (both filters apply when both are given), and every stale temporary leftover."""
    if older_than_days is None and not keep_runs:
        raise CacheError("prune needs --older-than DAYS and/or --keep-run RUN (nothing is removed otherwise)")
    if older_than_days is not None and older_than_days < 0:
        raise CacheError(f"--older-than {older_than_days}: give a number of days >= 0")
    uses = [run_uses(r) for r in keep_runs]
    now = now or time.time()
    out = []
    for e in entries:
        if e.kind == "temp":
            chosen = e.age_days(now) * 86400 >= STALE_TEMP_SECONDS
        elif e.kind in ("prepared", "features"):
            chosen = (older_than_days is None or e.age_days(now) >= older_than_days) and not any(
                u.uses(e) for u in uses
            )
        else:
            chosen = False
        if chosen and not e.locked():
            out.append(e)
    return out


def remove(entry: Entry) -> None:
    """Delete an entry (and its lock file when no one holds it)."""
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path, ignore_errors=True)
    elif entry.path.exists() or entry.path.is_symlink():
        entry.path.unlink()
    if entry.kind == "prepared" and entry.lock is not None and entry.lock.exists() and not is_locked(entry.lock):
        entry.lock.unlink(missing_ok=True)


def prune(
    home: str | Path | None = None, *, older_than_days: float | None = None, keep_runs=(), dry_run: bool = False
) -> list[Entry]:
    """Remove (or with ``dry_run`` only report) what :func:`prune_candidates` picks; returns those entries."""
    chosen = prune_candidates(list_entries(home), older_than_days=older_than_days, keep_runs=keep_runs)
    if not dry_run:
        for e in chosen:
            remove(e)
    return chosen


def remove_stale_temps(folder: str | Path, min_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete ``.<name>.<random>.tmp`` / ``.<name>.old`` leftovers of ``folder`` untouched for ``min_age``
    seconds whose writer's lock ``.<name>.lock`` is free; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for p in folder.iterdir():
        if not _is_temp(p.name) or is_locked(folder / f".{_temp_owner(p.name)}.lock"):
            continue
        if now - _size_and_mtime(p)[1] >= min_age:
            remove(Entry(p, "temp", 0, 0.0, ""))
            removed.append(p)
    return removed
