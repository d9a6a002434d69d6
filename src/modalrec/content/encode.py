"""Encode a prepared data set's catalogue with the chosen towers into the feature store.

Library side of ``modalrec encode``; also what content models call before training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modalrec.content.image import ImageTowerConfig
from modalrec.content.text import TextTowerConfig


@dataclass
class EncodeConfig:
    towers: tuple[str, ...] = ("text",)  # text and/or image
    what: str = "pooled"  # pooled (whole frozen tower) | prefix (frozen layers only, for a trainable top)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    batch_size: int = 0  # items per chunk (0 = 64 for text, 32 for images)
    root: str = ""  # feature-store root ("" = $MODALREC_HOME/features)


def encode_dataset(ds, cfg: EncodeConfig, *, progress: bool = True, dist=None) -> dict:
    """Encode ``ds.catalogue`` with each tower of ``cfg``; returns ``{tower: {"folder", report...}}``."""
    from modalrec.content.store import encode_images, encode_text

    bad = set(cfg.towers) - {"text", "image"}
    if bad or not cfg.towers:
        raise ValueError(f"towers must be a non-empty subset of text, image; got {list(cfg.towers)}")
    out = {}
    cat = ds.catalogue
    if "text" in cfg.towers:
        from modalrec.content.text import TextTower

        t0 = time.time()
        text_tower = TextTower(cfg.text, quiet=not progress)
        load_s = time.time() - t0
        feats, rep = encode_text(
            text_tower,
            cat.item_ids,
            cat.text,
            dataset=ds.name,
            what=cfg.what,
            root=cfg.root or None,
            batch_size=cfg.batch_size or 64,
            progress=progress,
            dist=dist,
        )
        out["text"] = {
            "folder": str(feats.folder),
            "shape": list(feats.values.shape),
            "load_s": round(load_s, 2),
            **rep.to_dict(),
        }
    if "image" in cfg.towers:
        from modalrec.content.image import ImageReader, ImageTower

        reader = ImageReader(cat.item_ids, cat.image_paths, cfg.image.lmdb)
        if not reader.has_source():
            raise ValueError(
                f"{ds.name}: the catalogue has no images. Point items.image_dir or items.image_col at them, "
                "set image.lmdb, or (MovieLens built-ins) use data.posters=true for posters rendered from metadata"
            )
        t0 = time.time()
        image_tower = ImageTower(cfg.image, quiet=not progress)
        load_s = time.time() - t0
        feats, rep = encode_images(
            image_tower,
            reader,
            dataset=ds.name,
            what=cfg.what,
            root=cfg.root or None,
            batch_size=cfg.batch_size or 32,
            progress=progress,
            dist=dist,
        )
        out["image"] = {
            "folder": str(feats.folder),
            "shape": list(feats.values.shape),
            "load_s": round(load_s, 2),
            **rep.to_dict(),
        }
    return out
