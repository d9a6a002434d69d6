import json
import os
import subprocess
import sys

import pytest
import torch

from modalrec.config import build_config
from modalrec.evaluate.ranking import evaluate
from modalrec.serve.recommender import Recommender
from modalrec.run.folder import RunDir, RunDirError
from modalrec.run.training import train

TINY = [
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.max_len=10",
    "train.batch_size=32",
    "train.lr=3e-3",
    "data.dataset=synthetic",
    "train.patience=100",
]


def _cfg(*extra, model="sasrec"):
    over = TINY if model == "sasrec" else ["data.dataset=synthetic"]
    return build_config(model=model, overrides=[*over, *extra])


def test_run_folder_contents(tmp_path):
    res = train(_cfg("train.epochs=3"), tmp_path / "run", progress=False)
    rd = RunDir(tmp_path / "run")
    for p in (rd.config, rd.metrics, rd.last, rd.best, rd.results, rd.dataset):
        assert p.is_file(), p
    lines = [json.loads(x) for x in rd.metrics.read_text().splitlines()]
    assert [r.get("epoch") for r in lines[:3]] == [1, 2, 3] and lines[-1]["final"]
    assert lines[0]["train_loss"] > lines[2]["train_loss"]
    assert res["test"]["protocol"]["exclude_history"] is True
    assert set(res["test"]["metrics"]) >= {"hr@10", "ndcg@10", "mrr@10", "hr@50"}
    assert json.loads(rd.results.read_text())["test"]["metrics"] == res["test"]["metrics"]


def test_resume_continues_exactly(tmp_path):
    full = train(
        _cfg("train.epochs=4", "train.schedule=cosine", "train.warmup_steps=3"), tmp_path / "a", progress=False
    )

    def interrupt(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            _cfg("train.epochs=4", "train.schedule=cosine", "train.warmup_steps=3"),
            tmp_path / "b",
            progress=False,
            callbacks=[interrupt],
        )
    assert not RunDir(tmp_path / "b").results.exists()
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    assert resumed["test"]["metrics"] == full["test"]["metrics"]
    assert resumed["valid"]["metrics"] == full["valid"]["metrics"]
    a = torch.load(RunDir(tmp_path / "a").last, weights_only=True)["model"]
    b = torch.load(RunDir(tmp_path / "b").last, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [json.loads(x).get("epoch") for x in RunDir(tmp_path / "b").metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, None]


def test_same_seed_same_numbers(tmp_path):
    a = train(_cfg("train.epochs=2"), tmp_path / "a", progress=False)
    b = train(_cfg("train.epochs=2"), tmp_path / "b", progress=False)
    c = train(_cfg("train.epochs=2", "train.seed=7"), tmp_path / "c", progress=False)
    assert a["test"]["metrics"] == b["test"]["metrics"]
    assert a["test"]["metrics"] != c["test"]["metrics"]


def test_run_folder_is_never_overwritten(tmp_path):
    train(_cfg("train.epochs=1"), tmp_path / "r", progress=False)
    before = RunDir(tmp_path / "r").results.read_text()
    with pytest.raises(RunDirError, match="already holds a run"):
        train(_cfg("train.epochs=1"), tmp_path / "r", progress=False)
    assert RunDir(tmp_path / "r").results.read_text() == before
    with pytest.raises(RunDirError, match="nothing to resume"):
        train(None, tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(RunDirError, match="cannot change the 'model' section"):
        train(None, tmp_path / "r", resume=True, overrides=["model.hidden_size=8"], progress=False)


def test_early_stopping(tmp_path):
    res = train(
        _cfg("train.epochs=30", "train.patience=1", "train.lr=0.5", "train.grad_clip=0"), tmp_path / "r", progress=False
    )
    assert res["stopped_early"] and res["epochs_run"] < 30
    assert res["best_epoch"] == res["epochs_run"] - 1


def test_pop_needs_no_epochs_and_recommends_popular_items(tmp_path):
    res = train(_cfg(model="pop"), tmp_path / "pop", progress=False)
    assert res["epochs_run"] == 0 and res["test"]["count"] > 0
    rec = Recommender.load(tmp_path / "pop")
    counts = rec.dataset.train_item_counts()
    top = rec.recommend([rec.dataset.catalogue.item_ids[1]], k=3, exclude_seen=False)
    assert [counts[rec.dataset.catalogue.index_of(r.item_id)] for r in top] == sorted(counts, reverse=True)[:3]


def test_sasrec_learns_the_synthetic_transitions(tmp_path):
    pop = train(_cfg(model="pop"), tmp_path / "pop", progress=False)
    sas = train(_cfg("train.epochs=15"), tmp_path / "sas", progress=False)
    assert sas["test"]["metrics"]["ndcg@10"] > pop["test"]["metrics"]["ndcg@10"]


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process_evaluation(tmp_path):
    """Train under torchrun (gloo, 2 ranks); its distributed test metrics equal a 1-process evaluation."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "modalrec.cli",
        "train",
        "--model",
        "sasrec",
        "--out",
        str(tmp_path / "ddp"),
        "--quiet",
        *TINY,
        "train.epochs=2",
        "eval.batch_size=7",
    ]
    # prepare once so both ranks read the cache
    subprocess.run(
        [sys.executable, "-m", "modalrec.cli", "data", "prepare", "--dataset", "synthetic", "--quiet"],
        check=True,
        env=env,
        capture_output=True,
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(RunDir(tmp_path / "ddp").results.read_text())
    assert results["world_size"] == 2
    rec = Recommender.load(tmp_path / "ddp")
    single = evaluate(
        rec.model,
        rec.dataset.split.test,
        max_len=10,
        progress=False,
        cold_items=torch.as_tensor(~rec.dataset.seen_in_train()),
    )
    assert results["test"]["count"] == single.count == len(rec.dataset.split.test)
    assert results["test"]["metrics"] == single.metrics
