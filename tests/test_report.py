"""bench/report.py (results page, plots, README block), bench/run_all.py's commands, and the
learning curve every training run writes (modalrec.report.plots, modalrec.run.curve.write_learning_curve).

Fast: small fabricated JSON files in the real schemas, no training."""

import importlib.util
import json
import logging
import statistics
import sys
from pathlib import Path

import pytest

from modalrec.report import plots
from modalrec.run.curve import write_learning_curve
from modalrec.run.folder import RunDir

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


report = _load("report")  # puts bench/ on sys.path: its sections are the package bench/reporting
run_all = _load("run_all")

from reporting.reading import ablation_reading  # noqa: E402
from reporting.readme import END, START  # noqa: E402
from reporting.results import PMM  # noqa: E402
from reporting.transfer import transfer_rows  # noqa: E402


def _summary(values):
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def _row(ndcg, hr, commands, best_epochs=None):
    n = len(commands)
    return {
        "ndcg@10": _summary(ndcg),
        "hr@10": _summary(hr),
        "runs": n,
        "best_epochs": best_epochs or [3] * n,
        "wall_s": [12.5] * n,
        "peak_rss_mib": 321.0,
        "commands": commands,
    }


def _metrics(run: Path, valid: list[float], loss: list[float]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "epoch": i + 1,
                "step": 10 * (i + 1),
                "train_loss": l,
                "lr": 1e-3,
                "valid": {"ndcg@10": v, "hr@10": 2 * v},
                "elapsed_s": 5.0 * (i + 1),
            }
        )
        for i, (v, l) in enumerate(zip(valid, loss))
    ]
    lines.append(json.dumps({"final": True, "valid": {"ndcg@10": max(valid)}, "test": {"ndcg@10": 0.1}}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def results(tmp_path):
    """A results folder: PMMRec transfer (full), MISSRec (quick), serving, CLI, preparation (target
    missed), an unreadable file and an unknown one; the other benchmarks missing."""
    res = tmp_path / "results"
    res.mkdir()
    runs = tmp_path / "runs"
    cmd = "modalrec train --model {m} --dataset ml-100k --out {out} --quiet train.seed={s} {extra}"
    pop = [cmd.format(m="pop", out=runs / f"pop-s{s}", s=s, extra="") for s in range(3)]
    sas = [cmd.format(m="sasrec", out=runs / f"sasrec-s{s}", s=s, extra="train.window_stride=25") for s in range(3)]
    scr = [cmd.format(m="pmmrec", out=runs / f"pmm-scratch-s{s}", s=s, extra="data.posters=true") for s in range(3)]
    ft = [
        f"modalrec finetune --from runs/pre --dataset ml-100k --out {runs / f'pmm-ft-s{s}'} --quiet train.seed={s}"
        for s in range(3)
    ]
    txt = [cmd.format(m="pmmrec", out=runs / "pmm-text-s0", s=0, extra="model.modalities=text")]
    _metrics(runs / "sasrec-s0", [0.05, 0.08, 0.07], [7.0, 6.5, 6.2])
    _metrics(runs / "pmm-ft-s0", [0.04, 0.06, 0.065], [5.0, 4.0, 3.5])
    pmm = {
        "protocol": "leave-one-out, exact full ranking, history excluded, pessimistic ties; select on valid NDCG@10",
        "seeds": [0, 1, 2],
        "ft_epochs": 9,
        "quick": False,
        "pretrain_run": "runs/pre",
        "report_only": False,
        "pretrain": {
            "best_epoch": 2,
            "epochs_run": 3,
            "train_time_s": 777.0,
            "windows_per_epoch": 4321,
            "windows_per_s": 55.5,
            "valid": {"hr@10": 0.2222, "ndcg@10": 0.1111},
            "test_ml1m": {"hr@10": 0.2468, "ndcg@10": 0.1357},
        },
        "table": {
            "pop": _row([0.0301, 0.0301, 0.0301], [0.0601, 0.0601, 0.0601], pop, [0, 0, 0]),
            "sasrec": _row([0.1010, 0.1030, 0.1050], [0.2010, 0.2030, 0.2050], sas),
            "pmmrec-both scratch": _row([0.0700, 0.0720, 0.0740], [0.1400, 0.1420, 0.1440], scr),
            "pmmrec-both pretrained+finetuned": _row([0.0810, 0.0830, 0.0910], [0.1610, 0.1630, 0.1710], ft),
            "pmmrec-text scratch": _row([0.0654], [0.1309], txt),
        },
        "cold_ml_latest_small": {
            "pmmrec zero-shot (pre-trained on ml-1m)": {
                "cold_items_in_catalogue": 4321,
                "cold_test_targets": 123,
                "cold_hr@10": 0.0369,
                "cold_ndcg@10": 0.0147,
                "all_hr@10": 0.0444,
                "random_cold_hr@10": 0.0012,
            },
            "pop (trained on ml-latest-small)": {
                "cold_items_in_catalogue": 4321,
                "cold_test_targets": 123,
                "cold_hr@10": 0.0123,
                "cold_ndcg@10": 0.0045,
                "all_hr@10": 0.0555,
                "random_cold_hr@10": 0.0012,
            },
            "sasrec (trained on ml-1m)": "cannot score: the movies have no ID embedding in ml-1m",
        },
        "machine": {"cpus": 7, "torch": "9.9.9+cpu", "python": "3.99.1", "threads": 7},
        "date": "2031-01-02 03:04:05 UTC",
    }
    mis = [cmd.format(m="missrec", out=runs / "mis-s0", s=0, extra="model.mode=inductive")]
    miss = {
        "protocol": pmm["protocol"],
        "seeds": [0],
        "ft_epochs": 6,
        "quick": True,
        "report_only": False,
        "pretrain": {
            "missrec": {
                "wall_s": 99.0,
                "train_time_s": 90.0,
                "epochs_run": 2,
                "peak_rss_mib": 1234.0,
                "valid_ml1m": {"ndcg@10": 0.0876, "hr@10": 0.1765},
                "test_ml1m": {"ndcg@10": 0.0865, "hr@10": 0.1754},
            }
        },
        "table": {
            "pop": _row([0.0301], [0.0601], pop[:1], [0]),
            "sasrec": _row([0.1010], [0.2010], sas[:1]),
            "missrec inductive scratch": _row([0.0613], [0.1226], mis),
        },
        "cold_ml_latest_small": {},
        "machine": {"cpus": 7},
        "date": "2031-02-03 04:05:06 UTC",
    }
    serve = {
        "run": "runs/x",
        "model": "pmmrec",
        "rows": [
            {
                "clients": 1,
                "requests": 40,
                "errors": 0,
                "first_error": None,
                "p50_ms": 11.25,
                "p99_ms": 44.5,
                "mean_ms": 12.0,
                "throughput_rps": 80.5,
                "items": 100000,
                "kind": "exact",
                "build_s": 0.0,
                "recall@10": 1.0,
                "index": {"kind": "exact"},
            },
            {
                "clients": 1,
                "requests": 40,
                "errors": 0,
                "first_error": None,
                "p50_ms": 3.75,
                "p99_ms": 61.5,
                "mean_ms": 4.0,
                "throughput_rps": 200.5,
                "items": 1000001,
                "kind": "ivf",
                "build_s": 3.5,
                "recall@10": 0.9321,
                "index": {"kind": "ivf", "nlist": 77, "nprobe": 8},
            },
            {
                "clients": 1,
                "requests": 40,
                "errors": 0,
                "first_error": None,
                "p50_ms": 33.75,
                "p99_ms": 40.0,
                "mean_ms": 34.0,
                "throughput_rps": 29.5,
                "items": 1000000,
                "kind": "exact",
                "build_s": 0.5,
                "recall@10": 1.0,
                "index": {"kind": "exact"},
            },
        ],
        "added_item": [
            {
                "items": 100001,
                "kind": "exact",
                "copied_item": "65",
                "add_s": 0.123,
                "recommended_after_s": 0.456,
                "rank": 3,
                "rank_of_original": 2,
                "ok": True,
            }
        ],
        "requests_per_setting": 40,
        "server_torch_threads": 2,
        "targets": {
            "exact_100k_p99_ms_1_client": 50,
            "faiss_1m_recall@10": 0.95,
            "faiss_1m_p99_ms": 50,
            "added_item_visible_s": 1.0,
        },
        "machine": {"cpus": 7, "load_average_at_start": [0.5, 0.25, 0.125]},
        "date": "2031-03-04 05:06:07",
        "command": "python bench/serve_latency.py --sizes 100000 1000000 --requests 40",
    }
    cli = {
        "python -c pass": {"median_s": 0.02, "max_s": 0.03, "runs": [0.02, 0.03]},
        "modalrec --help": {"median_s": 0.0456, "max_s": 0.0789, "runs": [0.0456, 0.0789]},
        "target_s": 2.0,
        "help_within_target": True,
    }
    prep = {
        "benchmark": "prepare_speed",
        "split": "loo",
        "repeat": 2,
        "note": "n",
        "machine": {"cpus": 7, "numpy": "8.8.8"},
        "results": [
            {
                "name": "ml-1m",
                "read_seconds": 0.5,
                "prepare_seconds": 12.5,
                "base_rss_mib": 100.0,
                "peak_rss_mib": 300.0,
                "events_read": 1000,
                "users": 10,
                "items": 20,
                "interactions": 900,
                "process_wall_seconds": 13.0,
                "runs_prepare_seconds": [12.5, 13.5],
                "target": {"seconds": 10.0, "peak_rss_mib": 1024.0},
                "meets_target": False,
            }
        ],
    }
    for name, d in [
        ("pmmrec_transfer.json", pmm),
        ("missrec_unisrec_transfer.json", miss),
        ("serve_latency.json", serve),
        ("cli_startup.json", cli),
        ("prepare_speed.json", prep),
        ("mystery.json", {"x": 1}),
    ]:
        (res / name).write_text(json.dumps(d))
    (res / "broken.json").write_text("{not json")
    return res


def _readme(path: Path, markers: bool = True) -> str:
    body = "# project\n\nintro\n\n## Results\n\n"
    if markers:
        body += f"{START}\nold text\n{END}\n"
    body += "\n## Benchmarks\n\nafter\n"
    path.write_text(body)
    return body


def test_report_page_has_the_numbers_labels_and_targets(results, tmp_path):
    out = tmp_path / "docs" / "results.md"
    readme = tmp_path / "README.md"
    _readme(readme)
    assert report.main(["--results", str(results), "--out", str(out), "--readme", str(readme), "--no-plots"]) == 0
    page = out.read_text()
    # mean ± std computed from the values put in the JSON
    assert "0.0850 ± 0.0053" in page  # PMMRec pre-trained + fine-tuned NDCG@10: mean(.081,.083,.091), sd .0053
    assert "0.1030 ± 0.0020" in page and "0.2030 ± 0.0020" in page  # SASRec
    assert "0.0654" in page and "PMMRec, text only" in page  # one run: the value alone
    # headline first, with the baselines once although both transfer files list them
    head = page.split("## Headline")[1].split("## Quality details")[0]
    assert head.count("| Pop") == 1 and head.count("| SASRec") == 1
    assert "PMMRec, text only" not in head  # single-modality variants go to the details
    assert "MISSRec (quick)" in head and "0.0613" in head
    # quick and missing benchmarks
    assert "**Quick run (1 seed, fine-tune epochs 6): not the reference numbers.**" in page
    assert "**Not run yet:** `python bench/eval_speed.py`" in page
    assert "**Not run yet:** `python bench/content_speed.py`" in page
    assert "**Not run yet:** `python bench/interest_discovery.py`" in page
    # computed reading, pre-training, cold items
    assert "+18% test NDCG@10 over the same model trained from scratch" in page  # .085 / .072
    assert "higher in 3 of 3 paired runs" in page
    assert "best epoch 2 of 3" in page and "55.5 training windows/s" in page
    assert "| 0.0369 |" in page and "| 0.0012 |" in page and "cannot score" in page
    assert "3.0x Pop's and 31x a random ranking's" in page
    # targets: computed, met and not met
    assert "17.6" not in page  # nothing from the real results folder
    cli_sec = page.split("### CLI start-up")[1].split("###")[0]
    assert "79 ms" in cli_sec and "**met**" in cli_sec
    prep_sec = page.split("### Data preparation")[1].split("###")[0]
    assert "**not met**" in prep_sec and "12.5 s" in prep_sec
    serve_sec = page.split("### Recommendation service over HTTP")[1].split("###")[0]
    assert "| p99 latency, exact index, 100,000 items, 1 client(s) | ≤ 50 ms | 44.5 ms | **met** |" in serve_sec
    assert "| recall@10, ivf index, 1,000,000 items | ≥ 0.95 | 0.9321 | **not met** |" in serve_sec
    assert "| p99 latency, ivf index, 1,000,000 items, 1 client(s) | ≤ 50 ms | 61.5 ms | **not met** |" in serve_sec
    assert "456 ms; 1 of 1 correct | **met**" in serve_sec
    assert "python bench/serve_latency.py --sizes 100000 1000000 --requests 40" in serve_sec
    # commands, dates, machine
    assert "2031-01-02 03:04:05 UTC" in page and "2031-03-04 05:06:07" in page
    assert f"--out {tmp_path / 'runs' / 'pmm-ft-s0'} --quiet train.seed=0" in page  # the JSON's commands
    assert "python bench/pmmrec_transfer.py --pretrain runs/pre --seeds 0 1 2 --ft-epochs 9" in page
    assert "| CPU cores | 7 |" in page and "3.99.1" in page
    # every file accounted for, nothing failed to render
    assert "`broken.json`" in page.split("Unreadable result files")[1].split("\n")[0]
    assert "`mystery.json`" in page.split("## Other result files")[1]
    assert "Could not render" not in page
    assert not list(out.parent.glob(".*tmp"))  # written atomically, no temp left


def test_readme_block_is_replaced_between_the_markers(results, tmp_path):
    out = tmp_path / "docs" / "results.md"
    readme = tmp_path / "README.md"
    before = _readme(readme)
    report.main(["--results", str(results), "--out", str(out), "--readme", str(readme), "--no-plots"])
    text = readme.read_text()
    assert "old text" not in text
    head, block = text.split(START)
    block, tail = block.split(END)
    assert head == before.split(START)[0] and tail == before.split(END)[1]
    assert "0.1030 ± 0.0020" in block and "[docs/results.md](docs/results.md)" in block
    assert "`missrec_unisrec_transfer.json`: **Quick run" in block
    # run again: same page, same README
    page = out.read_text()
    report.main(["--results", str(results), "--out", str(out), "--readme", str(readme), "--no-plots"])
    assert readme.read_text() == text and out.read_text() == page


def test_readme_without_markers_is_left_alone(results, tmp_path, capsys):
    readme = tmp_path / "README.md"
    before = _readme(readme, markers=False)
    mtime = readme.stat().st_mtime_ns
    assert (
        report.main(["--results", str(results), "--out", str(tmp_path / "r.md"), "--readme", str(readme), "--no-plots"])
        == 0
    )
    assert readme.read_text() == before and readme.stat().st_mtime_ns == mtime
    assert "markers" in capsys.readouterr().err
    # --no-readme never touches it either, markers or not
    _readme(readme)
    report.main(
        [
            "--results",
            str(results),
            "--out",
            str(tmp_path / "r.md"),
            "--readme",
            str(readme),
            "--no-readme",
            "--no-plots",
        ]
    )
    assert "old text" in readme.read_text()


def test_plots_are_written_and_embedded(results, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "docs" / "results.md"
    readme = tmp_path / "README.md"
    _readme(readme)
    report.main(["--results", str(results), "--out", str(out), "--readme", str(readme)])
    img = tmp_path / "docs" / "img"
    names = {p.name for p in img.glob("*.png")}
    assert {"ndcg_test.png", "cold_hr10.png", "speed_ratios.png", "curves_pmmrec.png"} <= names
    for p in img.glob("*.png"):
        assert p.read_bytes()[:8] == PNG
    page = out.read_text()
    assert "(img/ndcg_test.png)" in page and "(img/cold_hr10.png)" in page and "(img/curves_pmmrec.png)" in page
    assert "(docs/img/ndcg_test.png)" in readme.read_text()
    # run folders absent (a fresh clone): the learning-curve plot is skipped with a note
    first = (img / "ndcg_test.png").read_bytes()
    for run in (tmp_path / "runs").iterdir():
        for f in run.iterdir():
            f.unlink()
        run.rmdir()
    (img / "curves_pmmrec.png").unlink()
    report.main(["--results", str(results), "--out", str(out), "--no-readme"])
    page = out.read_text()
    assert "curves_pmmrec.png" not in page and "so this plot is skipped" in page
    assert (img / "ndcg_test.png").read_bytes() == first  # deterministic


def test_quick_page_and_missing_folder(tmp_path):
    out = tmp_path / "results-quick.md"
    report.main(["--results", str(tmp_path / "nothing"), "--out", str(out), "--no-readme", "--quick", "--no-plots"])
    page = out.read_text()
    assert page.startswith("# Results (quick run)")
    assert "**Quick run (`python bench/run_all.py --quick`)" in page
    for script in (
        "pmmrec_transfer",
        "missrec_unisrec_transfer",
        "sasrec_vs_recbole",
        "content_speed",
        "eval_speed",
        "prepare_speed",
        "cli_startup",
        "interest_discovery",
        "serve_latency",
        "serve_index",
    ):
        assert f"`python bench/{script}.py`" in page, script


def test_run_all_quick_commands():
    for script in run_all.SCRIPTS:
        cmd = run_all.command(script, True, ["--recbole-time-budget", "5"])
        if script in run_all.NO_OUT:
            assert "--out" not in cmd
        else:
            out = Path(cmd[cmd.index("--out") + 1])
            assert out.parent == run_all.QUICK_RESULTS and out.name == script.replace(".py", ".json")
        if script in ("pmmrec_transfer.py", "missrec_unisrec_transfer.py"):
            assert "--quick" in cmd and str(run_all.QUICK_RUNS) in " ".join(cmd)
        assert ("--recbole-time-budget" in cmd) == (script == "sasrec_vs_recbole.py")
    assert run_all.command("sasrec_vs_recbole.py", False, ["--seeds", "0"])[2:] == ["--seeds", "0"]
    quick_svr = run_all.command("sasrec_vs_recbole.py", True, [])
    assert "--skip-recbole" in quick_svr and quick_svr[quick_svr.index("--ours-epochs") + 1] == "10"
    # grid.py runs a declared validation grid (bench/grids/*.yaml) by hand: it chooses settings, it does not
    # measure the defaults; beyond_accuracy.py reads run folders named by hand
    assert set(run_all.SCRIPTS) == {p.name for p in (ROOT / "bench").glob("*.py")} - {
        "run_all.py",
        "report.py",
        "grid.py",
        "beyond_accuracy.py",
    }


def _bench_run(res: Path, **kw) -> None:
    d = {
        "quick": False,
        "only": None,
        "argv": [],
        "started": "2031-01-01 00:00:00 UTC",
        "finished_runs_before": 0,
        "work": "runs/bench",
        "target_s": 10800,
        "complete": True,
        "total_s": 5400.0,
        "machine": {"loadavg_1min_before": 0.25},
        "scripts": [
            {"script": "cli_startup.py", "command": "python bench/cli_startup.py", "wall_s": 12.0, "returncode": 0},
            {
                "script": "pmmrec_transfer.py",
                "command": "python bench/pmmrec_transfer.py",
                "wall_s": 5388.0,
                "returncode": 0,
            },
        ],
    }
    d.update(kw)
    (res / "bench_run.json").write_text(json.dumps(d))


def test_bench_run_time_section(results, tmp_path):
    out = tmp_path / "r.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    page = out.read_text()
    sec = page[page.index("## Bench run time") :]
    assert "**Not timed yet:**" in sec
    # compute behind the tables: PMMRec pre-train 777 s + 13 runs x 12.5 s; MISSRec pre-train wall 99 s (its
    # train_time_s not added again) + its one MISSRec run, the reused Pop / SASRec rows not counted twice
    assert "| `pmmrec_transfer.json` | 777 s (12.9 min) | 162 s (2.7 min) | 940 s (15.7 min) |" in sec
    assert "| `missrec_unisrec_transfer.json` | 99.0 s | 12.5 s | 111.5 s |" in sec

    _bench_run(results)
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    sec = out.read_text()[out.read_text().index("## Bench run time") :]
    assert "| `pmmrec_transfer.py` | 5388 s (89.8 min) | ok |" in sec
    assert "| **all** | **5400 s (90.0 min)** |" in sec
    assert "target < 10800 s (180.0 min): **met**" in sec
    assert "`bench_run.json`" not in out.read_text().split("## Other result files")[-1]  # tabulated, not "other"

    _bench_run(results, total_s=11000.0)
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    assert "target < 10800 s (180.0 min): **not met**" in out.read_text()

    scripts = json.loads((results / "bench_run.json").read_text())["scripts"]
    scripts[1]["returncode"] = 3
    _bench_run(results, scripts=scripts)
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    text = out.read_text()
    assert "| `pmmrec_transfer.py` | 5388 s (89.8 min) | failed (exit 3) |" in text
    assert "not comparable: 1 benchmark(s) failed" in text

    _bench_run(results, finished_runs_before=7)
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    text = out.read_text()
    assert "not comparable: 7 finished run folder(s) under `runs/bench` were reused" in text
    assert "**met**" not in text[text.index("## Bench run time") :]


def test_run_all_records_its_wall_time(tmp_path, monkeypatch):
    calls = []

    class Done:
        def __init__(self, rc):
            self.returncode = rc

    def fake_run(cmd, *a, **kw):
        calls.append(cmd)
        return Done(5 if "eval_speed.py" in cmd[1] else 0)

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run_all, "FULL_RUNS", tmp_path / "runs")
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "results.json").write_text("{}")
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    rc = run_all.main(["--only", "prepare_speed.py", "eval_speed.py"])
    assert rc == 1  # eval_speed failed
    rec = json.loads((tmp_path / "results" / "bench_run.json").read_text())
    assert [r["script"] for r in rec["scripts"]] == ["prepare_speed.py", "eval_speed.py"]
    assert [r["returncode"] for r in rec["scripts"]] == [0, 5]
    assert rec["complete"] and rec["finished_runs_before"] == 1 and rec["only"] == ["prepare_speed.py", "eval_speed.py"]
    assert rec["total_s"] >= sum(r["wall_s"] for r in rec["scripts"]) - 0.2
    assert rec["target_s"] == 3 * 3600
    assert calls[-1][1].endswith("report.py")  # the report is written after the benchmarks


# ------------------------------------------------------------------------------------------------
# learning curves of training runs


def test_learning_curve_png_from_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    _metrics(tmp_path / "run", [0.01, 0.03, 0.02], [5.0, 4.0, 3.9])
    path = plots.learning_curve(tmp_path / "run")
    assert path == tmp_path / "run" / "learning_curve.png"
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    assert plots.validation_curve(tmp_path / "run" / "metrics.jsonl") == ([1, 2, 3], [0.01, 0.03, 0.02])
    # the trainer's hook writes the same file
    path.unlink()
    assert write_learning_curve(RunDir(tmp_path / "run")) == path and path.read_bytes() == data


def test_learning_curve_without_epochs_does_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert write_learning_curve(RunDir(run)) is None  # no metrics.jsonl
    (run / "metrics.jsonl").write_text("")
    assert write_learning_curve(RunDir(run)) is None
    (run / "metrics.jsonl").write_text(json.dumps({"final": True, "valid": {}, "test": {}}) + "\n{half a line")
    assert write_learning_curve(RunDir(run)) is None  # zero-shot run (train.epochs=0): only the final record
    assert write_learning_curve(RunDir(tmp_path / "absent")) is None
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def test_learning_curve_never_fails_a_run(tmp_path, monkeypatch, caplog):
    _metrics(tmp_path / "run", [0.01, 0.02], [5.0, 4.0])

    def missing():
        raise plots.MatplotlibMissing("no matplotlib")

    monkeypatch.setattr(plots, "_figure_classes", missing)
    with caplog.at_level(logging.INFO, logger="modalrec.run"):
        assert write_learning_curve(RunDir(tmp_path / "run")) is None
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "matplotlib" in caplog.text
    caplog.clear()

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "learning_curve", broken)
    with caplog.at_level(logging.INFO, logger="modalrec.run"):
        assert write_learning_curve(RunDir(tmp_path / "run")) is None
    assert caplog.records[0].levelno == logging.WARNING and "disk full" in caplog.text
    assert not (tmp_path / "run" / "learning_curve.png").exists()


