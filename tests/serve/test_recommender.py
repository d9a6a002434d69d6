"""The Recommender API: recommendations, new items without retraining, similar items, batch files."""

import json
import threading

import numpy as np
import pytest
import torch

from modalrec.serve.recommender import (
    Recommender,
    RequestError,
    UnknownItemError,
    UnsupportedError,
)

CONTENT_MODELS = ("pmmrec", "missrec", "unisrec")


def _content_of(rec, item_id):
    """The raw content of a catalogue item as a new-item record (text and, if any, its image bytes)."""
    row = {"text": rec.item(item_id).text}
    img = rec.item_image(item_id)
    if img is not None:
        row["image"] = img
    return row


@pytest.mark.parametrize("name", ["pop", "sasrec", *CONTENT_MODELS])
def test_every_model_recommends(served_runs, name):
    rec = Recommender.load(served_runs[name])
    hist = [rec._ids[1], rec._ids[2], rec._ids[3]]
    out = rec.recommend(hist, k=5)
    assert len(out) == 5
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
    assert not {r.item_id for r in out} & set(hist)  # seen items excluded by default
    # the same ranking as the model's own full scoring
    with torch.no_grad():
        items = rec.model.item_embeddings(None)
        users = rec.model.user_embeddings({"items": rec._left_pad([[1, 2, 3]])})
        s = rec.model.score(users, items)[0].float()
    s[[0, 1, 2, 3]] = float("-inf")
    top = torch.topk(s, 5)
    # same top scores; items may differ only inside ties (Pop has many equal counts)
    assert np.allclose([r.score for r in out], top.values.numpy(), rtol=1e-4, atol=1e-5)
    row = {iid: i for i, iid in enumerate(rec._ids)}
    got = torch.tensor([row[r.item_id] for r in out])
    assert np.allclose(s[got].numpy(), [r.score for r in out], rtol=1e-4, atol=1e-5)


def test_history_errors(served_runs):
    rec = Recommender.load(served_runs["sasrec"])
    with pytest.raises(RequestError, match="empty"):
        rec.recommend([])
    with pytest.raises(UnknownItemError, match="'nope'") as e:
        rec.recommend([rec._ids[1], "nope", "nada"])
    assert e.value.item_ids == ["nope", "nada"] and e.value.status == 404
    with pytest.raises(RequestError, match="k=0"):
        rec.recommend([rec._ids[1]], k=0)
    with pytest.raises(RequestError, match="between 1 and"):
        rec.recommend([rec._ids[1]], k=rec.n_items + 1)


def test_id_models_say_what_they_cannot_do(served_runs):
    rec = Recommender.load(served_runs["sasrec"])
    with pytest.raises(UnsupportedError, match="ID embedding"):
        rec.add_items([{"item_id": "new-1", "text": "a brand new thing"}])
    with pytest.raises(UnsupportedError, match="never saw"):
        rec.recommend([{"text": "something unseen"}])
    assert rec.n_items == len(rec.dataset.catalogue)  # nothing half-added


@pytest.mark.parametrize("name", CONTENT_MODELS)
def test_added_item_gets_the_vector_it_would_have_in_the_catalogue(served_runs, name):
    rec = Recommender.load(served_runs[name])
    n0 = rec.n_items
    with torch.no_grad():
        before = rec.model.item_embeddings(None).clone()
    src = rec._ids[5]
    ids = rec.add_items([{"item_id": "copy-of-5", **_content_of(rec, src)}])
    assert ids == ["copy-of-5"] and rec.n_items == n0 + 1 and rec.item("copy-of-5").is_new
    with torch.no_grad():
        after = rec.model.item_embeddings(None)
    assert torch.equal(after[: n0 + 1], before)  # old items untouched
    # same content -> (up to fp16 rounding of the frozen features and padding) the same vector
    assert torch.allclose(after[n0 + 1], after[5], atol=2e-3, rtol=1e-3)
    # ... so it is scored like the original: recommending with the original included ranks them together
    hist = [rec._ids[1], rec._ids[2]]
    out = rec.recommend(hist, k=rec.n_items - 2)
    pos = {r.item_id: i for i, r in enumerate(out)}
    assert abs(pos["copy-of-5"] - pos[src]) <= 1


@pytest.mark.parametrize("name", CONTENT_MODELS)
def test_raw_content_in_a_history_equals_the_catalogue_item(served_runs, name):
    rec = Recommender.load(served_runs[name])
    n0 = rec.n_items
    by_id = rec.recommend([rec._ids[1], rec._ids[7]], k=5, exclude_seen=False)
    by_content = rec.recommend([rec._ids[1], _content_of(rec, rec._ids[7])], k=5, exclude_seen=False)
    assert [r.item_id for r in by_content] == [r.item_id for r in by_id]
    assert np.allclose([r.score for r in by_content], [r.score for r in by_id], atol=1e-2)
    assert rec.n_items == n0 and rec.model.n_items == n0  # the borrowed row is gone again


