"""Token encoders of an item tower: a text or image tower (frozen prefix read from the feature store,
trainable top) followed by a projection to ``d``, giving ``(tokens [U, T, d], mask [U, T])`` per item.

Used by PMMRec's item tower (fusion over both modalities' tokens). ``cache``/``aux`` hold the frozen
prefix of the active catalogue (set by the model); ``encode_raw`` runs whole towers on raw content.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.content.image import ImageTowerConfig
from modalrec.content.text import TextTowerConfig


class _Cached(nn.Module):
    """An encoder reading the frozen prefix of the active catalogue from ``cache`` and ``aux``."""

    cache: torch.Tensor | None
    aux: torch.Tensor | None

    def active(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cache, aux)`` of the active catalogue; a RuntimeError before item features are attached."""
        if self.cache is None or self.aux is None:
            raise RuntimeError(
                f"{type(self).__name__}: no item features yet (build_model attaches the catalogue's, "
                "a model loaded from a run has them from load_item_state)"
            )
        return self.cache, self.aux


class TextItemEncoder(_Cached):
    """Text tower (frozen prefix cached, trainable top) + per-token projection to ``d``."""

    def __init__(self, cfg: TextTowerConfig, d: int, quiet: bool):
        super().__init__()
        from modalrec.content.text import TextTower

        self.tower = TextTower(cfg, quiet=quiet)
        self.proj = nn.Linear(self.tower.hidden_size, d)
        self.cache: torch.Tensor | None = None  # [N+1, T, H] of the active domain (PMMRec._use)
        self.aux: torch.Tensor | None = None  # token counts [N+1]

    @staticmethod
    def tables(feats) -> tuple[torch.Tensor, torch.Tensor]:
        """(token states fp32 [N+1, T, H], lengths [N+1]): fp16 on disk, fp32 in memory (no per-step conversion)."""
        return feats.tensor().float(), torch.from_numpy(np.asarray(feats.lengths, dtype=np.int64))

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Catalogue rows [U] -> (tokens [U, T, d], mask [U, T]); T = the longest of these items."""
        r = rows.cpu()
        cache, aux = self.active()
        lengths = aux[r]
        t = max(int(lengths.max()) if len(r) else 1, 1)
        h, mask = self.tower.from_cache(cache[r, :t].to(rows.device), lengths.to(rows.device), output="tokens")
        return self.proj(h), mask

    def encode_raw(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tower.tokenize([t if t else " " for t in texts])
        ids, mask = ids.to(device), mask.to(device)
        h = self.tower.top(self.tower.prefix(ids, mask), mask)
        empty = torch.tensor([not t for t in texts], device=device)
        return self.proj(h), mask.bool() & ~empty[:, None]


class ImageItemEncoder(_Cached):
    """Image tower (frozen prefix cached, trainable top) -> grid x grid tokens -> projection."""

    def __init__(self, cfg: ImageTowerConfig, d: int, grid: int, quiet: bool):
        super().__init__()
        from modalrec.content.image import ImageTower

        self.tower = ImageTower(cfg, quiet=quiet)
        self.grid = grid
        self.proj = nn.Linear(self.tower.out_dim, d)
        self.cache: torch.Tensor | None = None  # of the active domain (PMMRec._use)
        self.aux: torch.Tensor | None = None  # present mask [N+1]

    def tables(self, feats) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled grid fp32 of a frozen tower, else the fp16 prefix feature maps; present [N+1])."""
        x = feats.tensor()
        if self.tower.split >= len(self.tower.backbone.stages):
            x = torch.cat([F.adaptive_avg_pool2d(x[i : i + 1024].float(), self.grid) for i in range(0, len(x), 1024)])
        return x, torch.from_numpy(np.asarray(feats.present, dtype=bool))

    def _tokens(self, fmap: torch.Tensor) -> torch.Tensor:
        if fmap.shape[-1] != self.grid:
            fmap = F.adaptive_avg_pool2d(fmap, self.grid)
        return self.proj(fmap.flatten(2).transpose(1, 2))

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = rows.cpu()
        cache, present = self.active()
        x = cache[r].to(rows.device).float()
        fmap = self.tower.top(x) if self.tower.split < len(self.tower.backbone.stages) else x
        tok = self._tokens(fmap)
        mask = present[r].to(rows.device)[:, None].expand(-1, tok.shape[1])
        return tok, mask

    def encode_raw(self, images: np.ndarray, present: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tower.normalise(torch.from_numpy(images).to(device))
        tok = self._tokens(self.tower.top(self.tower.prefix(x)))
        mask = torch.from_numpy(present).to(device)[:, None].expand(-1, tok.shape[1])
        return tok, mask
