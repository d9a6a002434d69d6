"""PMMRec: multi-modal pre-training for transferable, ID-free sequential recommendation.

Li, Du, Ni, Zhao, Guo, Yuan, Zhou, "Multi-Modality is All You Need for Transferable Recommender
Systems", ICDE 2024 (arXiv 2312.09602). Reference code: github.com/ICDE24/PMMRec.

Item tower: text tokens (``text_encoder``: a Hugging Face encoder + a per-token projection) and
image tokens (``image_encoder``: a CNN feature map pooled to a ``image_grid`` x ``image_grid``
token grid + projection) go through ``fusion`` (default: one merged-attention layer with
modality-type embeddings, then a masked mean). User tower (``user_encoder``): a causal
Transformer with learned positions over the item vectors. Score: dot product.

Losses (each has a switch and a weight; the paper's exact formulas are not public, so each
choice below is ours and documented in docs/models/pmmrec.md):

* next-item: in-batch softmax over the unique items of the batch, logQ correction by training
  popularity, the user's own items other than the target masked out, padding never a class;
* NICL: per-modality vectors (masked mean of the projected tokens, MLP head, L2-normalised,
  temperature 0.1). Anchor = one modality of the item at one real position of the B x (L+1)
  window; positives = the other modality of the same item and of the next item; negatives =
  items not in the anchor's sequence, in the other modality (inter) and the same one (intra);
  both directions; multi-positive InfoNCE ``LSE(P u N) - mean(P)``;
* NID: a noised copy of each input sequence (``noise_ratio`` of the real positions replaced by
  uniform random catalogue items, or shuffled among themselves); a linear head on the user
  encoder's outputs predicts which positions were changed (binary cross-entropy);
* RCL: InfoNCE between the user vectors of the clean and the noised sequence (cosine,
  temperature ``rcl_temperature``, in-batch negatives, both directions).

Speed: the frozen part of each tower is computed once per item into the feature store; a step
encodes each *unique* item of the batch once (never padding) through the trainable top only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.content.image import ImageTowerConfig
from modalrec.content.text import TextTowerConfig
from modalrec.content.features import FeatureNeed, ItemFeatures
from modalrec.losses import masked_softmax_ce
from modalrec.models.base import ModelConfig, Output, SequentialRecommender, init_normal
from modalrec.models.registry import register_model
from modalrec.nn.fusion import Fusion, masked_mean
from modalrec.nn.token_encoders import ImageItemEncoder, TextItemEncoder
from modalrec.nn.transformer import SequenceEncoder

MODALITY_TYPE = {"text": 0, "image": 1}


@dataclass
class PMMRecConfig(ModelConfig):
    name: str = "pmmrec"
    max_len: int = 20
    modalities: str = "text,image"  # text | image | text,image
    hidden_size: int = 128
    text: TextTowerConfig = field(default_factory=lambda: TextTowerConfig(max_tokens=32))
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    image_grid: int = 3  # the image feature map is average-pooled to grid x grid tokens (7 = all 49)
    fusion: str = "merged_attention"  # merged_attention | mean | concat | gated
    fusion_layers: int = 1
    fusion_heads: int = 2
    fusion_dropout: float = 0.0  # dropout inside the fusion layer (it runs over every token of every item)
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 0  # 0 = 4 x hidden_size
    dropout: float = 0.1
    attn_dropout: float = 0.1
    init_std: float = 0.02
    # losses
    rec_weight: float = 1.0
    logq: bool = True
    nicl: bool = True
    nicl_weight: float = 0.4
    nicl_temperature: float = 0.1
    nicl_max_anchors: int = 1024  # anchors per step (random real positions of the windows; 0 = all)
    nid: bool = True
    nid_weight: float = 0.2
    noise_ratio: float = 0.15
    noise: str = "replace"  # replace | shuffle | mixed (half of the sequences each)
    rcl: bool = True
    rcl_weight: float = 0.2
    rcl_temperature: float = 0.1
    encode_chunk: int = 512  # items per chunk when the whole catalogue is encoded (evaluation)
    encode_buckets: int = 8  # items of a step are encoded in this many groups of similar text length

    def train_defaults(self) -> dict:
        """A pre-train on ml-1m in well under an hour on 2 CPU cores."""
        return {"epochs": 4, "batch_size": 256, "patience": 3}


@register_model("pmmrec")
class PMMRec(SequentialRecommender):
    config_class = PMMRecConfig
    config: PMMRecConfig
    text_encoder: TextItemEncoder  # each present when its modality is used
    image_encoder: ImageItemEncoder
    log_q: torch.Tensor  # buffer [N+1]: the active domain's log item frequency (logQ correction)
    id_free = True

    def __init__(self, config: PMMRecConfig, dataset, *, quiet: bool = False):
        super().__init__(config, dataset)
        c = config
        mods = [m.strip() for m in c.modalities.split(",") if m.strip()]
        if not mods or set(mods) - set(MODALITY_TYPE) or len(set(mods)) != len(mods):
            raise ValueError(f"model.modalities must be text, image or text,image; got {c.modalities!r}")
        if c.noise not in ("replace", "shuffle", "mixed"):
            raise ValueError(f"model.noise must be replace, shuffle or mixed, not {c.noise!r}")
        if not 0.0 < c.noise_ratio < 1.0:
            raise ValueError(f"model.noise_ratio must be in (0, 1), not {c.noise_ratio}")
        self.modalities = mods
        d = c.hidden_size
        if "text" in mods:
            self.text_encoder = TextItemEncoder(c.text, d, quiet)
        if "image" in mods:
            self.image_encoder = ImageItemEncoder(c.image, d, c.image_grid, quiet)
        self.fusion = Fusion(
            c.fusion, d, [MODALITY_TYPE[m] for m in mods], c.fusion_layers, c.fusion_heads, c.fusion_dropout
        )
        self.user_encoder = SequenceEncoder(
            d, c.max_len, c.n_layers, c.n_heads, c.inner_size or 4 * d, c.dropout, c.attn_dropout, norm_first=False
        )
        self.nicl_head = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.nid_head = nn.Linear(d, 1)
        for module in (
            self.fusion,
            self.user_encoder,
            self.nicl_head,
            self.nid_head,
            *(enc.proj for enc in self.content_encoders()),
        ):
            init_normal(module, c.init_std)
        self.register_buffer("log_q", torch.zeros(self.n_items + 1), persistent=False)
        self._table: torch.Tensor | None = None
        self._fixed_table: torch.Tensor | None = None  # a model rebuilt from a run: its item table (item_state)
        # domain 0 without features until attach (or, rebuilt from a run, load_item_state)
        self._domains = [{"name": dataset.name, "n_items": dataset.n_items, "log_q": torch.zeros(dataset.n_items + 1)}]
        self._active = -1
        self._use(0)

    # -- components and data -----------------------------------------------------------------

    COMPONENTS = ("text_encoder", "image_encoder", "fusion", "user_encoder", "nicl_head", "nid_head")

    def content_encoders(self) -> list[TextItemEncoder | ImageItemEncoder]:
        return [getattr(self, f"{m}_encoder") for m in self.modalities]

    min_group = 64  # items per length group at least (smaller groups make the matrix products slow)
    supports_domains = True  # can pre-train on several data sets at once (data.extra_sources)

    @property
    def image_size(self) -> int | None:
        return self.config.image.image_size if "image" in self.modalities else None

    def feature_needs(self) -> list[FeatureNeed]:
        """The frozen prefix of each modality's tower (token states, feature maps); the top trains."""
        needs = {
            "text": lambda: FeatureNeed("text", "prefix", self.text_encoder.tower),
            "image": lambda: FeatureNeed("image", "prefix", self.image_encoder.tower, self.config.image.lmdb),
        }
        return [needs[m]() for m in self.modalities]

    def attach(self, dataset, features: ItemFeatures) -> None:
        """Point the item tower at ``dataset``'s catalogue, given its frozen prefix features.

        This becomes domain 0 (the one evaluated); :meth:`add_domain` adds more training domains.
        """
        self._domains = [self._domain_state(dataset, features)]
        self._active = -1
        self._use(0)

    def add_domain(self, dataset, features: ItemFeatures) -> int:
        """Another source data set with its own item space; its batches carry ``domain`` = the index."""
        dom = self._domain_state(dataset, features)
        counts = torch.as_tensor(dataset.train_item_counts(), dtype=torch.float64)
        dom["log_q"] = torch.log((counts + 1.0) / (counts + 1.0).sum()).float()
        self._domains.append(dom)
        return len(self._domains) - 1

    def _domain_state(self, dataset, features: ItemFeatures) -> dict:
        dom = {"name": dataset.name, "n_items": dataset.n_items, "log_q": torch.zeros(dataset.n_items + 1)}
        for m in self.modalities:
            dom[m] = getattr(self, f"{m}_encoder").tables(features[m])
        return dom

    def _use(self, k: int) -> None:
        if k == self._active:
            return
        if not 0 <= k < len(self._domains):
            raise ValueError(f"batch from domain {k}, but the model knows {len(self._domains)} domain(s)")
        dom = self._domains[k]
        self.n_items = dom["n_items"]
        for m in self.modalities:
            getattr(self, f"{m}_encoder").cache, getattr(self, f"{m}_encoder").aux = dom.get(m, (None, None))
        self.log_q = dom["log_q"].to(self.log_q.device)
        self._active = k
        self._table = None

    def fit_statistics(self, dataset) -> None:
        counts = torch.as_tensor(dataset.train_item_counts(), dtype=torch.float64)
        q = (counts + 1.0) / (counts + 1.0).sum()
        self._domains[0]["log_q"] = torch.log(q).float()
        self._active = -1
        self._use(0)

    def train(self, mode: bool = True):
        self._table = None
        if not mode and getattr(self, "_domains", None):
            self._use(0)  # evaluation and serving are on the main data set
        return super().train(mode)

    # -- item tower --------------------------------------------------------------------------

    def _encode(self, rows: torch.Tensor, return_parts: bool = False):
        """Item vectors ``[U, d]`` of catalogue ``rows``; with ``return_parts`` also each modality's
        ``(masked mean of its tokens [U, d], has tokens [U])`` (NICL's inputs).

        Items are sorted by text length and encoded in up to ``encode_buckets`` groups, each padded
        only to its own longest text: each item's tokens attend among themselves, so grouping
        changes no result, and the fusion layer no longer computes on padding.
        """
        groups = self._length_groups(rows)
        outs = [self._encode_group(rows[g]) for g in groups]
        if len(outs) == 1:
            vec, pooled = outs[0]
        else:
            inverse = torch.empty_like(rows)
            order = torch.cat(groups)
            inverse[order] = torch.arange(len(rows), device=rows.device)
            vec = torch.cat([o[0] for o in outs])[inverse]
            pooled = [
                (torch.cat([o[1][k][0] for o in outs])[inverse], torch.cat([o[1][k][1] for o in outs])[inverse])
                for k in range(len(outs[0][1]))
            ]
        return (vec, pooled) if return_parts else vec

    def _encode_group(self, rows: torch.Tensor):
        parts = [enc(rows) for enc in self.content_encoders()]
        return self.fusion(parts), [(masked_mean(x, m), m.any(1)) for x, m in parts]

    def _length_groups(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Index groups of ``rows`` by text length (one group without text or for few items)."""
        k = self.config.encode_buckets
        if "text" not in self.modalities or k <= 1 or len(rows) < self.min_group * k:
            return [torch.arange(len(rows), device=rows.device)]
        lengths = self.text_encoder.active()[1][rows.cpu()]
        order = torch.argsort(lengths, stable=True).to(rows.device)
        return list(torch.tensor_split(order, k))

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        dev = self.log_q.device
        if self._fixed_table is not None:
            if self.training:
                raise RuntimeError(
                    "this PMMRec was rebuilt from a run folder without its item features: it "
                    "recommends and adds items; to train it, fine-tune from the run "
                    "(modalrec finetune --from RUN)"
                )
            table = self._fixed_table.to(dev)
            return table if items is None else table[items]
        if items is None:
            if self._table is None or self.training:
                rows = torch.arange(1, self.n_items + 1, device=dev)
                chunks = [
                    self._encode(rows[i : i + self.config.encode_chunk])
                    for i in range(0, len(rows), self.config.encode_chunk)
                ]
                table = torch.cat([torch.zeros(1, self.config.hidden_size, device=dev), *chunks])
                if self.training:
                    return table
                self._table = table
            return self._table
        flat = items.reshape(-1)
        uniq, inv = torch.unique(flat, return_inverse=True)
        vec = self._encode(uniq.clamp_min(1)) * (uniq != 0).unsqueeze(-1)
        return vec[inv].reshape(*items.shape, -1)

    @torch.no_grad()
    def encode_content(
        self, texts: list[str] | None = None, images: np.ndarray | None = None, present: np.ndarray | None = None
    ) -> torch.Tensor:
        """Item vectors ``[n, d]`` for raw content never seen before (serving new items)."""
        dev = self.log_q.device
        parts = []
        for m in self.modalities:
            if m == "text":
                if texts is None:
                    raise ValueError("this PMMRec model uses text: give the new items' texts")
                parts.append(self.text_encoder.encode_raw(list(texts), dev))
            else:
                if images is None:  # text only: every image absent
                    if texts is None:
                        raise ValueError("give the new items' texts or images")
                    size = self.config.image.image_size
                    images, present = np.zeros((len(texts), size, size, 3), np.uint8), np.zeros(len(texts), dtype=bool)
                if present is None:
                    raise ValueError("give which of the new items have an image (present) with their images")
                parts.append(self.image_encoder.encode_raw(images, present, dev))
        return self.fusion(parts)

    # -- a run folder's copy ---------------------------------------------------------------------

    @torch.no_grad()
    def item_state(self) -> dict[str, torch.Tensor]:
        """The evaluated catalogue's item table ``[N+1, d]`` (the frozen token caches are too large to ship)."""
        was = self.training
        self.eval()
        try:
            return {"item_table": self.item_embeddings(None).detach().float().cpu().clone()}
        finally:
            self.train(was)

    def load_item_state(self, state: dict[str, torch.Tensor]) -> None:
        table = state["item_table"]
        if table.shape != (self.n_items + 1, self.config.hidden_size):
            raise ValueError(
                f"item_table of shape {tuple(table.shape)} does not fit {self.n_items} items of size "
                f"{self.config.hidden_size}"
            )
        self._fixed_table = table.float()

    def save_assets(self, folder) -> None:
        """The text tower's tokenizer and architecture (its weights are in the state dict)."""
        from pathlib import Path

        if "text" in self.modalities:
            self.text_encoder.tower.save_architecture(Path(folder) / "text")

    @classmethod
    def config_from_assets(cls, config: ModelConfig, folder) -> ModelConfig:
        from dataclasses import replace
        from pathlib import Path

        config = cls.own_config(config, PMMRecConfig)
        text = (
            replace(config.text, model=str(Path(folder) / "text")) if (Path(folder) / "text").is_dir() else config.text
        )
        return replace(config, text=text, image=replace(config.image, pretrained=False))

    @torch.no_grad()
    def _rebuilt_add(self, features: ItemFeatures, table: torch.Tensor) -> torch.Tensor:
        """add_items on a model rebuilt from a run: encode the new items alone (as a one-off domain of
        ``n`` items) and append their vectors to its item ``table``."""
        n, n0 = _n_new(features, self.modalities), self.n_items
        dom = {"name": "new", "n_items": n, "log_q": torch.zeros(n + 1)}
        if "text" in self.modalities:
            vals, lengths = features["text"].values, features["text"].lengths
            pad = vals.new_zeros(1, *vals.shape[1:])
            dom["text"] = (
                torch.cat([pad, vals]).float(),
                torch.cat([torch.zeros(1, dtype=torch.int64), torch.from_numpy(lengths.astype(np.int64))]),
            )
        if "image" in self.modalities:
            present, vals = features["image"].present, features["image"].values
            tower = self.image_encoder.tower
            if tower.split >= len(tower.backbone.stages):
                vals = F.adaptive_avg_pool2d(vals.float(), self.image_encoder.grid)
            dom["image"] = (
                torch.cat([vals.new_zeros(1, *vals.shape[1:]), vals]),
                torch.cat([torch.zeros(1, dtype=torch.bool), torch.from_numpy(present)]),
            )
        self._domains.append(dom)
        try:
            self._active = -1
            self._use(len(self._domains) - 1)
            vecs = self._encode(torch.arange(1, n + 1, device=self.log_q.device))
        finally:
            self._domains.pop()
            self._active = -1
            self._use(0)
        self._fixed_table = torch.cat([table, vecs.float().cpu()])
        self.n_items = self._domains[0]["n_items"] = n0 + n
        return torch.arange(n0 + 1, n0 + n + 1, device=self.log_q.device)

    @torch.no_grad()
    def add_items(self, features: ItemFeatures) -> torch.Tensor:
        """Append items never seen to the evaluated catalogue, given their frozen prefix features (as the
        feature store computes them: an added item gets the vector it would have had in the catalogue).
        The cached item table grows by the new rows only."""
        if self.training:
            raise RuntimeError("add_items is for serving: call model.eval() first")
        if self._fixed_table is not None:
            return self._rebuilt_add(features, self._fixed_table)
        self._use(0)
        dom, n0, n = self._domains[0], self._domains[0]["n_items"], _n_new(features, self.modalities)
        old_table = self._table
        if "text" in self.modalities:
            vals, lengths = features["text"].values, features["text"].lengths
            cache, aux = dom["text"]
            t = max(cache.shape[1], vals.shape[1])
            grow = torch.zeros(n, t, cache.shape[2], dtype=cache.dtype)
            grow[:, : vals.shape[1]] = vals.to(cache.dtype)
            if t > cache.shape[1]:  # a longer text than any in the catalogue: widen the token axis
                cache = torch.cat([cache, cache.new_zeros(cache.shape[0], t - cache.shape[1], cache.shape[2])], 1)
            dom["text"] = (torch.cat([cache, grow]), torch.cat([aux, torch.from_numpy(lengths.astype(np.int64))]))
        if "image" in self.modalities:
            present, vals = features["image"].present, features["image"].values
            tower = self.image_encoder.tower
            cache, aux = dom["image"]
            if tower.split >= len(tower.backbone.stages):  # frozen tower: the table holds pooled grids
                vals = F.adaptive_avg_pool2d(vals.float(), self.image_encoder.grid)
            dom["image"] = (torch.cat([cache, vals.to(cache.dtype)]), torch.cat([aux, torch.from_numpy(present)]))
        dom["log_q"] = torch.cat([dom["log_q"], dom["log_q"][1:].min().expand(n)])  # as rare as the rarest
        dom["n_items"] = n0 + n
        self._active = -1
        self._use(0)
        rows = torch.arange(n0 + 1, n0 + n + 1, device=self.log_q.device)
        if old_table is not None:
            self._table = torch.cat([old_table, self._encode(rows)])
        return rows

    def truncate_items(self, n_items: int) -> None:
        dom = self._domains[0]
        if not 0 < n_items <= dom["n_items"]:
            raise ValueError(f"cannot truncate a catalogue of {dom['n_items']} items to {n_items}")
        if self._fixed_table is not None:
            self._fixed_table = self._fixed_table[: n_items + 1]
            self.n_items = dom["n_items"] = n_items
            return
        table = self._table
        for m in self.modalities:
            cache, aux = dom[m]
            dom[m] = (cache[: n_items + 1], aux[: n_items + 1])
        dom["log_q"] = dom["log_q"][: n_items + 1]
        dom["n_items"] = n_items
        self._active = -1
        self._use(0)
        if table is not None:
            self._table = table[: n_items + 1]

    # -- user tower --------------------------------------------------------------------------

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        items = batch["items"]
        if not self.training:
            table = self.item_embeddings()
            x = table[items]
        else:
            x = self.item_embeddings(items)
        return self.user_encoder(x, items)[:, -1]

    # -- training ----------------------------------------------------------------------------

    def _noise(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noised items [B, L], changed [B, L] bool) for NID/RCL."""
        c = self.config
        real = items != 0
        pick = (torch.rand(items.shape, device=items.device) < c.noise_ratio) & real
        noised = items.clone()
        use_replace = torch.ones(items.shape[0], dtype=torch.bool, device=items.device)
        if c.noise == "shuffle":
            use_replace[:] = False
        elif c.noise == "mixed":
            use_replace = torch.rand(items.shape[0], device=items.device) < 0.5
        rnd = torch.randint(1, self.n_items + 1, items.shape, device=items.device)
        rep = pick & use_replace[:, None]
        noised[rep] = rnd[rep]
        shuf = pick & ~use_replace[:, None]
        if shuf.any():  # permute the picked items of each sequence among themselves (vectorised)
            keys = torch.rand(items.shape, device=items.device).masked_fill(~shuf, 2.0)
            order = keys.argsort(1)  # picked positions first, in random order
            src_sorted = torch.where(shuf, items, 0).gather(1, order)
            pos_sorted = torch.where(shuf, torch.arange(items.shape[1], device=items.device)[None], -1)
            pos_sorted = pos_sorted.sort(1).values.flip(1)  # picked positions (descending), then -1s
            k = shuf.sum(1, keepdim=True)
            idx = torch.arange(items.shape[1], device=items.device)[None].expand_as(items)
            valid = idx < k
            rows = torch.arange(items.shape[0], device=items.device)[:, None].expand_as(items)
            noised[rows[valid], pos_sorted[valid]] = src_sorted[valid]
        return noised, (noised != items) & real

    def forward(self, batch: dict) -> Output:
        c = self.config
        self._use(int(batch["domain"]) if "domain" in batch else 0)
        items, targets = batch["items"], batch["targets"]
        b, l = items.shape
        dev = items.device
        full = torch.cat([items, targets[:, -1:]], 1)  # the window's B x (L+1) items
        need_noise = (c.nid and c.nid_weight > 0) or (c.rcl and c.rcl_weight > 0)
        noise = self._noise(items) if need_noise else None  # (noised items, changed)
        ids = [torch.zeros(1, dtype=items.dtype, device=dev), full.reshape(-1), targets.reshape(-1)]
        if noise is not None:
            ids.append(noise[0].reshape(-1))
        uniq, inv = torch.unique(torch.cat(ids), return_inverse=True)  # uniq[0] == 0 (padding)
        vec, parts = self._encode(uniq[1:], return_parts=True)
        table = torch.cat([vec.new_zeros(1, vec.shape[1]), vec])  # indexed by position in uniq
        n_full = full.numel()
        full_pos = inv[1 : 1 + n_full].view(b, l + 1)
        tgt_pos = inv[1 + n_full : 1 + n_full + targets.numel()].view(b, l)
        logs = {}

        h = self.user_encoder(table[full_pos[:, :l]], items)
        # membership of each unique item in each window (history, targets, next item)
        member = torch.zeros(b, len(uniq), dtype=torch.bool, device=dev)
        member.scatter_(1, full_pos, True)
        member.scatter_(1, tgt_pos, True)
        member[:, 0] = False
        in_batch = member.any(0)  # candidate columns: items of the windows (not noise-only items)

        real = targets != 0
        rows = torch.nonzero(real)
        hr = h[rows[:, 0], rows[:, 1]]
        bias = -self.log_q[uniq] if c.logq else table.new_zeros(len(uniq))  # logQ correction
        label = tgt_pos[rows[:, 0], rows[:, 1]]
        banned = member.index_select(0, rows[:, 0])
        banned |= ~in_batch[None, :]
        banned[torch.arange(len(label), device=dev), label] = False
        rec = masked_softmax_ce(hr, table, bias, banned, label)
        loss = c.rec_weight * rec
        logs["rec"] = rec.detach()

        if c.nicl and c.nicl_weight > 0 and len(self.modalities) == 2:
            nicl = self._nicl(parts, full, full_pos, member)
            loss = loss + c.nicl_weight * nicl
            logs["nicl"] = nicl.detach()
        if noise is not None:
            noised, changed = noise
            noised_pos = inv[-noised.numel() :].view(b, l)
            hn = self.user_encoder(table[noised_pos], noised)
            if c.nid and c.nid_weight > 0:
                logit = self.nid_head(hn).squeeze(-1)
                m = noised != 0
                nid = F.binary_cross_entropy_with_logits(logit[m].float(), changed[m].float())
                loss = loss + c.nid_weight * nid
                logs["nid"] = nid.detach()
            if c.rcl and c.rcl_weight > 0 and b > 1:
                u1 = F.normalize(h[:, -1], dim=-1)
                u2 = F.normalize(hn[:, -1], dim=-1)
                sim = u1 @ u2.T / c.rcl_temperature
                lab = torch.arange(b, device=dev)
                rcl = 0.5 * (F.cross_entropy(sim.float(), lab) + F.cross_entropy(sim.T.float(), lab))
                loss = loss + c.rcl_weight * rcl
                logs["rcl"] = rcl.detach()
        return Output(loss, logs)

    def _nicl(self, parts, full, full_pos, member) -> torch.Tensor:
        """Next-item-enhanced cross-modal contrastive loss over the B x (L+1) window items."""
        c = self.config
        # per-modality vectors of the unique items (row k <-> uniq[k+1]); prepend padding row
        z = [F.normalize(self.nicl_head(v), dim=-1) for v, _ in parts]
        has = [h for _, h in parts]
        z = [torch.cat([zz.new_zeros(1, zz.shape[1]), zz]) for zz in z]
        has = [torch.cat([hh.new_zeros(1), hh]) for hh in has]
        b, l1 = full.shape
        real = full != 0
        ar, aj = torch.nonzero(real, as_tuple=True)
        if 0 < c.nicl_max_anchors < len(ar):  # a random subset of anchors bounds the [R, 2U] logits
            keep = torch.randperm(len(ar), device=ar.device)[: c.nicl_max_anchors]
            ar, aj = ar[keep], aj[keep]
        a = full_pos[ar, aj]  # anchor item (position in uniq)
        nxt_ok = aj + 1 < l1
        nxt = torch.where(nxt_ok, full_pos[ar, (aj + 1).clamp_max(l1 - 1)], torch.zeros_like(a))
        nxt_ok = nxt_ok & (nxt != 0)
        neg = ~member[ar]  # items outside the anchor's window
        neg[:, 0] = False
        # positives: the anchor item itself and (when there is one, and it differs) the next item
        n = torch.arange(len(a), device=full.device)
        second = nxt_ok & (nxt != a)
        pos = torch.zeros_like(neg)
        pos[n, a] = True
        pos[n[second], nxt[second]] = True
        total, count = full.new_zeros((), dtype=torch.float32), 0
        for src, dst in ((0, 1), (1, 0)):
            ok = has[src][a] & has[dst][a]
            if not ok.any():
                continue
            q = z[src][a] / c.nicl_temperature
            inter = (q @ z[dst].T).masked_fill_(~((pos | neg) & has[dst][None]), float("-inf"))
            intra = (q @ z[src].T).masked_fill_(~(neg & has[src][None]), float("-inf"))
            lse = torch.logaddexp(torch.logsumexp(inter.float(), 1), torch.logsumexp(intra.float(), 1))
            with_next = second & has[dst][nxt]
            pos_sum = inter[n, a].float() + torch.where(with_next, inter[n, nxt].float(), 0.0)
            per = (lse - pos_sum / (1.0 + with_next.float()))[ok]
            total = total + per.sum()
            count += int(ok.sum())
        if count == 0:
            return full.new_zeros((), dtype=torch.float32)
        return total / count


def _n_new(features: ItemFeatures, modalities: Sequence[str]) -> int:
    """How many new items ``features`` describes (every modality the model reads, the same number)."""
    missing = [m for m in modalities if m not in features]
    if missing:
        raise ValueError(f"the new items' features lack {', '.join(missing)}; give every modality the model reads")
    sizes = {len(features[m].present) for m in modalities}
    if len(sizes) != 1:
        raise ValueError(f"the new items' features disagree on how many items there are: {sorted(sizes)}")
    return sizes.pop()
