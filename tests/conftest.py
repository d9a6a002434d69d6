"""Shared fixtures: tiny in-memory data sets and an isolated cache folder."""

from __future__ import annotations

import numpy as np
import pytest

from modalrec.data.dataset import PAD, Catalogue, PreparedDataset, SeqSet, Split


def make_loo_dataset(sequences: list[list[int]], n_items: int, name: str = "tiny") -> PreparedDataset:
    """A leave-one-out PreparedDataset from explicit item-index sequences (each >= 3 long)."""
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences])
    users = np.arange(len(sequences), dtype=np.int32)
    start, end = offsets[:-1], offsets[1:]
    train = SeqSet(items, start, end - 2, users)
    valid = SeqSet(items, start, end - 2, users, items[end - 2])
    test = SeqSet(items, start, end - 1, users, items[end - 1])
    cat = Catalogue(
        np.array([PAD] + [str(i) for i in range(1, n_items + 1)]),
        np.array([""] + [f"item {i}" for i in range(1, n_items + 1)]),
    )
    return PreparedDataset(
        name, cat, np.array([f"u{u}" for u in users]), offsets, items,
        np.arange(len(items), dtype=np.int64), Split("loo", train, valid, test), {"key": name},
    )


@pytest.fixture
def cycle_dataset() -> PreparedDataset:
    """60 users walking a ring of 20 items (next = current + step), learnable by an ID model."""
    rng = np.random.default_rng(0)
    n_items, seqs = 20, []
    for u in range(60):
        start, step, length = rng.integers(1, n_items + 1), 1 + u % 2, rng.integers(6, 15)
        seqs.append([int((start - 1 + k * step) % n_items + 1) for k in range(length)])
    return make_loo_dataset(seqs, n_items, "cycle")


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path_factory, monkeypatch):
    """Every test gets its own MODALREC_HOME, except tests marked ``builtin``, which use the real
    cache so the MovieLens downloads happen once per machine."""
    if request.node.get_closest_marker("builtin"):
        return
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("home")))
