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

TINY = [
    "--dataset",
    "synthetic",
    "--quiet",
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.max_len=8",
    "train.batch_size=32",
]


def test_fresh_then_reused(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "sasrec", "--out", str(out), *TINY, "train.epochs=2"]
    r = bench.run_cli(args, out, tmp_path / "log.txt")
    assert not r["reused"] and "resumed" not in r and r["command"] == "modalrec " + " ".join(args)
    stamp = (out / "results.json").stat().st_mtime_ns
    again = bench.run_cli(args, out, tmp_path / "log.txt")
    assert again["reused"] and (out / "results.json").stat().st_mtime_ns == stamp  # not run a second time
    assert again["wall_s"] == r["wall_s"]  # the first run's record is kept


def test_finished_run_of_another_command_is_made_again(tmp_path):
    out = tmp_path / "run"
    bench.run_cli(["train", "--model", "sasrec", "--out", str(out), *TINY, "train.epochs=2"], out, tmp_path / "l")
    changed = ["train", "--model", "sasrec", "--out", str(out), *TINY, "train.epochs=3"]
    r = bench.run_cli(changed, out, tmp_path / "l")
    assert not r["reused"] and r["epochs_run"] == 3
    assert r["command"] == "modalrec " + " ".join(changed)


def test_interrupted_train_is_continued(tmp_path):
    from modalrec.config import build_config
    from modalrec.run.training import train

    out = tmp_path / "run"
    overrides = [
        "data.dataset=synthetic",
        "model.hidden_size=16",
        "model.inner_size=32",
        "model.max_len=8",
        "train.batch_size=32",
        "train.epochs=3",
    ]

    def stop(epoch, record):
        raise KeyboardInterrupt

    try:
        train(build_config(model="sasrec", overrides=overrides), out, progress=False, callbacks=[stop])
    except KeyboardInterrupt:
        pass
    args = ["train", "--model", "sasrec", "--out", str(out), *TINY, "train.epochs=3"]
    r = bench.run_cli(args, out, tmp_path / "log.txt")
    assert r["resumed"] is True and r["epochs_run"] == 3 and r["command"] == "modalrec " + " ".join(args)
    assert "resuming" in (tmp_path / "log.txt").read_text()
    assert json.loads((out / "bench_meta.json").read_text())["resumed"] is True


# --- bench/sasrec_vs_recbole.py: RecBole runs kept in bench/results/ and reused only when converged

svr_spec = importlib.util.spec_from_file_location("bench_sasrec_vs_recbole", ROOT / "bench" / "sasrec_vs_recbole.py")
svr = importlib.util.module_from_spec(svr_spec)
svr_spec.loader.exec_module(svr)

WANTED = {"epochs": 200, "hidden_size": 64, "threads": 1}


def _rb_json(path: Path, cut: bool, epochs_run: int, sha: str = "abc", **args) -> Path:
    path.write_text(
        json.dumps(
            {
                "timing": {"stopped_by_time_budget": cut, "epochs_run": epochs_run},
                "data": {"source_sha256": sha},
                "args": {**WANTED, **args},
            }
        )
    )
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
out.mkdir(parents=True, exist_ok=True)
(out / "args.json").write_text(json.dumps(args))
m = {"ndcg@10": 0.1, "hr@10": 0.2}
(out / "results.json").write_text(json.dumps({"time_to_best_s": 1.0, "train_time_s": 2.0, "best_epoch": 1,
    "epochs_run": 2, "parameters": 10, "test": {"metrics": m}, "valid": {"metrics": m}}))
"""


def test_our_sasrec_run_is_asked_of_the_library_with_its_settings(tmp_path, monkeypatch):
    """What is reused is the library's decision (--reuse --overwrite, tests/run/test_reuse.py); the bench
    asks for its settings, the seed and the data set."""
    script = tmp_path / "fake.py"
    script.write_text(FAKE_SASREC)
    monkeypatch.setattr(bench, "MODALREC", [sys.executable, str(script), "marker"])
    out = tmp_path / "ours"
    svr.ours("ml-100k", ["train.epochs=3"], 0, out)
    args = json.loads((out / "args.json").read_text())
    assert {"train.epochs=3", "train.seed=0", "--reuse", "--overwrite"} <= set(args)
    assert args[args.index("--dataset") + 1] == "ml-100k"
    assert (out / "bench_meta.json").is_file()
