"""The prepared data set: catalogue, chronological sequences as CSR, and splits.

Everything downstream (batches, models, evaluation, serving) reads these types only.

Conventions
-----------
* Item index 0 is padding. Real items are 1..n_items; ``catalogue.item_ids[i]`` is the raw id
  of item index i (``item_ids[0] == "[PAD]"``).
* User index u in 0..n_users-1; ``user_ids[u]`` is the raw id.
* ``SeqSet`` holds sequences as ranges into one flat int32 array: sequence s is
  ``items[start[s]:end[s]]``. Several SeqSets may share the same flat array (the leave-one-out
  train, valid and test sets are all views of the full sequences), so nothing is copied per
  prefix. An evaluation set also has ``targets[s]``: the item to predict after that history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modalrec.utils import atomic_dir

FORMAT_VERSION = 2  # 2: the catalogue keeps raw fields
PAD = "[PAD]"


@dataclass
class Catalogue:
    """Items: raw ids, text, optional image paths, raw fields. Row 0 is padding."""

    item_ids: np.ndarray  # str [N+1]
    text: np.ndarray  # str [N+1]; "" for padding or missing text
    image_paths: np.ndarray | None = None  # str [N+1]; "" = no image
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # raw columns as display text, e.g.
    # "title", "year", "genres" ({} when the items table had none): nothing parses the text back

    def __post_init__(self):
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        self.text = np.asarray(self.text, dtype=str)
        self.fields = {k: np.asarray(v, dtype=str) for k, v in (self.fields or {}).items()}
        bad = [k for k, v in self.fields.items() if len(v) != len(self.item_ids)]
        if bad:
            raise ValueError(f"Catalogue fields {bad} do not have one value per catalogue row")
        if self.image_paths is not None:
            self.image_paths = np.asarray(self.image_paths, dtype=str)
        if len(self.item_ids) == 0 or self.item_ids[0] != PAD:
            raise ValueError("Catalogue row 0 must be the padding item '[PAD]'")
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        """Number of real items (padding excluded)."""
        return len(self.item_ids) - 1

    def index_of(self, raw_id) -> int:
        """Raw item id -> item index (KeyError naming the id if unknown)."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.item_ids.tolist()) if i > 0}
        key = str(raw_id)
        if key not in self._index:
            raise KeyError(f"Unknown item id {raw_id!r}: it is not in this data set's catalogue")
        return self._index[key]

    def indices_of(self, raw_ids) -> np.ndarray:
        return np.array([self.index_of(r) for r in raw_ids], dtype=np.int64)


@dataclass
class SeqSet:
    """Sequences as [start, end) ranges into a shared flat item array (optionally with targets)."""

    items: np.ndarray  # int32 flat array (shared)
    start: np.ndarray  # int64 [S]
    end: np.ndarray  # int64 [S]
    users: np.ndarray  # int32 [S] user index of each sequence
    targets: np.ndarray | None = None  # int32 [S] (evaluation sets only)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start

    def sequence(self, s: int) -> np.ndarray:
        return self.items[self.start[s] : self.end[s]]

    def target_items(self) -> np.ndarray:
        """``targets``, which an evaluation set has; a ValueError for a set without them (training)."""
        if self.targets is None:
            raise ValueError("these sequences have no targets: evaluate a validation or test split, not training")
        return self.targets

    def subset(self, mask_or_idx) -> "SeqSet":
        idx = np.asarray(mask_or_idx)
        return SeqSet(
            self.items,
            self.start[idx],
            self.end[idx],
            self.users[idx],
            None if self.targets is None else self.targets[idx],
        )


@dataclass
class Split:
    """How the sequences are used: training sequences and validation/test examples."""

    kind: str  # loo | time | cold
    train: SeqSet  # training sequences (every position after the first is a target)
    valid: SeqSet  # histories + targets
    test: SeqSet  # histories + targets


