"""Feature store: per-item tower outputs as memory-mapped fp16 arrays plus a manifest.

Two kinds of features per modality:

- ``pooled``: the whole frozen tower's pooled vector ``[N+1, H]`` (MISSRec, UniSRec, zero-shot);
- ``prefix``: the output of the tower's frozen layers, ``[N+1, T, H]`` token states for text
  (right-padded, real lengths in ``lengths.npy``) or ``[N+1, C, h, w]`` feature maps for images;
  a training step runs only the trainable top on these (PMMRec).

Row 0 is padding (zeros). ``present.npy`` marks rows with content (text non-empty; image read and
decoded). A folder's name hashes everything the values depend on (the *identity*: encoder name,
weights digest, tower settings, layer split, item ids and their content), so changing any of them
selects a new folder: stale features are never reused.

Writing: into ``<folder>.partial`` (memory maps pre-allocated, one marker file per finished chunk
under ``progress/``), then renamed into place, so a reader never sees half a store. Killing an
encoding and rerunning it continues from the finished chunks. Under ``torchrun`` every rank encodes
the chunks ``c`` with ``c % world_size == rank`` and rank 0 finalises.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modalrec.utils import atomic_write_json, bars_on, hash_strings, modalrec_home, replace_dir

FORMAT = 1
DTYPE = "float16"


class FeatureStoreError(RuntimeError):
    pass


@dataclass
class Features:
    """An opened (complete) store. ``values`` is a read-only memory map."""

    folder: Path
    manifest: dict
    values: np.ndarray
    present: np.ndarray
    lengths: np.ndarray | None = None

    @classmethod
    def open(cls, folder: str | Path) -> "Features":
        folder = Path(folder)
        try:
            man = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise FeatureStoreError(f"{folder}: no readable manifest.json ({e})") from e
        if not man.get("complete"):
            raise FeatureStoreError(f"{folder}: the store is not complete; rerun the encoding")
        values = np.load(folder / "values.npy", mmap_mode="r")
        present = np.load(folder / "present.npy")
        lengths = np.load(folder / "lengths.npy") if (folder / "lengths.npy").is_file() else None
        if list(values.shape) != man["shape"] or str(values.dtype) != man["dtype"]:
            raise FeatureStoreError(
                f"{folder}: values.npy is {values.shape} {values.dtype}, the manifest says "
                f"{man['shape']} {man['dtype']}; delete the folder and encode again"
            )
        return cls(folder, man, values, present, lengths)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    def gather(self, rows) -> torch.Tensor:
        """fp16 tensor of the given catalogue rows (any integer array or tensor)."""
        idx = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return torch.from_numpy(np.ascontiguousarray(self.values[idx]))

    def tensor(self) -> torch.Tensor:
        """The whole array as an fp16 tensor (a copy in memory)."""
        return torch.from_numpy(np.array(self.values))

    def summary(self) -> dict:
        return self.manifest.get("summary", {})


# --------------------------------------------------------------------------------------------
# Identity


def items_digest(item_ids, contents) -> str:
    """Digest of the catalogue rows an encoding depends on (ids and the content fed to the tower)."""
    return hash_strings(*(f"{i}\t{c}" for i, c in zip(item_ids, contents)))


def image_contents(reader) -> list[str]:
    """What identifies each row's image: path, size and mtime (or LMDB key + the LMDB's mtime)."""
    out = []
    if reader._env is not None:
        stamp = str(os.stat(reader._env.path()).st_mtime_ns)
        return [f"lmdb:{i}:{stamp}" for i in reader.item_ids]
    for p in reader.paths if reader.paths is not None else [""] * len(reader.item_ids):
        if p:
            try:
                st = os.stat(p)
                out.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                out.append(f"{p}:missing")
        else:
            out.append("")
    return out


def store_folder(dataset: str, identity: dict, root: str | Path | None = None) -> Path:
    root = Path(root) if root else modalrec_home() / "features"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset) or "data"
    key = hash_strings(json.dumps(identity, sort_keys=True))
    return root / safe / f"{identity['modality']}-{identity['what']}-{key}"


# --------------------------------------------------------------------------------------------
# Encoding


@dataclass
class EncodeReport:
    items: int = 0
    encoded_now: int = 0
    missing: int = 0
    corrupt: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False

    def to_dict(self) -> dict:
        return {
            "items": self.items,
            "encoded_now": self.encoded_now,
            "missing": self.missing,
            "corrupt": len(self.corrupt),
            "corrupt_files": self.corrupt[:100],
            "seconds": round(self.seconds, 2),
            "reused": self.reused,
        }


def _text_block(tower, ids: torch.Tensor, mask: torch.Tensor, what: str) -> torch.Tensor:
    """fp16 features of tokenised texts: pooled ``[n, H]`` or the frozen layers' states ``[n, T, H]``."""
    with torch.no_grad():
        h = tower.prefix(ids, mask)
        if what == "pooled":
            h = tower.pool(tower.top(h, mask), mask)
    return h.to(torch.float16)


