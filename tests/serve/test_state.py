"""Validated state: nothing non-finite enters the index, a failed add changes nothing, and the model
lock is free while request content is encoded (one slow request never stalls the others)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from modalrec.serve.recommender import Recommender, RequestError


def test_non_finite_vectors_are_refused_and_nothing_changes(served_runs):
    rec = Recommender.load(served_runs["sasrec"])
    before = rec.n_items
    hist = [rec._ids[1], rec._ids[2]]
    want = [r.item_id for r in rec.recommend(hist, k=5)]
    width = rec.index.items.shape[1]
    for bad in (np.nan, np.inf):
        vec = np.zeros((2, width), np.float32)
        vec[1, 3] = bad
        with pytest.raises(RequestError, match="row 1 holds NaN or infinite"):
            rec.add_vectors(["v1", "v2"], vec)
    with pytest.raises(RequestError, match="numbers"):
        rec.add_vectors(["v1"], [["a"] * width])
    with pytest.raises(RequestError, match="non-empty"):
        rec.add_vectors([" "], np.zeros((1, width), np.float32))
    assert rec.n_items == before
    assert [r.item_id for r in rec.recommend(hist, k=5)] == want


@pytest.mark.parametrize("call", ["add_items", "recommend", "similar_items"])
def test_the_model_lock_is_free_while_content_is_encoded(served_runs, monkeypatch, call):
    import modalrec.content.features as features

    rec = Recommender.load(served_runs["unisrec"])
    free, compute = [], features.new_item_features

    def spy(needs, items):
        t = threading.Thread(target=lambda: free.append(rec._lock.acquire(timeout=5) and (rec._lock.release() or True)))
        t.start()
        t.join()
        return compute(needs, items)

    monkeypatch.setattr(features, "new_item_features", spy)
    content = {"text": "a film about bees"}
    if call == "add_items":
        rec.add_items([{"item_id": "bees", **content}])
    elif call == "recommend":
        rec.recommend([rec._ids[1], content], k=3)
    else:
        rec.similar_items(content, k=3)
    assert free == [True]  # another thread could take the lock during the encoding
