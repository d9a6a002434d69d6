"""The `serve` extra works alone (issue 22): run in a fresh venv that has only torch and
`pip install '.[serve]'`, it trains a tiny ID-free UniSRec on the synthetic data set (a random
2-layer BERT stands in for MiniLM: no download), serves it, and asks the service for
recommendations from raw text. Exits non-zero, naming the step, on any failure.

    python -m venv /tmp/serve-venv && /tmp/serve-venv/bin/pip install torch==2.13.0 && \\
        /tmp/serve-venv/bin/pip install -c constraints.txt '.[serve]' && \\
        /tmp/serve-venv/bin/python scripts/check_serve_extra.py

`make check-serve-extra` does exactly that; CI runs it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

WORDS = "item movie the a of and in to is story love war night day heat city film about bees".split()


def tiny_bert(folder: Path) -> str:
    """A random BERT (hidden 32, 2 layers) and its word-piece tokenizer (the serve extra brings transformers)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789().,:", *WORDS]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(folder))
    return str(folder)


def check(step: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok' if ok else 'FAILED'}: {step}" + (f" ({detail})" if detail and not ok else ""), flush=True)
    if not ok:
        sys.exit(1)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="serve-extra-"))
    os.environ["MODALREC_HOME"] = str(work / "home")
    from modalrec.cli import main as cli

    text = tiny_bert(work / "tiny-bert")
    run = work / "run"
    code = cli(
        [
            "train",
            "--model",
            "unisrec",
            "--dataset",
            "synthetic",
            "--out",
            str(run),
            "--quiet",
            "model.mode=inductive",
            f"model.text.model={text}",
            "train.epochs=1",
            "model.hidden_size=16",
            "model.inner_size=32",
            "model.max_len=8",
        ]
    )
    check("train a tiny ID-free UniSRec", code == 0, f"exit {code}")

    from fastapi.testclient import TestClient

    from modalrec.serve.app import create_app
    from modalrec.serve.recommender import Recommender

    client = TestClient(create_app(Recommender.load(run)))
    health = client.get("/health")
    check("GET /health", health.status_code == 200, health.text)
    body = {"history": [{"text": "a film about bees"}, {"title": "Heat", "year": 1995}], "k": 5}
    recs = client.post("/recommend", json=body)
    check("POST /recommend with raw content", recs.status_code == 200 and len(recs.json()["items"]) == 5, recs.text)
    print(f"the serve extra serves a content model on its own ({sys.prefix})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
