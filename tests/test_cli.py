"""The command line, including the exact commands the README shows."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modalrec.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.hidden_size=16", "model.inner_size=32", "model.max_len=10", "train.batch_size=32"]


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, contextlib, io\nimport modalrec.cli as c\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n    c.main(['--help']) if False else None\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'pandas', 'numpy', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "modalrec train --model sasrec --dataset ml-100k" in out


def test_train_evaluate_recommend_on_synthetic(tmp_path, capsys):
    run = tmp_path / "run"
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
                "train.epochs=2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sasrec on synthetic: test" in out and re.search(r"ndcg\s+\d\.\d{4}", out)

    assert main(["evaluate", str(run), "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "results.json").read_text())
    assert res["metrics"] == saved["test"]["metrics"]
    assert res["protocol"]["exclude_history"] is True

    assert (
        main(
            ["evaluate", str(run), "--json", "--quiet", "--include-history", "--per-user", str(tmp_path / "ranks.csv")]
        )
        == 0
    )
    res2 = json.loads(capsys.readouterr().out)
    assert res2["protocol"]["exclude_history"] is False
    lines = (tmp_path / "ranks.csv").read_text().splitlines()
    assert lines[0] == "user_id,target_item_id,rank" and len(lines) == res2["count"] + 1

    # a run trained with the history not excluded is evaluated that way unless told otherwise
    run_inc = tmp_path / "run_inc"
    assert (
        main(
            [
                "train",
                "--model",
                "sasrec",
                "--dataset",
                "synthetic",
                "--out",
                str(run_inc),
                "--quiet",
                *TINY,
                "train.epochs=1",
                "eval.exclude_history=false",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(run_inc), "--json", "--quiet"]) == 0
    res3 = json.loads(capsys.readouterr().out)
    assert res3["protocol"]["exclude_history"] is False
    assert res3["metrics"] == json.loads((run_inc / "results.json").read_text())["test"]["metrics"]
    assert main(["evaluate", str(run_inc), "--json", "--quiet", "--exclude-history"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["exclude_history"] is True

    assert main(["recommend", str(run), "--history", "1,2,3", "-k", "4", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 4 and not {"1", "2", "3"} & {r["item_id"] for r in recs}


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    assert (
        main(["train", "--model", "sasrec", "--dataset", "synthetic", "--out", str(tmp_path / "r"), "train.epoch=2"])
        == 2
    )
    assert "Did you mean 'epochs'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert (
        main(["train", "--model", "sasrec", "--dataset", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r2")])
        == 2
    )
    assert "missing.yaml" in capsys.readouterr().err
    run = tmp_path / "ok"
    assert main(["train", "--model", "pop", "--dataset", "synthetic", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(run), "--history", "1,no-such-item"]) == 2
    assert "no-such-item" in capsys.readouterr().err
    assert main(["recommend", str(run), "--history", ",", "-k", "3"]) == 2
    assert "history is empty" in capsys.readouterr().err


def test_data_info_json(capsys):
    assert main(["data", "info", "--dataset", "synthetic", "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["summary"]["users"] > 0 and info["summary"]["split"] == "loo"


def test_models_lists_registered(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pop\s", out, re.M) and re.search(r"^sasrec\s+SASRec", out, re.M)


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"with `.venv/bin` on your `PATH`:\n\n```bash\n(.*?)```", text, re.S).group(1)
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip()]


@pytest.mark.builtin
def test_readme_commands_run(tmp_path):
    """The README's command walk-through, verbatim, in a scratch folder with the real cache."""
    cmds = _readme_commands()
    assert any(
        c.startswith("modalrec train --model sasrec --dataset ml-100k --out runs/demo train.epochs=3") for c in cmds
    )
    exe = Path(sys.executable).parent / "modalrec"
    for c in cmds:
        argv = c.split()
        assert argv[0] == "modalrec"
        proc = subprocess.run(
            [str(exe), *argv[1:], *(["--quiet"] if argv[1] in ("train",) else [])],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"{c}\n{proc.stderr[-2000:]}"
    res = json.loads((tmp_path / "runs/demo/results.json").read_text())
    assert res["epochs_run"] == 6 and res["dataset"] == "ml-100k"


def test_evaluate_with_a_popularity_prior_chosen_on_validation(tmp_path, capsys):
    from modalrec.evaluate.prior import BETAS

    run = tmp_path / "run"
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
                "train.epochs=0",
            ]
        )
        == 0
    )  # untrained: the prior has something to add
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--quiet", "--pop-prior"]) == 0
    res = json.loads(capsys.readouterr().out)
    prior = res["protocol"]["popularity_prior"]
    by_beta = {float(b): v for b, v in prior["valid_ndcg@10_by_beta"].items()}
    assert set(by_beta) == set(BETAS) and by_beta[prior["beta"]] == max(by_beta.values())
    assert main(["evaluate", str(run), "--json", "--quiet", "--split", "valid", "--pop-prior"]) == 0
    valid = json.loads(capsys.readouterr().out)
    assert valid["metrics"]["ndcg@10"] == by_beta[prior["beta"]]  # the chosen beta, evaluated again
    assert main(["evaluate", str(run), "--quiet", "--pop-prior"]) == 0
    assert f"popularity prior (beta {prior['beta']:g}, chosen on validation)" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["sasrec", "unisrec"])
def test_a_training_log_has_one_line_per_epoch_and_no_progress_frames(model, tmp_path, tiny_text_model):
    """`modalrec train ... > log 2>&1`: no carriage-return frames (ours, nor the "Loading weights" bar of
    transformers when a content model loads its text encoder), a summary line for every epoch, with and
    without --quiet (which only turns bars off)."""
    import os
    import subprocess
    import sys

    text = [f"model.text.model={tiny_text_model}"] if model == "unisrec" else []
    for quiet in ([], ["--quiet"]):
        out = tmp_path / f"run{len(quiet)}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "modalrec.cli",
                "train",
                "--model",
                model,
                "--dataset",
                "synthetic",
                "--out",
                str(out),
                *quiet,
                "train.epochs=3",
                "model.hidden_size=16",
                "model.inner_size=32",
                "model.max_len=8",
                *text,
            ],
            capture_output=True,
            env={**os.environ, "MODALREC_PROGRESS": "", "MODALREC_HOME": str(tmp_path / "home")},
        )
        # bytes, decoded here: text=True would translate every "\r" into "\n" and hide the frames
        log = (done.stdout + done.stderr).decode()
        assert done.returncode == 0, log
        assert "\r" not in log
        assert [ln.split(":")[0] for ln in log.splitlines() if ln.startswith("epoch ")] == [
            "epoch 1",
            "epoch 2",
            "epoch 3",
        ]