def _image_block(tower, images_uint8: np.ndarray, what: str) -> torch.Tensor:
    """fp16 features of decoded images ``[n, S, S, 3]``: pooled ``[n, C]`` or the prefix feature maps."""
    with torch.no_grad():
        h = tower.prefix(tower.normalise(torch.from_numpy(np.ascontiguousarray(images_uint8))))
        if what == "pooled":
            h = tower.pool(tower.top(h))
    return h.to(torch.float16)


def text_rows(tower, texts: list[str], what: str = "pooled") -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Features of texts that are not in any store (items added while serving), computed exactly as
    :func:`encode_text` stores them (fp16): ``(values, present [n], lengths [n])``; an empty text is
    absent (zeros, length 0)."""
    texts = [str(t) for t in texts]
    present = np.array([t != "" for t in texts], dtype=bool)
    ids, mask = tower.tokenize([t if t else " " for t in texts])
    lengths = mask.sum(1).to(torch.int32).numpy()
    lengths[~present] = 0
    values = _text_block(tower, ids, mask, what)
    values[torch.from_numpy(~present)] = 0
    return values, present, lengths


def image_rows(tower, images_uint8: np.ndarray | None, present: np.ndarray, what: str = "pooled") -> torch.Tensor:
    """Features of decoded images ``[n, S, S, 3]`` (uint8) as :func:`encode_images` stores them (fp16);
    rows with ``present`` False are zeros."""
    present = np.asarray(present, dtype=bool)
    size = tower.cfg.image_size
    with torch.no_grad():
        probe = _image_block(tower, np.zeros((1, size, size, 3), np.uint8), what)
    out = torch.zeros((len(present), *probe.shape[1:]), dtype=torch.float16)
    if present.any():
        out[torch.from_numpy(present)] = _image_block(tower, np.asarray(images_uint8)[present], what)
    return out


def encode_text(
    tower,
    item_ids,
    texts,
    *,
    dataset: str,
    what: str = "pooled",
    root=None,
    batch_size: int = 64,
    progress: bool = True,
    dist=None,
) -> tuple[Features, EncodeReport]:
    """Encode every catalogue row's text with ``tower`` (:class:`~modalrec.content.text.TextTower`).

    ``what="pooled"``: full tower, pooled ``[N+1, H]``; ``"prefix"``: the frozen layers' token states.
    Texts are processed longest first in chunks of similar length (less padding).
    """
    if what not in ("pooled", "prefix"):
        raise ValueError(f"what must be 'pooled' or 'prefix', not {what!r}")
    texts = np.asarray(texts, dtype=str)
    present = texts != ""
    present[0] = False
    ids, mask = tower.tokenize([t if t else " " for t in texts.tolist()])
    lengths = mask.sum(1).to(torch.int32).numpy()
    lengths[~present] = 0
    identity = {
        "format": FORMAT,
        "modality": "text",
        "what": what,
        **tower.identity(),
        "frozen_layers": tower.n_frozen if what == "prefix" else tower.n_layers,
        "items": items_digest(item_ids, texts),
        "n_rows": len(texts),
        "dtype": DTYPE,
    }
    if what == "pooled":
        shape = [len(texts), tower.hidden_size]
    else:
        shape = [len(texts), int(max(lengths.max(), 1)), tower.hidden_size]
    order = np.argsort(-lengths, kind="stable")
    order = order[present[order]]

    def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = int(lengths[rows].max())
        return _text_block(tower, ids[rows, :t], mask[rows, :t], what).numpy(), np.ones(len(rows), dtype=bool)

    extra = {"lengths": lengths} if what == "prefix" else {}
    return _encode(
        identity,
        shape,
        order,
        run,
        batch_size,
        dataset=dataset,
        root=root,
        progress=progress,
        dist=dist,
        present_hint=present,
        extra=extra,
        desc=f"text {what}",
    )


def encode_images(
    tower,
    reader,
    *,
    dataset: str,
    what: str = "pooled",
    root=None,
    batch_size: int = 32,
    progress: bool = True,
    dist=None,
) -> tuple[Features, EncodeReport]:
    """Encode every catalogue row's image with ``tower`` (:class:`~modalrec.content.image.ImageTower`)."""
    if what not in ("pooled", "prefix"):
        raise ValueError(f"what must be 'pooled' or 'prefix', not {what!r}")
    size = tower.cfg.image_size
    listed = reader.available()
    identity = {
        "format": FORMAT,
        "modality": "image",
        "what": what,
        **tower.identity(),
        "split": tower.split if what == "prefix" else len(tower.backbone.stages),
        "items": items_digest(reader.item_ids, image_contents(reader)),
        "n_rows": len(listed),
        "dtype": DTYPE,
    }
    with torch.no_grad():
        probe = tower.prefix(torch.zeros(1, 3, size, size))
        if what == "pooled":
            probe = tower.pool(tower.top(probe))
    shape = [len(listed), *probe.shape[1:]]
    order = np.flatnonzero(listed)

    def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        imgs, ok = reader.load(rows, size)
        out = np.zeros((len(rows), *shape[1:]), dtype=np.float16)
        if ok.any():
            out[ok] = _image_block(tower, imgs[ok], what).numpy()
        return out, ok

    return _encode(
        identity,
        shape,
        order,
        run,
        batch_size,
        dataset=dataset,
        root=root,
        progress=progress,
        dist=dist,
        present_hint=listed,
        extra={},
        desc=f"image {what}",
        reader=reader,
    )


