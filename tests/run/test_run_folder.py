"""The run folder: a trained run is a self-contained model (copied elsewhere it recommends the same
without its data or cache), data met later is checked, and a failed start never blocks a folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modalrec.cli import main
from modalrec.run.folder import RunDir, RunDirError, run_lock

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.max_len=8", "train.batch_size=32", "train.epochs=2"]


def write_shop(folder: Path, rename: tuple[str, str] | None = None, images: Path | None = None) -> Path:
    """A small custom data set: events.csv, items.csv and the data spec shop.yaml (relative paths)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        start, length = int(rng.integers(1, 21)), int(rng.integers(5, 12))
        rows += [(f"u{u}", f"i{(start + k) % 20 + 1}", 1000 * u + k) for k in range(length)]
    events = pd.DataFrame(rows, columns=["user", "item", "ts"])
    items = pd.DataFrame({"item": [f"i{k}" for k in range(1, 21)], "title": [f"thing {k}" for k in range(1, 21)]})
    if rename:
        events["item"] = events["item"].replace(*rename)
        items["item"] = items["item"].replace(*rename)
    folder.mkdir(parents=True, exist_ok=True)
    events.to_csv(folder / "events.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    image = ""
    if images:  # <item id>.png beside the tables, named relative to the spec
        (folder / "img").mkdir(exist_ok=True)
        for k in range(1, 21):
            shutil.copy(images / f"{k}.png", folder / "img" / f"i{k}.png")
        image = "\n  image_dir: img"
    (folder / "shop.yaml").write_text(
        "name: shop\ninteractions:\n  path: events.csv\n  user_col: user\n  item_col: item\n  time_col: ts\n"
        f"items:\n  path: items.csv\n  item_col: item\n  text_fields: [title]{image}\n"
    )
    return folder / "shop.yaml"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _copy_and_recommend_elsewhere(tmp_path, monkeypatch, capsys, run: Path, history: str) -> str:
    """Copy ``run`` away, delete the data, empty the cache, and recommend from another folder."""
    moved = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(run, moved)
    shutil.rmtree(tmp_path / "work" / "shop")
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("MODALREC_HOME", str(home))
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = cli(capsys, "recommend", "copied-run", "--history", history, "-k", "5", "--json")
    assert code == 0, err
    assert list(home.iterdir()) == []  # nothing downloaded, prepared or cached
    return out


@pytest.mark.parametrize("model", ["sasrec", "pop"])
def test_copied_run_recommends_the_same_without_its_data(tmp_path, monkeypatch, capsys, model):
    work = tmp_path / "work"
    write_shop(work / "shop")
    monkeypatch.chdir(work)
    code, _, err = cli(
        capsys,
        "train",
        "--model",
        model,
        "--dataset",
        "shop/shop.yaml",
        "--out",
        "runs/r",
        "--quiet",
        *(TINY if model == "sasrec" else []),
    )
    assert code == 0, err
    rd = RunDir(work / "runs/r")
    for p in (rd.weights, rd.config_json, rd.catalogue, rd.histories, rd.dataset, rd.card, rd.results):
        assert p.is_file(), p
    import json

    assert json.loads(rd.config_json.read_text())["data"]["dataset"] == str(work / "shop/shop.yaml")  # absolute
    assert f"# {model} on shop" in rd.card.read_text()
    code, before, err = cli(capsys, "recommend", "runs/r", "--history", "i1,i2,i3", "-k", "5", "--json")
    assert code == 0, err
    after = _copy_and_recommend_elsewhere(tmp_path, monkeypatch, capsys, work / "runs/r", "i1,i2,i3")
    assert after == before


def test_content_model_run_is_self_contained(tmp_path, monkeypatch, capsys, content_overrides, tiny_images):
    work = tmp_path / "work"
    write_shop(work / "shop", images=tiny_images)
    monkeypatch.chdir(work)
    code, _, err = cli(
        capsys,
        "train",
        "--model",
        "pmmrec",
        "--dataset",
        "shop/shop.yaml",
        "--out",
        "runs/p",
        "--quiet",
        *content_overrides["pmmrec"],
        "model.max_len=8",
        "train.epochs=1",
        "train.batch_size=32",
    )
    assert code == 0, err
    code, before, err = cli(capsys, "recommend", "runs/p", "--history", "i4,i5", "-k", "5", "--json")
    assert code == 0, err
    assert _copy_and_recommend_elsewhere(tmp_path, monkeypatch, capsys, work / "runs/p", "i4,i5") == before


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_changed_data_is_refused_everywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_shop(tmp_path / "shop")
    assert cli(capsys, "train", "--model", "sasrec", "--dataset", spec, "--out", "run", "--quiet", *TINY)[0] == 0
    write_shop(tmp_path / "shop", rename=("i3", "i3-renamed"))
    before = _snapshot(tmp_path / "run")
    for argv in (
        ["evaluate", "run", "--quiet"],
        ["train", "--out", "run", "--resume", "--quiet"],
        ["finetune", "--from", "run", "--dataset", spec, "--out", "ft", "--quiet"],
    ):
        code, out, err = cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert "'i3'" in err and "'i3-renamed'" in err and "not the data" in err, err
        assert "Traceback" not in err
    assert _snapshot(tmp_path / "run") == before
    assert not (tmp_path / "ft").exists()


def test_missing_data_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_shop(tmp_path / "shop")
    assert cli(capsys, "train", "--model", "pop", "--dataset", spec, "--out", "run", "--quiet")[0] == 0
    shutil.rmtree(tmp_path / "shop")
    code, _, err = cli(capsys, "evaluate", "run", "--quiet")
    assert code == 2 and "needs the data the run was trained on" in err and str(spec) in err, err


def test_run_trained_from_frames_loads_and_is_checked(tmp_path):
    from modalrec.config import build_config
    from modalrec.data.prepare import prepare_frames
    from modalrec.run.data import RunDataError, evaluate_run
    from modalrec.run.fingerprint import DataMismatchError
    from modalrec.run.store import load_run
    from modalrec.run.training import train
    from modalrec.serve.recommender import Recommender

    spec = write_shop(tmp_path / "shop")
    events = (
        pd.read_csv(spec.parent / "events.csv")
        .rename(columns={"user": "user_id", "item": "item_id", "ts": "timestamp"})
        .astype({"user_id": str, "item_id": str})
    )
    cfg = build_config(model="sasrec", overrides=TINY)
    ds = prepare_frames(events, None, cfg.data, name="frames")
    results = train(cfg, tmp_path / "run", dataset=ds, progress=False)
    rec = Recommender.load(tmp_path / "run")
    assert rec.n_items == ds.n_items and len(rec.recommend(["i1", "i2"], k=3)) == 3
    res, _ = evaluate_run(load_run(tmp_path / "run"), dataset=ds)
    assert res.metrics == results["test"]["metrics"]
    with pytest.raises(RunDataError, match="given in Python"):
        evaluate_run(load_run(tmp_path / "run"))
    other = prepare_frames(events[events.user_id != "u0"], None, cfg.data, name="frames")
    with pytest.raises(DataMismatchError, match="sequences"):
        Recommender.load(tmp_path / "run", dataset=other)


def test_failed_start_does_not_block_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--model", "sasrec", "--dataset", "synthetic", "--out", "run", "--quiet", *TINY]
    code, _, err = cli(capsys, *base, "train.lr=1e30", "model.init_std=100")  # fails in the first step
    assert code == 2 and "Traceback" not in err
    assert not RunDir(tmp_path / "run").started
    code, _, err = cli(capsys, "train", "--out", "run", "--resume", "--quiet", "train.lr=1e-3", "model.init_std=0.02")
    assert code == 0 and "starting it fresh" in err, err
    code, _, err = cli(capsys, *base)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    code, _, err = cli(capsys, *base, "--overwrite")
    assert code == 0, err
    shutil.rmtree(tmp_path / "run")
    assert cli(capsys, *base, "eval.batch_size=0")[0] == 2
    code, _, err = cli(capsys, *base)
    assert code == 0, err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    code, _, err = cli(capsys, *base[:6], "notes", *base[7:])
    assert code == 2 and "not part of a run" in err and (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_files_follow_the_umask(tmp_path):
    from modalrec.config import build_config
    from modalrec.run.training import train

    old = os.umask(0o002)
    try:
        train(
            build_config(model="sasrec", overrides=[*TINY, "data.dataset=synthetic"]), tmp_path / "run", progress=False
        )
    finally:
        os.umask(old)
    rd = RunDir(tmp_path / "run")
    for p in (rd.weights, rd.config, rd.last, rd.best, rd.results, rd.catalogue):
        assert p.stat().st_mode & 0o777 == 0o664, p
    assert rd.assets.stat().st_mode & 0o777 == 0o775
    prepared = next((Path(os.environ["MODALREC_HOME"]) / "prepared").iterdir())
    assert prepared.stat().st_mode & 0o777 == 0o775


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    from modalrec.config import build_config
    from modalrec.run.training import train

    cfg = build_config(model="pop", overrides=["data.dataset=synthetic"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom modalrec.run.folder import RunDir, run_lock\n"
                f"with run_lock(RunDir({str(tmp_path / 'run')!r})):\n    print('locked', flush=True)\n    time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"another process \\(PID {holder.pid}\\)"):
            train(cfg, tmp_path / "run", progress=False)
    finally:
        holder.kill()
        holder.wait()
    train(cfg, tmp_path / "run", progress=False)  # released when its holder exits
    with run_lock(RunDir(tmp_path / "run")):
        pass


def test_saved_recommender_is_a_run(tmp_path):
    from modalrec.config import build_config
    from modalrec.run.training import train
    from modalrec.serve.recommender import Recommender

    train(build_config(model="sasrec", overrides=[*TINY, "data.dataset=synthetic"]), tmp_path / "run", progress=False)
    rec = Recommender.load(tmp_path / "run")
    hist = [rec._ids[1], rec._ids[2]]
    rec.save(tmp_path / "copy")
    again = Recommender.load(tmp_path / "copy")
    assert [r.item_id for r in again.recommend(hist, k=5)] == [r.item_id for r in rec.recommend(hist, k=5)]
    assert (tmp_path / "copy" / "README.md").is_file()


def test_content_model_without_an_id_table_transfers_to_another_catalogue(
    tmp_path, monkeypatch, capsys, content_overrides
):
    """Only an ID table ties a run to its item ids: an inductive UniSRec moves to other data freely, while a
    transductive one (which has an ID table) is checked like SASRec."""
    monkeypatch.chdir(tmp_path)
    spec = write_shop(tmp_path / "shop")
    tiny = [*content_overrides["unisrec"], "model.max_len=8", "train.epochs=1", "train.batch_size=32"]
    for mode in ("inductive", "transductive"):
        assert (
            cli(
                capsys,
                "train",
                "--model",
                "unisrec",
                "--dataset",
                "synthetic",
                "--out",
                f"src-{mode}",
                "--quiet",
                *tiny,
                f"model.mode={mode}",
            )[0]
            == 0
        )
    code, _, err = cli(
        capsys, "finetune", "--from", "src-inductive", "--dataset", spec, "--out", "ft", "--quiet", "train.epochs=1"
    )
    assert code == 0, err
    code, _, err = cli(
        capsys, "finetune", "--from", "src-transductive", "--dataset", spec, "--out", "ft2", "--quiet", "train.epochs=1"
    )
    assert code == 2 and "not the data" in err, err


def test_a_saved_recommender_is_a_source_for_finetuning(tmp_path, capsys):
    """A folder written by Recommender.save has no best.pt: fine-tuning loads its model.safetensors."""
    from modalrec.config import build_config
    from modalrec.run.training import train
    from modalrec.serve.recommender import Recommender

    train(build_config(model="sasrec", overrides=[*TINY, "data.dataset=synthetic"]), tmp_path / "run", progress=False)
    Recommender.load(tmp_path / "run").save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "best.pt").exists()
    code = main(
        [
            "finetune",
            "--from",
            str(tmp_path / "saved"),
            "--dataset",
            "synthetic",
            "--out",
            str(tmp_path / "ft"),
            "--quiet",
            "train.epochs=1",
        ]
    )
    assert code == 0
    from modalrec.run.store import load_run

    res = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert res["transfer"]["checkpoint"].endswith("model.safetensors")
    assert res["transfer"]["model_name"] == "sasrec" and "item_embedding" in res["transfer"]["loaded"]
    assert load_run(tmp_path / "ft").model is not None
