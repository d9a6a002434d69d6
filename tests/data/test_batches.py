import numpy as np

from modalrec.data.batches import WindowDataset, gather_windows, train_loader, training_windows
from modalrec.data.dataset import SeqSet


def _set(seqs):
    lens = np.array([len(s) for s in seqs])
    off = np.concatenate([[0], np.cumsum(lens)])
    items = np.concatenate([np.array(s, dtype=np.int32) for s in seqs])
    return SeqSet(items, off[:-1], off[1:], np.arange(len(seqs), dtype=np.int32))


def test_every_target_is_trained_exactly_once():
    seqs = [list(range(1, 12)), [5, 6], [7], list(range(20, 24))]
    ts = _set(seqs)
    ws, we, _ = training_windows(ts, max_len=4)
    inputs, targets = gather_windows(ts.items, ws, we, 4)
    pairs = sorted((int(a), int(b)) for a, b in zip(inputs.ravel(), targets.ravel()) if b != 0)
    expected = sorted((s[i], s[i + 1]) for s in seqs for i in range(len(s) - 1))
    assert pairs == expected  # nothing lost to truncation, nothing duplicated


def test_windows_of_a_long_sequence_are_cut_from_the_end():
    ts = _set([list(range(1, 12))])  # 11 items -> 10 targets, windows of 4: 4, 4, 2
    ws, we, _ = training_windows(ts, 4)
    inputs, targets = gather_windows(ts.items, ws, we, 4)
    assert inputs.tolist() == [[7, 8, 9, 10], [3, 4, 5, 6], [0, 0, 1, 2]]
    assert targets.tolist() == [[8, 9, 10, 11], [4, 5, 6, 7], [0, 0, 2, 3]]


def test_windows_are_views_not_copies():
    ts = _set([list(range(1, 30))] * 3)
    ds = WindowDataset(ts, 8)
    assert ds.items is ts.items
    assert ds.win_start.dtype == np.int64 and len(ds) == 3 * 4


def test_loader_order_depends_only_on_seed_and_epoch():
    ts = _set([list(range(1, 10 + k)) for k in range(30)])

    def epoch_batches(epoch):
        loader, sampler = train_loader(ts, 5, 7, seed=3)
        sampler.set_epoch(epoch)
        return [b["items"].tolist() for b in loader]

    assert epoch_batches(2) == epoch_batches(2)
    assert epoch_batches(1) != epoch_batches(2)


def test_ranks_partition_the_windows():
    ts = _set([list(range(1, 10 + k)) for k in range(11)])
    seen = []
    for rank in range(2):
        loader, sampler = train_loader(ts, 4, 3, seed=0, rank=rank, world_size=2)
        sampler.set_epoch(0)
        seen += [i for batch_idx in loader.sampler for i in batch_idx]
    n_windows = len(loader.dataset)
    # DistributedSampler pads to an even split: every window appears, at most one repeated
    assert set(seen) == set(range(n_windows)) and len(seen) in (n_windows, n_windows + 1)


def test_strided_windows_add_context_and_train_each_target_once():
    seqs = [list(range(1, 12)), [5, 6], list(range(20, 27))]
    ts = _set(seqs)
    ws, we, tg = training_windows(ts, max_len=4, stride=2)
    inputs, targets = gather_windows(ts.items, ws, we, 4, tg)
    pairs = sorted((int(a), int(b)) for a, b in zip(inputs.ravel(), targets.ravel()) if b != 0)
    assert pairs == sorted((s[i], s[i + 1]) for s in seqs for i in range(len(s) - 1))
    # first sequence (11 items, 10 targets): windows of 4 inputs, the last 2 of them trained
    assert inputs[0].tolist() == [7, 8, 9, 10] and targets[0].tolist() == [0, 0, 10, 11]
    assert inputs[1].tolist() == [5, 6, 7, 8] and targets[1].tolist() == [0, 0, 8, 9]
    assert inputs[4].tolist() == [0, 0, 1, 2] and targets[4].tolist() == [0, 0, 2, 3]
