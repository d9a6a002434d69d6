"""MISSRec: k-means, interest tokens, no look-ahead, fusion scores, losses, efficient fine-tuning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalrec.nn.kmeans import kmeans
from modalrec.train.transfer import freeze
from tests.conftest import first_batch as _batch, tiny_model


def _mr(dataset, content_overrides, *extra, seed=0):
    return tiny_model("missrec", dataset, content_overrides, *extra, seed=seed)


def test_kmeans_finds_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(50, 2, generator=g) for c in centres])
    c, a = kmeans(x, 3, steps=10, batch_size=64, seed=1)
    groups = [set(a[i * 50 : (i + 1) * 50].tolist()) for i in range(3)]
    assert all(len(gr) == 1 for gr in groups) and len(set.union(*groups)) == 3
    assert torch.equal(a, kmeans(x, 3, steps=10, batch_size=64, seed=1)[1])
    with pytest.raises(ValueError, match="k="):
        kmeans(x, 0)


def test_interest_tokens_are_distinct_with_first_positions(cycle_dataset, content_overrides):
    m = _mr(cycle_dataset, content_overrides)
    m.discover_interests()
    items = torch.tensor([[0, 0, 5, 6, 5, 7, 3, 6], [1, 2, 3, 4, 5, 6, 7, 8]])
    ids, first, real = m._interest_tokens(items)
    for b in range(len(items)):
        want = {}
        for j, it in enumerate(items[b].tolist()):
            for table in (m.text_interest, m.image_interest):
                k = int(table[it])
                if it and k and k not in want:
                    want[k] = j
        got = {int(i): int(f) for i, f, r in zip(ids[b], first[b], real[b]) if r}
        assert got == want


def test_no_position_sees_later_items(cycle_dataset, content_overrides):
    """Every position is a training target: its output must not depend on later items."""
    m = _mr(cycle_dataset, content_overrides).eval()
    a = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[0, 0, 1, 2, 3, 9, 11, 13]])
    with torch.no_grad():
        ha, hb = m._hidden(a)[0], m._hidden(b)[0]
    assert torch.allclose(ha[:, 2:5], hb[:, 2:5], atol=1e-5)  # real positions before the change
    assert not torch.allclose(ha[:, 5:], hb[:, 5:], atol=1e-3)


def test_scores_static_dynamic_missing_image_and_transductive(cycle_dataset, content_overrides):
    m = _mr(cycle_dataset, content_overrides, "model.fusion=static").eval()
    d, tau = m.config.hidden_size, m.config.temperature
    with torch.no_grad():
        u = F.normalize(torch.randn(2, d), dim=-1)
        items = m.item_embeddings()
        s = m.score(u, items)
        t, v = items[:, :d], items[:, d : 2 * d]
        want = (u @ t.T + u @ v.T) / 2 / tau
        want[:, 3] = (u @ t[3]) / tau  # item 3 has no image: its text cosine alone
        assert torch.allclose(s[:, 1:], want[:, 1:], atol=1e-5)
        m.fusion.beta.fill_(5.0)
        m.config.fusion = "dynamic"
        cos = torch.stack([u @ t.T, u @ v.T], -1)
        w = torch.softmax(5.0 * cos, -1)
        assert torch.allclose(m.score(u, items)[:, 4], (w * cos).sum(-1)[:, 4] / tau, atol=1e-5)
    tr = _mr(cycle_dataset, content_overrides, "model.mode=transductive").eval()
    assert not tr.id_free and hasattr(tr, "item_embedding")
    with torch.no_grad():
        items = tr.item_embeddings()
        ids = items[:, 2 * d : 3 * d]
        mm = tr.score(u, items) * tau
        plain = _mr(cycle_dataset, content_overrides).eval()
        plain.load_state_dict({k: v for k, v in tr.state_dict().items() if not k.startswith("item_embedding")})
        assert torch.allclose(
            mm[:, 1:], ((u @ ids.T + 2 * plain.score(u, plain.item_embeddings()) * tau) / 3)[:, 1:], atol=1e-5
        )


def test_pretrain_loss_does_not_use_shared_targets_as_negatives(cycle_dataset, content_overrides):
    m = _mr(
        cycle_dataset, content_overrides, "model.stage=pretrain", "model.seq_seq_weight=0", "model.reg_weight=0"
    ).train()
    batch = _batch(cycle_dataset)
    got = m(batch).loss.item()
    items, targets = batch["items"], batch["targets"]
    with torch.no_grad():
        h, _ = m._hidden(items)
        table = m.item_embeddings()
        cands = sorted(set(targets[targets > 0].tolist()))
        total, n = 0.0, 0
        for b in range(len(items)):
            for j in range(items.shape[1]):
                t = int(targets[b, j])
                if t:
                    logits = m.score(h[b, j][None], table[cands])[0]
                    total += (torch.logsumexp(logits, 0) - logits[cands.index(t)]).item()
                    n += 1
    assert got == pytest.approx(total / n, rel=1e-4)


def test_pretrain_with_views_and_finetune_losses_are_finite(cycle_dataset, content_overrides):
    batch = _batch(cycle_dataset)
    pre = _mr(cycle_dataset, content_overrides, "model.stage=pretrain").train()(batch)
    assert {"seq_item", "seq_seq", "reg"} <= set(pre.logs) and torch.isfinite(pre.loss)
    ft = _mr(cycle_dataset, content_overrides).train()(batch)
    assert "ce" in ft.logs and torch.isfinite(ft.loss)
    no_int = _mr(cycle_dataset, content_overrides, "model.interests=false")
    assert not hasattr(no_int, "encoder") and torch.isfinite(no_int.train()(batch).loss)


def test_item_drop_keeps_order_newest_and_left_padding(cycle_dataset, content_overrides):
    m = _mr(cycle_dataset, content_overrides, "model.item_drop=0.5")
    torch.manual_seed(0)
    items = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7, 8]] * 10)
    aug = m._drop_items(items)
    for row, orig in zip(aug.tolist(), items.tolist()):
        kept = [x for x in row if x]
        assert kept[-1] == orig[-1] and row[-len(kept) :] == kept and set(row[: -len(kept)]) <= {0}
        it = iter([x for x in orig if x])
        assert all(any(x == y for y in it) for x in kept)  # a subsequence, in order
    assert (aug != 0).sum() < (items != 0).sum()


def test_loading_weights_makes_interests_stale_and_epochs_rediscover(cycle_dataset, content_overrides):
    m = _mr(cycle_dataset, content_overrides, "model.interest_every=2")
    m.discover_interests()
    assert not m._stale
    m.load_state_dict(m.state_dict())
    assert m._stale
    m._stale = False
    m.on_epoch_start(2)
    assert not m._stale
    m.on_epoch_start(3)
    assert m._stale


def test_parameter_efficient_finetuning_trains_adapters_norm_and_fusion(cycle_dataset, content_overrides):
    m = _mr(cycle_dataset, content_overrides)
    freeze(m, ["encoder", "decoder", "position"])
    names = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert names == {"text_adapter", "image_adapter", "item_norm", "fusion"}
    tr = _mr(cycle_dataset, content_overrides, "model.mode=transductive")
    freeze(tr, ["encoder", "decoder", "position"])
    assert "item_embedding" in {n.split(".")[0] for n, p in tr.named_parameters() if p.requires_grad}


def test_items_never_in_training_are_not_negatives_of_fine_tuning(content_overrides):
    """As in UniSRec: a cold split's new items are left out of the fine-tuning softmax, so training does
    not push them below every old item (the loss does not depend on them)."""
    from tests.conftest import make_loo_dataset

    seqs = [[1, 2, 3, 4, 5, 1, 2], [2, 3, 4, 5, 1, 2, 3], [3, 4, 5, 1, 2, 3, 4]]  # item 6 never occurs
    ds = make_loo_dataset(seqs, n_items=6)
    m = _mr(ds, content_overrides, "model.stage=finetune", "model.modalities=text").train()
    assert m.in_training.tolist() == [False, True, True, True, True, True, False]
    batch = _batch(ds)
    torch.manual_seed(0)
    loss = m(batch).loss
    for mod in m.modalities:
        m._feat[mod][6] = torch.randn_like(m._feat[mod][6]) * 5  # any content for the absent item
    torch.manual_seed(0)
    assert torch.equal(m(batch).loss, loss)