def test_plots_module_does_not_import_matplotlib():
    import subprocess

    code = "import modalrec.report.plots, modalrec.train.trainer, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_ablation_reading_compares_each_variant_to_the_same_budget_reference():
    def cmd(pre, seed):
        return (
            f"modalrec finetune --from runs/{pre} --dataset ml-100k --out runs/x-{pre}-s{seed} --quiet "
            f"train.seed={seed}"
        )

    name = "pmmrec-both ablation, pre-trained {} (1 epoch), {}"
    table = {
        name.format("all losses", "fine-tuned"): _row([0.090, 0.094], [0.2, 0.2], [cmd("all", 0), cmd("all", 1)]),
        name.format("without NICL", "fine-tuned"): _row([0.081, 0.096], [0.2, 0.2], [cmd("nicl", 0), cmd("nicl", 1)]),
        name.format("without NID", "zero-shot"): _row([0.030], [0.05], [cmd("nid", 0)]),
        name.format("all losses", "zero-shot"): _row([0.032], [0.06], [cmd("all", 0)]),
        "pmmrec-both ablation, pre-trained without RCL (2 epochs), fine-tuned":  # no reference: other budget
        _row([0.1], [0.2], [cmd("rcl", 0)]),
        "pmmrec-both pretrained+finetuned": _row([0.09], [0.2], [cmd("main", 0)]),
    }
    lines = ablation_reading(transfer_rows({"table": table}, PMM))
    assert len(lines) == 2, lines
    nicl = next(x for x in lines if "without NICL" in x)
    assert "0.0885 ± 0.0106 vs all losses 0.0920 ± 0.0028" in nicl
    assert "-3.8% test NDCG@10; lower in 1 of 2 paired runs" in nicl
    nid = next(x for x in lines if "without NID" in x)
    assert "zero-shot: 0.0300 vs all losses 0.0320 (-6.2% test NDCG@10)" in nid


