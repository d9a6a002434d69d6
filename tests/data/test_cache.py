"""The cache folder: listing, pruning by age and by run, stale temp folders removed at the next prepare."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from modalrec.config import DataConfig, InteractionsSpec
from modalrec.data import cache
from modalrec.data.prepare import load_or_prepare
from modalrec.utils import file_lock, modalrec_home

DAY = 86400


def _age(path: Path, days: float) -> None:
    t = time.time() - days * DAY
    for root, dirs, files in os.walk(path):
        for n in files + dirs:
            os.utime(os.path.join(root, n), (t, t))
    os.utime(path, (t, t))


def _make(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    h = modalrec_home()
    _make(h / "prepared" / "ml-1m-aaaa000011112222", {"manifest.json": json.dumps({"name": "ml-1m", "split": "loo"})})
    _make(h / "prepared" / "toy-bbbb000011112222", {"manifest.json": json.dumps({"name": "toy", "split": "cold"})})
    _make(h / "prepared" / ".toy-bbbb000011112222.k3j2l1.tmp", {"arrays.npz": "x"})
    ident = {"modality": "text", "what": "pooled", "encoder": "all-MiniLM-L6-v2", "n_rows": 10}
    _make(h / "features" / "ml-1m" / "text-pooled-cccc", {"manifest.json": json.dumps({"identity": ident})})
    _make(
        h / "features" / "toy" / "image-pooled-dddd.partial",
        {"identity.json": json.dumps({**ident, "modality": "image", "encoder": "efficientnet-lite0"})},
    )
    _make(h / "raw" / "ml-1m", {"ratings.dat": "1::2::3::4\n"})
    _make(h / "downloads", {"pkg.whl": "zip"})
    _make(h / "weights" / "all-MiniLM-L6-v2", {"model.safetensors": "w" * 100})
    return h


def test_list_names_every_entry_with_kind_size_and_purpose(home):
    entries = {e.path.relative_to(home).as_posix(): e for e in cache.list_entries()}
    assert {k: e.kind for k, e in entries.items()} == {
        "prepared/ml-1m-aaaa000011112222": "prepared",
        "prepared/toy-bbbb000011112222": "prepared",
        "prepared/.toy-bbbb000011112222.k3j2l1.tmp": "temp",
        "features/ml-1m/text-pooled-cccc": "features",
        "features/toy/image-pooled-dddd.partial": "features",
        "raw/ml-1m": "raw",
        "downloads/pkg.whl": "download",
        "weights/all-MiniLM-L6-v2": "weights",
    }
    assert entries["weights/all-MiniLM-L6-v2"].size == 100
    assert entries["prepared/toy-bbbb000011112222"].purpose == "prepared data set 'toy' (cold split)"
    assert (
        "text pooled features of 'ml-1m' (all-MiniLM-L6-v2, 10 rows)"
        in entries["features/ml-1m/text-pooled-cccc"].purpose
    )
    assert "partial" in entries["features/toy/image-pooled-dddd.partial"].purpose


def test_prune_older_than_only_touches_rebuildable_entries(home):
    _age(home, 40)
    _age(home / "prepared" / "toy-bbbb000011112222", 1)
    removed = {e.path.relative_to(home).as_posix() for e in cache.prune(older_than_days=30, dry_run=True)}
    assert removed == {
        "prepared/ml-1m-aaaa000011112222",
        "prepared/.toy-bbbb000011112222.k3j2l1.tmp",
        "features/ml-1m/text-pooled-cccc",
        "features/toy/image-pooled-dddd.partial",
    }
    assert (home / "prepared" / "ml-1m-aaaa000011112222").exists()  # a dry run removes nothing
    cache.prune(older_than_days=30)
    left = {e.path.relative_to(home).as_posix() for e in cache.list_entries()}
    assert left == {"prepared/toy-bbbb000011112222", "raw/ml-1m", "downloads/pkg.whl", "weights/all-MiniLM-L6-v2"}


def test_keep_run_keeps_what_the_run_used(home, tmp_path):
    run = _make(
        tmp_path / "run",
        {
            "dataset.json": json.dumps({"meta_key": "aaaa000011112222", "fingerprint": {"name": "ml-1m"}}),
            "config.json": json.dumps({"data": {"dataset": "ml-1m"}, "model": {"text": {"model": "all-MiniLM-L6-v2"}}}),
        },
    )
    removed = {e.path.relative_to(home).as_posix() for e in cache.prune(keep_runs=[run], dry_run=True)}
    assert removed == {"prepared/toy-bbbb000011112222", "features/toy/image-pooled-dddd.partial"}
    # a run without towers uses no features; an odd record is read as far as it goes
    (run / "config.json").write_text(json.dumps({"data": "odd", "model": {"name": "sasrec"}}))
    (run / "dataset.json").write_text(json.dumps({"meta": {"cache_dir": "/x/prepared/ml-1m-aaaa000011112222"}}))
    removed = {e.path.relative_to(home).as_posix() for e in cache.prune(keep_runs=[run], dry_run=True)}
    assert "features/ml-1m/text-pooled-cccc" in removed and "prepared/ml-1m-aaaa000011112222" not in removed
    with pytest.raises(cache.CacheError, match="not a run folder"):
        cache.prune(keep_runs=[tmp_path / "nothing"])


def test_stale_temp_is_removed_at_the_next_prepare_unless_locked_or_fresh(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n" + "".join(f"u,{i},{i}\n" for i in range(5)))
    root = modalrec_home() / "prepared"
    stale = _make(root / ".other-1234.abc.tmp", {"arrays.npz": "half"})
    _age(stale, 1)
    locked = _make(root / ".busy-1234.def.tmp", {"arrays.npz": "half"})
    _age(locked, 1)
    fresh = _make(root / ".new-1234.ghi.tmp", {"arrays.npz": "half"})
    cfg = DataConfig(interactions=InteractionsSpec(path=str(tmp_path / "a.csv")), min_user_inter=0, min_item_inter=0)
    with file_lock(root / ".busy-1234.lock", wait=False, what="test"):
        load_or_prepare(cfg, progress=False)
    assert not stale.exists() and locked.exists() and fresh.exists()
    assert [p.name for p in root.glob("*.lock")] == [".busy-1234.lock"]  # prepare's own lock is gone
