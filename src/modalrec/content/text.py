"""Text tower: a local Hugging Face encoder split into a frozen prefix and a trainable top.

The item text itself is built when the data set is prepared (``ItemsSpec.text_fields`` and
``ItemsSpec.template``; built-ins: ``"Title (Year). Genres: a, b"``), so the tower only sees
strings. ``trainable_layers = n`` trains the top ``n`` Transformer layers; the embeddings and the
layers below are frozen, kept in eval mode (no dropout) and can be computed once per item and
cached (:mod:`modalrec.content.store`). A training step then runs only :meth:`TextTower.top` on
the cached hidden states of the batch's unique items.

Supported for the layer split: BERT-like encoders (``model.embeddings`` + ``model.encoder.layer``:
BERT, RoBERTa, MiniLM, ...) and MPNet (relative position bias). Any other ``AutoModel`` still
works with ``trainable_layers = 0`` (pooled features only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TextTowerConfig:
    model: str = "all-MiniLM-L6-v2"  # built-in weights name or a local Hugging Face model folder
    max_tokens: int = 64  # item texts are truncated to this many tokens (special tokens included)
    pooling: str = "mean"  # mean (over real tokens) | cls
    trainable_layers: int = 0  # top Transformer layers that train; the rest is frozen


class TextTowerError(ValueError):
    pass


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TextTowerError("The text tower needs the `transformers` package: pip install 'modalrec[text]'") from e


def _hf_model(folder):
    """The model of a Hugging Face folder; a folder without weight files (see :meth:`TextTower.save_architecture`)
    gives the architecture with random weights, for a caller that loads a state dict next."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from modalrec.utils import bars_on

    # transformers draws a "Loading weights" bar of its own: like ours, only on a terminal
    hide_bar = hf_logging.is_progress_bar_enabled() and not bars_on(True)
    if hide_bar:
        hf_logging.disable_progress_bar()
    try:
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            return AutoModel.from_pretrained(str(folder))
        return AutoModel.from_config(AutoConfig.from_pretrained(str(folder)))
    finally:
        if hide_bar:
            hf_logging.enable_progress_bar()


