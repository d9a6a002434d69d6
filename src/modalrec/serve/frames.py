"""Recommendations as DataFrames (the RecTools / scikit-learn shape) and files by extension.

Every function takes a :class:`~modalrec.serve.recommender.Recommender`; the recommender exposes them
as ``recommend_users``, ``recommend_histories`` and ``recommend_file``. The frame has one row per
recommendation: ``user_id``, ``item_id``, ``score``, ``rank`` (1 = best), users in the order asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.serve.validation import RequestError

COLUMNS = ["user_id", "item_id", "score", "rank"]
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def frame(users: list, results: list) -> pd.DataFrame:
    rows = [(u, r.item_id, float(r.score), i + 1) for u, rs in zip(users, results) for i, r in enumerate(rs)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"user_id": str, "item_id": str, "score": "float64", "rank": "int64"})


def known_histories(rec, users) -> list[list[str]]:
    """Each known user's whole stored sequence (train, validation and test events), oldest first."""
    ds = rec.dataset
    index = rec.__dict__.get("_user_index")
    if index is None:
        index = rec.__dict__["_user_index"] = {str(u): i for i, u in enumerate(ds.user_ids)}
    if isinstance(users, (str, bytes)) or not hasattr(users, "__iter__"):
        raise RequestError(f"users must be a list of user ids, not {users!r:.60}")
    users = [str(u) for u in users]
    unknown = [u for u in users if u not in index]
    if unknown:
        raise RequestError(
            f"unknown user id(s): {', '.join(map(repr, unknown[:10]))}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            + "; give their histories instead (recommend_histories)"
        )
    ids = rec._ids
    return [[ids[int(i)] for i in ds.items[ds.offsets[index[u]] : ds.offsets[index[u] + 1]]] for u in users]


def histories_of(histories) -> tuple[list, list[list]]:
    """(users, histories) from a mapping user -> list of item ids (or content), or a DataFrame with columns
    ``user_id`` and ``item_id`` in time order (an optional ``timestamp`` column orders them)."""
    if isinstance(histories, pd.DataFrame):
        missing = {"user_id", "item_id"} - set(histories.columns)
        if missing:
            raise RequestError(f"the histories DataFrame needs columns user_id and item_id; missing {sorted(missing)}")
        df = histories.sort_values("timestamp", kind="stable") if "timestamp" in histories.columns else histories
        grouped = df.groupby("user_id", sort=False)["item_id"].apply(lambda s: [str(x) for x in s])
        return list(grouped.index), list(grouped.values)
    if isinstance(histories, dict):
        return list(histories), [list(h) if isinstance(h, (list, tuple, np.ndarray)) else h for h in histories.values()]
    raise RequestError(f"histories must be a dict of user -> item ids or a DataFrame, not {type(histories).__name__}")


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RequestError(
            f"{path}: cannot tell the output format from '{path.suffix or '(no extension)'}'; "
            f"use one of {', '.join(FORMATS)}"
        )
    return fmt


def write(df: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``df`` atomically: Parquet and CSV in the long frame shape; JSONL one user per line
    (``{"user": ..., "items": [...], "scores": [...]}``)."""
    from modalrec.utils import atomic_path, atomic_write_text

    if fmt == "jsonl":
        lines = [
            json.dumps({"user": u, "items": g["item_id"].tolist(), "scores": [round(s, 6) for s in g["score"]]})
            for u, g in df.groupby("user_id", sort=False)
        ]
        atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
        return
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
