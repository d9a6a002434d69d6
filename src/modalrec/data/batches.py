"""Training batches: windows over the CSR sequences, gathered in one vectorised step.

A training sequence of n items gives n-1 next-item targets. A sequence longer than the model's
window L is cut into consecutive windows of at most L targets, counted back from its end, so
every target is trained on (never only the last window). A window is two integers into the flat
item array; a batch is built by one fancy-indexing gather, left-padded with 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from modalrec.data.dataset import SeqSet


def training_windows(train: SeqSet, max_len: int, stride: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over input positions: (win_start, win_end, tgt_start), absolute indices into ``train.items``.

    Window w takes inputs ``items[win_start[w]:win_end[w]]`` (at most ``max_len``) and is trained on
    the next items of inputs ``[tgt_start[w], win_end[w])``. Target ranges tile each sequence from
    its end backwards in steps of ``stride`` (0 = ``max_len``), so every target is trained exactly
    once; with ``stride < max_len`` each window also carries up to ``max_len - stride`` earlier
    items as context only, so no target is predicted from a short, cut-off history.
    """
    if max_len <= 0:
        raise ValueError("max_len must be positive")
    stride = max_len if stride <= 0 else min(stride, max_len)
    n_inputs = np.maximum(train.lengths - 1, 0).astype(np.int64)  # positions with a next item
    n_win = -(-n_inputs // stride)  # ceil
    seq = np.repeat(np.arange(len(train), dtype=np.int64), n_win)
    k = np.arange(len(seq), dtype=np.int64) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    rel_end = n_inputs[seq] - k * stride
    base = train.start[seq].astype(np.int64)
    return base + np.maximum(rel_end - max_len, 0), base + rel_end, base + np.maximum(rel_end - stride, 0)


def gather_windows(
    items: np.ndarray, win_start: np.ndarray, win_end: np.ndarray, max_len: int, tgt_start: np.ndarray | None = None
):
    """Left-padded inputs and targets [B, max_len] for the given windows (int64 numpy).

    Targets are 0 (no loss) at padding and at context-only positions before ``tgt_start``.
    """
    idx = win_end[:, None] - max_len + np.arange(max_len)[None, :]
    valid = idx >= win_start[:, None]
    safe = np.where(valid, idx, 0)
    inputs = np.where(valid, items[safe], 0)
    has_target = valid if tgt_start is None else valid & (idx >= tgt_start[:, None])
    targets = np.where(has_target, items[safe + 1], 0)
    return inputs.astype(np.int64), targets.astype(np.int64)


class WindowDataset(Dataset):
    """Index = window number; ``__getitem__`` with a list of indices returns a whole batch."""

    def __init__(self, train: SeqSet, max_len: int, stride: int = 0):
        self.items = train.items
        self.max_len = max_len
        self.win_start, self.win_end, self.tgt_start = training_windows(train, max_len, stride)
        stride = max_len if stride <= 0 else min(stride, max_len)
        self.users = np.repeat(train.users, -(-np.maximum(train.lengths - 1, 0) // stride))

    def __len__(self) -> int:
        return len(self.win_start)

    def __getitem__(self, idx):
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        inputs, targets = gather_windows(
            self.items, self.win_start[idx], self.win_end[idx], self.max_len, self.tgt_start[idx]
        )
        return {
            "items": torch.from_numpy(inputs),
            "targets": torch.from_numpy(targets),
            "users": torch.from_numpy(self.users[idx].astype(np.int64)),
        }


def train_loader(
    train: SeqSet, max_len: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, stride: int = 0
) -> tuple[DataLoader, DistributedSampler]:
    """A loader whose order depends only on (seed, epoch): call ``sampler.set_epoch(e)``.

    The same DistributedSampler serves one process (world_size=1) and torchrun ranks, so a
    resumed run sees exactly the batches an uninterrupted one would.
    """
    ds = WindowDataset(train, max_len, stride)
    if len(ds) == 0:
        raise ValueError("no training targets: every training sequence has fewer than 2 items")
    sampler: DistributedSampler[int] = DistributedSampler(
        ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    loader = DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)
    return loader, sampler


class MultiDomainLoader:
    """Batches from several domains' loaders, interleaved in an order fixed by (seed, epoch).

    Every batch comes from one domain (its items index that domain's catalogue) and carries
    ``batch["domain"]`` (0-d int64 tensor). Behaves like a loader plus sampler: ``len()``,
    iteration, ``set_epoch(e)``. All ranks under torchrun draw the same domain schedule.
    """

    def __init__(self, loaders: list, samplers: list, seed: int):
        self.loaders, self.samplers, self.seed = loaders, samplers, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for s in self.samplers:
            s.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(len(ld) for ld in self.loaders)

    def schedule(self) -> np.ndarray:
        order = np.concatenate([np.full(len(ld), k, dtype=np.int64) for k, ld in enumerate(self.loaders)])
        return np.random.default_rng([self.seed, self.epoch, 7919]).permutation(order)

    def __iter__(self):
        its = [iter(ld) for ld in self.loaders]
        for k in self.schedule():
            batch = next(its[k])
            batch["domain"] = torch.tensor(int(k))
            yield batch
