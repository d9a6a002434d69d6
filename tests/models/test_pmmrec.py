"""PMMRec: losses against slow per-row reference implementations, noise, transfer, new items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modalrec.nn.fusion import masked_mean
from modalrec.core import checkpoint as ckpt_io
from modalrec.core.checkpoint import CheckpointError
from modalrec.train.transfer import freeze, load_components
from tests.conftest import first_batch as _batch, tiny_model


def _pmm(dataset, content_overrides, *extra, seed=0):
    return tiny_model("pmmrec", dataset, content_overrides, *extra, seed=seed)


def test_next_item_loss_matches_a_per_row_reference(cycle_dataset, content_overrides):
    m = _pmm(cycle_dataset, content_overrides, "model.nicl=false", "model.nid=false", "model.rcl=false").train()
    batch = _batch(cycle_dataset)
    loss = m(batch).loss
    items, targets = batch["items"], batch["targets"]
    with torch.no_grad():
        table = m.item_embeddings()  # train mode, no dropout: same vectors as inside forward
        h = m.user_encoder(table[items], items)
        full = torch.cat([items, targets[:, -1:]], 1)
        cand = sorted(set(full[full > 0].tolist()) | set(targets[targets > 0].tolist()))
        total, n = 0.0, 0
        for b in range(len(items)):
            own = set(full[b].tolist()) | set(targets[b].tolist())
            for j in range(items.shape[1]):
                t = int(targets[b, j])
                if t == 0:
                    continue
                cols = [c for c in cand if c == t or c not in own]
                logits = torch.stack([h[b, j] @ table[c] - m.log_q[c] for c in cols])
                total += -(logits[cols.index(t)] - torch.logsumexp(logits, 0)).item()
                n += 1
    assert loss.item() == pytest.approx(total / n, rel=1e-4)


def test_nicl_matches_a_per_anchor_reference(cycle_dataset, content_overrides):
    m = _pmm(
        cycle_dataset,
        content_overrides,
        "model.rec_weight=0",
        "model.nicl_weight=1",
        "model.nid=false",
        "model.rcl=false",
    ).train()
    batch = _batch(cycle_dataset)
    got = m(batch).logs["nicl"].item()
    items, targets = batch["items"], batch["targets"]
    tau = m.config.nicl_temperature
    with torch.no_grad():
        rows = torch.arange(1, cycle_dataset.n_items + 1)
        # the reference pools each modality's tokens itself
        tokens = [enc(rows) for enc in m.content_encoders()]
        z = [
            torch.cat([torch.zeros(1, m.config.hidden_size), F.normalize(m.nicl_head(masked_mean(x, k)), dim=-1)])
            for x, k in tokens
        ]
        has = [torch.cat([torch.zeros(1, dtype=torch.bool), k.any(1)]) for _, k in tokens]
        full = torch.cat([items, targets[:, -1:]], 1)
        batch_items = sorted(set(full[full > 0].tolist()) | set(targets[targets > 0].tolist()))
        total, n = 0.0, 0
        for b in range(len(full)):
            own = set(full[b].tolist()) | set(targets[b].tolist())
            for j in range(full.shape[1]):
                i = int(full[b, j])
                if i == 0:
                    continue
                nxt = int(full[b, j + 1]) if j + 1 < full.shape[1] else 0
                for src, dst in ((0, 1), (1, 0)):
                    if not (has[src][i] and has[dst][i]):
                        continue
                    pos = [p for p in {i, nxt} if p and has[dst][p]]
                    negs = [c for c in batch_items if c not in own]
                    inter = [c for c in set(pos) | {c for c in negs if has[dst][c]}]
                    intra = [c for c in negs if has[src][c]]
                    scores = [z[src][i] @ z[dst][c] / tau for c in inter] + [z[src][i] @ z[src][c] / tau for c in intra]
                    lse = torch.logsumexp(torch.stack(scores), 0)
                    total += (lse - torch.stack([z[src][i] @ z[dst][p] / tau for p in pos]).mean()).item()
                    n += 1
    assert n > 0
    assert got == pytest.approx(total / n, rel=1e-4)


@pytest.mark.parametrize("kind", ["replace", "shuffle"])
def test_noise_changes_only_real_positions_and_labels_them(cycle_dataset, content_overrides, kind):
    m = _pmm(cycle_dataset, content_overrides, f"model.noise={kind}", "model.noise_ratio=0.4")
    torch.manual_seed(3)
    items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 9, 10]] * 20)
    noised, changed = m._noise(items)
    assert torch.equal(changed, (noised != items) & (items != 0))
    assert torch.equal(noised == 0, items == 0)  # padding stays padding, real items stay real
    assert 0.1 < changed.float().sum() / (items != 0).sum() < 0.5
    if kind == "shuffle":  # a permutation within each sequence: same multiset of items
        assert torch.equal(noised.sort(1).values, items.sort(1).values)
    else:
        assert ((noised >= 1) & (noised <= cycle_dataset.n_items) | (noised == 0)).all()


def test_switches_remove_losses_and_all_losses_are_finite(cycle_dataset, content_overrides):
    batch = _batch(cycle_dataset)
    full = _pmm(cycle_dataset, content_overrides).train()(batch)
    assert set(full.logs) == {"rec", "nicl", "nid", "rcl"} and all(math.isfinite(v) for v in full.logs.values())
    none = _pmm(cycle_dataset, content_overrides, "model.nicl=false", "model.nid=false", "model.rcl=false")
    assert set(none.train()(batch).logs) == {"rec"}
    text_only = _pmm(cycle_dataset, content_overrides, "model.modalities=text")
    assert "nicl" not in text_only.train()(batch).logs  # cross-modal loss needs two modalities


def test_missing_image_is_masked_not_black(cycle_dataset, content_overrides):
    m = _pmm(cycle_dataset, content_overrides).eval()
    _, mask = m.image_encoder(torch.tensor([3, 4]))
    assert not mask[0].any() and mask[1].all()  # item 3 has no image in the fixture


def test_new_item_from_raw_content_equals_the_cached_path(cycle_dataset, content_overrides, tiny_images):
    from modalrec.content.image import ImageReader

    m = _pmm(cycle_dataset, content_overrides).eval()
    reader = ImageReader(["[PAD]", "x"], ["", str(tiny_images / "5.png")])
    imgs, present = reader.load([1], m.config.image.image_size)
    with torch.no_grad():
        new = m.encode_content(["item 5"], imgs, present)
        assert torch.allclose(new[0], m.item_embeddings()[5], atol=2e-2)  # fp16 cache vs fp32 on the fly


def _save(m, path):
    ckpt_io.save(path, {"model_name": "pmmrec", "model": m.state_dict()})


def test_transfer_loads_named_components_and_refuses_missing_ones(cycle_dataset, content_overrides, tmp_path):
    src = _pmm(cycle_dataset, content_overrides, seed=1)
    _save(src, tmp_path / "best.pt")
    dst = _pmm(cycle_dataset, content_overrides, seed=2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    info = load_components(dst, tmp_path, ["user_encoder", "fusion"])
    assert info["loaded"] == ["user_encoder", "fusion"] and "text_encoder" in info["fresh"]
    for k, v in dst.state_dict().items():
        head = k.split(".")[0]
        ref = src.state_dict()[k] if head in ("user_encoder", "fusion") else before[k]
        assert torch.equal(v, ref), k
    text_only_src = _pmm(cycle_dataset, content_overrides, "model.modalities=text", seed=3)
    _save(text_only_src, tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="has no component"):
        load_components(dst, tmp_path / "text.pt", ["image_encoder"])
    with pytest.raises(CheckpointError, match="no component"):
        load_components(dst, tmp_path / "best.pt", ["bogus"])


def test_single_modality_model_starts_from_a_multimodal_checkpoint(cycle_dataset, content_overrides, tmp_path):
    src = _pmm(cycle_dataset, content_overrides, seed=1)
    _save(src, tmp_path / "best.pt")
    dst = _pmm(cycle_dataset, content_overrides, "model.modalities=text", seed=2)
    info = load_components(dst, tmp_path / "best.pt", ["all"])
    assert "text_encoder" in info["loaded"] and "image_encoder" not in info["loaded"]
    assert torch.equal(dst.text_encoder.proj.weight, src.text_encoder.proj.weight)


def test_frozen_components_do_not_change(cycle_dataset, content_overrides):
    m = _pmm(cycle_dataset, content_overrides).train()
    n = freeze(m, ["user_encoder"])
    assert n > 0 and not any(p.requires_grad for p in m.user_encoder.parameters())
    before = m.user_encoder.position.weight.clone()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    m(_batch(cycle_dataset)).loss.backward()
    opt.step()
    assert torch.equal(before, m.user_encoder.position.weight)
    with pytest.raises(CheckpointError, match="cannot freeze"):
        freeze(m, ["nope"])


def test_zero_shot_on_a_different_catalogue(cycle_dataset, content_overrides, tmp_path):
    """An ID-free model trained on one catalogue scores another one (different size) as is."""
    from tests.conftest import make_loo_dataset

    src = _pmm(cycle_dataset, content_overrides, seed=1)
    _save(src, tmp_path / "best.pt")
    seqs = [[(u + k) % 7 + 1 for k in range(6)] for u in range(10)]
    other = make_loo_dataset(seqs, 7, "other")
    other.catalogue.image_paths = np.asarray([""] + [str(cycle_dataset.catalogue.image_paths[i]) for i in range(1, 8)])
    dst = _pmm(other, content_overrides, seed=2)
    load_components(dst, tmp_path / "best.pt", ["all"])
    dst.eval()
    with torch.no_grad():
        e = dst.item_embeddings()
        assert e.shape[0] == 8
        # same item content -> same vector as in the source model
        assert torch.allclose(e[1], src.eval().item_embeddings()[1], atol=1e-5)


def test_items_grouped_by_text_length_encode_as_one_group(cycle_dataset, content_overrides):
    """The step encodes items in groups of similar text length (less padding): same vectors, same pooled
    parts, in the caller's order, as one group."""
    m = _pmm(cycle_dataset, content_overrides).eval()
    m.min_group = 2
    rows = torch.randperm(cycle_dataset.n_items) + 1
    assert len(set(m.text_encoder.aux[rows].tolist())) > 1  # texts of several lengths
    m.config.encode_buckets = 1
    with torch.no_grad():
        one, one_parts = m._encode(rows, return_parts=True)
        assert len(m._length_groups(rows)) == 1
        m.config.encode_buckets = 3
        groups = m._length_groups(rows)
        grouped, grouped_parts = m._encode(rows, return_parts=True)
    assert len(groups) == 3 and sorted(torch.cat(groups).tolist()) == list(range(len(rows)))
    assert m.text_encoder.aux[rows[groups[0]]].max() <= m.text_encoder.aux[rows[groups[2]]].min()
    assert torch.allclose(one, grouped, atol=1e-5)
    for (v1, h1), (v2, h2) in zip(one_parts, grouped_parts):
        assert torch.allclose(v1, v2, atol=1e-5) and torch.equal(h1, h2)
