"""MISSRec: multi-modal interest-aware sequence representation for transferable recommendation.

Wang, Xu, Yang, Zheng, Yang, Luo, Zhang, Chen, "MISSRec: Pre-training and Transferring
Multi-modal Interest-aware Sequence Representation for Recommendation", ACM MM 2023.
Reference code: github.com/gimpong/MM23-MISSRec.

Frozen, pooled text and image features of every item (feature store) go through one linear
adapter per modality (``text_adapter``, ``image_adapter``). Interest discovery: mini-batch
k-means (:mod:`modalrec.nn.kmeans`) over the adapted text and image vectors of all items
(K = ceil(2N x ``interest_ratio``)), re-run every ``interest_every`` epochs; an item's interest
tokens are its two clusters, a sequence's are the distinct clusters of its items. The contextual
``encoder`` runs over the interest tokens (centroids); the interest-aware ``decoder`` takes the item
tokens (adapted text + image + learned ``position`` (+ ``item_embedding`` in transductive mode),
``item_norm``, dropout) as queries, self-attending and cross-attending to the encoder output.
User vector = L2-normalised decoder output. Candidate score (dynamic ``fusion``): the softmax,
with a learnable sharpness, of the per-modality cosines weights those cosines; transductive mode
averages it 2:1 with the ID cosine; everything / ``temperature`` (0.07).

Deliberate deviations from the reference (each with a reason):

* **Every position of a training window is a target** (modalrec's design), so no position may see
  later items: the decoder's self-attention is causal, each interest token carries the position
  where it first occurs, the encoder lets an interest attend only to interests that occurred no
  later, and position j cross-attends only to interests that occurred at or before j. At the last
  position this sees exactly the whole history, like the reference, which instead trains one target
  per prefix sample (L times the work).
* Sequences that share a target are not negatives of each other in the sequence-item loss (the
  batch's unique target items are the candidates); the reference forgets this.
* Augmented views drop items from the id sequence, so text and image stay aligned (the reference
  re-uses the un-dropped image features after a drop); the text features of a view are perturbed
  by Gaussian noise (the reference swaps in features of word-dropped titles, which need a second
  encoding pass).
* A missing image is masked (the item token, interests and fusion use the text alone); the
  reference feeds ``adapter(0) = bias`` as if it were content.
* The diversity regulariser averages the encoder outputs over real interest tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.content.image import ImageTowerConfig
from modalrec.content.text import TextTowerConfig
from modalrec.content.features import FeatureNeed, ItemFeatures
from modalrec.models.base import CapabilityError, ModelConfig, Output, SequentialRecommender, init_normal
from modalrec.models.registry import register_model
from modalrec.nn.kmeans import kmeans
from modalrec.nn.transformer import DecoderBlock, TransformerBlock, causal_padding_mask


@dataclass
class MISSRecConfig(ModelConfig):
    name: str = "missrec"
    max_len: int = 50
    modalities: str = "text,image"  # text | image | text,image
    mode: str = "inductive"  # inductive (content only) | transductive (content + ID embeddings)
    stage: str = "finetune"  # pretrain (contrastive) | finetune (full softmax)
    hidden_size: int = 300  # adapter width = model width
    text: TextTowerConfig = field(default_factory=lambda: TextTowerConfig(max_tokens=32))
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    interests: bool = True  # False: no interest tokens (decoder without cross-attention), an ablation
    interest_ratio: float = 0.1  # K = ceil(2 N ratio) clusters (reference: 0.5 fine-tune, 0.02 pre-train)
    interest_every: int = 1  # epochs between interest discoveries
    kmeans_steps: int = 5
    n_heads: int = 4
    inner_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.5
    attn_dropout: float = 0.1
    fusion: str = "dynamic"  # dynamic (learnable sharpness) | static (mean of the modality cosines)
    temperature: float = 0.07
    seq_seq_weight: float = 1e-3  # lambda of the sequence-sequence loss (pre-training)
    reg_weight: float = 1e-4  # gamma of the diversity regulariser
    item_drop: float = 0.2  # augmented views: share of items dropped
    text_noise: float = 0.1  # augmented views: Gaussian noise on the frozen text features (x feature std)
    init_std: float = 0.02
    seed: int = 0  # interest discovery

    def train_defaults(self) -> dict:
        """train.* defaults: a short large-batch pre-training, a longer fine-tuning."""
        if self.stage == "pretrain":
            return {"epochs": 2, "batch_size": 256, "patience": 2}
        return {"epochs": 30, "batch_size": 128, "patience": 5}

    def for_finetune(self):
        """A pre-trained model is fine-tuned (full softmax) unless the fine-tune asks otherwise."""
        from dataclasses import replace

        return replace(self, stage="finetune") if self.stage == "pretrain" else self


class _Sharpness(nn.Module):
    """The dynamic fusion's learnable sharpness (a module, so that it is a named component)."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))  # 0 = plain mean of the modality cosines