def test_ablation_pretrains_count_as_pretraining_and_the_budget_line(results, tmp_path):
    pmm = json.loads((results / "pmmrec_transfer.json").read_text())
    pre = "modalrec train --model pmmrec --dataset ml-1m --out runs/pretrain-ml1m-all-e1 --quiet train.epochs=1"
    abl = (
        "modalrec finetune --from runs/pretrain-ml1m-all-e1 --dataset ml-100k --out runs/abl-s{} --quiet train.seed={}"
    )
    row = _row([0.0555], [0.1111], [pre])
    row["wall_s"] = [600.0]
    pmm["table"]["pretrain ml-1m, all losses"] = row
    pmm["table"]["pmmrec-both ablation, pre-trained all losses (1 epoch), fine-tuned"] = _row(
        [0.0650, 0.0670], [0.13, 0.13], [abl.format(0, 0), abl.format(1, 1)]
    )
    (results / "pmmrec_transfer.json").write_text(json.dumps(pmm))
    out = tmp_path / "r.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    page = out.read_text()
    # pre-training: the main pre-train 777 s + the ablation's 600 s; the other 15 runs x 12.5 s
    assert "| `pmmrec_transfer.json` | 1377 s (22.9 min) | 188 s (3.1 min) | 1564 s (26.1 min) |" in page
    src = page[page.index("The pre-trains the bench ran itself") :]
    assert src.index("pretrain ml-1m, all losses") < src.index("\n\n", src.index("| ---"))  # in that table
    assert "On ml-1m (all test targets" not in page
    assert (
        "* Budget: the all-losses pre-train (1 epoch) fine-tunes to 0.0660 ± 0.0014, against 0.0720 ± 0.0020 "
        "from scratch and 0.0850 ± 0.0053 from the main pre-train"
    ) in page


