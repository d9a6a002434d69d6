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


BAD_CALLS = {
    "genres=5": lambda r: r.add_items([{"item_id": "g", "title": "T", "genres": 5}]),
    "lone surrogate": lambda r: r.add_items([{"item_id": "s", "title": "bad \ud800 title"}]),
    "empty title": lambda r: r.add_items([{"item_id": "e", "title": ""}]),
    "None title": lambda r: r.add_items([{"item_id": "n", "title": None}]),
    "blank title": lambda r: r.add_items([{"item_id": "w", "title": "   "}]),
    "NaN item id": lambda r: r.add_items([{"item_id": float("nan"), "title": "T"}]),
    "year abc": lambda r: r.add_items([{"item_id": "y", "title": "T", "year": "abc"}]),
    "filter='x'": lambda r: r.recommend([r._ids[1]], k=3, filter="x"),
    "batch_size=0": lambda r: r.recommend_batch([[r._ids[1]]], k=3, batch_size=0),
    "search limit '5'": lambda r: r.search("a", limit="5"),
    "include 'abc'": lambda r: r.recommend([r._ids[1]], k=3, include="abc"),
    "k=True": lambda r: r.recommend([r._ids[1]], k=True),
    "history content genres dict": lambda r: r.recommend([{"title": "T", "genres": {"a": 1}}], k=3),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_python_api_calls_raise_the_librarys_error_and_change_nothing(case, served_runs):
    rec = Recommender.load(served_runs["unisrec"])
    n = rec.n_items
    with pytest.raises(RequestError) as info:
        BAD_CALLS[case](rec)
    assert str(info.value)  # a message, naming the problem
    assert rec.n_items == n
