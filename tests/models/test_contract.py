"""The contract every registered model must pass (shared/design.md, "The model contract")."""

from __future__ import annotations

import pytest
import torch

from modalrec.config import build_config
from modalrec.data.batches import train_loader
from modalrec.models.base import Output, SequentialRecommender
from modalrec.models.registry import available_models, build_model
from modalrec.core import checkpoint as ckpt_io

MODELS = available_models()
EXTRA: dict[str, list[str]] = {}  # per-model overrides (tiny content towers), set by the fixture below


@pytest.fixture(autouse=True)
def _tiny_towers(content_overrides):
    EXTRA.clear()
    EXTRA.update(content_overrides)


def _model(name, dataset, seed=0, **over):
    torch.manual_seed(seed)
    overrides = EXTRA.get(name, []) + [f"model.{k}={v}" for k, v in {"max_len": 8, **over}.items()]
    cfg = build_config(model=name, overrides=overrides)
    m = build_model(cfg.model, dataset)
    m.fit_statistics(dataset)
    return m


def _batch(dataset, max_len=8, batch_size=6):
    loader, sampler = train_loader(dataset.split.train, max_len, batch_size, seed=0)
    sampler.set_epoch(0)
    return next(iter(loader))


def test_builtin_models_are_registered():
    assert {"pop", "sasrec"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name, cycle_dataset):
    m = _model(name, cycle_dataset).eval()
    assert isinstance(m, SequentialRecommender) and m.name == name
    n = cycle_dataset.n_items
    with torch.no_grad():
        items = m.item_embeddings(None)
        assert items.ndim == 2 and items.shape[0] == n + 1
        sub = m.item_embeddings(torch.tensor([3, 1, 3]))
        assert torch.allclose(sub, items[[3, 1, 3]])
        batch = _batch(cycle_dataset)
        users = m.user_embeddings(batch)
        assert users.ndim == 2 and users.shape[0] == batch["items"].shape[0]
        if type(m).score is SequentialRecommender.score:  # plain dot product: same width
            assert users.shape[1] == items.shape[1]
        scores = m.score(users, items)
        assert scores.shape == (batch["items"].shape[0], n + 1)
        assert torch.isfinite(scores[:, 1:]).all()


@pytest.mark.parametrize("name", MODELS)
def test_forward_loss_and_gradients(name, cycle_dataset):
    m = _model(name, cycle_dataset).train()
    batch = _batch(cycle_dataset)
    if not m.trainable:
        assert m.num_parameters(trainable_only=True) == 0
        with pytest.raises(RuntimeError):
            m(batch)
        return
    out = m(batch)
    assert isinstance(out, Output) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    no_grad = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"trainable parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_the_user(name, cycle_dataset):
    """A history means the same whatever the window it is padded into."""
    m = _model(name, cycle_dataset).eval()
    short = torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6]])
    with torch.no_grad():
        a = m.user_embeddings({"items": short})
        b = m.user_embeddings({"items": short[:, -4:]})
        c = m.user_embeddings({"items": torch.tensor([[0, 0, 0, 0, 0, 0, 0, 6]])})
    assert torch.allclose(a, b, atol=1e-5)
    assert c.shape == a.shape and torch.isfinite(c).all()


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_roundtrip(name, cycle_dataset, tmp_path):
    m = _model(name, cycle_dataset, seed=1).eval()
    ckpt_io.save(tmp_path / "m.pt", {"model_name": name, "model": m.state_dict()})
    fresh = _model(name, cycle_dataset, seed=2).eval()
    ckpt_io.load_model_state(fresh, ckpt_io.load(tmp_path / "m.pt", expect_model=name)["model"])
    batch = _batch(cycle_dataset)
    with torch.no_grad():
        assert torch.equal(
            m.score(m.user_embeddings(batch), m.item_embeddings()),
            fresh.score(fresh.user_embeddings(batch), fresh.item_embeddings()),
        )


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_from_another_model_is_refused(name, cycle_dataset, tmp_path):
    other = "pop" if name != "pop" else "sasrec"
    ckpt_io.save(tmp_path / "o.pt", {"model_name": other, "model": _model(other, cycle_dataset).state_dict()})
    with pytest.raises(ckpt_io.CheckpointError, match=f"holds a '{other}' model"):
        ckpt_io.load(tmp_path / "o.pt", expect_model=name)
    state = ckpt_io.load(tmp_path / "o.pt")["model"]
    with pytest.raises(ckpt_io.CheckpointError, match="does not fit this model"):
        ckpt_io.load_model_state(_model(name, cycle_dataset), state)


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model(name, cycle_dataset):
    a, b = _model(name, cycle_dataset, seed=5), _model(name, cycle_dataset, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_pop_scores_are_training_counts(cycle_dataset):
    m = _model("pop", cycle_dataset)
    counts = torch.as_tensor(cycle_dataset.train_item_counts(), dtype=torch.float32)
    scores = m.score(m.user_embeddings({"items": torch.zeros(2, 8, dtype=torch.long)}), m.item_embeddings())
    assert torch.equal(scores[0], counts) and torch.equal(scores[1], counts)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt_io.CheckpointError, match="not a readable modalrec checkpoint"):
        ckpt_io.load(p)
    with pytest.raises(ckpt_io.CheckpointError, match="not found"):
        ckpt_io.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", MODELS)
def test_rebuilt_from_its_run_files_answers_the_same(name, cycle_dataset, tiny_text_model, tmp_path, monkeypatch):
    """What a run folder keeps (state dict, item_state, assets) rebuilds the model without its features,
    its data's feature store or the encoder weights' folder: same vectors, scores and new items."""
    import shutil

    import numpy as np

    from modalrec.models.base import NewItems, add_new_items

    over = {}
    if name in EXTRA:  # content models: encoder weights from a folder deleted before the rebuild
        shutil.copytree(tiny_text_model, tmp_path / "text-weights")
        over["text.model"] = tmp_path / "text-weights"
    m = _model(name, cycle_dataset, **over).eval()
    assets = tmp_path / "assets"
    assets.mkdir()
    m.save_assets(assets)
    state, item_state = m.state_dict(), m.item_state()
    shutil.rmtree(tmp_path / "text-weights", ignore_errors=True)
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "empty-home"))
    m2 = build_model(type(m).config_from_assets(m.config, assets), cycle_dataset, features=None)
    ckpt_io.load_model_state(m2, state, "state")
    m2.load_item_state(item_state)
    m2.eval()
    batch = _batch(cycle_dataset)
    with torch.no_grad():
        torch.testing.assert_close(m2.item_embeddings(None), m.item_embeddings(None))
        u, u2 = m.user_embeddings(batch), m2.user_embeddings(batch)
        torch.testing.assert_close(u2, u)
        torch.testing.assert_close(m2.score(u2, m2.item_embeddings(None)), m.score(u, m.item_embeddings(None)))
    if not m.id_free:
        return
    size = m.image_size
    rng = np.random.default_rng(0)
    images = None if size is None else rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8)
    new = NewItems(["item 7 night story", ""], images, None if size is None else np.array([True, False]))
    with torch.no_grad():
        rows, rows2 = add_new_items(m, new), add_new_items(m2, new)
        assert rows.tolist() == rows2.tolist()
        torch.testing.assert_close(m2.item_embeddings(None)[rows2], m.item_embeddings(None)[rows])
