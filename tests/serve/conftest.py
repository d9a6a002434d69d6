"""Trained tiny runs for the serving tests (trained once per session on the synthetic data set)."""

import os

import pytest

TINY_TOWERS = ["model.text.max_tokens=8", "model.image.model=tiny-test-cnn", "model.image.image_size=16"]


def _run_overrides(model: str, tiny_text: str) -> list[str]:
    text = [f"model.text.model={tiny_text}"]
    common = ["model.max_len=8", "train.epochs=1", "train.batch_size=32", "data.dataset=synthetic"]
    if model == "pmmrec":
        return common + text + TINY_TOWERS + ["model.hidden_size=16", "model.image_grid=2"]
    if model == "missrec":
        return (
            common
            + text
            + TINY_TOWERS
            + ["model.hidden_size=16", "model.n_heads=2", "model.inner_size=32", "model.interest_ratio=0.25"]
        )
    if model == "unisrec":
        return common + text + ["model.text.max_tokens=8", "model.hidden_size=16", "model.inner_size=32"]
    if model == "sasrec":
        return common + ["model.hidden_size=16", "model.inner_size=32"]
    return ["data.dataset=synthetic"]


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory, tiny_text_model):
    """``{model name: run dir}`` for pop, sasrec, pmmrec, missrec and unisrec (inductive), 1 epoch each."""
    from modalrec.config import build_config
    from modalrec.run.training import train

    root = tmp_path_factory.mktemp("served")
    old = os.environ.get("MODALREC_HOME")
    os.environ["MODALREC_HOME"] = str(root / "home")
    try:
        runs = {}
        for name in ("pop", "sasrec", "pmmrec", "missrec", "unisrec"):
            cfg = build_config(model=name, overrides=_run_overrides(name, tiny_text_model))
            train(cfg, root / name, progress=False)
            runs[name] = root / name
    finally:
        if old is None:
            os.environ.pop("MODALREC_HOME", None)
        else:
            os.environ["MODALREC_HOME"] = old
    return runs


@pytest.fixture
def http_scope():
    """``http_scope(path, content_length=100)``: the ASGI scope of a POST with a JSON body of that length, for
    sending requests straight to an app."""

    def scope(path: str, content_length: int = 100) -> dict:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(content_length).encode()),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }

    return scope