def test_compute_table_counts_both_sasrec_libraries(results, tmp_path):
    """The compute lower bound also sums the SASRec benchmark's runs: ours (train_time_s), RecBole's
    per-seed files (fit_seconds; a run cut by its budget makes the total "at least") and ml-1m."""
    ours = {
        "threads": 1,
        "ml100k": {
            "ours": [
                {"seed": s, "time_to_best_s": 50.0, "train_time_s": 100.0 + s, "test": {"ndcg@10": 0.06, "hr@10": 0.12}}
                for s in range(3)
            ]
        },
    }
    (results / "sasrec_ml100k_ours.json").write_text(json.dumps(ours))

    def rb(seed, fit, cut):
        return {
            "args": {"seed": seed},
            "timing": {"time_to_best_s": fit / 2, "fit_seconds": fit, "epochs_run": 9, "stopped_by_time_budget": cut},
            "best": {"epoch": 3},
            "test": {"hit@10": 0.1, "ndcg@10": 0.05},
        }

    (results / "recbole_ml100k_s0.json").write_text(json.dumps(rb(0, 4000.0, False)))
    (results / "recbole_ml100k_s1.json").write_text(json.dumps(rb(1, 2000.0, False)))
    out = tmp_path / "r.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    sec = out.read_text()[out.read_text().index("## Bench run time") :]
    assert "| SASRec ml-100k, modalrec (3 runs): `sasrec_ml100k_ours.json` |  | 303 s (5.0 min) |" in sec
    assert (
        "| SASRec ml-100k, RecBole (2 runs): `recbole_ml100k_s0.json`, `recbole_ml100k_s1.json` |  | "
        "6000 s (100.0 min) |"
    ) in sec
    # 939.5 s (PMMRec) + 111.5 s (MISSRec) + 303 s + 6000 s
    assert "| **all** |  |  | **7354 s (122.6 min)** |" in sec

    (results / "recbole_ml100k_s1.json").write_text(json.dumps(rb(1, 2000.0, True)))
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    sec = out.read_text()[out.read_text().index("## Bench run time") :]
    assert "6000 s (100.0 min) (at least)" in sec and "**7354 s (122.6 min)** (at least)" in sec


