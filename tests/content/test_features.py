"""Item features: computed by modalrec.content.features, received by the models (which never encode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tests.conftest import tiny_model  # noqa: E402
from modalrec.content.features import FeatureNeed, ItemFeatures, ModalityFeatures, catalogue_features, new_item_features  # noqa: E402
from modalrec.models.base import NewItems  # noqa: E402
from modalrec.models.registry import build_model  # noqa: E402


@pytest.mark.parametrize("name", ["pmmrec", "missrec", "unisrec"])
def test_new_item_features_equal_the_catalogue_rows_of_the_same_content(name, cycle_dataset, content_overrides):
    m = tiny_model(name, cycle_dataset, content_overrides).eval()
    needs = m.feature_needs()
    assert {n.modality for n in needs} == set(m.modalities) and needs
    cat = catalogue_features(needs, cycle_dataset, progress=False)
    row = 5
    text = cycle_dataset.catalogue.text[row]
    images = None
    if "image" in m.modalities:
        from modalrec.content.image import ImageReader

        reader = ImageReader(cycle_dataset.catalogue.item_ids, cycle_dataset.catalogue.image_paths)
        images, ok = reader.load(np.array([row]), m.image_size)
        assert ok.all()
    new = new_item_features(needs, NewItems([text], images, None if images is None else np.array([True])))
    for need in needs:
        stored = cat[need.modality].tensor()[row]
        got = new[need.modality].values[0]
        width = stored.shape[0] if need.what == "pooled" or need.modality == "image" else int(new["text"].lengths[0])
        assert torch.equal(got[:width], stored[:width]), need
        assert bool(new[need.modality].present[0])


def test_a_model_built_with_given_features_equals_one_that_computed_them(cycle_dataset, content_overrides):
    a = tiny_model("unisrec", cycle_dataset, content_overrides)
    feats = catalogue_features(a.feature_needs(), cycle_dataset, progress=False)
    torch.manual_seed(0)
    b = build_model(a.config, cycle_dataset, features=feats)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.eval().item_embeddings(), b.eval().item_embeddings())


def test_features_that_do_not_fit_the_model_are_refused(cycle_dataset, content_overrides):
    m = tiny_model("missrec", cycle_dataset, content_overrides)
    n = cycle_dataset.n_items + 1
    wrong = ItemFeatures(
        text=ModalityFeatures(torch.zeros(n, 3, dtype=torch.float16), np.ones(n, bool)),
        image=ModalityFeatures(torch.zeros(n, 3, dtype=torch.float16), np.ones(n, bool)),
    )
    with pytest.raises(ValueError, match="width"):
        m.attach(cycle_dataset, wrong)
    with pytest.raises(ValueError, match="feature is one of"):
        FeatureNeed("audio", "pooled", torch.nn.Identity())


def test_an_id_model_reads_no_features_and_refuses_some(cycle_dataset):
    from modalrec.config import build_config

    m = build_model(build_config(model="sasrec").model, cycle_dataset)
    assert m.feature_needs() == []
    with pytest.raises(ValueError, match="reads no item features"):
        m.attach(cycle_dataset, ItemFeatures(text=None))
