"""The learning-curve plot of a run, written after training; it never fails a run."""

from __future__ import annotations

import logging

log = logging.getLogger("modalrec.run")


def write_learning_curve(rd, key: str = "ndcg@10", show: bool = False, title: str | None = None):
    """``learning_curve.png`` (validation ``key`` and training loss per epoch) from the run's metrics.jsonl.

    Without matplotlib it is skipped with one log line (printed too when ``show``); any plotting
    error is logged as a warning. Returns the PNG's path or None.
    """
    try:
        from modalrec.report.plots import MatplotlibMissing, learning_curve
    except Exception as e:  # pragma: no cover - the module itself is part of modalrec
        log.warning("learning curve not written: %s", e)
        return None
    try:
        return learning_curve(rd.path, rd.learning_curve, key=key, title=title)
    except MatplotlibMissing:
        msg = f"{rd.learning_curve.name} not written: matplotlib is not installed (pip install 'modalrec[report]')"
        if show:
            from tqdm.auto import tqdm

            tqdm.write(msg)
        else:
            log.info(msg)
    except Exception as e:
        log.warning("learning curve not written to %s: %s: %s", rd.learning_curve, type(e).__name__, e)
    return None