# ------------------------------------------------------------------------------------------------
# learning curves kept in the result files: small multiples without run folders


def _curve(values):
    return {"epochs": list(range(1, len(values) + 1)), "ndcg@10": values}


def test_curve_panels_png(tmp_path):
    pytest.importorskip("matplotlib")
    panels = [
        (f"setting {k}", [(f"seed {s}", [1, 2, 3], [0.01 * k, 0.02 * k + s / 100, 0.015 * k]) for s in range(3)])
        for k in range(1, 6)
    ]
    path = plots.curve_panels(tmp_path / "p.png", panels, title="t", xlabel="epoch", ylabel="v", integer_x=True)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10000
    assert plots.curve_panels(tmp_path / "q.png", panels, title="t").read_bytes() != data  # labels drawn


def test_transfer_curves_come_from_the_result_file_without_run_folders(results, tmp_path):
    pytest.importorskip("matplotlib")
    d = json.loads((results / PMM).read_text())
    for name, row in d["table"].items():
        row["curves"] = [_curve([0.01, 0.03 + i / 100, 0.02]) for i in range(row["runs"])]
    (results / PMM).write_text(json.dumps(d))
    for run in (tmp_path / "runs").iterdir():  # no run folder on this machine
        for f in run.iterdir():
            f.unlink()
        run.rmdir()
    out = tmp_path / "docs" / "results.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme"])
    page = out.read_text()
    pmm_section = page.split("### PMMRec transfer")[1].split("\n### ")[0]
    assert "(img/curves_pmmrec.png)" in pmm_section and "so this plot is skipped" not in pmm_section
    assert (tmp_path / "docs" / "img" / "curves_pmmrec.png").read_bytes()[:8] == PNG


