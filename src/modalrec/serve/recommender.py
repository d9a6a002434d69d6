"""Recommendations from a trained run: load it, score histories, return the top items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modalrec.train.trainer import RunDir


@dataclass
class Recommendation:
    item_id: str
    score: float
    text: str


class Recommender:
    """A trained run ready to answer: ``Recommender.load(run_dir).recommend(["50", "181"])``."""

    def __init__(self, cfg, dataset, model):
        self.cfg, self.dataset, self.model = cfg, dataset, model
        self.model.eval()
        with torch.no_grad():
            self._items = self.model.item_embeddings(None)

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best", progress: bool = False) -> "Recommender":
        from modalrec.config import load_run_config
        from modalrec.data.prepare import load_or_prepare
        from modalrec.models.registry import build_model
        from modalrec.train import checkpoint as ckpt_io

        rd = RunDir(run_dir)
        if not rd.config.is_file():
            raise FileNotFoundError(f"{rd.path} is not a run folder (no config.yaml); train one with `modalrec train`")
        cfg = load_run_config(rd.config)
        path = rd.best if checkpoint == "best" else rd.last
        ck = ckpt_io.load(path, expect_model=cfg.model.name)
        dataset = load_or_prepare(cfg.data, progress=progress)
        model = build_model(cfg.model, dataset)
        ckpt_io.load_model_state(model, ck["model"], str(path))
        return cls(cfg, dataset, model)

    def history_indices(self, history: list) -> torch.Tensor:
        """Raw item ids -> left-padded LongTensor [1, max_len] (most recent last)."""
        if len(history) == 0:
            raise ValueError("the history is empty: give at least one item id")
        idx = self.dataset.catalogue.indices_of(history)[-self.cfg.model.max_len :]
        row = torch.zeros(1, self.cfg.model.max_len, dtype=torch.long)
        row[0, -len(idx) :] = torch.as_tensor(idx)
        return row

    @torch.no_grad()
    def recommend(self, history: list, k: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
        n = self.dataset.n_items
        if not 1 <= k <= n:
            raise ValueError(f"k={k} must be between 1 and the catalogue size {n}")
        items = self.history_indices(history)
        user = self.model.user_embeddings({"items": items})
        scores = self.model.score(user, self._items)[0].float()
        scores[0] = float("-inf")
        if exclude_seen:
            scores[items[0][items[0] > 0]] = float("-inf")
        top = torch.topk(scores, k)
        cat = self.dataset.catalogue
        return [
            Recommendation(str(cat.item_ids[i]), float(s), str(cat.text[i]))
            for s, i in zip(top.values.tolist(), top.indices.tolist())
            if s != float("-inf")
        ]
