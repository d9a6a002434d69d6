"""bench/harness/runs.run_cli, the benchmarks' run-or-resume: finished runs are reused, a run
folder left unfinished by an interruption is continued (train) or started again (finetune); and
bench/sasrec_vs_recbole.py's RecBole runs kept in bench/results/ (reused only when converged)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # as when a bench script runs: bench/harness, bench/reporting

from harness import runs as bench  # noqa: E402

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


def test_finished_run_of_another_command_is_made_again(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch)
    out = tmp_path / "run"
    bench.run_cli(["train", "--model", "sasrec", "--out", str(out), "--quiet", "train.epochs=3"], out, tmp_path / "l")
    changed = ["train", "--model", "sasrec", "--out", str(out), "--quiet", "train.epochs=5"]
    r = bench.run_cli(changed, out, tmp_path / "l")
    assert not r["reused"] and json.loads((out / "args.json").read_text()) == changed
    assert r["command"] == "modalrec " + " ".join(changed)


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


# --- bench/sasrec_vs_recbole.py: RecBole runs kept in bench/results/ and reused only when converged

svr_spec = importlib.util.spec_from_file_location("bench_sasrec_vs_recbole", ROOT / "bench" / "sasrec_vs_recbole.py")
svr = importlib.util.module_from_spec(svr_spec)
svr_spec.loader.exec_module(svr)

WANTED = {"epochs": 200, "hidden_size": 64, "threads": 1}


def _rb_json(path: Path, cut: bool, epochs_run: int, sha: str = "abc", **args) -> Path:
    path.write_text(json.dumps({"timing": {"stopped_by_time_budget": cut, "epochs_run": epochs_run},
                                "data": {"source_sha256": sha}, "args": {**WANTED, **args}}))
    return path


def test_only_a_converged_run_on_the_same_data_and_setting_is_reused(tmp_path):
    assert svr.reusable(_rb_json(tmp_path / "a.json", cut=False, epochs_run=30), "abc", WANTED)
    assert not svr.reusable(_rb_json(tmp_path / "b.json", cut=True, epochs_run=30), "abc", WANTED)  # cut by budget
    assert not svr.reusable(_rb_json(tmp_path / "c.json", cut=False, epochs_run=30, sha="other"), "abc", WANTED)
    assert not svr.reusable(_rb_json(tmp_path / "d.json", cut=False, epochs_run=30, hidden_size=32), "abc", WANTED)
    assert not svr.reusable(tmp_path / "missing.json", "abc", WANTED)
    (tmp_path / "bad.json").write_text("{not json")
    assert not svr.reusable(tmp_path / "bad.json", "abc", WANTED)


def test_keep_never_replaces_a_better_run(tmp_path, monkeypatch):
    monkeypatch.setattr(svr, "ROOT", tmp_path)
    kept = tmp_path / "kept.json"
    svr.keep(_rb_json(tmp_path / "cut13.json", cut=True, epochs_run=13), kept)  # nothing kept yet: kept
    assert json.loads(kept.read_text())["timing"]["epochs_run"] == 13
    svr.keep(_rb_json(tmp_path / "cut5.json", cut=True, epochs_run=5), kept)  # shorter cut run: not kept
    assert json.loads(kept.read_text())["timing"]["epochs_run"] == 13
    svr.keep(_rb_json(tmp_path / "conv.json", cut=False, epochs_run=9), kept)  # converged beats cut
    assert json.loads(kept.read_text())["timing"] == {"stopped_by_time_budget": False, "epochs_run": 9}
    svr.keep(_rb_json(tmp_path / "cut40.json", cut=True, epochs_run=40), kept)  # cut never replaces converged
    assert json.loads(kept.read_text())["timing"]["epochs_run"] == 9
    assert not list(tmp_path.glob(".*.tmp"))


FAKE_SASREC = """
import json, sys
from pathlib import Path
args = sys.argv[2:]  # after the "marker" that stands for `-m modalrec.cli`
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True)  # fails if the folder was not cleared first
(out / "args.json").write_text(json.dumps(args))
m = {"ndcg@10": 0.1, "hr@10": 0.2}
(out / "results.json").write_text(json.dumps({"time_to_best_s": 1.0, "train_time_s": 2.0, "best_epoch": 1,
    "epochs_run": 2, "parameters": 10, "test": {"metrics": m}, "valid": {"metrics": m}}))
"""


def test_our_sasrec_run_is_reused_only_for_the_same_command(tmp_path, monkeypatch):
    script = tmp_path / "fake.py"
    script.write_text(FAKE_SASREC)
    monkeypatch.setattr(bench, "MODALREC", [sys.executable, str(script), "marker"])
    out = tmp_path / "ours"
    svr.ours("ml-100k", ["train.epochs=3"], 0, out)
    first = json.loads((out / "args.json").read_text())
    assert "train.epochs=3" in first and "train.seed=0" in first
    (out / "args.json").unlink()
    svr.ours("ml-100k", ["train.epochs=3"], 0, out)  # same command: reused, not run
    assert not (out / "args.json").exists()
    svr.ours("ml-100k", ["train.epochs=5"], 0, out)  # settings changed: run again in a cleared folder
    assert "train.epochs=5" in json.loads((out / "args.json").read_text())
    (out / "bench_meta.json").unlink()  # a run folder from before the command was recorded: run again
    (out / "args.json").unlink()
    svr.ours("ml-100k", ["train.epochs=5"], 0, out)
    assert (out / "args.json").is_file() and (out / "bench_meta.json").is_file()