def _grid_file(results: Path, curves: bool) -> None:
    runs = {
        v: {
            str(s): {
                "valid": {"ndcg@10": 0.05},
                "test": {"ndcg@10": 0.04},
                "best_epoch": 2,
                "wall_s": 3.0,
                **({"curve": _curve([0.03, 0.05, 0.045])} if curves and v != "pop" else {}),
            }
            for s in (0, 1)
        }
        for v in ("pop", "sasrec", "unisrec")
    }
    row = {
        "valid_ndcg@10": {"mean": 0.05, "std": 0.0},
        "test_ndcg@10": {"mean": 0.04, "std": 0.0},
        "test_hr@10": {"mean": 0.08, "std": 0.0},
        "best_epochs": [2, 2],
        "wall_s": 3.0,
    }
    grid = {"name": "g", "question": "q?", "seeds": [0, 1], "variants": {v: f"train --model {v}" for v in runs}}
    (results / "grid_g.json").write_text(
        json.dumps(
            {
                "grid": grid,
                "grid_file": "bench/grids/g.yaml",
                "date": "d",
                "commands": {},
                "summary": {"winner_on_validation": "sasrec", "variants": {v: row for v in runs}},
                "runs": runs,
            }
        )
    )


@pytest.mark.parametrize("curves", [True, False])
def test_grid_section_draws_its_curves_when_the_file_keeps_them(results, tmp_path, curves):
    pytest.importorskip("matplotlib")
    _grid_file(results, curves)
    out = tmp_path / "docs" / "results.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme"])
    page = out.read_text()
    assert ("(img/curves_grid_g.png)" in page) == curves
    assert (tmp_path / "docs" / "img" / "curves_grid_g.png").is_file() == curves


