"""Where per-epoch metrics go besides ``metrics.jsonl``: the ``train.loggers`` back-ends.

``metrics.jsonl`` is the run's record (resume, the learning curve and the model card read it), so the
trainer writes it whatever ``train.loggers`` says; the name ``jsonl`` is accepted and adds nothing.
``tensorboard`` writes event files into ``RUN/tensorboard``; ``mlflow`` logs into an MLflow store in
``RUN/mlruns`` (an SQLite database: MLflow's plain-folder store is in maintenance mode and refuses to
start) or into ``$MLFLOW_TRACKING_URI`` when that is set.

Each back-end gets every number of an epoch's record under the record's own names, nested ones
joined by ``/`` (``train_loss``, ``lr``, ``valid/ndcg@10``), at step = epoch. MLflow names cannot hold
``@``: there ``valid/ndcg@10`` is ``valid/ndcg_at_10``.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

from modalrec.config import ConfigError, flatten

# logger name -> (the package it needs, the modalrec extra that installs it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
RUN_TAG = "modalrec.run_dir"  # MLflow tag: the run folder a run belongs to (found again on resume)


class LoggerUnavailable(ConfigError):
    """``train.loggers`` names a back-end whose package is not installed."""


def require(names: list[str]) -> None:
    """Import the packages of the back-ends ``names`` asks for; LoggerUnavailable names the extra to install."""
    for name in dict.fromkeys(names):
        if name not in PACKAGES:
            continue
        package, extra = PACKAGES[name]
        try:
            importlib.import_module(package)
        except ImportError as e:
            raise LoggerUnavailable(
                f"train.loggers asks for {name!r}, but the {package!r} package is not installed ({e}): "
                f"pip install 'modalrec[{extra}]', or take {name!r} out of train.loggers"
            ) from None


def epoch_metrics(record: dict) -> dict[str, float]:
    """Every number of an epoch's record (nested names joined by ``/``) but the epoch itself (the step)."""
    flat = flatten({k: v for k, v in record.items() if k != "epoch"}, sep="/")
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def config_params(config: dict) -> dict[str, str]:
    """A config tree as flat ``section.key`` -> text (lists as JSON)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flatten(config).items()}


class MetricLogger:
    """A back-end: started once with the run's config, given every epoch's record, closed at the end."""

    def start(self, params: dict[str, str], resume: bool) -> None:
        """``params``: the run's flattened config; ``resume``: the run continues (its earlier epochs were logged)."""

    def log_epoch(self, record: dict) -> None:
        """One epoch's record, as written to metrics.jsonl."""

    def close(self, ok: bool = True) -> None:
        """``ok``: the training loop ended normally (else it raised)."""


class TensorBoardLogger(MetricLogger):
    """Event files in ``folder`` (``tensorboard --logdir RUN/tensorboard``); the config as text."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def start(self, params: dict[str, str], resume: bool) -> None:
        if not resume:
            table = "\n".join(f"    {k}: {v}" for k, v in params.items())  # indented: a code block in Markdown
            self.writer.add_text("config", table, 0)

    def log_epoch(self, record: dict) -> None:
        for key, value in epoch_metrics(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self, ok: bool = True) -> None:
        self.writer.close()


class MLflowLogger(MetricLogger):
    """One MLflow run per run folder, in the experiment ``experiment``; continued on resume."""

    def __init__(self, folder: Path, run_dir: Path, experiment: str):
        from mlflow.tracking import MlflowClient

        self.local = not os.environ.get("MLFLOW_TRACKING_URI")
        if self.local:
            folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.run_dir, self.experiment = folder, str(run_dir.resolve()), experiment
        self.client = MlflowClient(f"sqlite:///{(folder / 'mlflow.db').resolve()}" if self.local else None)
        self.run_id = ""

    def start(self, params: dict[str, str], resume: bool) -> None:
        from mlflow.entities import Param

        exp_id = self._experiment_id()
        previous = self._previous_run(exp_id) if resume else None
        if previous:
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            return
        run = self.client.create_run(exp_id, tags={RUN_TAG: self.run_dir}, run_name=Path(self.run_dir).name)
        self.run_id = run.info.run_id
        items = [Param(k, v[:6000]) for k, v in params.items()]  # MLflow's longest value
        for i in range(0, len(items), 100):  # at most 100 params per call
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        where = (self.folder / "artifacts").resolve().as_uri() if self.local else None
        return self.client.create_experiment(self.experiment, artifact_location=where)

    def _previous_run(self, exp_id: str) -> str | None:
        runs = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{RUN_TAG}` = '{self.run_dir}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def log_epoch(self, record: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_name(k), v, now, record["epoch"]) for k, v in epoch_metrics(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, ok: bool = True) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def mlflow_name(key: str) -> str:
    """A metric name MLflow accepts (``ndcg@10`` -> ``ndcg_at_10``)."""
    return key.replace("@", "_at_")


def open_loggers(names: list[str], rd: Any, config: dict, experiment: str, resume: bool) -> list[MetricLogger]:
    """Start the back-ends ``names`` asks for (``jsonl`` needs none) for the run folder ``rd``
    (a :class:`modalrec.run.folder.RunDir`); ``experiment`` names the MLflow experiment."""
    require(names)
    params = config_params(config)
    made: list[MetricLogger] = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            made.append(TensorBoardLogger(rd.tensorboard))
        elif name == "mlflow":
            made.append(MLflowLogger(rd.mlflow, rd.path, experiment))
    for logger in made:
        logger.start(params, resume)
    return made