@dataclass
class PreparedDataset:
    name: str
    catalogue: Catalogue
    user_ids: np.ndarray  # str [U]
    offsets: np.ndarray  # int64 [U+1]: user u's full sequence is items[offsets[u]:offsets[u+1]]
    items: np.ndarray  # int32 [nnz], chronological per user
    timestamps: np.ndarray  # int64 [nnz], aligned with items
    split: Split
    meta: dict = field(default_factory=dict)  # options, cache key, statistics, source files

    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def train_item_counts(self) -> np.ndarray:
        """int64 [N+1]: how often each item occurs in the training sequences (padding = 0)."""
        tr = self.split.train
        idx = _ranges_to_index(tr.start, tr.end)
        counts = np.bincount(tr.items[idx], minlength=self.n_items + 1).astype(np.int64)
        counts[0] = 0
        return counts

    def seen_in_train(self) -> np.ndarray:
        """bool [N+1]: items that occur anywhere in the training sequences."""
        return self.train_item_counts() > 0

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write atomically to a folder: ``arrays.npz`` + ``manifest.json``."""
        arrays: dict = {  # not dict[str, ndarray]: np.savez's stub would match it to its allow_pickle
            "item_ids": self.catalogue.item_ids,
            "text": self.catalogue.text,
            "user_ids": np.asarray(self.user_ids, dtype=str),
            "offsets": self.offsets,
            "items": self.items,
            "timestamps": self.timestamps,
        }
        if self.catalogue.image_paths is not None:
            arrays["image_paths"] = self.catalogue.image_paths
        arrays.update({f"field__{k}": v for k, v in self.catalogue.fields.items()})
        # split sets share flat arrays (the full one, or e.g. the cold split's warm-only one):
        # each distinct array is stored once and the sets record which one they use
        sources: dict[int, str] = {id(self.items): "items"}
        uses = {}
        for name in ("train", "valid", "test"):
            s: SeqSet = getattr(self.split, name)
            if id(s.items) not in sources:
                sources[id(s.items)] = f"{name}_items"
                arrays[f"{name}_items"] = s.items
            uses[name] = sources[id(s.items)]
            arrays[f"{name}_start"] = s.start
            arrays[f"{name}_end"] = s.end
            arrays[f"{name}_users"] = s.users
            if s.targets is not None:
                arrays[f"{name}_targets"] = s.targets
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "split": self.split.kind,
            "split_arrays": uses,
            "meta": self.meta,
        }
        with atomic_dir(path) as tmp:
            np.savez(tmp / "arrays.npz", **arrays)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PreparedDataset":
        path = Path(path)
        man_path = path / "manifest.json"
        if not man_path.is_file():
            raise FileNotFoundError(f"{path} is not a prepared data set (no manifest.json)")
        manifest = json.loads(man_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: prepared with format {manifest.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}; delete the folder to rebuild it"
            )
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        cat = Catalogue(
            a["item_ids"],
            a["text"],
            a.get("image_paths"),
            {k[len("field__") :]: v for k, v in a.items() if k.startswith("field__")},
        )
        sets = {}
        uses = manifest.get("split_arrays", {})
        for name in ("train", "valid", "test"):
            sets[name] = SeqSet(
                a[uses.get(name, f"{name}_items" if f"{name}_items" in a else "items")],
                a[f"{name}_start"],
                a[f"{name}_end"],
                a[f"{name}_users"],
                a.get(f"{name}_targets"),
            )
        split = Split(manifest["split"], sets["train"], sets["valid"], sets["test"])
        return cls(
            manifest["name"],
            cat,
            a["user_ids"],
            a["offsets"],
            a["items"],
            a["timestamps"],
            split,
            manifest.get("meta", {}),
        )

    def summary(self) -> dict:
        lens = np.diff(self.offsets)
        sp = self.split
        return {
            "name": self.name,
            "users": int(self.n_users),
            "items": int(self.n_items),
            "interactions": int(len(self.items)),
            "density": float(len(self.items) / max(1, self.n_users * self.n_items)),
            "seq_len_median": float(np.median(lens)) if len(lens) else 0.0,
            "seq_len_mean": float(lens.mean()) if len(lens) else 0.0,
            "split": sp.kind,
            "train_sequences": int(len(sp.train)),
            "train_targets": int(np.maximum(sp.train.lengths - 1, 0).sum()),
            "valid_examples": int(len(sp.valid)),
            "test_examples": int(len(sp.test)),
            "items_with_image": int((self.catalogue.image_paths != "").sum())
            if self.catalogue.image_paths is not None
            else 0,
        }


def _ranges_to_index(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(start[i], end[i])`` for all i, vectorised."""
    lens = (end - start).astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    rep_start = np.repeat(start.astype(np.int64), lens)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return rep_start + within


ranges_to_index = _ranges_to_index