@register_model("missrec")
class MISSRec(SequentialRecommender):
    config_class = MISSRecConfig
    config: MISSRecConfig
    centroids: torch.Tensor  # buffers: interest centroids [K, d], each item's interest [N+1], seen in training [N+1]
    text_interest: torch.Tensor
    image_interest: torch.Tensor
    in_training: torch.Tensor
    score_is_dot = False  # dynamic fusion of per-modality cosines

    def __init__(self, config: MISSRecConfig, dataset):
        super().__init__(config, dataset)
        c = config
        mods = [m.strip() for m in c.modalities.split(",") if m.strip()]
        if not mods or set(mods) - {"text", "image"} or len(set(mods)) != len(mods):
            raise ValueError(f"model.modalities must be text, image or text,image; got {c.modalities!r}")
        for key, val, ok in (
            ("mode", c.mode, ("inductive", "transductive")),
            ("stage", c.stage, ("pretrain", "finetune")),
            ("fusion", c.fusion, ("dynamic", "static")),
        ):
            if val not in ok:
                raise ValueError(f"model.{key} must be one of {', '.join(ok)}, not {val!r}")
        if not 0.0 < c.interest_ratio <= 0.5:
            raise ValueError(f"model.interest_ratio must be in (0, 0.5], not {c.interest_ratio}")
        self.modalities = mods
        self.id_free = c.mode == "inductive"
        d = c.hidden_size
        self._feat: dict[str, torch.Tensor] = {}
        self._present: dict[str, torch.Tensor] = {}
        self._placeholder_features()  # attach (or, rebuilt from a run, load_item_state) brings the features
        if "text" in mods:
            self.text_adapter = nn.Linear(self._feat["text"].shape[1], d)
        if "image" in mods:
            self.image_adapter = nn.Linear(self._feat["image"].shape[1], d)
        self.position = nn.Embedding(c.max_len, d)
        self.item_norm = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(c.dropout)
        if c.mode == "transductive":
            self.item_embedding = nn.Embedding(self.n_items + 1, d, padding_idx=0)
        if c.interests:
            self.encoder = nn.ModuleList(
                TransformerBlock(d, c.n_heads, c.inner_size, c.dropout, c.attn_dropout, norm_first=False, eps=1e-12)
                for _ in range(c.encoder_layers)
            )
        self.decoder = nn.ModuleList(
            DecoderBlock(d, c.n_heads, c.inner_size, c.dropout, c.attn_dropout) for _ in range(c.decoder_layers)
        )
        self.fusion = _Sharpness()
        init_normal(self, c.init_std)
        self.register_buffer("centroids", torch.zeros(1, d), persistent=False)
        self.register_buffer("text_interest", torch.zeros(self.n_items + 1, dtype=torch.long), persistent=False)
        self.register_buffer("image_interest", torch.zeros(self.n_items + 1, dtype=torch.long), persistent=False)
        # items of the training sequences: the only negatives of the fine-tuning softmax (fit_statistics)
        self.register_buffer("in_training", torch.ones(self.n_items + 1, dtype=torch.bool), persistent=False)
        self._absent_from_training = False
        self._stale = True  # interests are (re)discovered lazily: after init, loads, and every few epochs
        self._discoveries = 0
        self.last_discovery_s = 0.0

    def feature_needs(self) -> list[FeatureNeed]:
        """The frozen towers' pooled vectors, per modality (the adapters train on them)."""
        return [
            FeatureNeed(m, "pooled", self._tower(m), self.config.image.lmdb if m == "image" else "")
            for m in self.modalities
        ]

    def attach(self, dataset, features: ItemFeatures) -> None:
        """Point the model at ``dataset``'s catalogue, given its frozen pooled features."""
        if self.config.mode == "transductive" and dataset.n_items != self.n_items:
            raise ValueError(
                f"{dataset.name} has {dataset.n_items} items, this transductive MISSRec has an ID "
                f"table for {self.n_items}; use model.mode=inductive"
            )
        for m in self.modalities:
            feat = features[m].tensor().float()
            if feat.shape[1:] != self._feat[m].shape[1:]:
                raise ValueError(
                    f"{m} features of width {tuple(feat.shape[1:])}, the model reads {tuple(self._feat[m].shape[1:])}"
                )
            self._feat[m] = feat
            self._present[m] = torch.from_numpy(np.asarray(features[m].present, dtype=bool))
        self._feat_std = {m: float(f[1:].std()) for m, f in self._feat.items()}
        self.n_items = dataset.n_items
        self.in_training = torch.ones(self.n_items + 1, dtype=torch.bool, device=self.in_training.device)
        self._absent_from_training = False
        self._stale = True

    def fit_statistics(self, dataset) -> None:
        """The items of the training sequences: an item that occurs nowhere in them (a cold split's new
        items) is never a negative of the fine-tuning softmax, so training does not push it down."""
        self.in_training = torch.as_tensor(dataset.seen_in_train()).to(self.in_training.device)
        self._absent_from_training = not bool(self.in_training[1:].all())  # else the mask changes nothing

    @property
    def image_size(self) -> int | None:
        return self.config.image.image_size if "image" in self.modalities else None

    def _placeholder_features(self) -> None:
        """Zero features of the right widths (from the towers' architectures) until load_item_state."""
        from dataclasses import replace

        from modalrec.content.image import ImageTower

        for m in self.modalities:
            width = (
                self._tower("text").hidden_size
                if m == "text"
                else ImageTower(replace(self.config.image, pretrained=False), quiet=True).out_dim
            )
            self._feat[m] = torch.zeros(self.n_items + 1, width)
            self._present[m] = torch.zeros(self.n_items + 1, dtype=torch.bool)
        self._feat_std = {m: 1.0 for m in self.modalities}

    # -- a run folder's copy ---------------------------------------------------------------------

    @torch.no_grad()
    def item_state(self) -> dict[str, torch.Tensor]:
        """Frozen pooled features and presence per modality, and the interests discovered for them."""
        if self._stale and self.config.interests:
            self.discover_interests()
        out = {"centroids": self.centroids.detach().cpu().clone()}
        for m in self.modalities:
            out[f"{m}_feat"] = self._feat[m].cpu().clone()
            out[f"{m}_present"] = self._present[m].cpu().clone()
            out[f"{m}_interest"] = getattr(self, f"{m}_interest").cpu().clone()
        return out

    def load_item_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`item_state` (after the weights: interests are kept, not discovered again)."""
        dev = self.position.weight.device
        for m in self.modalities:
            feat = state[f"{m}_feat"].float()
            if feat.shape != self._feat[m].shape:
                raise ValueError(f"{m}_feat of shape {tuple(feat.shape)} does not fit {tuple(self._feat[m].shape)}")
            self._feat[m], self._present[m] = feat, state[f"{m}_present"].bool()
            setattr(self, f"{m}_interest", state[f"{m}_interest"].long().to(dev))
        self._feat_std = {m: float(f[1:].std()) for m, f in self._feat.items()}
        self.centroids = state["centroids"].float().to(dev)
        self._stale = False

    def save_assets(self, folder) -> None:
        """The frozen text tower with its weights (it is not part of the state dict; new items need it)."""
        from pathlib import Path

        if "text" in self.modalities:
            self._tower("text").save_architecture(Path(folder) / "text", weights=True)

    @classmethod
    def config_from_assets(cls, config: ModelConfig, folder) -> ModelConfig:
        from dataclasses import replace
        from pathlib import Path

        config = cls.own_config(config, MISSRecConfig)
        if not (Path(folder) / "text").is_dir():
            return config
        return replace(config, text=replace(config.text, model=str(Path(folder) / "text")))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._stale = True  # new adapters: interests must be discovered again
        return out

    def on_epoch_start(self, epoch: int) -> None:
        if (epoch - 1) % max(1, self.config.interest_every) == 0:
            self._stale = True

    def _adapted(self, m: str, rows=None, noise: float = 0.0) -> torch.Tensor:
        dev = self.position.weight.device
        f = self._feat[m] if rows is None else self._feat[m][rows.cpu()]
        f = f.to(dev)
        if noise > 0:
            f = f + noise * self._feat_std[m] * torch.randn_like(f)
        return getattr(self, f"{m}_adapter")(f)

    @torch.no_grad()
    def discover_interests(self) -> None:
        """k-means over the adapted text and image vectors of every item (K = ceil(2N ratio))."""
        import time

        t0 = time.perf_counter()
        dev = self.position.weight.device
        banks, owners = [], []
        for m in self.modalities:
            present = self._present[m].clone()
            present[0] = False
            rows = torch.nonzero(present).squeeze(1)
            banks.append(self._adapted(m, rows))
            owners.append((m, rows))
        x = torch.cat(banks)
        k = max(1, min(len(x), math.ceil(len(x) * self.config.interest_ratio)))
        c, assign = kmeans(x, k, steps=self.config.kmeans_steps, seed=self.config.seed * 1000 + self._discoveries)
        self.centroids = torch.cat([torch.zeros(1, c.shape[1], device=dev), c.to(dev)])
        off = 0
        self.text_interest = torch.zeros(self.n_items + 1, dtype=torch.long, device=dev)
        self.image_interest = torch.zeros(self.n_items + 1, dtype=torch.long, device=dev)
        for m, rows in owners:
            getattr(self, f"{m}_interest")[rows.to(dev)] = assign[off : off + len(rows)].to(dev) + 1
            off += len(rows)
        self._discoveries += 1
        self._stale = False
        self.last_discovery_s = time.perf_counter() - t0

    def _interest_tokens(self, items: torch.Tensor):
        """Distinct interests of each row: (ids [B, W], first position [B, W], real [B, W])."""
        b, l = items.shape
        ids = torch.cat([getattr(self, f"{m}_interest")[items] for m in self.modalities], 1)
        pos = torch.arange(l, device=items.device).repeat(len(self.modalities))[None].expand(b, -1)
        key, _ = (ids * (l + 1) + pos).sort(1)
        sid, spos = key // (l + 1), key % (l + 1)
        first = torch.ones_like(sid, dtype=torch.bool)
        first[:, 1:] = sid[:, 1:] != sid[:, :-1]
        keep = first & (sid != 0)
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
        sid, spos, keep = sid.gather(1, order), spos.gather(1, order), keep.gather(1, order)
        w = max(1, int(keep.sum(1).max()))
        return sid[:, :w] * keep[:, :w], spos[:, :w], keep[:, :w]

    # -- new items (serving) -------------------------------------------------------------------

    def _tower(self, m: str):
        """The frozen feature extractor of modality ``m`` (built on first use; not a submodule). Building it
        leaves the global random stream as it was (training draws the same numbers whenever it is built)."""
        towers = self.__dict__.setdefault("_towers", {})
        if m not in towers:
            with torch.random.fork_rng(devices=[]):
                if m == "text":
                    from modalrec.content.text import TextTower

                    towers[m] = TextTower(self.config.text, quiet=True).eval()
                else:
                    from modalrec.content.image import ImageTower

                    towers[m] = ImageTower(self.config.image, quiet=True).eval()
        return towers[m]

    @torch.no_grad()
    def add_items(self, features: ItemFeatures) -> torch.Tensor:
        """Append items never seen, given their frozen pooled features; each modality is assigned to its
        nearest interest centroid (interests are not re-discovered)."""
        if not self.id_free:
            raise CapabilityError(
                "this MISSRec model is transductive (content + ID embeddings): a new item "
                "has no ID embedding; train with model.mode=inductive to serve new items"
            )
        if self._stale and self.config.interests:
            self.discover_interests()
        n0, n = self.n_items, len(features[self.modalities[0]])
        dev = self.position.weight.device
        for m in self.modalities:
            vals, present = features[m].values, np.asarray(features[m].present, dtype=bool)
            self._feat[m] = torch.cat([self._feat[m], vals.float()])
            self._present[m] = torch.cat([self._present[m], torch.from_numpy(present)])
            assign = torch.zeros(n, dtype=torch.long, device=dev)
            if self.config.interests and present.any():
                rows = torch.arange(n0 + 1, n0 + n + 1)[torch.from_numpy(present)]
                dist = torch.cdist(self._adapted(m, rows), self.centroids[1:])
                assign[torch.from_numpy(present).to(dev)] = dist.argmin(1) + 1
            setattr(self, f"{m}_interest", torch.cat([getattr(self, f"{m}_interest"), assign]))
        self.n_items = n0 + n
        return torch.arange(n0 + 1, n0 + n + 1, device=dev)

    def truncate_items(self, n_items: int) -> None:
        if not 0 < n_items <= self.n_items:
            raise ValueError(f"cannot truncate a catalogue of {self.n_items} items to {n_items}")
        for m in self.modalities:
            self._feat[m] = self._feat[m][: n_items + 1]
            self._present[m] = self._present[m][: n_items + 1]
            setattr(self, f"{m}_interest", getattr(self, f"{m}_interest")[: n_items + 1])
        self.n_items = n_items

    def similarity_vectors(self, table: torch.Tensor) -> torch.Tensor:
        """The per-modality normalised vectors (presence flags dropped)."""
        return table[:, : len(self.modalities) * self.config.hidden_size]

    # -- item tower --------------------------------------------------------------------------

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Per item: the L2-normalised adapted vector of each modality, a presence flag per modality,
        and (transductive) the normalised ID vector: ``[.., M*d + M (+ d)]``, read by :meth:`score`."""
        dev = self.position.weight.device
        rows = torch.arange(self.n_items + 1, device=dev) if items is None else items.reshape(-1)
        parts, flags = [], []
        for m in self.modalities:
            v = F.normalize(self._adapted(m, rows), dim=-1)
            p = self._present[m].to(dev)[rows] & (rows != 0)
            parts.append(v * p[:, None])
            flags.append(p[:, None].to(v.dtype))
        if self.config.mode == "transductive":
            parts.append(F.normalize(self.item_embedding(rows), dim=-1))
        out = torch.cat(parts + flags, 1)
        return out if items is None else out.reshape(*items.shape, -1)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Dynamic fusion of the per-modality cosines, / temperature (MISSRec Sec. 3.4)."""
        d, nm = self.config.hidden_size, len(self.modalities)
        flags = items[:, -nm:]  # [N, M]
        beta = self.fusion.beta if self.config.fusion == "dynamic" else torch.zeros_like(self.fusion.beta)
        if nm == 1:
            s = users @ items[:, :d].T
        else:  # two modalities: softmax over 2 = a sigmoid of the difference (much faster than a softmax of size 2)
            s_t, s_v = users @ items[:, :d].T, users @ items[:, d : 2 * d].T
            w_t = torch.sigmoid(beta * (s_t - s_v))
            has_t, has_v = flags[:, 0].bool()[None], flags[:, 1].bool()[None]
            w_t = torch.where(has_v, torch.where(has_t, w_t, 0.0), 1.0)  # a missing modality gets no weight
            s = s_v + w_t * (s_t - s_v)
        if self.config.mode == "transductive":
            ids = items[:, nm * d : (nm + 1) * d]
            s = (users @ ids.T + 2.0 * s) / 3.0
        return s / self.config.temperature

    # -- user tower --------------------------------------------------------------------------

    def _hidden(self, items: torch.Tensor, text_noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs [B, L, d] (causal) and the diversity regulariser."""
        if self._stale and self.config.interests:
            self.discover_interests()
        b, l = items.shape
        if l > self.config.max_len:
            raise ValueError(f"history of length {l} is longer than the model's max_len={self.config.max_len}")
        uniq, inv = torch.unique(items.reshape(-1), return_inverse=True)  # adapt each distinct item once
        parts = []
        for m in self.modalities:
            p = (self._present[m].to(items.device)[uniq] & (uniq != 0))[:, None]
            parts.append(self._adapted(m, uniq, noise=text_noise if m == "text" else 0.0) * p)
        x = parts[0]
        for part in parts[1:]:
            x = x + part
        x = x[inv].reshape(b, l, -1)
        if self.config.mode == "transductive":
            x = x + self.item_embedding(items)
        x = x + self.position.weight[self.config.max_len - l :][None]
        x = self.drop(self.item_norm(x)) * (items != 0).unsqueeze(-1)
        allowed_self = causal_padding_mask(items)
        reg = x.new_zeros(())
        memory = allowed_cross = None
        if self.config.interests:
            ids, first, real = self._interest_tokens(items)
            memory = self.centroids[ids]
            w = ids.shape[1]
            allowed_enc = (real[:, None, :] & (first[:, None, :] <= first[:, :, None])) | torch.eye(
                w, dtype=torch.bool, device=items.device
            )[None]
            for layer in self.encoder:
                memory = layer(memory, allowed_enc[:, None])
            pos = torch.arange(l, device=items.device)
            allowed_cross = real[:, None, :] & (first[:, None, :] <= pos[None, :, None])  # [B, L, W]
            allowed_cross[:, :, 0] |= ~allowed_cross.any(-1)  # rows with no interest yet (padding): no NaN
            allowed_cross = allowed_cross[:, None]
            pooled = (memory * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
            reg = (pooled * pooled).sum(-1).mean() / memory.shape[-1]
        for layer in self.decoder:
            x = layer(x, allowed_self, memory, allowed_cross)
        return F.normalize(x, dim=-1), reg

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        return self._hidden(batch["items"])[0][:, -1]

    # -- training ----------------------------------------------------------------------------

    def _drop_items(self, items: torch.Tensor) -> torch.Tensor:
        """Augmented view: drop ``item_drop`` of the real items (the newest always kept), re-left-pad."""
        real = items != 0
        keep = (torch.rand(items.shape, device=items.device) >= self.config.item_drop) & real
        keep[:, -1] = real[:, -1]
        order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices  # dropped first, kept (in order) last
        return torch.where(keep, items, 0).gather(1, order)

    def forward(self, batch: dict) -> Output:
        c = self.config
        items, targets = batch["items"], batch["targets"]
        h, reg = self._hidden(items)
        real = targets != 0
        hr = h[real]
        logs = {}
        if c.stage == "finetune":
            logits = self.score(hr, self.item_embeddings())
            logits[:, 0] = float("-inf")
            if self._absent_from_training and len(self.in_training) == logits.shape[1]:
                logits = logits.masked_fill(~self.in_training[None, :], float("-inf"))
            main = F.cross_entropy(logits.float(), targets[real])
            logs["ce"] = main.detach()
        else:
            cand, label = torch.unique(targets[real], return_inverse=True)  # shared targets: one column
            main = F.cross_entropy(self.score(hr, self.item_embeddings(cand)).float(), label)
            logs["seq_item"] = main.detach()
        loss = main + c.reg_weight * reg
        logs["reg"] = reg.detach()
        if c.stage == "pretrain" and c.seq_seq_weight > 0 and len(items) > 1:
            aug = self._drop_items(items)
            h2, reg2 = self._hidden(aug, text_noise=c.text_noise)
            sim = h[:, -1] @ h2[:, -1].T / c.temperature
            ss = F.cross_entropy(sim.float(), torch.arange(len(items), device=items.device))
            loss = loss + c.seq_seq_weight * ss + c.reg_weight * reg2
            logs["seq_seq"] = ss.detach()
        return Output(loss, logs)
