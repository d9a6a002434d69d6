"""modalrec tune: search-space checks, a real Optuna study on synthetic data that continues where it
stopped, pruning from the per-epoch validation, and a search killed mid-trial."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from modalrec.cli import main  # noqa: E402
from modalrec.run.tune import TuneError, _pruning, _study, read_space  # noqa: E402

TINY = ["train.epochs=3", "model.max_len=8", "model.inner_size=32", "train.batch_size=32"]


def _space(tmp_path, text: str):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,msg",
    [
        ("nothing: 1", "'params:' mapping"),
        ("params: {lr: {float: [0.1, 1]}}", "not a config key"),
        ("params: {train.lr: {float: [1, 0.1]}}", "low < high"),
        ("params: {train.lr: {float: [0, 1], log: true}}", "log range needs low > 0"),
        ("params: {train.lr: {float: [0.1, 1], choice: [1]}}", "exactly one of"),
        ("params: {model.hidden_size: {choice: []}}", "non-empty list"),
    ],
)
def test_a_bad_space_is_named(tmp_path, text, msg):
    with pytest.raises(TuneError, match=msg):
        read_space(_space(tmp_path, text))


def _tune_args(space, out, *extra: str) -> list[str]:
    """`modalrec tune` of a tiny SASRec on the synthetic data set over ``space`` into ``out``."""
    return [
        "tune",
        "--model",
        "sasrec",
        "--dataset",
        "synthetic",
        "--space",
        str(space),
        "--out",
        str(out),
        "--quiet",
        *extra,  # before TINY: the key=value overrides must stay together (argparse)
        *TINY,
    ]


def test_a_search_runs_writes_its_best_and_continues(tmp_path, capsys):
    space = _space(
        tmp_path, "params:\n  train.lr: {float: [1.0e-4, 1.0e-2], log: true}\n  model.hidden_size: {choice: [16, 32]}\n"
    )
    out = tmp_path / "search"
    args = _tune_args(space, out)
    assert main([*args, "--trials", "3"]) == 0
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trial-*/config.yaml")}
    assert len(first) == 3 and (out / "study.db").is_file() and (out / "trials.csv").is_file()
    assert main([*args, "--trials", "5"]) == 0  # the same command with more trials: continued, not restarted
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{i:03d}" for i in range(5)]
    assert {
        p.parent.name: p.stat().st_mtime_ns for p in out.glob("trial-*/config.yaml") if p.parent.name in first
    } == first
    study = optuna.load_study(study_name="modalrec", storage=f"sqlite:///{out / 'study.db'}")
    best = study.best_trial
    from modalrec.config import load_yaml

    saved = load_yaml(out / "best.yaml")
    assert saved["model"]["hidden_size"] == best.params["model.hidden_size"]
    assert saved["train"]["lr"] == pytest.approx(best.params["train.lr"])
    assert saved["train"]["epochs"] == 3  # the fixed overrides stay
    assert f"valid {best.value:.4f}" in capsys.readouterr().out


def test_pruning_follows_the_per_epoch_validation(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    report = _pruning(optuna, trial, "ndcg@10")
    report(1, {"epoch": 1})  # an epoch without validation reports nothing
    report(2, {"valid": {"ndcg@10": 0.7}})
    with pytest.raises(optuna.TrialPruned):
        report(3, {"valid": {"ndcg@10": 0.2}})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {2: 0.7, 3: 0.2}


def test_a_trial_left_running_by_a_killed_search_is_marked_failed(tmp_path):
    study = _study(optuna, tmp_path, seed=0)
    study.ask()  # as a killed process leaves it: RUNNING forever
    again = _study(optuna, tmp_path, seed=0)
    assert [t.state for t in again.get_trials()] == [optuna.trial.TrialState.FAIL]


def test_an_epoch_budget_caps_the_epochs_of_all_trials(tmp_path, capsys):
    """--epoch-budget 5 with 3-epoch trials: a full trial, a second cut to 2 epochs, then the search stops
    (and a second call with the budget spent trains nothing)."""
    space = _space(tmp_path, "params:\n  train.lr: {float: [1.0e-4, 1.0e-2], log: true}\n")
    out = tmp_path / "search"
    args = _tune_args(space, out, "--trials", "10", "--epoch-budget", "5", "train.patience=10")
    assert main(args) == 0
    import json

    epochs = [
        sum(
            1
            for ln in (out / f"trial-{i:03d}" / "metrics.jsonl").read_text().splitlines()
            if "final" not in json.loads(ln)
        )
        for i in range(2)
    ]
    assert epochs == [3, 2] and not (out / "trial-002").exists()
    assert "(2 trials, 5 epochs)" in capsys.readouterr().out
    assert main(args) == 0 and not (out / "trial-002").exists()
    assert main(_tune_args(space, out, "--trials", "10", "--epoch-budget", "0", "train.patience=10")) == 2
