"""docs/adding-a-model.md: its example model, as written there, trains, evaluates and loads as a run."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-model.md"


def test_the_documented_example_model_works_end_to_end(cycle_dataset, tmp_path):
    from modalrec.config import build_config
    from modalrec.core import registry
    from modalrec.run import load_run, train

    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("meanid_example")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(code, str(DOC), "exec"), module.__dict__)
        cfg = build_config(model="meanid", overrides=["train.epochs=3", "model.max_len=8", "train.batch_size=16"])
        assert cfg.train.batch_size == 16 and cfg.model.hidden_size == 32
        results = train(cfg, tmp_path / "run", dataset=cycle_dataset, progress=False)
        assert results["model"] == "meanid" and 0.0 <= results["test"]["metrics"]["ndcg@10"] <= 1.0
        run = load_run(tmp_path / "run")
        batch = {"items": torch.tensor([[0, 3, 4, 5]])}
        with torch.no_grad():
            scores = run.model.score(run.model.user_embeddings(batch), run.model.item_embeddings(None))
        assert scores.shape == (1, cycle_dataset.n_items + 1) and torch.isfinite(scores).all()
    finally:
        registry._MODELS.pop("meanid", None)
        sys.modules.pop(module.__name__, None)
