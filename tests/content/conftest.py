"""Fixtures for the item-content tests: a tiny random 3-layer BERT folder (never the real MiniLM),
a tiny registered CNN backbone and small PNG images."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_tiny_bert  # noqa: E402  (shared with the model tests)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The towers here are tiny: one intra-op thread is as fast on an idle machine and many times
    faster on a busy one (two spinning OpenMP threads per op). Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bert3(tmp_path_factory) -> str:
    """Folder of a random 3-layer BERT (seed 0)."""
    pytest.importorskip("transformers")
    return write_tiny_bert(tmp_path_factory.mktemp("bert3") / "model", seed=0)


@pytest.fixture
def make_bert():
    """``make_bert(folder, seed=0)`` -> folder of a fresh random 3-layer BERT."""
    pytest.importorskip("transformers")
    return write_tiny_bert


@pytest.fixture(scope="session")
def text_towers(bert3):
    """Cached ``TextTower`` instances by ``(trainable_layers, pooling, max_tokens)`` (read-only use)."""
    from modalrec.content.text import TextTower, TextTowerConfig

    cache = {}

    def get(trainable_layers: int = 0, pooling: str = "mean", max_tokens: int = 16):
        key = (trainable_layers, pooling, max_tokens)
        if key not in cache:
            cache[key] = TextTower(
                TextTowerConfig(model=bert3, max_tokens=max_tokens, pooling=pooling, trainable_layers=trainable_layers),
                quiet=True,
            )
        return cache[key].eval()

    return get


# --------------------------------------------------------------------------------------------
# Images


def _register_content_cnn():
    import torch
    from torch import nn

    from modalrec.content.image import ImageBackbone, register_image_backbone

    @register_image_backbone("tiny-content-cnn")
    class ContentCNN(ImageBackbone):
        """Four conv -> BN -> ReLU stages (3 -> 6 -> 8 -> 10 -> 12 channels), seeded random weights."""

        def __init__(self, weights_path: str = ""):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            chans = [3, 6, 8, 10, 12]
            for i in range(4):
                conv = nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i < 3 else 1, padding=1)
                bn = nn.BatchNorm2d(chans[i + 1])
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
                    # non-trivial stored statistics, so train-mode BatchNorm would visibly differ
                    bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.2)
                    bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
                self.stages.append(nn.Sequential(conv, bn, nn.ReLU()))
            self.out_dim = chans[-1]
            self.max_trainable = 4
            if weights_path:
                self.load_state_dict(torch.load(weights_path, weights_only=True))

    return ContentCNN


_register_content_cnn()


@pytest.fixture(scope="session")
def item_pngs(tmp_path_factory):
    """``(folder, arrays)``: 12 random 20x28 PNGs ``<i>.png`` for items 1..12 and their pixels."""
    from modalrec.datasets.builtin import png_bytes

    folder = tmp_path_factory.mktemp("item-pngs")
    rng = np.random.default_rng(3)
    arrays = {}
    for i in range(1, 13):
        img = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
        img[..., i % 3] //= 2
        arrays[i] = img
        (folder / f"{i}.png").write_bytes(png_bytes(img))
    return folder, arrays