def _encode(
    identity, shape, order, run, batch_size, *, dataset, root, progress, dist, present_hint, extra, desc, reader=None
) -> tuple[Features, EncodeReport]:
    """Reuse the finished store or encode it; one process at a time per store (a second one waits, then
    reuses what the first wrote). Ranks of one torchrun job share the work instead."""
    from modalrec.core.distributed import DistInfo
    from modalrec.utils import file_lock

    dist = dist or DistInfo()
    kw = dict(
        dataset=dataset,
        root=root,
        progress=progress,
        dist=dist,
        present_hint=present_hint,
        extra=extra,
        desc=desc,
        reader=reader,
    )
    if dist.world_size > 1:
        return _encode_store(identity, shape, order, run, batch_size, **kw)
    final = store_folder(dataset, identity, root)
    lock = final.parent.parent / ".locks" / f"{final.parent.name}--{final.name}.lock"
    with file_lock(lock, wait=True, what=f"the feature store {final}"):  # one writer; others wait, then reuse
        return _encode_store(identity, shape, order, run, batch_size, **kw)


def _encode_store(
    identity, shape, order, run, batch_size, *, dataset, root, progress, dist, present_hint, extra, desc, reader=None
) -> tuple[Features, EncodeReport]:
    from tqdm.auto import tqdm

    from modalrec.core.distributed import barrier

    t0 = time.time()
    final = store_folder(dataset, identity, root)
    report = EncodeReport(items=int(len(present_hint) - 1))
    if (final / "manifest.json").is_file():
        try:
            feats = Features.open(final)
            if feats.manifest.get("identity") == identity:
                report.reused = True
                s = feats.summary()
                report.missing, report.corrupt = s.get("missing", 0), list(s.get("corrupt_files", []))
                report.seconds = time.time() - t0
                return feats, report
        except FeatureStoreError:
            pass
    partial = final.with_name(final.name + ".partial")
    prog = partial / "progress"
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if dist.is_main:
        try:
            same = json.loads((partial / "identity.json").read_text()) == identity
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(partial, ignore_errors=True)
            prog.mkdir(parents=True)
            np.lib.format.open_memmap(partial / "values.npy", mode="w+", dtype=np.float16, shape=tuple(shape)).flush()
            np.lib.format.open_memmap(partial / "present.npy", mode="w+", dtype=np.bool_, shape=(shape[0],)).flush()
            atomic_write_json(partial / "identity.json", identity)
    barrier(dist)
    values = np.load(partial / "values.npy", mmap_mode="r+")
    present = np.load(partial / "present.npy", mmap_mode="r+")
    mine = [c for c in range(len(chunks)) if c % dist.world_size == dist.rank]
    todo = [c for c in mine if not (prog / f"{c}.done").exists()]
    n_done_items = sum(len(chunks[c]) for c in mine) - sum(len(chunks[c]) for c in todo)
    bar = tqdm(
        total=sum(len(chunks[c]) for c in mine),
        initial=n_done_items,
        desc=desc,
        unit="item",
        disable=not bars_on(progress and dist.is_main),
        dynamic_ncols=True,
    )
    for c in todo:
        rows = np.sort(chunks[c])
        out, ok = run(rows)
        if out.shape[1:] == values.shape[1:]:
            values[rows] = out
        else:  # text prefix: this chunk's texts are shorter than the longest of the catalogue
            values[rows, : out.shape[1]] = out
        present[rows] = ok
        values.flush()
        present.flush()
        (prog / f"{c}.done").touch()
        report.encoded_now += len(rows)
        bar.update(len(rows))
    bar.close()
    if reader is not None and reader.corrupt:
        atomic_write_json(partial / f"corrupt.rank{dist.rank}.json", reader.corrupt)
    del values, present
    barrier(dist)
    if dist.is_main:
        missing_chunks = [c for c in range(len(chunks)) if not (prog / f"{c}.done").exists()]
        if missing_chunks:
            raise FeatureStoreError(f"{partial}: chunks {missing_chunks[:10]} were not encoded; rerun to continue")
        corrupt: list[str] = []
        for f in sorted(partial.glob("corrupt.rank*.json")):
            corrupt += json.loads(f.read_text())
        present = np.load(partial / "present.npy")
        for k, v in extra.items():
            np.save(partial / f"{k}.npy", v)
        report.corrupt = corrupt
        report.missing = int(report.items - present[1:].sum())
        report.seconds = time.time() - t0
        manifest = {
            "identity": identity,
            "shape": list(shape),
            "dtype": DTYPE,
            "complete": True,
            "rows": "catalogue rows (row 0 = padding)",
            "summary": report.to_dict(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        shutil.rmtree(prog)
        (partial / "identity.json").unlink()
        atomic_write_json(partial / "manifest.json", manifest)
        replace_dir(partial, final)
    barrier(dist)
    if report.corrupt and dist.is_main:
        warnings.warn(
            f"{len(report.corrupt)} image(s) could not be decoded and count as missing "
            f"(listed in {final / 'manifest.json'})",
            stacklevel=2,
        )
    return Features.open(final), report
