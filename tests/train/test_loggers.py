"""train.loggers: TensorBoard and MLflow receive exactly the per-epoch numbers of metrics.jsonl."""

import json
import sys

import pytest

from modalrec.config import ConfigError, build_config
from modalrec.run.folder import RunDir
from modalrec.run.training import train
from modalrec.train.loggers import LoggerUnavailable

TINY = [
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.max_len=10",
    "train.batch_size=32",
    "train.lr=3e-3",
    "data.dataset=synthetic",
    "train.patience=100",
    "train.epochs=2",
]


def _cfg(*extra):
    return build_config(model="sasrec", overrides=[*TINY, *extra])


def _jsonl_epochs(rd: RunDir) -> dict[int, dict[str, float]]:
    """metrics.jsonl's epoch lines as {epoch: {name: value}}, nested validation names joined by '/'."""
    out = {}
    for line in rd.metrics.read_text().splitlines():
        r = json.loads(line)
        if "epoch" in r:
            out[r["epoch"]] = {
                "step": r["step"],
                "train_loss": r["train_loss"],
                "lr": r["lr"],
                "elapsed_s": r["elapsed_s"],
                **{f"valid/{k}": v for k, v in r["valid"].items()},
            }
    return out


def _by_name(epochs: dict[int, dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    names = sorted({k for m in epochs.values() for k in m})
    return {k: [(e, m[k]) for e, m in sorted(epochs.items())] for k in names}


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _mlflow_run(rd: RunDir, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{rd.mlflow / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    run = runs[0]
    history = {
        k: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)]
        for k in run.data.metrics
    }
    return run, history


def _assert_same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, points in expected.items():
        assert [s for s, _ in got[name]] == [s for s, _ in points], name
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in points], rel=1e-6), name


def test_tensorboard_and_mlflow_hold_the_numbers_of_metrics_jsonl(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rd = RunDir(tmp_path / "run")
    train(_cfg("train.loggers=[tensorboard,mlflow]"), rd.path, progress=False)
    expected = _by_name(_jsonl_epochs(rd))
    assert len(expected["train_loss"]) == 2 and "valid/ndcg@10" in expected

    _assert_same(_tensorboard_scalars(rd.tensorboard), expected)
    run, history = _mlflow_run(rd, "synthetic/sasrec")
    _assert_same(history, {k.replace("@", "_at_"): v for k, v in expected.items()})
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "sasrec" and run.data.params["train.lr"] == "0.003"
    assert json.loads(run.data.params["train.loggers"]) == ["tensorboard", "mlflow"]


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rd = RunDir(tmp_path / "run")

    def interrupt(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg("train.loggers=[mlflow]"), rd.path, progress=False, callbacks=[interrupt])
    train(None, rd.path, resume=True, progress=False)
    run, history = _mlflow_run(rd, "synthetic/sasrec")
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history["train_loss"]] == [1, 2]


def test_default_writes_metrics_jsonl_only(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert _cfg().train.loggers == ["jsonl"]
    train(_cfg("train.epochs=1"), rd.path, progress=False)
    assert len(_jsonl_epochs(rd)) == 1
    assert not rd.tensorboard.exists() and not rd.mlflow.exists()


def test_an_unknown_logger_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="train.loggers: unknown logger 'tensorbord'. Did you mean 'tensorboard'"):
        _cfg("train.loggers=[jsonl,tensorbord]")
    with pytest.raises(ConfigError, match="Known loggers: jsonl, mlflow, tensorboard"):
        _cfg("train.loggers=[wandb]")


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_missing_package_stops_the_run_naming_the_extra(tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # the import system's own "not installed" (ImportError)
    rd = RunDir(tmp_path / "run")
    with pytest.raises(LoggerUnavailable, match=rf"pip install 'modalrec\[{name}\]'"):
        train(_cfg(f"train.loggers=[{name}]"), rd.path, progress=False)
    assert not rd.config.exists() and not rd.metrics.exists()  # stopped before anything was written
