"""UniSRec: universal sequence representation learning from item text, a text-based baseline.

Hou, Mu, Zhao, Li, Ding, Wen, "Towards Universal Sequence Representation Learning for
Recommender Systems", KDD 2022. Reference code: github.com/RUCAIBox/UniSRec (re-implemented here,
not copied).

Items are their frozen text: the pooled vector of each catalogue item from the text tower
(``text_encoder``, kept only to encode new items; the catalogue's vectors come from the feature
store, fp16 on disk, fp32 in memory). The MoE ``adaptor`` maps a text vector ``x`` to the model
width: ``sum_k g_k(x) (dropout(x) - b_k) W_k`` over ``n_experts`` parametric-whitening experts, with
gates ``g = softmax(x W_g + eps (softplus(x W_n) + 0.01))`` (``eps ~ N(0, 1)`` in training only;
dense, no top-k, as the reference). The ``user_encoder`` is a causal Transformer over the adapted
item vectors (+ ``item_embedding`` in transductive mode). User and item vectors are L2-normalised;
``score = cos(u, v) / temperature`` (the documented scorer; ranking is that of the cosine).

Losses (``stage``):

* ``finetune``: softmax cross-entropy over the whole catalogue at every real target position;
* ``pretrain``: sequence-item InfoNCE over the batch's target items (every real position is an
  anchor; positions that share a target item are not each other's negatives) + ``seq_seq_weight``
  x sequence-sequence InfoNCE between each window's user vector and that of an augmented view
  (items dropped, Gaussian noise on the frozen text vectors); windows with the same last target
  are not negatives either.

Deliberate deviations from the reference (each with a reason):

* ``hidden_size`` 64 instead of 300 (CPU budget; the adaptor keeps its 8 experts).
* One dropout mask on the adaptor input is shared by the experts (the reference draws one per
  expert): the experts then run as a single ``[D, K*d]`` matrix product.
* An item without text has a zero content vector (the reference feeds ``adaptor(0)``, the same
  bias-only vector for every such item, as if it were content).
* The augmented view drops items at random (the newest is kept only if all would go) and adds
  Gaussian noise to the frozen text vectors; the reference applies one of the two per sequence and
  swaps in features of word-dropped texts, which need a second encoding pass of the catalogue.
* Same-target positions are removed from the negatives (the reference replaces their logits by
  0, i.e. each still adds ``exp(0)`` to the denominator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.content.text import TextTowerConfig
from modalrec.losses import info_nce
from modalrec.content.features import FeatureNeed, ItemFeatures
from modalrec.models.base import CapabilityError, ModelConfig, Output, SequentialRecommender, init_normal
from modalrec.models.registry import register_model
from modalrec.nn.transformer import SequenceEncoder


@dataclass
class UniSRecConfig(ModelConfig):
    name: str = "unisrec"
    max_len: int = 50
    mode: str = "inductive"  # inductive (text only) | transductive (text + ID embeddings)
    stage: str = "finetune"  # pretrain (contrastive) | finetune (full softmax)
    hidden_size: int = 64  # the reference uses 300
    text: TextTowerConfig = field(default_factory=lambda: TextTowerConfig(max_tokens=32))
    n_experts: int = 8
    adaptor_dropout: float = 0.2
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    norm_first: bool = False  # post-LN blocks, as the reference (RecBole's Transformer)
    temperature: float = 0.07
    seq_seq_weight: float = 1e-3  # lambda of the sequence-sequence loss (pre-training)
    item_drop: float = 0.2  # augmented view: probability of dropping each item
    text_noise: float = 0.1  # augmented view: Gaussian noise on the frozen text vectors (x their std)
    id_dropout: float = 0.0  # transductive: > 0 makes a hybrid. Each training step drops an item's ID embedding
    # with this probability, and items without one (never in training, or added later) are scored from text
    # alone, so the model recommends new items too
    init_std: float = 0.02

    def train_defaults(self) -> dict:
        """train.* defaults: a short pre-training, a longer fine-tuning with early stopping."""
        if self.stage == "pretrain":
            return {"epochs": 10, "batch_size": 256, "patience": 3}
        # overlapping windows won the declared grid bench/grids/unisrec-stride-ml100k.yaml on every seed
        return {"epochs": 50, "batch_size": 256, "patience": 5, "window_stride": 10}

    def for_finetune(self):
        """A pre-trained model is fine-tuned (full softmax) unless the fine-tune asks otherwise."""
        from dataclasses import replace

        return replace(self, stage="finetune") if self.stage == "pretrain" else self


class WhiteningExpert(nn.Module):
    """Parametric whitening ``(x - b) W``: learnable centre ``b`` [D_in], projection to ``d`` (no bias)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_in))
        self.proj = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x - self.bias)


