"""Every failure a user can meet ends in one ``error: ...`` line and a non-zero exit, never a traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modalrec import cli
from modalrec.cli import main

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.max_len=10", "train.batch_size=32"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(out),
                "--quiet",
                *TINY,
                "train.epochs=1",
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize(
    "override, says",
    [
        ("train.eval_every=0", "train.eval_every=0 is out of range: it must be >= 1"),
        ("model.n_layers=-1", "model.n_layers=-1 is out of range: it must be >= 1"),
        ("model.hidden_size=0", "model.hidden_size=0 is out of range"),
        ("train.patience=-3", "train.patience=-3 is out of range"),
        ("train.threads=-1", "train.threads=-1 is out of range: it must be >= 0"),
    ],
)
def test_nonsense_config_is_refused(tmp_path, capsys, override, says):
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                *TINY,
                override,
            ]
        )
        == 2
    )
    assert says in _error(capsys)
    assert not (tmp_path / "r").exists()


def _table(tmp_path: Path, name: str, body: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(body)
    return p


def _corrupt_parquet(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2]}), p)
    raw = bytearray(p.read_bytes())
    raw[40:80] = b"\xff" * 40
    p.write_bytes(bytes(raw))
    return p


def _parquet_with_null_user(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "null.parquet"
    pq.write_table(pa.table({"user_id": ["a", None], "item_id": ["x", "y"], "timestamp": [1, 2]}), p)
    return p


CSV_HEAD = b"user_id,item_id,timestamp\n"


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda d: _table(
                d,
                "a.jsonl",
                b'{"user_id": "u", "item_id": "i", "timestamp": 1}\n'
                b'{"user_id": null, "item_id": "i", "timestamp": 2}\n',
            ),
            r"a.jsonl: data row 2, column 'user_id' is empty",
        ),
        (
            lambda d: _table(d, "b.jsonl", b'{"user_id": "u", "item_id": null, "timestamp": 1}\n'),
            r"b.jsonl: data row 1, column 'item_id' is empty",
        ),
        (
            lambda d: _table(d, "c.csv", CSV_HEAD + b"u,i,1\nv,j,99999999999999999999\n"),
            r"c.csv: data row 2, column 'timestamp': cannot parse timestamp '99999999999999999999'",
        ),
        (
            lambda d: _table(d, "d.csv", CSV_HEAD + b"u,i,1e300\n"),
            r"d.csv: data row 1, column 'timestamp': cannot parse timestamp '1e300'",
        ),
        (
            lambda d: _table(d, "e.csv.gz", gzip.compress(CSV_HEAD + b"u,i,1\n" * 2000)[:-50] + b"\x00garbage" * 8),
            r"e.csv.gz: cannot read the file",
        ),
        (_corrupt_parquet, r"bad.parquet: cannot read the file as parquet"),
        (_parquet_with_null_user, r"null.parquet: data row 2, column 'user_id' is empty"),
        (lambda d: d, r"is a folder; give the path of a file"),
    ],
)
def test_bad_data_is_named(tmp_path, capsys, make, says):
    path = make(tmp_path)
    assert main(["data", "prepare", f"data.interactions.path={path}", "--quiet"]) == 2
    assert says in _error(capsys)


def test_evaluate_per_user_into_a_folder(run, tmp_path, capsys):
    assert main(["evaluate", str(run), "--quiet", "--per-user", str(tmp_path)]) != 0
    msg = _error(capsys)
    assert "Is a directory" in msg and str(tmp_path) in msg


def test_out_is_a_regular_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(f),
                "--quiet",
                *TINY,
                "train.epochs=1",
            ]
        )
        != 0
    )
    assert str(f) in _error(capsys)


def test_nan_loss_is_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                *TINY,
                "train.epochs=1",
                "train.lr=1e30",
                "model.init_std=100",
            ]
        )
        != 0
    )
    assert "loss became nan" in _error(capsys)


def _failing(exc):
    def command(_args):
        raise exc

    return command


def test_disk_full_and_unexpected_errors(monkeypatch, capsys):
    monkeypatch.delenv("MODALREC_DEBUG", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "models", _failing(OSError(28, "No space left on device", "/x/y")))
    assert main(["models"]) == 1
    assert _error(capsys) == (
        "error: No space left on device: /x/y (the disk is full: free space or point MODALREC_HOME elsewhere)"
    )
    monkeypatch.setitem(cli.COMMANDS, "models", _failing(TypeError("unsupported operand")))
    assert main(["models"]) == 1
    assert _error(capsys) == "error: TypeError: unsupported operand (set MODALREC_DEBUG=1 for the traceback)"
    monkeypatch.setenv("MODALREC_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["models"])


def test_closed_pipe_exits_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (`modalrec models | head -0`)
    env = {**os.environ, "PYTHONPATH": SRC}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "modalrec.cli", "models"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.returncode == 141


def test_cache_list_and_prune(tmp_path, capsys):
    run = tmp_path / "run"  # trained here: every test has its own MODALREC_HOME
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(run),
                "--quiet",
                *TINY,
                "train.epochs=1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "prepared data set 'synthetic'" in out and "raw files of data set 'synthetic'" in out
    assert main(["cache", "prune", "--older-than", "0", "--keep-run", str(run), "--dry-run"]) == 0
    assert "would remove 0 entries" in capsys.readouterr().out  # the run uses the only prepared copy
    assert main(["cache", "prune", "--older-than", "0", "--dry-run"]) == 0
    assert "would remove 1 entries" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 2
    assert "prune needs --older-than DAYS and/or --keep-run RUN" in _error(capsys)


def test_data_spec_name_must_be_text(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\nu,i,1\n")
    (tmp_path / "spec.yaml").write_text("name: {a: 1}\ninteractions:\n  path: a.csv\n")
    assert main(["data", "prepare", "--dataset", str(tmp_path / "spec.yaml"), "--quiet"]) == 2
    assert "spec.yaml: 'name' must be a text such as my-data, not {'a': 1}" in _error(capsys)
