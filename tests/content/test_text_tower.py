"""Text tower on a tiny random 3-layer BERT: the frozen/trainable split reproduces the full Hugging Face
forward, cached fp16 prefixes, which parameters train, dropout only in the top, pooling, bad configs."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from modalrec.content.text import TextTower, TextTowerConfig, TextTowerError  # noqa: E402
from modalrec.content.weights import WeightsError  # noqa: E402

TEXTS = [
    "The Movie (1999). Genres: drama",
    "a great love story of the war in the city, the last night of the first day",
    "xyz",
    "Comedy, horror & romance: little girl, dark house",
]


def _hf_tokens(tower, ids, mask):
    with torch.no_grad():
        return tower.model(input_ids=ids, attention_mask=mask).last_hidden_state


def _pooled_ref(tower, texts):
    """Full Hugging Face forward, mean over real tokens, one text at a time (no padding at all)."""
    out = []
    for t in texts:
        ids, mask = tower.tokenize([t])
        out.append(_hf_tokens(tower, ids, mask).mean(1)[0])
    return torch.stack(out)


def test_tiny_tokenizer_really_splits_words(text_towers):
    """Guard for the fixture: texts map to distinct word pieces, not to [UNK]s of equal length."""
    tower = text_towers()
    ids, mask = tower.tokenize(TEXTS)
    unk = tower.tokenizer.convert_tokens_to_ids("[UNK]")
    assert not (ids == unk).any()
    lengths = mask.sum(1).tolist()
    assert len(set(lengths)) == len(TEXTS)
    assert ids.shape[1] == max(lengths) <= tower.cfg.max_tokens


@pytest.mark.parametrize("n", [0, 1, 3])
def test_layer_split_equals_full_forward(text_towers, n):
    tower = text_towers(trainable_layers=n)
    assert (tower.n_layers, tower.n_frozen) == (3, 3 - n)
    ids, mask = tower.tokenize(TEXTS)
    ref = _hf_tokens(tower, ids, mask)
    with torch.no_grad():
        split = tower.top(tower.prefix(ids, mask), mask)
        tokens = tower(ids, mask, output="tokens")
    real = mask.bool()
    torch.testing.assert_close(split[real], ref[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens, split, atol=0, rtol=0)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_from_cache_on_fp16_prefix_equals_pooled_full_forward(text_towers, n):
    tower = text_towers(trainable_layers=n)
    ids, mask = tower.tokenize(TEXTS)
    lengths = mask.sum(1)
    with torch.no_grad():
        cached = tower.prefix(ids, mask).half()
        # the store pads to the catalogue's longest text; padding is zero or whatever a chunk produced
        padded = torch.cat([cached, torch.randn(len(TEXTS), 5, tower.hidden_size).half()], 1)
        padded[0, lengths[0] :] = torch.randn_like(padded[0, lengths[0] :])
        pooled = tower.from_cache(padded, lengths)
        toks, tmask = tower.from_cache(padded, lengths, output="tokens")
    ref = _pooled_ref(tower, TEXTS)
    torch.testing.assert_close(pooled, ref, atol=1e-2, rtol=1e-2)
    assert pooled.dtype == torch.float32
    assert toks.shape == (len(TEXTS), int(lengths.max()), tower.hidden_size)
    assert torch.equal(tmask, mask)


def test_from_cache_on_many_items_of_mixed_lengths(text_towers):
    """A batch of many cached items (any internal grouping) keeps every item's own result and order."""
    tower = text_towers(trainable_layers=2)
    texts = [" ".join(TEXTS[k % 4].split()[: 1 + (5 * k) % 11]) for k in range(13)]
    ids, mask = tower.tokenize(texts)
    lengths = mask.sum(1)
    assert len(set(lengths.tolist())) > 5
    with torch.no_grad():
        cached = tower.prefix(ids, mask).half()
        pooled = tower.from_cache(cached, lengths)
        toks, tmask = tower.from_cache(cached, lengths, output="tokens")
        full = tower(ids, mask, output="tokens")
    torch.testing.assert_close(pooled, _pooled_ref(tower, texts), atol=1e-2, rtol=1e-2)
    assert toks.shape == full.shape and torch.equal(tmask, mask)
    real = mask.bool()
    torch.testing.assert_close(toks[real], full[real], atol=2e-2, rtol=2e-2)


def test_only_the_top_layers_train(bert3):
    tower = TextTower(TextTowerConfig(model=bert3, max_tokens=16, trainable_layers=1), quiet=True)
    model = tower.model
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.encoder.layer.2.") for n in trainable)
    assert trainable == {f"model.encoder.layer.2.{n}" for n, _ in model.encoder.layer[2].named_parameters()}

    ids, mask = tower.tokenize(TEXTS)
    cached = tower.prefix(ids, mask).half()
    assert not cached.requires_grad
    tower.train()
    out = tower.from_cache(cached, mask.sum(1))
    out.pow(2).sum().backward()
    for name, p in model.encoder.layer[2].named_parameters():
        assert p.grad is not None, name
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.layer[2].parameters())
    frozen = [
        *model.embeddings.parameters(),
        *model.encoder.layer[0].parameters(),
        *model.encoder.layer[1].parameters(),
        *model.pooler.parameters(),
    ]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)


