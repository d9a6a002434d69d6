"""Beyond-accuracy metrics: hand-computed values, the exact top-k against brute force, segments that add
up to the evaluator's metrics, and `modalrec evaluate --beyond`."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from modalrec.evaluate.beyond import list_metrics, mean_cosine, segment_metrics, top_k_lists
from modalrec.evaluate.ranking import pad_histories


def test_list_metrics_by_hand():
    counts = np.array([0, 10, 0, 5, 1])  # items 1..4
    lists = torch.tensor([[1, 3], [1, 2]])
    orthogonal = torch.eye(5)
    m = list_metrics(lists, counts, orthogonal, 2)
    assert m["coverage@2"] == 3 / 4
    assert m["avg_popularity@2"] == (10 + 5 + 10 + 0) / 4
    info = -np.log2((counts + 1) / (16 + 4))
    assert math.isclose(m["novelty@2"], (info[1] + info[3] + info[1] + info[2]) / 4)
    assert math.isclose(m["diversity@2"], 1.0)
    same = torch.ones(5, 3)
    assert math.isclose(list_metrics(lists, counts, same, 2)["diversity@2"], 0.0, abs_tol=1e-6)


def test_segments_split_at_the_median_and_add_up():
    ranks = np.array([0, 3, 12, 1, 40, 9])
    lengths = np.array([2, 5, 9, 3, 20, 7])
    cold = np.array([True, False, False, True, False, False])
    seg = segment_metrics(ranks, lengths, cold, 10)
    short, long_ = seg["history <= 6"], seg["history > 6"]
    assert short["count"] == 3 and long_["count"] == 3
    assert short["hr@10"] == 1.0 and math.isclose(long_["hr@10"], 1 / 3)
    assert math.isclose(seg["cold targets"]["ndcg@10"], (1 + 1 / math.log2(3)) / 2)
    total = (short["ndcg@10"] * 3 + long_["ndcg@10"] * 3) / 6
    assert math.isclose(total, (seg["cold targets"]["ndcg@10"] * 2 + seg["warm targets"]["ndcg@10"] * 4) / 6)


def test_top_k_lists_are_the_brute_force_top_k(cycle_dataset):
    from tests.conftest import tiny_model

    m = tiny_model("sasrec", cycle_dataset, {}).eval()
    seqset = cycle_dataset.split.test
    lists = top_k_lists(m, seqset, 5, max_len=8, batch_size=3)
    with torch.no_grad():
        hist = pad_histories(seqset.items, seqset.start, seqset.end, 8)
        users = m.user_embeddings({"items": hist, "users": torch.as_tensor(np.asarray(seqset.users))})
        scores = m.score(users, m.item_embeddings(None)).float()
    full = np.zeros((len(seqset), cycle_dataset.n_items + 1), dtype=bool)
    for b in range(len(seqset)):
        full[b, seqset.items[seqset.start[b] : seqset.end[b]]] = True
    scores[torch.from_numpy(full)] = -torch.inf
    scores[:, 0] = -torch.inf
    for b in range(len(seqset)):
        order = sorted(range(1, scores.shape[1]), key=lambda j: (-float(scores[b, j]), j))[:5]
        assert lists[b].tolist() == order


def test_evaluate_beyond_through_the_cli(tmp_path, capsys):
    from modalrec.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(out),
                "--quiet",
                "train.epochs=2",
                "model.hidden_size=16",
                "model.inner_size=32",
                "model.max_len=8",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(out), "--beyond", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    b = res["beyond"]
    assert 0 < b["lists"]["coverage@10"] <= 1 and 0 <= b["lists"]["diversity@10"] <= 2
    assert -1 <= b["catalogue_mean_cosine"] <= 1
    warm = b["segments"]["warm targets"]
    assert warm["count"] == res["count"] and math.isclose(warm["ndcg@10"], res["metrics"]["ndcg@10"], rel_tol=1e-9)
    assert "per_user" not in res


def test_mean_cosine_against_every_pair():
    torch.manual_seed(0)
    v = torch.randn(40, 6, dtype=torch.float64) + torch.tensor(
        [3.0, 0, 0, 0, 0, 0], dtype=torch.float64
    )  # shared direction
    n = torch.nn.functional.normalize(v, dim=-1)
    c = n @ n.T
    brute = float(c[~torch.eye(40, dtype=torch.bool)].mean())
    with_padding = torch.cat([torch.zeros(1, 6, dtype=torch.float64), v])
    assert math.isclose(mean_cosine(with_padding), brute, rel_tol=1e-9)
    assert math.isclose(mean_cosine(torch.ones(5, 3)), 1.0, rel_tol=1e-9)
    assert math.isnan(mean_cosine(torch.ones(1, 3)))
