"""docs/python-api.md, run as written (only TOWERS swapped for the tiny text encoder), and the pandas
API's contracts: the frame's shape, known and unknown users, output formats, a fresh process."""

from __future__ import annotations

import doctest
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory, tiny_text_model):
    """The page's namespace after running every block in order."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    ns: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("doc-home")))
        for code in blocks:
            code = code.replace(
                "TOWERS = []",
                f"TOWERS = ['model.text.model={tiny_text_model}', 'model.text.max_tokens=8', 'model.hidden_size=16']",
            )
            exec(compile(code, str(DOC), "exec"), ns)
        yield ns


def test_the_page_runs_and_answers_with_frames(doc_run):
    known, new, cold = doc_run["known"], doc_run["new"], doc_run["cold"]
    for df in (known, new, cold):
        assert list(df.columns) == ["user_id", "item_id", "score", "rank"]
    assert known["user_id"].unique().tolist() == ["1", "2", "3"] and known.groupby("user_id").size().eq(5).all()
    assert known.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert set(new["item_id"]).isdisjoint({"74", "26", "5"})  # the history is left out
    assert len(cold) == 3
    recs = pd.read_parquet(doc_run["work"] / "recs.parquet")
    assert recs["user_id"].unique().tolist() == ["a", "b"] and len(recs) == 20


def test_a_fresh_process_loads_the_same_frame(doc_run):
    work = doc_run["work"]
    code = (
        "import modalrec, sys; df = modalrec.Recommender.load(sys.argv[1]).recommend_users(['1', '2', '3'], k=5);"
        "print(df.to_json(orient='split'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(work / "sasrec")], capture_output=True, text=True, check=True
    ).stdout
    again = pd.read_json(io.StringIO(out), orient="split", dtype={"user_id": str, "item_id": str})
    pd.testing.assert_frame_equal(again, doc_run["known"], check_dtype=False)


def test_unknown_users_formats_and_bad_histories_are_named(doc_run, tmp_path):
    import modalrec

    rec = doc_run["sasrec"]
    with pytest.raises(modalrec.RequestError, match="unknown user id.*'nobody'"):
        rec.recommend_users(["1", "nobody"], k=3)
    hist = doc_run["histories"]
    with pytest.raises(modalrec.RequestError, match="use one of .parquet, .csv, .jsonl"):
        rec.recommend_file(hist, tmp_path / "recs.txt")
    assert not (tmp_path / "recs.txt").exists()
    rec.recommend_file(hist, tmp_path / "recs.csv", k=2)
    assert pd.read_csv(tmp_path / "recs.csv", dtype={"user_id": str, "item_id": str}).shape == (4, 4)
    rec.recommend_file(hist, tmp_path / "recs.jsonl", k=2)
    lines = [json.loads(x) for x in (tmp_path / "recs.jsonl").read_text().splitlines()]
    assert [x["user"] for x in lines] == ["a", "b"] and all(len(x["items"]) == 2 for x in lines)
    frame = pd.DataFrame({"user_id": ["z", "z", "y"], "item_id": ["26", "74", "5"], "timestamp": [2, 1, 1]})
    by_frame = rec.recommend_histories(frame, k=3)
    by_dict = rec.recommend_histories({"z": ["74", "26"], "y": ["5"]}, k=3)
    pd.testing.assert_frame_equal(
        by_frame.sort_values(["user_id", "rank"]).reset_index(drop=True),
        by_dict.sort_values(["user_id", "rank"]).reset_index(drop=True),
    )


def test_fit_names_missing_columns():
    import modalrec

    events = pd.DataFrame({"u": ["1"], "i": ["2"], "t": [3]})
    with pytest.raises(modalrec.DataError, match="interactions DataFrame: no column 'user_id'"):
        modalrec.fit("pop", events, out="unused")


def test_the_api_docstring_example_runs(tmp_path):
    import modalrec.api

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(modalrec.api, globs={"tmp": tmp_path}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