class MoEAdaptor(nn.Module):
    """Mixture of ``n_experts`` whitening experts with (noisy, in training) softmax gates.

    ``x [..., D_in] -> [..., d]``; ``gates(x) -> [..., K]`` (each row sums to 1).
    """

    def __init__(self, d_in: int, d_out: int, n_experts: int, dropout: float, init_std: float = 0.02):
        super().__init__()
        self.experts = nn.ModuleList(WhiteningExpert(d_in, d_out) for _ in range(n_experts))
        self.gate = nn.Linear(d_in, n_experts, bias=False)
        self.gate_noise = nn.Linear(d_in, n_experts, bias=False)
        self.drop = nn.Dropout(dropout)
        self.d_out = d_out
        for e in self.expert_list():
            nn.init.normal_(e.proj.weight, std=init_std)
        nn.init.zeros_(self.gate.weight)  # uniform gates at start, as the reference
        nn.init.zeros_(self.gate_noise.weight)

    def expert_list(self) -> list[WhiteningExpert]:
        """The experts, typed (``nn.ModuleList`` is not generic)."""
        return [cast(WhiteningExpert, e) for e in self.experts]

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.gate(x)
        if self.training:
            logits = logits + torch.randn_like(logits) * (F.softplus(self.gate_noise(x)) + 1e-2)
        return torch.softmax(logits, dim=-1)

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., K, d]``: every expert on the same dropped-out input, as one matrix product."""
        experts = self.expert_list()
        w = torch.stack([e.proj.weight for e in experts])  # [K, d, D]
        b = torch.stack([e.bias for e in experts])  # [K, D]
        k, d, dim = w.shape
        y = self.drop(x) @ w.reshape(k * d, dim).T  # [..., K*d]
        centre = torch.einsum("kD,kdD->kd", b, w)  # b_k W_k
        return y.view(*x.shape[:-1], k, d) - centre

    def forward(self, x: torch.Tensor, return_gates: bool = False):
        g = self.gates(x)
        out = (g.unsqueeze(-1) * self.expert_outputs(x)).sum(-2)
        return (out, g) if return_gates else out


@register_model("unisrec")
class UniSRec(SequentialRecommender):
    config_class = UniSRecConfig
    config: UniSRecConfig
    text_feat: torch.Tensor  # buffers: frozen text vectors [N+1, t], which items have text, seen in training,
    text_present: torch.Tensor  # and (hybrid mode) which have a trained ID vector
    in_training: torch.Tensor
    has_id: torch.Tensor
    modalities = ("text",)

    def __init__(self, config: UniSRecConfig, dataset, *, quiet: bool = False):
        super().__init__(config, dataset)
        c = config
        for key, val, ok in (
            ("mode", c.mode, ("inductive", "transductive")),
            ("stage", c.stage, ("pretrain", "finetune")),
        ):
            if val not in ok:
                raise ValueError(f"model.{key} must be one of {', '.join(ok)}, not {val!r}")
        if c.text.trainable_layers != 0:
            raise ValueError(
                "UniSRec uses frozen text features: model.text.trainable_layers must be 0, "
                f"not {c.text.trainable_layers}"
            )
        if c.n_experts < 1:
            raise ValueError(f"model.n_experts must be at least 1, not {c.n_experts}")
        if c.temperature <= 0:
            raise ValueError(f"model.temperature must be positive, not {c.temperature}")
        if not 0.0 <= c.item_drop < 1.0:
            raise ValueError(f"model.item_drop must be in [0, 1), not {c.item_drop}")
        if not 0.0 <= c.id_dropout < 1.0:
            raise ValueError(f"model.id_dropout must be in [0, 1), not {c.id_dropout}")
        self.hybrid = c.mode == "transductive" and c.id_dropout > 0
        self.id_free = c.mode == "inductive" or self.hybrid  # a hybrid scores unseen items from text
        from modalrec.content.text import TextTower

        d = c.hidden_size
        self.text_encoder = TextTower(c.text, quiet=quiet)  # frozen; only encodes new items
        self.register_buffer("text_feat", torch.zeros(1, self.text_encoder.hidden_size), persistent=False)
        self.register_buffer("text_present", torch.zeros(1, dtype=torch.bool), persistent=False)
        # items of the training sequences (fit_statistics); until then every item counts
        self.register_buffer("in_training", torch.ones(self.n_items + 1, dtype=torch.bool), persistent=False)
        self._feat_std = 1.0
        self.adaptor = MoEAdaptor(self.text_encoder.hidden_size, d, c.n_experts, c.adaptor_dropout, c.init_std)
        if c.mode == "transductive":
            self.item_embedding = nn.Embedding(self.n_items + 1, d, padding_idx=0)
            nn.init.normal_(self.item_embedding.weight, std=c.init_std)
            with torch.no_grad():
                self.item_embedding.weight[0].zero_()
            if self.hybrid:  # which rows have a trained ID embedding (items seen in training: fit_statistics)
                self.register_buffer("has_id", torch.ones(self.n_items + 1, dtype=torch.bool))
        self.user_encoder = SequenceEncoder(
            d, c.max_len, c.n_layers, c.n_heads, c.inner_size, c.dropout, c.attn_dropout, norm_first=c.norm_first
        )
        init_normal(self.user_encoder, c.init_std)

    def feature_needs(self) -> list[FeatureNeed]:
        """The frozen text tower's pooled vector of each item."""
        return [FeatureNeed("text", "pooled", self.text_encoder)]

    def attach(self, dataset, features: ItemFeatures) -> None:
        """Point the model at ``dataset``'s catalogue, given its frozen pooled text vectors.

        An inductive model can be pointed at any catalogue this way; a transductive one only at a
        catalogue of its ID table's size.
        """
        if hasattr(self, "item_embedding") and dataset.n_items + 1 != self.item_embedding.num_embeddings:
            raise ValueError(
                f"{dataset.name} has {dataset.n_items} items, this transductive UniSRec has an ID "
                f"table for {self.item_embedding.num_embeddings - 1}; use model.mode=inductive"
            )
        feats = features["text"]
        dev = self.text_feat.device
        feat = feats.tensor().float().to(dev)
        present = torch.from_numpy(np.asarray(feats.present, dtype=bool)).to(dev)
        present[0] = False
        feat[~present] = 0.0
        self.text_feat, self.text_present = feat, present
        self._feat_std = float(feat[present].std()) if int(present.sum()) > 1 else 1.0
        self.n_items = dataset.n_items
        self.in_training = torch.ones(self.n_items + 1, dtype=torch.bool, device=dev)  # until fit_statistics

    # -- a run folder's copy ---------------------------------------------------------------------

    def item_state(self) -> dict[str, torch.Tensor]:
        """The frozen pooled text vectors of the catalogue and which items have text."""
        return {"text_feat": self.text_feat.detach().cpu().clone(), "text_present": self.text_present.cpu().clone()}

    def load_item_state(self, state: dict[str, torch.Tensor]) -> None:
        feat, present = state["text_feat"].float(), state["text_present"].bool()
        if feat.shape != (self.n_items + 1, self.text_encoder.hidden_size) or present.shape != (self.n_items + 1,):
            raise ValueError(
                f"text_feat {tuple(feat.shape)} does not fit {self.n_items} items of "
                f"{self.text_encoder.hidden_size} dims"
            )
        dev = self.text_feat.device
        self.text_feat, self.text_present = feat.to(dev), present.to(dev)
        self._feat_std = float(feat[present].std()) if int(present.sum()) > 1 else 1.0

    def save_assets(self, folder) -> None:
        """The text tower's tokenizer and architecture (its weights are in the state dict)."""
        from pathlib import Path

        self.text_encoder.save_architecture(Path(folder) / "text")

    @classmethod
    def config_from_assets(cls, config: ModelConfig, folder) -> ModelConfig:
        from dataclasses import replace
        from pathlib import Path

        config = cls.own_config(config, UniSRecConfig)
        return replace(config, text=replace(config.text, model=str(Path(folder) / "text")))

    # -- item tower --------------------------------------------------------------------------

    def _item_vectors(self, rows: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Un-normalised item vectors ``[n, d]`` of catalogue rows (0 = padding -> zeros)."""
        f = self.text_feat[rows]
        if noise > 0:
            f = f + noise * self._feat_std * torch.randn_like(f)
        v = self.adaptor(f) * self.text_present[rows].unsqueeze(-1).to(f.dtype)
        if self.config.mode == "transductive":
            v = v + self._id_part(rows)
        return v

    def _id_part(self, rows: torch.Tensor) -> torch.Tensor:
        """ID embeddings of ``rows``; a hybrid zeroes those of items without a trained one (rows past the ID
        table are items added after training) and, while training, drops each with ``id_dropout``."""
        if not self.hybrid:
            return self.item_embedding(rows)
        n = self.item_embedding.num_embeddings
        keep = (rows < n) & self.has_id[rows.clamp_max(n - 1)]
        if self.training:
            keep = keep & (torch.rand(rows.shape, device=rows.device) >= self.config.id_dropout)
        return self.item_embedding(rows.clamp_max(n - 1)) * keep.unsqueeze(-1).to(self.item_embedding.weight.dtype)

    def _negatives(self, n: int) -> torch.Tensor:
        """bool [n] over items 1..n: which may serve as negatives (items added since fit_statistics may)."""
        mask = self.in_training[1 : n + 1]
        return mask if len(mask) == n else torch.cat([mask, mask.new_ones(n - len(mask))])

    def fit_statistics(self, dataset) -> None:
        """The items of the training sequences: the only negatives of fine-tuning, and (a hybrid) the only
        items with an ID embedding."""
        seen = torch.as_tensor(dataset.seen_in_train())
        self.in_training = seen.to(self.text_feat.device)
        if self.hybrid:
            self.has_id.copy_(seen.to(self.has_id.device))

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised item vectors (row 0 / padding = zeros); :meth:`score` divides by the temperature.

        The whole catalogue is adapted in one matrix product and ``items`` are gathered from it, so a
        subset equals the same rows of the full table exactly (a product over fewer rows may differ
        in the last bits). Training steps do not use this method.
        """
        table = F.normalize(self._item_vectors(torch.arange(self.n_items + 1, device=self.text_feat.device)), dim=-1)
        return table if items is None else table[items]

    @torch.no_grad()
    def encode_content(self, texts: list[str]) -> torch.Tensor:
        """Normalised item vectors ``[n, d]`` for raw texts never seen before (full tower + pool + adaptor).

        Inductive or hybrid models only: a plain transductive model has no ID embedding for a new item.
        """
        if not self.id_free:
            raise ValueError(
                "this UniSRec model is transductive (text + ID embeddings): a new item has no ID "
                "embedding, so its vector is not comparable; train with model.mode=inductive, or as a "
                "hybrid (model.id_dropout > 0), to encode new items from text"
            )
        texts = [str(t) for t in texts]
        dev = self.text_feat.device
        ids, mask = self.text_encoder.tokenize([t if t else " " for t in texts])
        f = self.text_encoder(ids.to(dev), mask.to(dev), output="pooled").float()
        present = torch.tensor([bool(t) for t in texts], device=dev)
        was = self.adaptor.training
        self.adaptor.eval()  # no gate noise, no dropout
        try:
            v = self.adaptor(f) * present.unsqueeze(-1).to(f.dtype)
        finally:
            self.adaptor.train(was)
        return F.normalize(v, dim=-1)

    @torch.no_grad()
    def add_items(self, features: ItemFeatures) -> torch.Tensor:
        """Append items never seen (inductive mode or a hybrid), given their pooled text features."""
        if not self.id_free:
            raise CapabilityError(
                "this UniSRec model is transductive (text + ID embeddings): a new item has no "
                "ID embedding; train with model.mode=inductive, or as a hybrid (model.id_dropout > 0), "
                "to serve new items"
            )
        vals, present = features["text"].values, np.asarray(features["text"].present, dtype=bool)
        dev = self.text_feat.device
        n0, n = self.n_items, len(present)
        self.text_feat = torch.cat([self.text_feat, vals.float().to(dev)])
        self.text_present = torch.cat([self.text_present, torch.from_numpy(present).to(dev)])
        self.n_items = n0 + n
        return torch.arange(n0 + 1, n0 + n + 1, device=dev)

    def truncate_items(self, n_items: int) -> None:
        if not 0 < n_items <= self.n_items:
            raise ValueError(f"cannot truncate a catalogue of {self.n_items} items to {n_items}")
        self.text_feat, self.text_present = self.text_feat[: n_items + 1], self.text_present[: n_items + 1]
        self.n_items = n_items

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Cosine / temperature: both sides are already L2-normalised."""
        return users @ items.T / self.config.temperature

    # -- user tower --------------------------------------------------------------------------

    def _hidden(self, items: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Encoder outputs ``[B, L, d]`` (un-normalised); each distinct item is adapted once."""
        uniq, inv = torch.unique(items.reshape(-1), return_inverse=True)
        x = self._item_vectors(uniq, noise)[inv].view(*items.shape, -1)
        return self.user_encoder(x, items)

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        return F.normalize(self._hidden(batch["items"])[:, -1], dim=-1)

    # -- training ----------------------------------------------------------------------------

    def _drop_items(self, items: torch.Tensor) -> torch.Tensor:
        """Augmented view: drop each real item with probability ``item_drop`` and re-left-pad.

        Order is kept; a row that would lose all its items keeps its newest one.
        """
        real = items != 0
        keep = (torch.rand(items.shape, device=items.device) >= self.config.item_drop) & real
        empty = ~keep.any(1) & real[:, -1]
        keep[:, -1] |= empty
        order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices  # dropped first, kept (in order) last
        return torch.where(keep, items, 0).gather(1, order)

    def forward(self, batch: dict) -> Output:
        c = self.config
        items, targets = batch["items"], batch["targets"]
        real = targets != 0
        tau = c.temperature
        if c.stage == "finetune":
            table = self._item_vectors(torch.arange(self.n_items + 1, device=items.device))
            h = self.user_encoder(table[items], items)
            q = F.normalize(h[real], dim=-1)
            logits = q @ F.normalize(table[1:], dim=-1).T / tau  # padding is never a class
            # items that occur nowhere in training (e.g. a cold split's new items) are not negatives: they
            # do not exist yet when the model trains, and pushing them down would bury them at test time
            logits = logits.masked_fill(~self._negatives(logits.shape[1]), float("-inf"))
            loss = F.cross_entropy(logits.float(), targets[real] - 1)
            return Output(loss, {"ce": loss.detach()})

        # pre-training: sequence-item InfoNCE over the batch's targets
        n_in = items.numel()
        uniq, inv = torch.unique(torch.cat([items.reshape(-1), targets.reshape(-1)]), return_inverse=True)
        vec = self._item_vectors(uniq)
        h = F.normalize(self.user_encoder(vec[inv[:n_in]].view(*items.shape, -1), items), dim=-1)
        tgt = inv[n_in:].view(targets.shape)[real]  # each real position's target, as a row of ``vec``
        cand, label, counts = torch.unique(tgt, return_inverse=True, return_counts=True)
        # Equal to info_nce(h[real], keys of every position's target, positive_mask = same target):
        # the batch's distinct targets, each weighted by how many positions have it (log count added
        # to its logit), except the anchor's own target, which counts once (its duplicates are masked).
        offset = counts.to(h.dtype).log()[None].repeat(len(label), 1)
        offset[torch.arange(len(label), device=items.device), label] = 0.0
        logits = h[real] @ F.normalize(vec[cand], dim=-1).T / tau + offset
        seq_item = F.cross_entropy(logits.float(), label)
        loss, logs = seq_item, {"seq_item": seq_item.detach()}
        if c.seq_seq_weight > 0 and len(items) > 1:
            aug = self._drop_items(items)
            h2 = F.normalize(self._hidden(aug, noise=c.text_noise)[:, -1], dim=-1)
            last = targets[:, -1]
            seq_seq = info_nce(h[:, -1], h2, tau, positive_mask=last[:, None] == last[None, :])
            loss = loss + c.seq_seq_weight * seq_seq
            logs["seq_seq"] = seq_seq.detach()
        return Output(loss, logs)