def test_train_mode_keeps_frozen_layers_in_eval(bert3):
    tower = TextTower(TextTowerConfig(model=bert3, max_tokens=16, trainable_layers=1), quiet=True)
    tower.train()
    assert tower.training
    assert not tower.model.training and not tower.model.encoder.training
    frozen = [
        *tower.model.embeddings.modules(),
        *tower.model.encoder.layer[0].modules(),
        *tower.model.encoder.layer[1].modules(),
    ]
    assert frozen and not any(m.training for m in frozen)
    assert all(m.training for m in tower.model.encoder.layer[2].modules())

    ids, mask = tower.tokenize(TEXTS)
    a, b = tower.prefix(ids, mask), tower.prefix(ids, mask)
    assert torch.equal(a, b)  # no dropout below the top
    torch.manual_seed(0)
    t1 = tower.top(a, mask)
    t2 = tower.top(a, mask)
    assert not torch.allclose(t1, t2)  # the top does use dropout in train mode

    tower.eval()
    assert not any(m.training for m in tower.modules())
    torch.testing.assert_close(tower.top(a, mask), tower.top(a, mask), atol=0, rtol=0)


def test_mean_pooling_ignores_padding(text_towers):
    tower = text_towers(trainable_layers=1)
    short, long = TEXTS[2], TEXTS[1]
    ids1, m1 = tower.tokenize([short])
    ids2, m2 = tower.tokenize([short, long])
    assert m2[0].sum() < m2.shape[1]  # the short text really is padded in the batch
    with torch.no_grad():
        alone = tower(ids1, m1)
        batched = tower(ids2, m2)
        via_cache = tower.from_cache(tower.prefix(ids2, m2), m2.sum(1))
        naive = tower(ids2, m2, output="tokens").mean(1)  # what mean pooling over padding would give
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(via_cache[0], alone[0], atol=1e-5, rtol=0)
    assert not torch.allclose(naive[0], alone[0], atol=1e-3)


def test_cls_pooling(text_towers):
    tower = text_towers(trainable_layers=1, pooling="cls")
    ids, mask = tower.tokenize(TEXTS)
    with torch.no_grad():
        pooled = tower(ids, mask)
        cached = tower.from_cache(tower.prefix(ids, mask).half(), mask.sum(1))
    ref = _hf_tokens(tower, ids, mask)[:, 0]
    torch.testing.assert_close(pooled, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached, ref, atol=1e-2, rtol=1e-2)
    assert not torch.allclose(pooled, _hf_tokens(tower, ids, mask).mean(1), atol=1e-3)


def test_truncation_and_identity(text_towers):
    tower = text_towers(max_tokens=6)
    ids, mask = tower.tokenize(TEXTS)
    assert ids.shape == (len(TEXTS), 6)
    assert (ids[:, -1][mask[:, -1].bool()] == tower.tokenizer.sep_token_id).all()
    ident = tower.identity()
    assert ident["max_tokens"] == 6 and ident["layers"] == 3 and ident["pooling"] == "mean"
    assert ident["weights"] == text_towers().identity()["weights"]
    assert ident != text_towers(max_tokens=16).identity()


@pytest.mark.parametrize("n", [4, -1])
def test_trainable_layers_out_of_range(bert3, n):
    with pytest.raises(TextTowerError, match=rf"trainable_layers must be in 0\.\.3, not {n}"):
        TextTower(TextTowerConfig(model=bert3, trainable_layers=n), quiet=True)


def test_bad_pooling_and_max_tokens(bert3):
    with pytest.raises(TextTowerError, match=r"pooling must be 'mean' or 'cls', not 'max'"):
        TextTower(TextTowerConfig(model=bert3, pooling="max"), quiet=True)
    with pytest.raises(TextTowerError, match=r"max_tokens must be at least 2, not 1"):
        TextTower(TextTowerConfig(model=bert3, max_tokens=1), quiet=True)


def test_unknown_model_name():
    from modalrec.utils import modalrec_home

    with pytest.raises(WeightsError, match=r"Unknown encoder 'no-such-encoder-xyz'.*all-MiniLM-L6-v2"):
        TextTower(TextTowerConfig(model="no-such-encoder-xyz"), quiet=True)
    assert not (modalrec_home() / "weights").exists()  # nothing was fetched


def test_folder_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextTowerError, match=r"Could not load a Hugging Face text model from .*empty"):
        TextTower(TextTowerConfig(model=str(tmp_path / "empty")), quiet=True)
