"""Golden tests of exact full ranking: hand-computed ranks, exclusion, ties, chunking, evaluate()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from modalrec.data.dataset import SeqSet
from modalrec.evaluate.metrics import compute_metrics
from modalrec.evaluate.ranking import (
    EvalResult,
    evaluate,
    history_mask,
    pad_histories,
    rank_targets,
)

# --------------------------------------------------------------------------------------------
# rank_targets on a hand-made score matrix (column 0 = padding)

SCORES = torch.tensor(
    [
        # pad  1    2    3    4    5    6
        [9.0, 0.5, 0.2, 0.5, 0.9, 0.5, 0.1],  # target 3: 4 beats it, 1 and 5 tie -> 3
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # target 2: 3,4,5,6 beat it -> 4
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # target 1: 5 ties (padding's tie not counted) -> 5
    ]
)
TARGETS = torch.tensor([3, 2, 1])
HISTORIES = torch.tensor([[0, 1, 4], [2, 5, 5], [0, 0, 3]])  # row 1: target 2 in its history


def test_ranks_without_exclusion_pessimistic_ties():
    assert rank_targets(SCORES, TARGETS).tolist() == [3, 4, 5]


def test_ranks_with_history_exclusion():
    mask = history_mask(HISTORIES, 7)
    assert mask[:, 0].tolist() == [False, False, False]
    assert mask.sum(1).tolist() == [2, 2, 1]
    # row 0: 1 and 4 gone -> only 5 ties; row 1: 5 gone, target 2 still competes -> 3,4,6;
    # row 2: 3 gone -> 2,4,5,6 tie
    assert rank_targets(SCORES, TARGETS, mask).tolist() == [1, 3, 4]
    rows = torch.arange(3).repeat_interleave(3)
    pairs = (rows, HISTORIES.reshape(-1))  # index pairs with padding and duplicates
    assert rank_targets(SCORES, TARGETS, pairs).tolist() == [1, 3, 4]


def test_target_in_history_is_still_ranked():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0]])
    ex = history_mask(torch.tensor([[1, 3, 1]]), 4)
    # target 3 excluded by the history? no: it competes; item 1 is excluded -> only 2 beats it
    assert rank_targets(scores, torch.tensor([3]), ex).tolist() == [1]
    assert rank_targets(scores, torch.tensor([1]), ex).tolist() == [0]


def test_padding_never_counted():
    scores = torch.tensor([[100.0, 1.0, 2.0], [2.0, 2.0, 1.0]])  # padding beats / ties the target
    assert rank_targets(scores, torch.tensor([2, 1])).tolist() == [0, 0]


def test_nan_scores_raise():
    scores = SCORES.clone()
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(scores, TARGETS)


def test_infinite_scores_are_ranked():
    scores = torch.tensor([[0.0, -math.inf, math.inf, 1.0, -math.inf]])
    assert rank_targets(scores, torch.tensor([1])).tolist() == [3]  # pessimistic: ties with 4
    assert rank_targets(scores, torch.tensor([3])).tolist() == [1]


def test_bad_targets_raise():
    with pytest.raises(ValueError, match="padding"):
        rank_targets(SCORES, torch.tensor([0, 1, 2]))


def _brute_force_ranks(scores, targets, histories):
    out = []
    for b in range(scores.shape[0]):
        t = int(targets[b])
        hist = set(histories[b]) - {t}
        out.append(
            sum(1 for j in range(1, scores.shape[1]) if j != t and j not in hist and scores[b, j] >= scores[b, t])
        )
    return out


def test_random_matrix_with_ties_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(-3, 4, (40, 30), generator=g).float()  # many ties
    targets = torch.randint(1, 30, (40,), generator=g)
    hist = torch.randint(0, 30, (40, 6), generator=g)
    expected = _brute_force_ranks(scores, targets, [h.tolist() for h in hist])
    assert rank_targets(scores, targets, history_mask(hist, 30)).tolist() == expected


# --------------------------------------------------------------------------------------------
# pad_histories


def test_pad_histories_left_pads_and_keeps_the_latest():
    flat = np.array([1, 2, 4, 3, 5, 1, 2, 5, 4], dtype=np.int32)
    start = np.array([0, 3, 7, 2])
    end = np.array([2, 6, 8, 2])  # last one empty
    h = pad_histories(flat, start, end, 2)
    assert h.dtype == torch.long
    assert h.tolist() == [[1, 2], [5, 1], [0, 5], [0, 0]]
    assert pad_histories(flat, start, end, 4).tolist() == [[0, 0, 1, 2], [0, 3, 5, 1], [0, 0, 0, 5], [0, 0, 0, 0]]


# --------------------------------------------------------------------------------------------
# evaluate() with a tiny fake model


class LastItemModel(nn.Module):
    """Fixed item matrix; the user vector is the embedding of the last history item.

    Records the width of every item block it is asked to score.
    """

    def __init__(self, emb: torch.Tensor):
        super().__init__()
        self.register_buffer("emb", emb)
        self.n_items = emb.shape[0] - 1
        self.widths: list[int] = []
        self.max_block = 0

    def item_embeddings(self, items=None):
        return self.emb if items is None else self.emb[items]

    def user_embeddings(self, batch):
        return self.emb[batch["items"][:, -1]]

    def score(self, users, items):
        self.widths.append(items.shape[0])
        s = users @ items.T
        self.max_block = max(self.max_block, s.numel())
        return s


EMB = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [0, 2]], dtype=torch.float32)
SEQS = [[1, 2, 4], [3, 5, 1, 2], [5, 4], [4, 3], [1, 5, 1]]  # last item = target


def _seqset(seqs):
    flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs])
    lens = np.array([len(s) for s in seqs])
    off = np.concatenate([[0], np.cumsum(lens)])
    return SeqSet(flat, off[:-1], off[1:] - 1, np.arange(len(seqs), dtype=np.int32), flat[off[1:] - 1])


def test_evaluate_golden_metrics():
    ss = _seqset(SEQS)
    model = LastItemModel(EMB)
    model.train()
    # hand-computed, whole history excluded (example 1: window [5, 1] but 3 is excluded too)
    res = evaluate(model, ss, max_len=2, ks=(2, 5), progress=False, per_user=True, split="test")
    assert model.training  # mode restored
    assert res.per_user["ranks"].tolist() == [2, 1, 3, 1, 3]
    assert res.per_user["targets"].tolist() == [4, 2, 4, 3, 1]
    assert res.per_user["users"].tolist() == [0, 1, 2, 3, 4]
    assert res.count == 5
    m = res.metrics
    assert m["hr@2"] == pytest.approx(2 / 5, rel=1e-15)
    assert m["ndcg@2"] == pytest.approx(2 / math.log2(3) / 5, rel=1e-15)
    assert m["mrr@2"] == pytest.approx(0.2, rel=1e-15)
    assert m["hr@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx((0.5 + 2 / math.log2(3) + 2 / math.log2(5)) / 5, rel=1e-15)
    assert m["mrr@5"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4 + 1 / 2 + 1 / 4) / 5, rel=1e-15)
    p = res.protocol
    assert p["ranking"] == "full" and p["n_items"] == 5 and p["ties"] == "pessimistic"
    assert p["exclude_history"] is True and p["ks"] == [2, 5] and p["max_len"] == 2
    assert p["split"] == "test"
    assert res.cold_metrics is None
    json.dumps(res.to_dict())  # JSON-safe


def test_evaluate_without_exclusion():
    res = evaluate(
        LastItemModel(EMB), _seqset(SEQS), max_len=2, ks=(5,), exclude_history=False, progress=False, per_user=True
    )
    assert res.per_user["ranks"].tolist() == [4, 4, 4, 2, 4]
    assert res.protocol["exclude_history"] is False
    assert res.metrics["hr@5"] == 1.0
    assert res.metrics["mrr@5"] == pytest.approx((4 * 0.2 + 1 / 3) / 5, rel=1e-15)


def test_evaluate_cold_metrics():
    cold = torch.zeros(6, dtype=torch.bool)
    cold[4] = True  # targets [4, 2, 4, 3, 1]: examples 0 and 2 are cold, ranks 2 and 3
    res = evaluate(LastItemModel(EMB), _seqset(SEQS), max_len=2, ks=(2, 5), cold_items=cold, progress=False)
    assert res.cold_count == 2
    assert res.cold_metrics == compute_metrics(torch.tensor([2, 3]), ks=(2, 5))
    assert res.cold_metrics["hr@2"] == 0.0 and res.cold_metrics["hr@5"] == 1.0
    none_cold = evaluate(
        LastItemModel(EMB),
        _seqset(SEQS),
        max_len=2,
        ks=(5,),
        cold_items=torch.zeros(6, dtype=torch.bool),
        progress=False,
    )
    assert none_cold.cold_count == 0 and none_cold.cold_metrics == {}


def _random_case(n_items=97, n_users=60, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randint(-2, 3, (n_items + 1, d), generator=g).float()  # integer: exact, many ties
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, n_items + 1, size=rng.integers(2, 30)).tolist() for _ in range(n_users)]
    return emb, seqs


@pytest.mark.parametrize("exclude", [True, False])
def test_item_chunks_identical_to_unchunked_and_brute_force(exclude):
    emb, seqs = _random_case()
    ss = _seqset(seqs)
    kw = dict(max_len=5, ks=(1, 5, 10), exclude_history=exclude, progress=False, per_user=True)
    ref = evaluate(LastItemModel(emb), ss, batch_size=16, **kw)
    scores = emb[[s[-2] for s in seqs]] @ emb.T
    hist = [s[:-1] if exclude else [] for s in seqs]
    expected = _brute_force_ranks(scores, torch.tensor([s[-1] for s in seqs]), hist)
    assert ref.per_user["ranks"].tolist() == expected
    for chunk, bs in [(1, 7), (7, 16), (32, 60), (97, 5), (98, 16), (500, 16)]:
        res = evaluate(LastItemModel(emb), ss, batch_size=bs, item_chunk=chunk, **kw)
        assert res.per_user["ranks"].tolist() == expected, (chunk, bs)
        assert res.metrics == ref.metrics  # bit-identical


def test_bfloat16_scores_take_the_torch_path():
    emb, seqs = _random_case()
    kw = dict(max_len=5, ks=(1, 5, 10), progress=False, per_user=True)
    ref = evaluate(LastItemModel(emb), _seqset(seqs), **kw)
    for chunk in (0, 13):  # small integers are exact in bfloat16
        res = evaluate(LastItemModel(emb.to(torch.bfloat16)), _seqset(seqs), item_chunk=chunk, **kw)
        assert res.per_user["ranks"].tolist() == ref.per_user["ranks"].tolist()


def test_wide_blocks_fall_back_to_integer_counts(monkeypatch):
    import modalrec.evaluate.scoring as ranking

    emb, seqs = _random_case()
    kw = dict(max_len=5, ks=(1, 5, 10), progress=False, per_user=True)
    ref = evaluate(LastItemModel(emb), _seqset(seqs), **kw)
    monkeypatch.setattr(ranking, "_FLOAT_EXACT", 8)  # float32 counting only for blocks < 8 wide
    for chunk in (0, 5, 9):
        res = evaluate(LastItemModel(emb), _seqset(seqs), item_chunk=chunk, **kw)
        assert res.per_user["ranks"].tolist() == ref.per_user["ranks"].tolist()


def test_item_chunk_bounds_the_score_block():
    emb, seqs = _random_case(n_items=1000, n_users=50)
    model = LastItemModel(emb)
    evaluate(model, _seqset(seqs), max_len=5, batch_size=16, item_chunk=64, progress=False)
    assert max(model.widths) == 64
    assert model.max_block <= 16 * 64
    model = LastItemModel(emb)
    evaluate(model, _seqset(seqs), max_len=5, batch_size=16, progress=False)
    assert max(model.widths) == 1001  # unchunked: the whole catalogue at once


def test_evaluate_nan_raises_and_names_users():
    emb = EMB.clone()
    emb[2] = float("nan")  # item 2's column is NaN for every user
    with pytest.raises(ValueError, match=r"NaN scores for 5 of 5 examples \(first: users \[0, 1, 2, 3, 4\]\)"):
        evaluate(LastItemModel(emb), _seqset(SEQS), max_len=2, ks=(5,), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(LastItemModel(emb), _seqset(SEQS), max_len=2, ks=(5,), item_chunk=2, progress=False)


def test_evaluate_rejects_foreign_targets():
    ss = _seqset(SEQS)
    ss.targets = ss.targets.copy()
    ss.targets[1] = 9
    with pytest.raises(ValueError, match="example 1 has target 9"):
        evaluate(LastItemModel(EMB), ss, max_len=2, progress=False)


def test_eval_result_to_dict():
    r = EvalResult({"hr@10": 0.5}, 2, {"ranking": "full"}, per_user={"ranks": np.array([1, 20])})
    d = r.to_dict()
    assert d["per_user"] == {"ranks": [1, 20]} and d["count"] == 2
    assert "per_user" not in r.to_dict(include_per_user=False)


# --------------------------------------------------------------------------------------------
# distributed: two gloo processes give exactly the single-process result


def _dist_worker(rank, world, store_path, out_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        emb, seqs = _random_case(seed=1)
        cold = torch.zeros(emb.shape[0], dtype=torch.bool)
        cold[::3] = True
        res = evaluate(
            LastItemModel(emb),
            _seqset(seqs),
            max_len=5,
            batch_size=8,
            item_chunk=20,
            per_user=True,
            cold_items=cold,
            progress=False,
            distributed=True,
        )
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(res.to_dict(), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "dist.json"
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    emb, seqs = _random_case(seed=1)
    cold = torch.zeros(emb.shape[0], dtype=torch.bool)
    cold[::3] = True
    single = evaluate(
        LastItemModel(emb),
        _seqset(seqs),
        max_len=5,
        batch_size=8,
        item_chunk=20,
        per_user=True,
        cold_items=cold,
        progress=False,
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(single.to_dict()))