class TextTower(nn.Module):
    """``tokenize`` -> ``prefix`` (frozen) -> ``top`` (trainable) -> ``pool``.

    Shapes: ``ids``/``mask`` ``[n, T]``; hidden states ``[n, T, H]``; pooled ``[n, H]``.
    """

    def __init__(self, cfg: TextTowerConfig | None = None, *, quiet: bool = False):
        super().__init__()
        _require_transformers()
        from transformers import AutoTokenizer

        from modalrec.content.weights import resolve, weights_fingerprint

        self.cfg = cfg = cfg or TextTowerConfig()
        if cfg.pooling not in ("mean", "cls"):
            raise TextTowerError(f"text.pooling must be 'mean' or 'cls', not {cfg.pooling!r}")
        if cfg.max_tokens < 2:
            raise TextTowerError(f"text.max_tokens must be at least 2, not {cfg.max_tokens}")
        folder = resolve(cfg.model, kind="text", quiet=quiet)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.model = _hf_model(folder)
        except (OSError, ValueError) as e:
            raise TextTowerError(f"Could not load a Hugging Face text model from {folder}: {e}") from e
        self.model.eval()
        self.weights_hash = weights_fingerprint(folder)
        self.name = cfg.model
        self.hidden_size = int(self.model.config.hidden_size)
        enc = getattr(self.model, "encoder", None)
        self._layers = getattr(enc, "layer", None) if enc is not None else None
        self._splittable = self._layers is not None and hasattr(self.model, "embeddings")
        self._mpnet = self._splittable and hasattr(enc, "relative_attention_bias")
        self.n_layers = len(self._layers) if self._layers is not None else 0
        n = cfg.trainable_layers
        if n < 0 or (self._splittable and n > self.n_layers):
            raise TextTowerError(f"text.trainable_layers must be in 0..{self.n_layers}, not {n}")
        if n > 0 and not self._splittable:
            raise TextTowerError(
                f"{type(self.model).__name__} cannot be split into frozen and trainable layers here "
                "(supported: BERT-like encoders and MPNet); use text.trainable_layers=0"
            )
        self.n_frozen = self.n_layers - n
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in self.top_layers:
            for p in layer.parameters():
                p.requires_grad_(True)

    def save_architecture(self, folder, *, weights: bool = False) -> None:
        """Write the tokenizer and the model config (and, with ``weights``, the weights) into ``folder``: a
        Hugging Face folder this tower can be rebuilt from (``text.model=<folder>``) without downloads."""
        self.tokenizer.save_pretrained(str(folder))
        if weights:
            self.model.save_pretrained(str(folder))
        else:
            self.model.config.save_pretrained(str(folder))

    # -- structure -------------------------------------------------------------------------

    @property
    def top_layers(self) -> list[nn.Module]:
        return list(self._layers[self.n_frozen :]) if self._layers is not None else []

    def identity(self) -> dict:
        """What determines the cached prefix (feature-store manifest)."""
        return {
            "encoder": self.name,
            "weights": self.weights_hash,
            "max_tokens": self.cfg.max_tokens,
            "pooling": self.cfg.pooling,
            "layers": self.n_layers,
        }

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen layers never use dropout; the top's modules follow ``mode``
        for layer in self.top_layers:
            layer.train(mode)
        return self

    # -- steps -----------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, mask)`` as int64 ``[n, T]``, T = the longest text (at most ``max_tokens``)."""
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"]

    def _extended(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run_layers(self, layers, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ext = self._extended(mask, hidden.dtype)
        kw = {}
        if self._mpnet:
            kw["position_bias"] = self.model.encoder.compute_position_bias(hidden)
        for layer in layers:
            out = layer(hidden, ext, **kw) if not kw else layer(hidden, attention_mask=ext, **kw)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def prefix(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers ``[n, T, H]`` (no gradient)."""
        with torch.no_grad():
            if not self._splittable or self._layers is None:  # (splittable: it has layers)
                return self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            if self._mpnet:
                h = self.model.embeddings(input_ids=ids)
            else:
                h = self.model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            return self._run_layers(self._layers[: self.n_frozen], h, mask)

    def top(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The trainable layers on prefix hidden states ``[n, T, H]`` -> ``[n, T, H]``."""
        if self.n_frozen == self.n_layers:
            return hidden
        return self._run_layers(self.top_layers, hidden, mask)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, output: str = "pooled") -> torch.Tensor:
        """Full forward (prefix + top): ``output="pooled"`` -> ``[n, H]``; ``"tokens"`` -> ``[n, T, H]``."""
        h = self.top(self.prefix(ids, mask), mask)
        return self.pool(h, mask) if output == "pooled" else h

    def from_cache(self, hidden: torch.Tensor, lengths: torch.Tensor, output: str = "pooled", buckets: int = 4):
        """The top on cached prefix states ``hidden [n, T, H]`` (any float dtype, right-padded) with
        real token counts ``lengths [n]``.

        Items are sorted by length and run in up to ``buckets`` groups, each trimmed to its own
        longest text, so the trainable layers see (almost) no padding tokens. Returns pooled
        ``[n, H]``, or ``(tokens [n, T', H], mask [n, T'])`` for ``output="tokens"`` (T' = the
        longest of these items).
        """
        n = len(lengths)
        if buckets <= 1 or n < 2 * buckets or self.n_frozen == self.n_layers:
            return self._top_trimmed(hidden, lengths, output)
        order = torch.argsort(lengths.cpu(), stable=True).to(lengths.device)
        parts = [self._top_trimmed(hidden[idx], lengths[idx], output) for idx in torch.tensor_split(order, buckets)]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=order.device)
        if output == "pooled":
            return torch.cat(parts)[inverse]
        t = max(h.shape[1] for h, _ in parts)
        h = torch.cat([F.pad(h, (0, 0, 0, t - h.shape[1])) for h, _ in parts])[inverse]
        m = torch.cat([F.pad(m, (0, t - m.shape[1])) for _, m in parts])[inverse]
        return h, m

    def _top_trimmed(self, hidden: torch.Tensor, lengths: torch.Tensor, output: str):
        t = int(lengths.max()) if lengths.numel() else 1
        h = hidden[:, : max(t, 1)].float()
        mask = (torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None].to(h.device)).long()
        h = self.top(h, mask)
        return self.pool(h, mask) if output == "pooled" else (h, mask)
