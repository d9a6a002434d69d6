"""bench/pmmrec_transfer.run_cli, which every transfer benchmark uses: finished runs are reused, a run
folder left unfinished by an interruption is continued (train) or started again (finetune)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_pmmrec_transfer", ROOT / "bench" / "pmmrec_transfer.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# a stand-in for `modalrec`: records its arguments, writes results.json into the folder after --out
FAKE = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
if "--resume" not in args and out.exists():
    print("error: already holds a run"); sys.exit(2)
out.mkdir(parents=True, exist_ok=True)
(out / "args.json").write_text(json.dumps(args))
(out / "results.json").write_text(json.dumps({"test": {"metrics": {"ndcg@10": 0.5}}, "best_epoch": 1}))
"""


def _fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_modalrec.py"
    script.write_text(FAKE)
    monkeypatch.setattr(bench, "MODALREC", [sys.executable, str(script)])


def test_fresh_then_reused(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch)
    out = tmp_path / "run"
    args = ["train", "--model", "pop", "--out", str(out), "--quiet"]
    r = bench.run_cli(args, out, tmp_path / "log.txt")
    assert not r["reused"] and "resumed" not in r and r["command"] == "modalrec " + " ".join(args)
    assert json.loads((out / "args.json").read_text()) == args
    (out / "args.json").unlink()
    again = bench.run_cli(args, out, tmp_path / "log.txt")
    assert again["reused"] and not (out / "args.json").exists()  # not run a second time


def test_interrupted_train_is_continued(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"x")
    args = ["train", "--model", "sasrec", "--out", str(out), "--quiet", "train.seed=1"]
    r = bench.run_cli(args, out, tmp_path / "log.txt")
    assert json.loads((out / "args.json").read_text()) == ["train", "--resume", *args[1:]]
    assert r["resumed"] is True and r["command"] == "modalrec " + " ".join(args)  # recorded without --resume
    assert json.loads((out / "bench_meta.json").read_text())["resumed"] is True


def test_interrupted_finetune_starts_again(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("left by the interrupted run")
    args = ["finetune", "--from", "pre", "--out", str(out), "--quiet"]
    r = bench.run_cli(args, out, tmp_path / "log.txt")
    assert not (out / "stale.txt").exists() and "resumed" not in r
    assert json.loads((out / "args.json").read_text()) == args
