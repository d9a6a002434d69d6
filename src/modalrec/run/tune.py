"""Hyperparameter search (`modalrec tune`): Optuna over ranges declared in YAML, on validation NDCG@10.

The search space file names config keys and their ranges::

    params:
      train.lr:            {float: [1.0e-4, 1.0e-2], log: true}
      model.hidden_size:   {choice: [32, 64, 128]}
      model.dropout:       {float: [0.1, 0.5]}
      train.window_stride: {int: [5, 50], step: 5}

Every trial is an ordinary run folder ``OUT/trial-NNN`` (trained by :func:`modalrec.run.training.train`);
a trial whose per-epoch validation falls below the median of earlier trials at the same epoch is
pruned (its folder is left as an interrupted run). The study lives in ``OUT/study.db`` (SQLite), so
running the same command again continues it: trials that a killed search left running are marked
failed and the search goes on up to ``--trials`` finished or pruned trials. The best trial's config is
written to ``OUT/best.yaml`` and every trial to ``OUT/trials.csv``. Test metrics are never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

KINDS = ("float", "int", "choice")


class TuneError(ValueError):
    """A search that cannot run as asked (a bad space file, Optuna missing)."""


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.low is None or self.high is None:
            raise TuneError(f"{self.key}: a {self.kind} range needs both ends")
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)


def read_space(path: str | Path) -> list[Param]:
    """The ``params`` of a search-space YAML; a TuneError names the key and what is wrong."""
    from modalrec.config import load_yaml

    data = load_yaml(path)
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict) or not params:
        raise TuneError(f"{path}: expected a 'params:' mapping of config keys to ranges")
    return [_param(str(path), key, spec) for key, spec in params.items()]


def _param(where: str, key: str, spec) -> Param:
    if "." not in key:
        raise TuneError(f"{where}: '{key}' is not a config key such as train.lr")
    kinds = [k for k in KINDS if isinstance(spec, dict) and k in spec]
    if len(kinds) != 1:
        raise TuneError(f"{where}: {key} needs exactly one of float: [low, high], int: [low, high], choice: [...]")
    kind, value = kinds[0], spec[kinds[0]]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise TuneError(f"{where}: {key}: choice needs a non-empty list")
        return Param(key, kind, choices=tuple(value))
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and value[0] < value[1]
    ):
        raise TuneError(f"{where}: {key}: {kind} needs [low, high] with low < high, not {value!r}")
    log = bool(spec.get("log", False))
    if log and value[0] <= 0:
        raise TuneError(f"{where}: {key}: a log range needs low > 0")
    return Param(key, kind, value[0], value[1], log, spec.get("step"))


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise TuneError("modalrec tune needs Optuna: pip install 'modalrec[tune]'") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _study(optuna, out: Path, seed: int):
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name="modalrec",
        storage=f"sqlite:///{out / 'study.db'}",
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=2),
    )
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # left running by a killed search
    return study


def _pruning(optuna, trial, key: str) -> Callable[[int, dict], None]:
    def report(epoch: int, record: dict) -> None:
        trial.set_user_attr("epochs", epoch)  # before a prune: the epoch budget counts pruned trials' epochs too
        if "valid" in record:
            trial.report(record["valid"][key], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    return report


def epochs_spent(study) -> int:
    """Training epochs run by every trial of the study so far (finished, pruned, failed or interrupted)."""
    return sum(int(t.user_attrs.get("epochs", 0)) for t in study.get_trials(deepcopy=False))


def tune(
    make_config: Callable[[list[str]], Any],
    space: list[Param],
    out: str | Path,
    *,
    trials: int,
    seed: int = 0,
    timeout: float | None = None,
    epoch_budget: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the search until ``trials`` trials are finished or pruned (counting earlier runs of the study),
    or until the trials have run ``epoch_budget`` training epochs in all: the last trial's ``train.epochs``
    is cut to what is left, so the search never trains more epochs than the budget.

    ``make_config(overrides)`` builds a trial's RunConfig from the sampled ``key=value`` overrides.
    Returns ``{"best_value", "best_params", "best_trial", "trials", "epochs"}``.
    """
    from modalrec.config import save_config
    from modalrec.run.training import train
    from modalrec.train.trainer import select_key

    optuna = _optuna()
    out = Path(out)
    study = _study(optuna, out, seed)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        cfg = make_config([f"{k}={v}" for k, v in values.items()])
        if epoch_budget is not None:
            cfg.train.epochs = min(cfg.train.epochs, epoch_budget - epochs_spent(study))
        key = select_key(cfg.eval.ks)
        folder = out / f"trial-{trial.number:03d}"
        res = train(
            cfg,
            folder,
            overwrite=True,
            progress=False,
            callbacks=[_pruning(optuna, trial, key)],
            command=f"modalrec tune (trial {trial.number})",
        )
        trial.set_user_attr("folder", str(folder))
        value = res["valid"]["metrics"][key]  # the best epoch's weights on validation
        log(f"trial {trial.number}: valid {key} {value:.4f}  {values}")
        return value

    def budget_left() -> bool:
        return epoch_budget is None or epochs_spent(study) < epoch_budget

    def stop_when_spent(_study, _trial) -> None:
        if not budget_left():
            study.stop()

    remaining = trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0 and budget_left():
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(), callbacks=[stop_when_spent])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise TuneError(f"no trial of {out} finished (all pruned or failed): widen the ranges or add trials")
    best = study.best_trial
    best_cfg = make_config([f"{k}={v}" for k, v in best.params.items()])
    save_config(best_cfg, out / "best.yaml")
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    return {
        "best_value": best.value,
        "best_params": best.params,
        "best_trial": best.number,
        "trials": len(study.get_trials(deepcopy=False, states=done)),
        "epochs": epochs_spent(study),
    }
