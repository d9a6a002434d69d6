"""Shared fixtures: tiny in-memory data sets and an isolated cache folder."""

from __future__ import annotations

import numpy as np
import pytest

from modalrec.data.dataset import PAD, Catalogue, PreparedDataset, SeqSet, Split


def make_loo_dataset(sequences: list[list[int]], n_items: int, name: str = "tiny") -> PreparedDataset:
    """A leave-one-out PreparedDataset from explicit item-index sequences (each >= 3 long)."""
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences])
    users = np.arange(len(sequences), dtype=np.int32)
    start, end = offsets[:-1], offsets[1:]
    train = SeqSet(items, start, end - 2, users)
    valid = SeqSet(items, start, end - 2, users, items[end - 2])
    test = SeqSet(items, start, end - 1, users, items[end - 1])
    cat = Catalogue(
        np.array([PAD] + [str(i) for i in range(1, n_items + 1)]),
        np.array([""] + [f"item {i}" for i in range(1, n_items + 1)]),
    )
    return PreparedDataset(
        name,
        cat,
        np.array([f"u{u}" for u in users]),
        offsets,
        items,
        np.arange(len(items), dtype=np.int64),
        Split("loo", train, valid, test),
        {"key": name},
    )


@pytest.fixture
def cycle_dataset(tiny_images) -> PreparedDataset:
    """60 users walking a ring of 20 items (next = current + step), learnable by an ID model.

    Items have texts ("item 7") and tiny images (one PNG per item, item 3 has none)."""
    rng = np.random.default_rng(0)
    n_items, seqs = 20, []
    for u in range(60):
        start, step, length = rng.integers(1, n_items + 1), 1 + u % 2, rng.integers(6, 15)
        seqs.append([int((start - 1 + k * step) % n_items + 1) for k in range(length)])
    ds = make_loo_dataset(seqs, n_items, "cycle")
    paths = [""] + [str(tiny_images / f"{i}.png") if i != 3 else "" for i in range(1, n_items + 1)]
    ds.catalogue.image_paths = np.asarray(paths, dtype=str)
    return ds


# --------------------------------------------------------------------------------------------
# Tiny content towers (random weights): tests never need the real MiniLM / EfficientNet


WORDS = (
    "item movie the a of and in to is story love war night day man girl boy life world time city "
    "house dark last first great little comedy drama action thriller horror romance animation "
    "children crime genres year".split()
)
VOCAB = list(
    dict.fromkeys(
        [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            *"abcdefghijklmnopqrstuvwxyz",
            *"0123456789",
            *".,:;!?'()-&/",
            *WORDS,
            *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"],
        ]
    )
)


def write_tiny_bert(folder, seed: int = 0, layers: int = 3) -> str:
    """A random BERT (hidden 32, ``layers`` layers) and its word-piece tokenizer saved in ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    if len(tok) < len(VOCAB):  # transformers >= 5 ignores vocab_file here (every word would be [UNK])
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    assert tok.tokenize("The movie xyz") == ["the", "movie", "x", "##y", "##z"]
    tok.save_pretrained(str(folder))
    cfg = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> str:
    """Folder of a random 2-layer BERT (hidden 32) with a small word-piece vocabulary."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model", seed=0, layers=2)


def _register_tiny_cnn():
    import torch
    from torch import nn

    from modalrec.content.image import ImageBackbone, register_image_backbone

    class TinyCNN(ImageBackbone):
        def __init__(self, weights_path: str = ""):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            chans = [3, 8, 12, 16]
            for i in range(3):
                conv = nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
                    conv.bias.zero_()
                self.stages.append(nn.Sequential(conv, nn.BatchNorm2d(chans[i + 1]), nn.ReLU()))
            self.out_dim = chans[-1]
            self.max_trainable = 3
            if weights_path:
                self.load_state_dict(torch.load(weights_path, weights_only=True))

    register_image_backbone("tiny-test-cnn")(TinyCNN)


_register_tiny_cnn()


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """One 20x24 PNG per item 1..20 (colour by item), in a session folder."""
    from modalrec.datasets.builtin import png_bytes

    folder = tmp_path_factory.mktemp("tiny-images")
    rng = np.random.default_rng(1)
    for i in range(1, 21):
        img = np.zeros((20, 24, 3), dtype=np.uint8)
        img[..., i % 3] = 40 + 10 * i
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)
        (folder / f"{i}.png").write_bytes(png_bytes(img))
    return folder


def tiny_model(name: str, dataset, content_overrides: dict, *extra: str, seed: int = 0):
    """A model with tiny towers, window 8 and no dropout, fitted on ``dataset`` (model tests)."""
    import torch

    from modalrec.config import build_config
    from modalrec.models.registry import build_model

    torch.manual_seed(seed)
    cfg = build_config(
        model=name,
        overrides=content_overrides.get(name, [])
        + ["model.max_len=8", "model.dropout=0.0", "model.attn_dropout=0.0", *extra],
    )
    m = build_model(cfg.model, dataset)
    m.fit_statistics(dataset)
    return m


def first_batch(dataset, max_len: int = 8, batch_size: int = 6) -> dict:
    """The first training batch of epoch 0 (seed 0)."""
    from modalrec.data.batches import train_loader

    loader, sampler = train_loader(dataset.split.train, max_len, batch_size, seed=0)
    sampler.set_epoch(0)
    return next(iter(loader))


@pytest.fixture
def content_overrides(tiny_text_model) -> dict[str, list[str]]:
    """Per-model overrides that swap in the tiny towers (content models only)."""
    tiny = [
        f"model.text.model={tiny_text_model}",
        "model.text.max_tokens=8",
        "model.image.model=tiny-test-cnn",
        "model.image.image_size=16",
    ]
    return {
        "pmmrec": tiny + ["model.hidden_size=16", "model.image_grid=2"],
        "missrec": tiny
        + ["model.hidden_size=16", "model.n_heads=2", "model.inner_size=32", "model.interest_ratio=0.25"],
        "unisrec": [
            f"model.text.model={tiny_text_model}",
            "model.text.max_tokens=8",
            "model.hidden_size=16",
            "model.inner_size=32",
        ],
    }


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path_factory, monkeypatch):
    """Every test gets its own MODALREC_HOME, except tests marked ``builtin``, which use the real
    cache so the MovieLens downloads happen once per machine."""
    if request.node.get_closest_marker("builtin"):
        return
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("home")))