def test_add_items_validation_is_all_or_nothing(served_runs):
    rec = Recommender.load(served_runs["pmmrec"])
    n0 = rec.n_items
    with pytest.raises(RequestError, match="already in the catalogue"):
        rec.add_items([{"item_id": "ok-1", "text": "fine"}, {"item_id": rec._ids[1], "text": "clash"}])
    with pytest.raises(RequestError, match="given twice"):
        rec.add_items([{"item_id": "x", "text": "a"}, {"item_id": "x", "text": "b"}])
    with pytest.raises(RequestError, match="'item_id' is missing"):
        rec.add_items([{"text": "no id"}])
    with pytest.raises(RequestError, match="content needs a non-empty"):
        rec.add_items([{"item_id": "empty"}])
    with pytest.raises(RequestError, match="cannot be decoded"):
        rec.add_items([{"item_id": "bad-img", "text": "t", "image": b"not an image"}])
    assert rec.n_items == n0 == rec.model.n_items
    with pytest.raises(UnknownItemError):
        rec.item("ok-1")


def test_new_item_is_recommendable_and_searchable(served_runs):
    rec = Recommender.load(served_runs["pmmrec"])
    rec.add_items([{"item_id": "fresh", "text": "a completely fresh item"}])
    assert [i.item_id for i in rec.search("completely fresh")] == ["fresh"]
    out = rec.recommend([rec._ids[1]], k=3, include=["fresh", rec._ids[2]])
    assert {r.item_id for r in out} == {"fresh", rec._ids[2]}
    assert [r for r in out if r.item_id == "fresh"][0].is_new
    only_new = rec.recommend([rec._ids[1]], k=1, filter=lambda info: info.is_new)
    assert [r.item_id for r in only_new] == ["fresh"]
    out = rec.recommend([rec._ids[1]], k=rec.n_items - 1, exclude=["fresh"])
    assert "fresh" not in {r.item_id for r in out}


def test_similar_items(served_runs):
    rec = Recommender.load(served_runs["pmmrec"])
    src = rec._ids[4]
    rec.add_items([{"item_id": "twin", **_content_of(rec, src)}])
    sim = rec.similar_items(src, k=3)
    assert sim[0].item_id == "twin" and sim[0].score == pytest.approx(1.0, abs=1e-3)
    assert src not in {r.item_id for r in sim}
    assert rec.similar_items({"text": rec.item(src).text, "image": rec.item_image(src)}, k=2)[0].item_id in (
        src,
        "twin",
    )


def test_recommend_file(served_runs, tmp_path):
    rec = Recommender.load(served_runs["sasrec"])
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"user": "u1", "history": [rec._ids[1], rec._ids[2]]})
        + "\n\n"
        + json.dumps({"user": "u2", "history": [rec._ids[3]]})
        + "\n"
    )
    out = tmp_path / "out" / "recs.jsonl"
    assert rec.recommend_file(inp, out, k=4) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["user"] for x in lines] == ["u1", "u2"]
    assert [r.item_id for r in rec.recommend([rec._ids[3]], k=4)] == lines[1]["items"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user": "u1", "history": [rec._ids[1]]}) + "\n" + '{"user": "u2", "history": ["zz"]}\n')
    target = tmp_path / "kept.jsonl"
    target.write_text("previous results\n")
    with pytest.raises(RequestError, match="record 2 .*'zz'"):
        rec.recommend_file(bad, target)
    assert target.read_text() == "previous results\n"  # nothing half-written
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(RequestError, match="line 1: not valid JSON"):
        rec.recommend_file(tmp_path / "broken.jsonl", target)


def test_adding_while_recommending_is_safe(served_runs):
    rec = Recommender.load(served_runs["pmmrec"])
    n0, errors = rec.n_items, []

    def add(t):
        try:
            for j in range(5):
                rec.add_items([{"item_id": f"t{t}-{j}", "text": f"thread {t} item {j}"}])
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    def ask():
        try:
            for _ in range(10):
                out = rec.recommend([rec._ids[1], rec._ids[2]], k=5)
                assert len(out) == 5
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=add, args=(t,)) for t in range(2)] + [
        threading.Thread(target=ask) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rec.n_items == n0 + 10 == rec.model.n_items == len(rec.index)


def test_faiss_index_is_tuned_on_validation_users(served_runs):
    pytest.importorskip("faiss")
    rec = Recommender.load(served_runs["sasrec"], index="ivf", nprobe=1)
    info = rec.index_info
    assert info["kind"] == "ivf" and info["recall@10"] >= 0.95 and rec.index.recall["target"] == 0.95
    assert info["nprobe"] > 1 or info["nlist"] == 1  # raised from 1 unless one list is everything
    exact = Recommender.load(served_runs["sasrec"], index="exact")
    assert exact.index_info == {"kind": "exact"}
