"""Writing a benchmark's result file."""

from __future__ import annotations

from pathlib import Path

from modalrec.utils import atomic_write_json


def write_result(path: str | Path, result: dict) -> None:
    """Write ``result`` as JSON, atomically (an interrupted run never leaves half a file in bench/results/)."""
    atomic_write_json(path, result)
    print(f"\nwrote {path}")