def test_bench_run_record_keeps_the_validation_curve(tmp_path):
    from harness.runs import curve

    _metrics(tmp_path / "run", [0.01, 0.03, 0.02], [5.0, 4.0, 3.9])
    assert curve(tmp_path / "run") == {"epochs": [1, 2, 3], "ndcg@10": [0.01, 0.03, 0.02]}
    assert curve(tmp_path / "absent") == {"epochs": [], "ndcg@10": []}


def test_beyond_accuracy_section(results, tmp_path):
    segs = {
        "history <= 40": {"count": 5, "hr@10": 0.2, "ndcg@10": 0.1},
        "cold targets": {"count": 0, "hr@10": float("nan"), "ndcg@10": float("nan")},
    }
    lists = {"coverage@10": 0.123, "avg_popularity@10": 88.25, "novelty@10": 9.87, "diversity@10": 0.4567}
    row = {
        "run": "runs/x",
        "command": "modalrec evaluate runs/x --beyond --json --quiet",
        "dataset": "ml-100k",
        "model": "sasrec",
        "metrics": {"ndcg@10": 0.1111},
        "beyond": {"k": 10, "lists": lists, "segments": segs, "catalogue_mean_cosine": 0.25},
    }
    (results / "beyond_accuracy.json").write_text(json.dumps({"rows": {"sasrec s0": row}, "date": "d"}))
    out = tmp_path / "r.md"
    report.main(["--results", str(results), "--out", str(out), "--no-readme", "--no-plots"])
    section = out.read_text().split("### Beyond accuracy")[1].split("\n### ")[0]
    assert "| sasrec s0 | ml-100k | 0.1111 | 0.1230 | 88.2 | 9.87 | 0.4567 | 0.2500 |" in section
    assert "0.1000 (5)" in section and "n/a (0)" in section
    assert "`modalrec evaluate runs/x --beyond --json --quiet`" in section
