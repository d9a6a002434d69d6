"""The run folder: its paths, its state (empty, started, finished), one writer at a time, clean starts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunDirError(ValueError):
    """The run folder cannot be used as asked (holds a run without --resume, is locked, is not a run...)."""


class RunDir:
    """Paths of a run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"  # for humans and --resume
        self.config_json = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.path / "best.pt"
        self.results = self.path / "results.json"
        self.dataset = self.path / "dataset.json"  # the data record: summary, fingerprint, origin
        self.weights = self.path / "model.safetensors"
        self.item_state = self.path / "item_state.safetensors"
        self.catalogue = self.path / "catalogue.npz"
        self.histories = self.path / "histories.npz"
        self.assets = self.path / "assets"
        self.card = self.path / "README.md"
        self.learning_curve = self.path / "learning_curve.png"
        self.tensorboard = self.path / "tensorboard"  # train.loggers=[tensorboard]
        self.mlflow = self.path / "mlruns"  # train.loggers=[mlflow] without MLFLOW_TRACKING_URI
        self.lock = self.path / ".lock"

    def entries(self) -> list[Path]:
        """Everything a run writes (what --overwrite and a fresh restart remove)."""
        return [
            self.config,
            self.config_json,
            self.metrics,
            self.checkpoints,
            self.best,
            self.results,
            self.dataset,
            self.weights,
            self.item_state,
            self.catalogue,
            self.histories,
            self.assets,
            self.card,
            self.learning_curve,
            self.tensorboard,
            self.mlflow,
        ]

    @property
    def started(self) -> bool:
        """The run got past its first epoch (it has checkpoints/last.pt) or is finished."""
        return self.last.is_file() or self.weights.is_file() or self.results.is_file()

    @property
    def finished(self) -> bool:
        return self.results.is_file() and (self.weights.is_file() or self.best.is_file())

    def foreign(self) -> list[str]:
        """Names in the folder that no run writes (a folder that holds them is not ours to clear)."""
        if not self.path.is_dir():
            return []
        ours = {p.name for p in self.entries()} | {self.lock.name}
        return sorted(p.name for p in self.path.iterdir() if p.name not in ours and not p.name.startswith("."))

    def clear(self) -> None:
        """Remove what a run wrote (never other files, never the lock)."""
        for p in self.entries():
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


@contextmanager
def run_lock(rd: RunDir) -> Iterator[None]:
    """One writer per run folder: an exclusive OS lock on ``run/.lock`` (released when the process ends);
    a second writer gets a RunDirError naming the holder's PID."""
    from modalrec.utils import LockedError, file_lock

    try:
        with file_lock(rd.lock, wait=False, what=f"the run folder {rd.path}"):
            yield
    except LockedError as e:
        raise RunDirError(f"{e}, or choose another --out") from None


def choose_start(rd: RunDir, resume: bool, overwrite: bool) -> tuple[bool, str]:
    """Decide how a training command starts in ``rd``: ``(resume, note)``; ``note`` says what was decided
    when it is not what was asked (empty otherwise). Raises RunDirError when the folder cannot be used.

    A folder without a checkpoint is not a run yet: it is started fresh (its leftovers removed),
    with or without --resume. ``overwrite`` removes a run and starts fresh.
    """
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite replaces it: give one of them")
    foreign = rd.foreign()
    if foreign and not rd.lock.exists() and (overwrite or not rd.started):  # no run made this folder
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise RunDirError(
            f"{rd.path} holds files that are not part of a run ({shown}); choose an empty or new folder for --out"
        )
    if overwrite:
        return False, f"--overwrite: replacing the run in {rd.path}" if rd.started else ""
    if resume:
        if rd.last.is_file():
            return True, ""
        if rd.finished:
            raise RunDirError(
                f"{rd.path} holds a finished run with nothing to resume (pass --overwrite to train it again)"
            )
        if not rd.config.is_file():
            raise RunDirError(f"nothing to resume in {rd.path}: no config.yaml or checkpoints/last.pt")
        return False, f"{rd.path} has no checkpoint (its start failed): starting it fresh"
    if rd.started:
        raise RunDirError(
            f"{rd.path} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )
    return False, ""
