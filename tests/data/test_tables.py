"""Reading and validating raw tables: every format, every error message."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modalrec.config import InteractionsSpec, ItemsSpec
from modalrec.data import tables
from modalrec.data.tables import DataError, detect_format, read_interactions, read_items, render_text

ROWS = [("007", "10", 5), ("007", "2", 3), ("8", "10", 4)]


@pytest.fixture(params=[True, False], ids=["pyarrow", "pandas"])
def parser(request, monkeypatch):
    monkeypatch.setattr(tables, "USE_PYARROW", request.param)
    return request.param


def _expect(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["user_id", "item_id", "timestamp"]
    assert df["user_id"].tolist() == ["007", "007", "8"]  # ids stay strings, leading zeros kept
    assert df["item_id"].tolist() == ["10", "2", "10"]
    assert df["timestamp"].dtype == np.int64
    assert df["timestamp"].tolist() == [5, 3, 4]


def test_csv_and_tsv(tmp_path, parser):
    (tmp_path / "a.csv").write_text(
        "user_id,item_id,timestamp,rating\n" + "".join(f"{u},{i},{t},1\n" for u, i, t in ROWS)
    )
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv"))))
    (tmp_path / "a.tsv").write_text("u\ti\tt\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in ROWS))
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "a.tsv"), user_col="u", item_col="i", time_col="t")))
    # explicit format and separator override the extension
    (tmp_path / "a.txt").write_text("user_id;item_id;timestamp\n" + "".join(f"{u};{i};{t}\n" for u, i, t in ROWS))
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "a.txt"), format="csv", sep=";")))


def test_parquet(tmp_path):
    df = pd.DataFrame({"user_id": [7, 7, 8], "item_id": [10, 2, 10], "timestamp": [5.0, 3.0, 4.0]})
    df.to_parquet(tmp_path / "a.parquet")
    out = read_interactions(InteractionsSpec(path=str(tmp_path / "a.parquet")))
    assert out["user_id"].tolist() == ["7", "7", "8"] and out["item_id"].tolist() == ["10", "2", "10"]
    assert out["timestamp"].tolist() == [5, 3, 4]
    # a real datetime column
    df["timestamp"] = pd.to_datetime(["1970-01-01 00:00:05", "1970-01-01 00:00:03", "1970-01-01 00:00:04"])
    df.to_parquet(tmp_path / "b.parquet")
    assert read_interactions(InteractionsSpec(path=str(tmp_path / "b.parquet")))["timestamp"].tolist() == [5, 3, 4]


def test_jsonl(tmp_path):
    lines = [json.dumps({"user_id": u, "item_id": i, "timestamp": t}) for u, i, t in ROWS]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "a.jsonl"))))


def test_atomic_files(tmp_path, parser):
    (tmp_path / "x.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t1\t{t}\n" for u, i, t in ROWS)
    )
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "x.inter"))))
    (tmp_path / "x.item").write_text(
        'item_id:token\tmovie_title:token_seq\tclass:token_seq\n10\tSay "Hi"\tDrama War\n2\tB\t\n'
    )
    items = read_items(ItemsSpec(path=str(tmp_path / "x.item"), text_template="{movie_title} | {class}"))
    # token_seq cells are lists of tokens, joined by ", " in text; no quote processing in atomic files
    assert items["text"].tolist() == ['Say, "Hi" | Drama, War', "B |"]  # surrounding white space stripped


def test_iso_datetimes(tmp_path):
    (tmp_path / "a.csv").write_text(
        "user_id,item_id,timestamp\n1,1,1970-01-01\n1,2,1970-01-01 00:01:00\n1,3,1970-01-01T01:00:00+01:00\n"
    )
    assert read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))["timestamp"].tolist() == [0, 60, 0]


def test_numeric_timestamps_with_fractions(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,1,10.7\n1,2, 12 \n")
    assert read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))["timestamp"].tolist() == [10, 12]


def test_no_time_column_means_file_order(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id\n1,1\n1,2\n")
    df = read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv"), time_col=""))
    assert df["timestamp"].tolist() == [0, 1]


def test_detect_format():
    assert detect_format("a.CSV") == "csv"
    assert detect_format("a.tsv.gz") == "tsv"
    assert detect_format("a.inter") == "atomic"
    assert detect_format("a.pq") == "parquet"
    assert detect_format("a.ndjson") == "jsonl"
    assert detect_format("a.xyz", "csv") == "csv"
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format("data.xyz")
    with pytest.raises(DataError, match="unknown format"):
        detect_format("a.csv", "excel")


def test_gzip_csv(tmp_path):
    import gzip

    with gzip.open(tmp_path / "a.csv.gz", "wt") as f:
        f.write("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in ROWS))
    _expect(read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv.gz"))))


# ------------------------------------------------------------------------------------ errors


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"Interactions file not found: .*nope\.csv"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "nope.csv")))
    with pytest.raises(DataError, match=r"Items file not found: .*items\.csv"):
        read_items(ItemsSpec(path=str(tmp_path / "items.csv")))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "atomic"])
def test_missing_column_names_column_file_and_alternatives(tmp_path, fmt):
    df = pd.DataFrame({"user": ["1"], "item_id": ["2"], "timestamp": ["3"]})
    path = tmp_path / {"csv": "a.csv", "parquet": "a.parquet", "jsonl": "a.jsonl", "atomic": "a.inter"}[fmt]
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        path.write_text("user:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(DataError) as e:
        read_interactions(InteractionsSpec(path=str(path)))
    msg = str(e.value)
    assert "'user_id'" in msg and path.name in msg and "'user'" in msg and "'timestamp'" in msg


def test_unparsable_timestamp_names_file_row_and_value(tmp_path, parser):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,1,100\n1,2,200\n2,1,yesterday\n")
    with pytest.raises(DataError) as e:
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))
    msg = str(e.value)
    assert "a.csv" in msg and "data row 3" in msg and "'yesterday'" in msg and "'timestamp'" in msg
    (tmp_path / "b.csv").write_text("user_id,item_id,timestamp\n1,1,2020-01-01\n1,2,2020-13-45\n")
    with pytest.raises(DataError, match=r"b\.csv: data row 2.*'2020-13-45'"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "b.csv")))
    (tmp_path / "c.csv").write_text("user_id,item_id,timestamp\n1,1,5\n1,2,\n")
    with pytest.raises(DataError, match=r"c\.csv: data row 2"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "c.csv")))


def test_empty_tables(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match=r"a\.csv: the interactions table is empty"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(DataError, match=r"b\.csv: the file is empty"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "b.csv")))
    (tmp_path / "i.csv").write_text("item_id,title\n")
    with pytest.raises(DataError, match=r"i\.csv: the item table is empty"):
        read_items(ItemsSpec(path=str(tmp_path / "i.csv"), text_fields=["title"]))


def test_empty_id_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,1,1\n,2,2\n")
    with pytest.raises(DataError, match=r"a\.csv: data row 2, column 'user_id' is empty"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))


def test_duplicate_item_ids_are_named(tmp_path):
    (tmp_path / "i.csv").write_text("item_id,title\n1,A\n2,B\n1,C\n3,D\n3,E\n")
    with pytest.raises(DataError) as e:
        read_items(ItemsSpec(path=str(tmp_path / "i.csv"), text_fields=["title"]))
    msg = str(e.value)
    assert "i.csv" in msg and "2 item id(s)" in msg and "'1'" in msg and "'3'" in msg


def test_undecodable_text_names_file_and_line(tmp_path, parser):
    p = tmp_path / "i.csv"
    p.write_bytes(b"item_id,title\n1,Caf\xc3\xa9\n2,Caf\xe9\n")  # line 3 is Latin-1
    with pytest.raises(DataError) as e:
        read_items(ItemsSpec(path=str(p), text_fields=["title"]))
    assert "i.csv: line 3 is not valid UTF-8" in str(e.value)
    q = tmp_path / "a.jsonl"
    q.write_bytes(b'{"user_id": 1, "item_id": 1, "timestamp": 1}\n{"user_id": "\xff", "item_id": 1, "timestamp": 1}\n')
    with pytest.raises(DataError, match=r"a\.jsonl: line 2 is not valid UTF-8"):
        read_interactions(InteractionsSpec(path=str(q)))


def test_bad_template(tmp_path):
    (tmp_path / "i.csv").write_text("item_id,title\n1,A\n")
    with pytest.raises(DataError, match="no column 'year'"):
        read_items(ItemsSpec(path=str(tmp_path / "i.csv"), text_template="{title} ({year})"))
    with pytest.raises(DataError, match="placeholders must name columns"):
        read_items(ItemsSpec(path=str(tmp_path / "i.csv"), text_template="{} x"))


# ------------------------------------------------------------------------------------ text and images


def test_render_text_template_lists_and_missing():
    df = pd.DataFrame(
        {
            "title": ["Toy Story", "Heat", None],
            "year": [1995.0, np.nan, 2001.0],
            "genres": [["Animation", "Comedy"], [], ["Drama"]],
        }
    )
    out = render_text(df, [], "{title} ({year}). Genres: {genres}")
    assert out.tolist() == [
        "Toy Story (1995). Genres: Animation, Comedy",
        "Heat (). Genres:",
        "(2001). Genres: Drama",
    ]
    # no template: the non-empty fields joined by ". "
    assert render_text(df, ["title", "year"]).tolist() == ["Toy Story. 1995", "Heat", "2001"]
    assert render_text(df, []).tolist() == ["", "", ""]


def test_items_from_jsonl_with_lists(tmp_path):
    rows = [{"item_id": 1, "title": "A", "tags": ["x", "y"]}, {"item_id": 2, "title": "B", "tags": None}]
    (tmp_path / "i.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = read_items(ItemsSpec(path=str(tmp_path / "i.jsonl"), text_fields=["title", "tags"]))
    assert items["item_id"].tolist() == ["1", "2"]
    assert items["text"].tolist() == ["A. x, y", "B"]


def test_images_from_column_and_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"png")
    (tmp_path / "local.jpg").write_bytes(b"jpg")
    (tmp_path / "i.csv").write_text("item_id,img\n1,a.png\n2,missing.png\n3,\n")
    # relative to image_dir
    items = read_items(ItemsSpec(path=str(tmp_path / "i.csv"), image_col="img", image_dir=str(tmp_path / "pics")))
    assert items["image_path"].tolist() == [str((tmp_path / "pics" / "a.png").resolve()), "", ""]
    # relative to the table's folder
    (tmp_path / "j.csv").write_text("item_id,img\n1,local.jpg\n2,pics/a.png\n")
    items = read_items(ItemsSpec(path=str(tmp_path / "j.csv"), image_col="img"))
    assert items["image_path"].tolist() == [
        str((tmp_path / "local.jpg").resolve()),
        str((tmp_path / "pics" / "a.png").resolve()),
    ]
    # <item_id>.<ext> in image_dir; jpg preferred over png
    d = tmp_path / "byid"
    d.mkdir()
    for name in ("1.png", "1.jpg", "2.webp", "notes.txt"):
        (d / name).write_bytes(b"x")
    (tmp_path / "k.csv").write_text("item_id\n1\n2\n3\n")
    items = read_items(ItemsSpec(path=str(tmp_path / "k.csv"), image_dir=str(d)))
    assert items["image_path"].tolist() == [str((d / "1.jpg").resolve()), str((d / "2.webp").resolve()), ""]
    with pytest.raises(DataError, match="Image folder not found"):
        read_items(ItemsSpec(path=str(tmp_path / "k.csv"), image_dir=str(tmp_path / "nowhere")))


def test_unknown_items(tmp_path):
    inter = pd.DataFrame({"user_id": ["1"] * 4, "item_id": ["a", "zz", "b", "zz"], "timestamp": [1, 2, 3, 4]})
    items = pd.DataFrame({"item_id": ["a", "b"], "text": ["", ""]})
    with pytest.raises(DataError) as e:
        tables.check_known_items(inter, items, False, "inter.csv", "items.csv")
    msg = str(e.value)
    assert "2 interaction(s)" in msg and "1 item id(s)" in msg and "'zz'" in msg and "drop_unknown_items" in msg
    kept, n = tables.check_known_items(inter, items, True)
    assert n == 2 and kept["item_id"].tolist() == ["a", "b"]


# --------------------------------------------------------------------------------------------
# Missing ids and unusable timestamps: every format and dtype names file, row and column


def _write_ids(tmp_path, fmt: str, users: list, role: str = "user_id"):
    """A 3-row interaction table in ``fmt`` whose ``role`` column holds ``users``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"user_id": ["u1", "u2", "u3"], "item_id": ["i1", "i2", "i3"], "timestamp": [1, 2, 3]}
    cols[role] = users
    if fmt == "parquet":
        pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), tmp_path / "t.parquet")
        return tmp_path / "t.parquet"
    if fmt == "jsonl":
        rows = [dict(zip(cols, r)) for r in zip(*cols.values())]
        (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp_path / "t.jsonl"
    sep, name, head = {
        "csv": (",", "t.csv", "user_id,item_id,timestamp"),
        "tsv": ("\t", "t.tsv", "user_id\titem_id\ttimestamp"),
        "atomic": ("\t", "t.inter", "user_id:token\titem_id:token\ttimestamp:float"),
    }[fmt]
    body = "".join(sep.join("" if v is None else str(v) for v in r) + "\n" for r in zip(*cols.values()))
    (tmp_path / name).write_text(head + "\n" + body)
    return tmp_path / name


@pytest.mark.parametrize("fmt", ["csv", "tsv", "atomic", "parquet", "jsonl"])
@pytest.mark.parametrize("role", ["user_id", "item_id"])
@pytest.mark.parametrize("bad", [None, "", "   "], ids=["null", "empty", "blank"])
def test_missing_ids_name_file_row_column(tmp_path, parser, fmt, role, bad):
    path = _write_ids(tmp_path, fmt, ["a", bad, "c"] if role == "user_id" else ["x", bad, "z"], role)
    with pytest.raises(DataError, match=rf"t\.\w+: data row 2, column '{role}' is (empty|blank)"):
        read_interactions(InteractionsSpec(path=str(path)))


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1.0, np.nan, 3.0]),  # numeric ids with NaN
        pd.Series(["a", None, "c"], dtype=object),
        pd.Series(["a", None, "c"], dtype="string"),
        pd.Series(["a", np.nan, "c"], dtype="str"),  # pandas >= 3: NaN in a str column
        pd.Series([1, None, 3], dtype="Int64"),
    ],
    ids=["float-nan", "object", "string", "str", "Int64"],
)
def test_missing_ids_of_every_dtype(values):
    ids = tables.ids_as_str(values)
    assert ids.tolist()[0] in ("1", "a") and ids.tolist()[1] == ""
    with pytest.raises(DataError, match=r"f\.csv: data row 2, column 'u' is empty"):
        tables.check_ids(ids, "f.csv", "u")


