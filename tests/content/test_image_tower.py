"""Image tower with random weights (EfficientNet-Lite0 at 32 px and a tiny registered CNN): the cached
prefix + top equals the full network, which stages train, BatchNorm statistics, image decoding and
the image reader (missing, corrupt, LMDB)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("PIL")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from modalrec.content.image import (  # noqa: E402
    ImageReader,
    ImageTower,
    ImageTowerConfig,
    ImageTowerError,
    decode_image,
    image_backbones,
)
from modalrec.datasets.builtin import png_bytes as png  # noqa: E402


def _calibrate(tower, seed=0):
    """Set every BatchNorm's stored statistics from a random batch, so activations of the random
    network stay near unit scale (default statistics let them shrink to ~1e-9, below fp16 range)."""
    bns = [m for m in tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch -> exactly its statistics
    tower.backbone.stages.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.randn(16, 3, tower.cfg.image_size, tower.cfg.image_size, generator=g)
        for s in tower.backbone.stages:
            x = s(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return tower.eval()


def _efficientnet(trainable_layers=2, seed=0):
    pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(seed)
    tower = ImageTower(ImageTowerConfig(image_size=32, trainable_layers=trainable_layers), pretrained=False)
    return _calibrate(tower, seed)


def _cnn(trainable_layers=2):
    return ImageTower(ImageTowerConfig(model="tiny-content-cnn", image_size=16, trainable_layers=trainable_layers))


def _images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def _all_stages(tower, x):
    with torch.no_grad():
        for s in tower.backbone.stages:
            x = s(x)
    return x


def test_efficientnet_random_stages_equal_the_original_network():
    """Stem, 16 MBConv blocks and head in order are EfficientNet-Lite0's feature extractor."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(5)
    tower = ImageTower(ImageTowerConfig(image_size=32, trainable_layers=2), pretrained=False)
    torch.manual_seed(5)
    net = EfficientNet.from_name("efficientnet-lite0").eval()
    assert len(tower.backbone.stages) == 18 and tower.out_dim == 1280 and tower.backbone.max_trainable == 16
    assert tower.backbone.weights_hash == "random" and tower.identity()["weights"] == "random"
    assert not tower.training
    x = tower.normalise(_images(2, 32))
    with torch.no_grad():
        ref = net.extract_features(x)
    assert ref.shape == (2, 1280, 1, 1)
    torch.testing.assert_close(_all_stages(tower, x), ref, atol=0, rtol=1e-5)


