"""Items added to a served run: display fields, duplicates, removal, and the journal that keeps them."""

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from modalrec.serve.added import AddedItems  # noqa: E402
from modalrec.serve.app import create_app  # noqa: E402
from modalrec.serve.recommender import Recommender, UnknownItemError, UnsupportedError  # noqa: E402

HEAT = {"item_id": "new-heat", "title": "Heat", "year": 1995, "genres": ["Action", "Crime"]}


def _png(seed: int = 0) -> bytes:
    from modalrec.datasets.builtin import png_bytes

    return png_bytes(np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8))


@pytest.fixture
def run_copy(served_runs, tmp_path, monkeypatch):
    """A private copy of the served pmmrec run (the journal writes into the run folder)."""
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "home"))
    dst = tmp_path / "run"
    shutil.copytree(served_runs["pmmrec"], dst, ignore=shutil.ignore_patterns("added"))
    return dst


def test_added_item_shows_its_own_fields(run_copy):
    rec = Recommender.load(run_copy)
    rec.add_items([HEAT])
    info = rec.item("new-heat")
    assert (info.title, info.year, info.genres, info.is_new) == ("Heat", "1995", "Action, Crime", True)
    old = rec.item(rec.dataset.catalogue.item_ids[1])
    assert old.title  # the catalogue's title field, or its text when it has none
    assert rec.recommend([HEAT["item_id"]], k=3)[0].title


def test_a_saved_recommender_keeps_the_catalogue_fields(run_copy):
    rec = Recommender.load(run_copy)
    fields = {k: v.tolist() for k, v in rec.dataset.catalogue.fields.items()}
    assert "title" in fields
    rec.add_items([HEAT])
    saved = Recommender.load(rec.save(run_copy.parent / "saved")).dataset.catalogue
    assert {k: v.tolist() for k, v in saved.fields.items()} == {k: v + [""] for k, v in fields.items()}
    assert saved.item_ids[-1] == "new-heat"


def test_same_content_names_the_existing_item(run_copy):
    rec = Recommender.load(run_copy)
    cat = rec.dataset.catalogue
    twin = {"item_id": "twin", "text": "  " + cat.text[3].upper() + " "}  # case and spaces ignored
    assert rec.same_content([twin, {"item_id": "other", "text": "nothing like it at all"}]) == {
        "twin": str(cat.item_ids[3])
    }
    rec.add_items([HEAT])
    assert rec.same_content([{"item_id": "again", "title": "heat", "year": 1995}]) == {"again": "new-heat"}
    assert rec.same_content([{"item_id": "again", "title": "Heat 2", "year": 1995}]) == {}


def test_removed_item_is_gone_everywhere_and_its_id_free_again(run_copy):
    rec = Recommender.load(run_copy)
    n = rec.n_items
    rec.add_items([HEAT, {"item_id": "keep", "title": "Casino", "year": 1995}])
    assert rec.remove_items(["new-heat"]) == ["new-heat"]
    assert rec.n_items == n + 1
    every = [r.item_id for r in rec.recommend(["keep"], k=rec.n_items, exclude_seen=False)]
    assert "new-heat" not in every and len(every) == rec.n_items
    assert all(i.item_id != "new-heat" for i in rec.search("heat"))
    assert all(r.item_id != "new-heat" for r in rec.similar_items("keep", k=rec.n_items - 1))
    with pytest.raises(UnknownItemError):
        rec.item("new-heat")
    with pytest.raises(UnknownItemError):
        rec.recommend(["new-heat"])
    rec.add_items([HEAT])  # the id can be used again
    assert rec.item("new-heat").title == "Heat"
    with pytest.raises(UnsupportedError, match="training data"):
        rec.remove_items([str(rec.dataset.catalogue.item_ids[1])])
    with pytest.raises(UnsupportedError, match="removed"):
        rec.save(run_copy.parent / "saved")


def test_http_add_warns_remove_and_ranks(run_copy):
    rec = Recommender.load(run_copy)
    client = TestClient(create_app(rec, journal=AddedItems(run_copy)))
    existing = rec.dataset.catalogue
    r = client.post("/items", json={"items": [{"item_id": "dup", "text": str(existing.text[2])}]})
    assert r.status_code == 201 and len(r.json()["warnings"]) == 1
    assert repr(str(existing.item_ids[2])) in r.json()["warnings"][0]
    recs = client.post("/recommend", json={"history": ["dup"], "k": 3}).json()["items"]
    assert [x["rank"] for x in recs] == [1, 2, 3] and all("title" in x and "genres" in x for x in recs)
    assert client.delete("/items/dup").json()["removed"] == ["dup"]
    assert client.get("/items/dup").status_code == 404
    assert client.delete("/items/dup").status_code == 404
    trained = client.delete(f"/items/{existing.item_ids[1]}")
    assert trained.status_code == 422 and "training data" in trained.json()["detail"]


def test_delete_is_a_write(run_copy):
    rec = Recommender.load(run_copy)
    rec.add_items([HEAT])
    ro = TestClient(create_app(rec, read_only=True))
    assert ro.delete("/items/new-heat").status_code in (401, 403)
    tok = TestClient(create_app(rec, token="s3cret"))
    assert tok.delete("/items/new-heat").status_code in (401, 403)
    assert tok.delete("/items/new-heat", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_journal_brings_added_items_back_after_a_restart(run_copy):
    rec = Recommender.load(run_copy)
    client = TestClient(create_app(rec, journal=AddedItems(run_copy)))
    client.post("/items", json={"items": [HEAT, {"item_id": "gone", "title": "Casino", "year": 1995}]})
    form = client.post(
        "/items/form",
        data={"title": "Ronin", "year": "1998", "item_id": "with-image"},
        files={"image": ("r.png", _png(), "image/png")},
    )
    assert form.status_code == 201
    client.delete("/items/gone")
    before = {i: rec.recommend([i], k=5) for i in ("new-heat", "with-image")}
    vec_before = rec.index.items[[rec._row["new-heat"], rec._row["with-image"]]].clone()

    again = Recommender.load(run_copy)  # a restart: the run folder as it is now
    assert AddedItems(run_copy).replay(again) == 2
    assert again.item("with-image").has_image and again.item_image("with-image") == _png()
    with pytest.raises(UnknownItemError):
        again.item("gone")
    vec_after = again.index.items[[again._row["new-heat"], again._row["with-image"]]]
    assert torch.allclose(vec_before, vec_after, atol=1e-5)
    for i, recs in before.items():
        assert [r.item_id for r in again.recommend([i], k=5)] == [r.item_id for r in recs]


def test_a_torn_journal_line_is_skipped_not_guessed(run_copy, caplog):
    journal = AddedItems(run_copy)
    journal.record_add([HEAT], {})
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"op": "add", "item": {"item_id": "half')  # a crash in the middle of a write
    rec = Recommender.load(run_copy)
    assert journal.replay(rec) == 1 and rec.item("new-heat").title == "Heat"
    assert "cannot be read" in caplog.text
