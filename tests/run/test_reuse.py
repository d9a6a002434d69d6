"""`--reuse` (run-or-resume, modalrec.run.train_or_resume): a finished run of the same config is reused,
an interrupted one continued, a run of another config refused or (with --overwrite) replaced."""

from __future__ import annotations

import json

import pytest

from modalrec.cli import main
from modalrec.config import build_config
from modalrec.run.folder import RunDir
from modalrec.run.training import config_difference, train, train_or_resume

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.max_len=8", "train.batch_size=32"]


def _train(out, *extra: str) -> int:
    return main(
        ["train", "--model", "sasrec", "--dataset", "synthetic", "--out", str(out), "--quiet", "--reuse", *TINY, *extra]
    )


def test_a_finished_run_of_the_same_config_is_reused(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "train.epochs=2") == 0
    stamp = (out / "results.json").stat().st_mtime_ns
    assert _train(out, "train.epochs=2", "train.threads=1") == 0  # threads: how, not what
    assert (out / "results.json").stat().st_mtime_ns == stamp
    assert "reusing finished run" in capsys.readouterr().err


def test_a_run_of_another_config_is_refused_or_replaced(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "train.epochs=2") == 0
    stamp = (out / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert _train(out, "train.epochs=3") == 2
    err = capsys.readouterr().err
    assert "train.epochs: 2 in the run, 3 asked" in err and "--overwrite" in err
    assert (out / "results.json").stat().st_mtime_ns == stamp  # nothing written
    assert _train(out, "train.epochs=3", "--overwrite") == 0
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 3


def test_an_interrupted_run_is_continued_to_the_uninterrupted_result(tmp_path):
    cfg = build_config(model="sasrec", overrides=TINY + ["data.dataset=synthetic", "train.epochs=3"])
    whole = train(cfg, tmp_path / "whole", progress=False)

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, callbacks=[stop])
    notes = []
    again = train_or_resume(cfg, tmp_path / "cut", progress=False, log_to=notes.append)
    assert any("resuming" in n for n in notes)
    assert again["test"]["metrics"] == whole["test"]["metrics"]
    assert config_difference(RunDir(tmp_path / "cut"), cfg) == ""