def test_efficientnet_weights_file(tmp_path):
    """A weights file (here: random, BatchNorm-calibrated) is loaded and fingerprinted."""
    from efficientnet_lite_pytorch import EfficientNet

    from modalrec.utils import file_digest

    torch.manual_seed(7)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.train()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        net.extract_features(torch.randn(16, 3, 32, 32))
    net.eval()
    torch.save(net.state_dict(), tmp_path / "lite0.pth")
    tower = ImageTower(ImageTowerConfig(image_size=32, weights=str(tmp_path / "lite0.pth"))).eval()
    assert tower.identity()["weights"] == file_digest(tmp_path / "lite0.pth")
    x = tower.normalise(_images(2, 32, seed=1))
    with torch.no_grad():
        ref = net.extract_features(x)
        pooled = tower(x)
    assert ref.abs().max() > 0.1  # calibrated: no vanishing activations
    torch.testing.assert_close(pooled, ref.mean(dim=(2, 3)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make,n", [(_efficientnet, 0), (_efficientnet, 2), (_efficientnet, 16), (_cnn, 0), (_cnn, 2), (_cnn, 4)]
)
def test_cached_prefix_then_top_equals_full_forward(make, n):
    tower = make(n).eval()
    size = tower.cfg.image_size
    x = tower.normalise(_images(3, size))
    ref = _all_stages(tower, x)
    with torch.no_grad():
        pre = tower.prefix(x)
        fmap = tower.top(pre)
        pooled = tower.from_cache(pre)
        pooled16 = tower.from_cache(pre.half())
        tokens = tower(x, output="tokens")
    torch.testing.assert_close(fmap, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, ref.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(tower(x), pooled, atol=1e-5, rtol=0)
    assert ref.abs().max() > 0.1
    # an fp16 cache: rounding errors grow through the (random) trainable stages, at most a percent of scale
    scale = float(pooled.abs().max())
    torch.testing.assert_close(pooled16, pooled, atol=1e-2 * scale, rtol=0)
    assert (pooled16 - pooled).abs().max() > 0  # the cache really was rounded (n > 0: the top ran on it)
    assert pooled.shape == (3, tower.out_dim)
    h, w = ref.shape[2:]
    assert tokens.shape == (3, h * w, tower.out_dim)
    torch.testing.assert_close(tokens[:, 0], ref[:, :, 0, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("make,n,split", [(_cnn, 2, 2), (_efficientnet, 2, 15), (_efficientnet, 0, 18)])
def test_only_trainable_stages_get_gradients(make, n, split):
    tower = make(n)
    stages = tower.backbone.stages
    assert tower.split == split
    x = tower.normalise(_images(2, tower.cfg.image_size))
    pre = tower.prefix(x)
    assert not pre.requires_grad
    tower.train()
    out = tower.from_cache(pre)
    if n == 0:
        assert not out.requires_grad
        assert not any(p.requires_grad for p in tower.parameters())
        return
    out.pow(2).sum().backward()
    for i, s in enumerate(stages):
        params = list(s.parameters())
        if i < split:
            assert all(p.grad is None and not p.requires_grad for p in params), i
        else:
            assert all(p.grad is not None for p in params), i
            assert any(p.grad.abs().sum() > 0 for p in params), i


@pytest.mark.parametrize("make", [_cnn, _efficientnet])
def test_batchnorm_uses_stored_statistics_in_train_mode(make):
    tower = make(2)
    tower.train()
    assert tower.training
    bns = [m for m in tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == (4 if make is _cnn else 2 + 16 * 2 + 15)
    assert not any(m.training for m in bns)
    assert not any(m.training for s in tower.backbone.stages[: tower.split] for m in s.modules())
    top_convs = [m for s in tower.backbone.stages[tower.split :] for m in s.modules() if isinstance(m, nn.Conv2d)]
    assert top_convs and all(m.training for m in top_convs)

    before = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    x = tower.normalise(_images(4, tower.cfg.image_size))
    out = tower(x)
    out.sum().backward()
    for m, (mean, var) in zip(bns, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    if make is _cnn:  # no dropout / drop-connect: train mode gives exactly the eval output
        with torch.no_grad():
            torch.testing.assert_close(out.detach(), tower.eval()(x), atol=1e-6, rtol=0)


def test_bad_image_configs(tmp_path):
    assert {"efficientnet-lite0", "tiny-content-cnn"} <= set(image_backbones())
    with pytest.raises(ImageTowerError, match=r"Unknown image backbone 'resnet-9000'.*tiny-content-cnn"):
        ImageTower(ImageTowerConfig(model="resnet-9000"))
    with pytest.raises(ImageTowerError, match=r"trainable_layers must be in 0\.\.4, not 5"):
        _cnn(5)
    with pytest.raises(ImageTowerError, match=r"image_size must be at least 8, not 4"):
        ImageTower(ImageTowerConfig(model="tiny-content-cnn", image_size=4))
    with pytest.raises(ImageTowerError, match=r"image.weights: file not found: .*nope\.pt"):
        ImageTower(ImageTowerConfig(model="tiny-content-cnn", weights=str(tmp_path / "nope.pt")))


def test_weights_file_is_loaded_and_fingerprinted(tmp_path):
    net = _cnn(0).backbone  # the seeded default weights of tiny-content-cnn
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(-1.5)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    tower = ImageTower(ImageTowerConfig(model="tiny-content-cnn", image_size=16, weights=str(tmp_path / "w.pt")))
    default = _cnn(0)
    assert tower.identity()["weights"] not in ("random", default.identity()["weights"])
    torch.testing.assert_close(tower.backbone.stages[0][0].weight, net.stages[0][0].weight)
    x = tower.normalise(_images(1, 16))
    assert not torch.allclose(tower.eval()(x), default.eval()(x))


# --------------------------------------------------------------------------------------------- decoding


def test_decode_non_square_png_resizes_and_centre_crops():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    out = decode_image(png(img), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # no resize needed: the shorter side already fits, only the centre columns are kept
    wide = np.repeat(np.arange(30, dtype=np.uint8)[None, :, None] * 8, 10, 0).repeat(3, 2)
    np.testing.assert_array_equal(decode_image(png(wide), 10), wide[:, 10:20])
    tall = wide.transpose(1, 0, 2).copy()
    np.testing.assert_array_equal(decode_image(png(tall), 10), tall[10:20])
    # a flat colour survives resizing
    flat = np.full((7, 13, 3), (200, 30, 90), dtype=np.uint8)
    assert (decode_image(png(flat), 24) == np.array([200, 30, 90], dtype=np.uint8)).all()


def test_decode_converts_grey_and_rgba_to_rgb():
    import io

    from PIL import Image

    for mode in ("L", "RGBA"):
        buf = io.BytesIO()
        Image.new(mode, (9, 12), 128 if mode == "L" else (128, 0, 0, 255)).save(buf, "PNG")
        out = decode_image(buf.getvalue(), 8)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and out[0, 0, 0] == 128


def test_decoding_an_rgb_image_holds_one_full_size_copy(monkeypatch):
    """A served request may carry 50 images of 12 megapixels (issue 21): an RGB image goes from the decoder
    straight to resizing, never through ``convert`` (which copies it: two full-size images at once), and
    its pixels are those the convert-then-resize path gives."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    reference = Image.fromarray(img).convert("RGB").resize((24, 16), Image.Resampling.BILINEAR)
    expected = np.asarray(reference.crop((4, 0, 20, 16)))
    sizes = []
    convert = Image.Image.convert

    def spy(self, *args, **kwargs):
        sizes.append(self.size)
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", spy)
    np.testing.assert_array_equal(decode_image(png(img), 16), expected)
    assert (90, 60) not in sizes


# --------------------------------------------------------------------------------------------- reading


def _reader(item_pngs, paths_by_item, n=6):
    folder, _ = item_pngs
    ids = ["[PAD]"] + [f"m{i}" for i in range(1, n + 1)]
    paths = [""] + [paths_by_item.get(i, str(folder / f"{i}.png")) for i in range(1, n + 1)]
    return ImageReader(ids, paths)


def test_reader_loads_listed_images(item_pngs):
    folder, arrays = item_pngs
    reader = _reader(item_pngs, {})
    imgs, present = reader.load([0, 1, 2, 5], 16)
    assert imgs.shape == (4, 16, 16, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(present, [False, True, True, True])
    assert (imgs[0] == 0).all()
    for k, i in enumerate([1, 2, 5], start=1):
        np.testing.assert_array_equal(imgs[k], decode_image((folder / f"{i}.png").read_bytes(), 16))
    assert reader.has_source()
    np.testing.assert_array_equal(reader.available(), [False] + [True] * 6)


def test_reader_missing_path_is_absent_without_warning(item_pngs):
    reader = _reader(item_pngs, {3: ""})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imgs, present = reader.load([3, 4, 3], 16)
    assert caught == []
    np.testing.assert_array_equal(present, [False, True, False])
    assert (imgs[0] == 0).all() and (imgs[2] == 0).all()
    assert reader.corrupt == []
    assert not reader.available()[3]


def test_reader_corrupt_file_warns_once_and_counts_as_missing(item_pngs, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG this is not an image at all" * 3)
    reader = _reader(item_pngs, {2: str(bad)})
    assert reader.available()[2]  # listed, only reading it fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, p1 = reader.load([1, 2], 16)
        imgs, p2 = reader.load([2, 2, 3], 16)
    np.testing.assert_array_equal(p1, [True, False])
    np.testing.assert_array_equal(p2, [False, False, True])
    assert (imgs[:2] == 0).all()
    assert len(caught) == 1 and str(bad) in str(caught[0].message) and "'m2'" in str(caught[0].message)
    assert reader.corrupt == [str(bad)]


def test_reader_vanished_file_warns_once(item_pngs, tmp_path):
    gone = tmp_path / "gone.png"
    reader = _reader(item_pngs, {4: str(gone)})
    with pytest.warns(UserWarning, match="gone.png") as caught:
        _, p1 = reader.load([4], 16)
        _, p2 = reader.load([4, 1], 16)
    assert len(caught) == 1
    np.testing.assert_array_equal(np.concatenate([p1, p2]), [False, False, True])


def test_no_source():
    reader = ImageReader(["[PAD]", "a", "b"])
    assert not reader.has_source()
    assert not reader.available().any()
    _, present = reader.load([1, 2], 8)
    assert not present.any()


def test_lmdb_source_gives_the_same_pixels(item_pngs, tmp_path):
    lmdb = pytest.importorskip("lmdb")
    folder, _ = item_pngs
    reader_files = _reader(item_pngs, {5: ""})
    env = lmdb.open(str(tmp_path / "images.lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in (1, 2, 3, 4, 6):  # item 5 has no image
            txn.put(f"m{i}".encode(), (folder / f"{i}.png").read_bytes())
    env.close()
    reader_lmdb = ImageReader(reader_files.item_ids, None, str(tmp_path / "images.lmdb"))
    assert reader_lmdb.has_source()
    np.testing.assert_array_equal(reader_lmdb.available(), reader_files.available())
    rows = [0, 1, 2, 3, 4, 5, 6]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, pa = reader_files.load(rows, 16)
        b, pb = reader_lmdb.load(rows, 16)
    np.testing.assert_array_equal(pa, [False, True, True, True, True, False, True])
    np.testing.assert_array_equal(pb, pa)
    np.testing.assert_array_equal(b, a)
    assert a[1:].any()
    with pytest.raises(ImageTowerError, match="image.lmdb: not found"):
        ImageReader(reader_files.item_ids, None, str(tmp_path / "nope.lmdb"))