def test_missing_item_id_in_the_catalogue(tmp_path):
    (tmp_path / "i.jsonl").write_text('{"item_id": "a", "t": "A"}\n{"item_id": null, "t": "B"}\n')
    with pytest.raises(DataError, match=r"i\.jsonl: data row 2, column 'item_id' is empty.*catalogue row"):
        read_items(ItemsSpec(path=str(tmp_path / "i.jsonl"), text_fields=["t"]))


@pytest.mark.parametrize("value", ["99999999999999999999", "1e300", "inf", "nan", "-1e300", "soon"])
def test_unusable_timestamps_name_row_and_value(tmp_path, parser, value):
    (tmp_path / "a.csv").write_text(f"user_id,item_id,timestamp\nu,i,1\nu,j,{value}\n")
    with pytest.raises(DataError, match=rf"a\.csv: data row 2, column 'timestamp': cannot parse timestamp '{value}'"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))


@pytest.mark.parametrize("value", ["1e300", "99999999999999999999", "NaN", "Infinity", "18446744073709551615"])
def test_unusable_jsonl_timestamps(tmp_path, value):
    (tmp_path / "a.jsonl").write_text(
        f'{{"user_id": "u", "item_id": "i", "timestamp": 1}}\n'
        f'{{"user_id": "u", "item_id": "j", "timestamp": {value}}}\n'
    )
    with pytest.raises(DataError, match=r"a\.jsonl: data row 2, column 'timestamp': cannot parse timestamp"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.jsonl")))


def test_large_integer_timestamps_are_exact(tmp_path, parser):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\nu,i,1000000000000000001\nu,j,-9223372036854775808\n")
    ts = read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv")))["timestamp"].tolist()
    assert ts == [1000000000000000001, -(2**63)]


def test_damaged_files_are_data_errors(tmp_path):
    import gzip

    (tmp_path / "a.csv.gz").write_bytes(
        gzip.compress(b"user_id,item_id,timestamp\n" + b"u,i,1\n" * 3000)[:-60] + b"\x00junk" * 10
    )
    with pytest.raises(DataError, match=r"a\.csv\.gz: cannot read the file as csv .*truncated or corrupt"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "a.csv.gz")))
    (tmp_path / "b.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    with pytest.raises(DataError, match=r"b\.parquet: not a readable Parquet file|b\.parquet: cannot read"):
        read_interactions(InteractionsSpec(path=str(tmp_path / "b.parquet")))
    with pytest.raises(DataError, match=r"is a folder; give the path of a file"):
        read_interactions(InteractionsSpec(path=str(tmp_path)))


def test_integer_timestamps_next_to_the_int64_limit_are_exact_without_pyarrow(monkeypatch):
    """As floats they round to 2**63 and would be refused; as integer literals they are in range."""
    import pandas as pd

    import modalrec.data.tables as tables

    monkeypatch.setattr(tables, "USE_PYARROW", False)
    got = tables.parse_timestamps(
        pd.Series(["0", "9223372036854775296", "9223372036854775807"], dtype=str), "t.inter", "timestamp"
    )
    assert got.tolist() == [0, 9223372036854775296, 9223372036854775807]
    with pytest.raises(tables.DataError, match="row 2"):
        tables.parse_timestamps(pd.Series(["0", "9223372036854775808"], dtype=str), "t.inter", "timestamp")
