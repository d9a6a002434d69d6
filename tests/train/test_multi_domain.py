"""Pre-training on several data sets at once (data.extra_sources), each with its own item space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalrec.config import ConfigError, build_config
from modalrec.data.batches import MultiDomainLoader, train_loader
from modalrec.datasets.builtin import make_synthetic
from modalrec.run.training import train


def _second_source(tmp_path):
    """A synthetic set with other seed and sizes, as a data-spec YAML (its own items and images)."""
    folder = make_synthetic(n_users=60, n_items=40, seed=7, with_images=True, out_dir=tmp_path / "second")
    spec = tmp_path / "second.yaml"
    spec.write_text(
        "name: second\n"
        f"interactions: {{path: {folder / 'interactions.csv'}}}\n"
        f"items: {{path: {folder / 'items.csv'}, text_fields: [title, description], "
        "text_template: '{title}: {description}', image_col: image}\n"
    )
    return spec


def test_multi_domain_loader_interleaves_every_batch_once(cycle_dataset):
    parts = [
        train_loader(cycle_dataset.split.train, 8, 5, seed=0),
        train_loader(cycle_dataset.split.train, 4, 7, seed=0),
    ]
    ld = MultiDomainLoader([p[0] for p in parts], [p[1] for p in parts], seed=3)
    ld.set_epoch(1)
    batches = list(ld)
    domains = [int(b["domain"]) for b in batches]
    assert len(batches) == len(ld) == len(parts[0][0]) + len(parts[1][0])
    assert domains.count(0) == len(parts[0][0]) and domains.count(1) == len(parts[1][0])
    assert all(b["items"].shape[1] == (8 if d == 0 else 4) for b, d in zip(batches, domains))
    first = ld.schedule().tolist()
    ld.set_epoch(2)
    assert ld.schedule().tolist() != first  # a new order each epoch ...
    ld.set_epoch(1)
    assert ld.schedule().tolist() == first  # ... fixed by (seed, epoch)


def test_pmmrec_pretrains_on_two_sources(tmp_path, content_overrides):
    spec = _second_source(tmp_path)
    tiny = content_overrides["pmmrec"]
    cfg = build_config(
        model="pmmrec",
        overrides=[
            "data.dataset=synthetic",
            f"data.extra_sources=[{spec}]",
            "data.min_item_inter=1",
            "train.epochs=1",
            "train.batch_size=32",
            "model.max_len=8",
            *tiny,
        ],
    )
    seen = []
    res = train(cfg, tmp_path / "run", progress=False, callbacks=[lambda e, r: seen.append(r)])
    assert res["epochs_run"] == 1 and np.isfinite(seen[0]["train_loss"])
    assert res["dataset"] == "synthetic"  # validation and test stay on the main data set


def test_domains_switch_item_tables(tmp_path, content_overrides, cycle_dataset):
    from modalrec.data.prepare import load_or_prepare
    from modalrec.models.registry import build_model, catalogue_features_for

    spec = _second_source(tmp_path)
    cfg = build_config(
        model="pmmrec",
        overrides=[*content_overrides["pmmrec"], "model.max_len=8", f"data.dataset={spec}", "data.min_item_inter=1"],
    )
    other = load_or_prepare(cfg.data, progress=False)
    m = build_model(cfg.model, cycle_dataset)
    m.fit_statistics(cycle_dataset)
    k = m.add_domain(other, catalogue_features_for(m, other))
    assert k == 1
    loader, sampler = train_loader(other.split.train, 8, 4, seed=0)
    batch = next(iter(loader))
    batch["domain"] = torch.tensor(1)
    m.train()
    assert torch.isfinite(m(batch).loss) and m.n_items == other.n_items
    m.eval()
    assert m.n_items == cycle_dataset.n_items and m.item_embeddings().shape[0] == cycle_dataset.n_items + 1


def test_id_model_refuses_extra_sources(tmp_path):
    cfg = build_config(
        model="sasrec", overrides=["data.dataset=synthetic", "data.extra_sources=[synthetic]", "train.epochs=1"]
    )
    with pytest.raises(ConfigError, match="cannot train on several data sets"):
        train(cfg, tmp_path / "run", progress=False)
