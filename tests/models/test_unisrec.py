"""UniSRec: MoE adaptor, modes, losses against per-row references, augmentation, transfer, new items."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalrec.losses import info_nce
from modalrec.models.unisrec import MoEAdaptor
from modalrec.core import checkpoint as ckpt_io
from modalrec.core.checkpoint import CheckpointError
from modalrec.train.transfer import freeze, load_components
from tests.conftest import first_batch as _batch, tiny_model


def _uni(dataset, content_overrides, *extra, seed=0):
    return tiny_model("unisrec", dataset, content_overrides, *extra, seed=seed)


def _other_dataset():
    from tests.conftest import make_loo_dataset

    return make_loo_dataset([[(u + k) % 7 + 1 for k in range(6)] for u in range(10)], 7, "other")


def _save(m, path):
    ckpt_io.save(path, {"model_name": "unisrec", "model": m.state_dict()})


def test_moe_adaptor_shapes_gates_and_experts():
    torch.manual_seed(0)
    moe = MoEAdaptor(12, 5, n_experts=4, dropout=0.0)
    with torch.no_grad():
        moe.gate.weight.normal_()  # non-uniform gates
        for e in moe.experts:
            e.bias.normal_()
    x = torch.randn(3, 7, 12)
    for mode in (True, False):  # noisy gates in training, plain softmax in evaluation
        moe.train(mode)
        out, g = moe(x, return_gates=True)
        assert out.shape == (3, 7, 5) and g.shape == (3, 7, 4)
        assert torch.allclose(g.sum(-1), torch.ones(3, 7), atol=1e-6) and (g >= 0).all()
    moe.eval()
    out, g = moe(x, return_gates=True)
    assert torch.allclose(g, torch.softmax(moe.gate(x), -1))
    want = sum(g[..., k : k + 1] * moe.experts[k](x) for k in range(4))  # sum_k g_k (x - b_k) W_k
    assert torch.allclose(out, want, atol=1e-5)
    moe.train()
    assert not torch.equal(moe.gates(x), moe.gates(x))  # gate noise in training only


def test_inductive_and_transductive_item_vectors(cycle_dataset, content_overrides):
    ind = _uni(cycle_dataset, content_overrides).eval()
    tr = _uni(cycle_dataset, content_overrides, "model.mode=transductive").eval()
    assert ind.id_free and not hasattr(ind, "item_embedding")
    assert not tr.id_free and tr.item_embedding.num_embeddings == cycle_dataset.n_items + 1
    with torch.no_grad():
        a, b = ind.item_embeddings(), tr.item_embeddings()
        assert torch.allclose(a.norm(dim=-1)[1:], torch.ones(cycle_dataset.n_items), atol=1e-5)
        assert torch.equal(a[0], torch.zeros_like(a[0])) and torch.equal(b[0], torch.zeros_like(b[0]))
        # same seed: same adaptor; transductive adds the ID embedding before normalising
        content = tr.adaptor(tr.text_feat)
        assert torch.allclose(b[1:], F.normalize(content + tr.item_embedding.weight, dim=-1)[1:], atol=1e-6)
        assert torch.allclose(a[1:], F.normalize(content, dim=-1)[1:], atol=1e-6)
        assert not torch.allclose(a, b, atol=1e-3)


def test_invalid_settings_are_clear_errors(cycle_dataset, content_overrides):
    with pytest.raises(ValueError, match="model.mode"):
        _uni(cycle_dataset, content_overrides, "model.mode=both")
    with pytest.raises(ValueError, match="trainable_layers"):
        _uni(cycle_dataset, content_overrides, "model.text.trainable_layers=1")


def test_finetune_loss_is_full_catalogue_ce_over_cosines(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides).eval()  # eval: no gate noise, no dropout
    batch = _batch(cycle_dataset)
    got = m(batch)
    assert set(got.logs) == {"ce"}
    items, targets = batch["items"], batch["targets"]
    tau = m.config.temperature
    with torch.no_grad():
        h = m._hidden(items)
        table = m.item_embeddings()
        total, n = 0.0, 0
        for b in range(len(items)):
            for j in range(items.shape[1]):
                t = int(targets[b, j])
                if t:
                    u = h[b, j] / h[b, j].norm()
                    logits = torch.stack([u @ table[c] / tau for c in range(1, cycle_dataset.n_items + 1)])
                    total += (torch.logsumexp(logits, 0) - logits[t - 1]).item()
                    n += 1
        assert torch.allclose(m.user_embeddings(batch), F.normalize(h[:, -1], dim=-1), atol=1e-6)
    assert got.loss.item() == pytest.approx(total / n, rel=1e-4)


def test_pretrain_seq_item_loss_does_not_use_same_target_rows_as_negatives(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides, "model.stage=pretrain", "model.seq_seq_weight=0").eval()
    batch = _batch(cycle_dataset)
    got = m(batch)
    assert set(got.logs) == {"seq_item"}
    items, targets = batch["items"], batch["targets"]
    tau = m.config.temperature
    with torch.no_grad():
        h = F.normalize(m._hidden(items), dim=-1)
        table = m.item_embeddings()
        pos = [(b, j) for b in range(len(items)) for j in range(items.shape[1]) if targets[b, j]]
        tgt = [int(targets[b, j]) for b, j in pos]
        assert len(set(tgt)) < len(tgt)  # the batch has positions sharing a target
        total = 0.0
        for i, (b, j) in enumerate(pos):  # keys: every position's target, minus same-target rows but i
            keys = [k for k in range(len(pos)) if k == i or tgt[k] != tgt[i]]
            logits = torch.stack([h[b, j] @ table[tgt[k]] / tau for k in keys])
            total += (torch.logsumexp(logits, 0) - logits[keys.index(i)]).item()
        q = torch.stack([h[b, j] for b, j in pos])
        t = torch.tensor(tgt)
        via_info_nce = info_nce(q, table[t], tau, positive_mask=t[:, None] == t[None, :])
        naive = info_nce(q, table[t], tau)  # same-target rows as negatives: a different loss
    assert got.loss.item() == pytest.approx(total / len(pos), rel=1e-4)
    assert got.loss.item() == pytest.approx(via_info_nce.item(), rel=1e-4)
    assert naive.item() != pytest.approx(got.loss.item(), rel=1e-3)


def test_pretrain_with_views_is_finite_and_backpropagates(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides, "model.stage=pretrain", "model.seq_seq_weight=1").train()
    out = m(_batch(cycle_dataset))
    assert set(out.logs) == {"seq_item", "seq_seq"} and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in m.text_encoder.parameters())


def test_item_drop_keeps_order_left_padding_and_one_item(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides, "model.item_drop=0.6")
    torch.manual_seed(0)
    items = torch.tensor(
        [[0, 0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 9], [0, 0, 0, 0, 0, 0, 4, 9]] * 25
    )
    aug = m._drop_items(items)
    for row, orig in zip(aug.tolist(), items.tolist()):
        kept = [x for x in row if x]
        assert len(kept) >= 1 and row[len(row) - len(kept) :] == kept and set(row[: len(row) - len(kept)]) <= {0}
        it = iter([x for x in orig if x])
        assert all(any(x == y for y in it) for x in kept)  # a subsequence, in order
    assert (aug != 0).sum() < (items != 0).sum()
    assert (aug[:, -1] != items[:, -1]).any()  # the newest item is dropped too, sometimes


def test_transfer_to_another_catalogue_inductive_and_id_table_refused(cycle_dataset, content_overrides, tmp_path):
    src = _uni(cycle_dataset, content_overrides, seed=1).train()
    opt = torch.optim.AdamW([p for p in src.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        src(_batch(cycle_dataset)).loss.backward()
        opt.step()
    _save(src, tmp_path / "best.pt")
    other = _other_dataset()
    dst = _uni(other, content_overrides, seed=2)
    info = load_components(dst, tmp_path, ["adaptor", "user_encoder"])
    assert info["loaded"] == ["adaptor", "user_encoder"] and "text_encoder" in info["fresh"]
    sd = src.state_dict()
    for k, v in dst.state_dict().items():
        if k.split(".")[0] in ("adaptor", "user_encoder"):
            assert torch.equal(v, sd[k]), k
    src.eval()
    dst.eval()
    with torch.no_grad():  # same text ("item 3") -> same vector in both catalogues
        assert dst.item_embeddings().shape[0] == other.n_items + 1
        assert torch.allclose(dst.item_embeddings()[3], src.item_embeddings()[3], atol=1e-5)
    load_components(_uni(other, content_overrides, seed=3), tmp_path, ["all"])  # text tower included

    src_tr = _uni(cycle_dataset, content_overrides, "model.mode=transductive", seed=1)
    _save(src_tr, tmp_path / "tr.pt")
    dst_tr = _uni(other, content_overrides, "model.mode=transductive", seed=2)
    before = {k: v.clone() for k, v in dst_tr.state_dict().items()}
    for names in (["item_embedding"], ["all"]):
        with pytest.raises(CheckpointError, match="item_embedding.*shape mismatch"):
            load_components(dst_tr, tmp_path / "tr.pt", names)
    assert all(torch.equal(v, before[k]) for k, v in dst_tr.state_dict().items())  # nothing was loaded
    info = load_components(dst_tr, tmp_path / "tr.pt", ["adaptor", "user_encoder"])
    assert "item_embedding" in info["fresh"]


def test_parameter_efficient_finetuning_trains_the_adaptor(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides, "model.mode=transductive")
    freeze(m, ["user_encoder"])
    names = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert names == {"adaptor", "item_embedding"}


def test_encode_content_of_an_existing_text_equals_its_item_vector(cycle_dataset, content_overrides):
    m = _uni(cycle_dataset, content_overrides).train()  # encode_content never adds gate noise
    with torch.no_grad():
        new = m.encode_content(["item 5", ""])
        m.eval()
        table = m.item_embeddings()
    assert new.shape == (2, m.config.hidden_size)
    assert torch.allclose(new[0], table[5], atol=2e-2)  # fp16 feature store vs fp32 on the fly
    assert torch.equal(new[1], torch.zeros_like(new[1]))  # no text: no content vector
    tr = _uni(cycle_dataset, content_overrides, "model.mode=transductive")
    with pytest.raises(ValueError, match="transductive"):
        tr.encode_content(["item 5"])


def test_hybrid_scores_items_without_a_trained_id_from_text_alone(cycle_dataset, content_overrides):
    from modalrec.models.base import NewItems, add_new_items

    hyb = tiny_model("unisrec", cycle_dataset, content_overrides, "model.mode=transductive", "model.id_dropout=0.3")
    ind = tiny_model("unisrec", cycle_dataset, content_overrides, "model.mode=inductive")
    ind.adaptor.load_state_dict(hyb.adaptor.state_dict())
    assert hyb.id_free and hyb.hybrid
    assert hyb.has_id.tolist() == cycle_dataset.seen_in_train().tolist()  # set by fit_statistics
    unseen, seen = torch.tensor([3, 7]), torch.tensor([1, 2, 4])
    with torch.no_grad():
        hyb.has_id[unseen] = False  # as if items 3 and 7 never occurred in training
        hyb.item_embedding.weight.normal_()  # large ID vectors: any that leak in would show
        hyb.eval(), ind.eval()
        h, i = hyb.item_embeddings(None), ind.item_embeddings(None)
        torch.testing.assert_close(h[unseen], i[unseen])  # no trained ID: text alone
        assert not torch.allclose(h[seen], i[seen], atol=1e-3)  # trained IDs count
        rows = add_new_items(hyb, NewItems(["item 3 night story"]))
        add_new_items(ind, NewItems(["item 3 night story"]))
        torch.testing.assert_close(hyb.item_embeddings(None)[rows], ind.item_embeddings(None)[rows])
    hyb.train()
    out = hyb(_batch(cycle_dataset))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert hyb.item_embedding.weight.grad is not None


def test_items_never_in_training_are_not_negatives(content_overrides, tiny_text_model):
    """A cold split's new items do not exist while the model trains: the fine-tuning softmax leaves
    them out, so the loss does not depend on them (else they would be pushed below every old item)."""
    from tests.conftest import first_batch, make_loo_dataset

    seqs = [[1, 2, 3, 4, 5, 1, 2], [2, 3, 4, 5, 1, 2, 3], [3, 4, 5, 1, 2, 3, 4]]  # item 6 never occurs
    ds = make_loo_dataset(seqs, n_items=6)
    m = _uni(ds, content_overrides).train()
    assert m.in_training.tolist() == [False, True, True, True, True, True, False]
    batch = first_batch(ds)
    torch.manual_seed(0)
    loss = m(batch).loss
    m.text_feat[6] = torch.randn_like(m.text_feat[6]) * 5  # any content for the absent item
    torch.manual_seed(0)
    assert torch.equal(m(batch).loss, loss)
