"""A real `kill -9` of training at several points; the same command again (`--reuse`) ends with the
results of an uninterrupted run, exactly (issue 20: crash-proof starts, exact resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ARGS = [
    "train",
    "--model",
    "sasrec",
    "--dataset",
    "synthetic",
    "--quiet",
    "--reuse",
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.max_len=8",
    "train.batch_size=32",
    "train.epochs=3",
    "train.threads=1",
]

# The driver runs the CLI with one function wrapped so that the process SIGKILLs itself at the chosen point.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    point, argv = sys.argv[1], sys.argv[2:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    import modalrec.core.checkpoint as ck
    import modalrec.evaluate.ranking as ranking
    import modalrec.run.store as store
    import modalrec.train.trainer as trainer

    if point == "before-first-checkpoint":  # config, data record and catalogue written, no checkpoint yet
        ck.save = lambda path, obj: die()
    elif point == "mid-epoch":  # the second batch of epoch 2
        step, seen = trainer.Trainer._train_step, []
        def _train_step(self, batch, epoch):
            seen.append(epoch)
            if seen.count(2) == 2:
                die()
            return step(self, batch, epoch)
        trainer.Trainer._train_step = _train_step
    elif point == "right-after-best":  # best.pt of epoch 2 written, not yet last.pt
        save_best = trainer._save_best
        def _save_best(path, model, cfg, epoch, metrics):
            save_best(path, model, cfg, epoch, metrics)
            if epoch == 2:
                die()
        trainer._save_best = _save_best
    elif point == "final-evaluation":  # every epoch done, the test split being evaluated
        evaluate = ranking.evaluate
        def _evaluate(*a, **k):
            if k.get("split") == "test":
                die()
            return evaluate(*a, **k)
        ranking.evaluate = _evaluate
    elif point == "saving-the-run":  # the first safetensors file of the self-contained run
        store._tensor_file = lambda path, tensors: die()
    from modalrec.cli import main
    sys.exit(main(argv))
""")

POINTS = ["before-first-checkpoint", "mid-epoch", "right-after-best", "final-evaluation", "saving-the-run"]


def _run(args: list[str], tmp_path: Path, point: str = "none") -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run(
        [sys.executable, str(driver), point, *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("whole")
    out = tmp / "run"
    done = _run([*ARGS, "--out", str(out)], tmp)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_continues_to_the_uninterrupted_result(point, reference, tmp_path):
    out = tmp_path / "run"
    killed = _run([*ARGS, "--out", str(out)], tmp_path, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # it really died there
    assert not (out / "results.json").is_file() or point == "saving-the-run"
    again = _run([*ARGS, "--out", str(out)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["test"]["metrics"] == reference["test"]["metrics"]
    assert res["valid"]["metrics"] == reference["valid"]["metrics"]
    assert res["best_epoch"] == reference["best_epoch"]
    epochs = [
        json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines() if "epoch" in json.loads(ln)
    ]
    assert epochs == [1, 2, 3]  # each epoch once, in order
    assert (out / "model.safetensors").is_file() and not list(out.glob("**/*.tmp*"))
