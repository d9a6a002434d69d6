"""Property: any small interaction table, in any format, either prepares to exactly the events it holds
or fails with a DataError; never another exception, never an event given to another user or item.

Tables mix nulls, blank and unicode ids, ints and strings in one column, duplicate ids and extreme
timestamps. The expectation is computed independently: a row with a missing/blank id or a timestamp that
is not a 64-bit integer makes the file invalid; otherwise every user with at least 3 events (the
leave-one-out minimum) keeps all of them, ordered by (timestamp, file order).
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modalrec.config import DataConfig, InteractionsSpec
from modalrec.data import tables
from modalrec.data.prepare import prepare
from modalrec.data.tables import DataError

INT64 = (-(2**63), 2**63 - 1)
TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), max_size=3
)  # no tab/newline: atomic files cannot quote
USERS = st.sampled_from(["a", "007", "7", 7, "日本"])  # few users: most keep >= 3 events
ITEMS = st.one_of(st.sampled_from(["a", "b", "007", "7", "é", 'q"t', "a,b"]), st.integers(0, 4), TEXT)
BAD_ID = st.sampled_from([None, "", "  ", "\u3000"])
GOOD_TIME = st.one_of(st.integers(-(10**12), 10**12), st.integers(*INT64))
BAD_TIME = st.sampled_from([None, "", "abc", 10**20, -(10**20), 2**63, math.inf, -math.inf, math.nan, 1e300])


def _rarely(good, bad):
    """``good``, or ``bad`` about one time in 15."""
    return st.integers(0, 14).flatmap(lambda k: bad if k == 0 else good)


@st.composite
def tables_(draw):
    """Rows (user, item, timestamp) of raw Python values: half of the tables have a few bad cells."""
    dirty = draw(st.booleans())
    users, items, times = (
        (_rarely(USERS, BAD_ID), _rarely(ITEMS, BAD_ID), _rarely(GOOD_TIME, BAD_TIME))
        if dirty
        else (USERS, ITEMS, GOOD_TIME)
    )
    return draw(st.lists(st.tuples(users, items, times), min_size=3, max_size=30))


def _is_bad_id(v) -> bool:
    return v is None or str(v).strip() == ""


def _is_bad_time(v) -> bool:
    return not (isinstance(v, int) and INT64[0] <= v <= INT64[1])


def expected(rows) -> dict[str, list[tuple[str, int]]] | None:
    """user -> [(item, timestamp)] in time order, or None when the table must be refused."""
    if any(_is_bad_id(u) or _is_bad_id(i) or _is_bad_time(t) for u, i, t in rows):
        return None
    seqs: dict[str, list[tuple[str, int]]] = {}
    for u, i, t in rows:
        seqs.setdefault(str(u), []).append((str(i), t))
    kept = {u: sorted(s, key=lambda e: e[1]) for u, s in seqs.items() if len(s) >= 3}  # sorted() is stable
    return kept or None


# ------------------------------------------------------------------------------------------ writers


def _cell(v) -> str:
    return "" if v is None else str(v)


def _delimited(rows, sep: str, header: list[str], quoting: bool) -> str:
    out = io.StringIO()
    if quoting:
        w = csv.writer(out, delimiter=sep, lineterminator="\n")
        w.writerow(header)
        w.writerows([[_cell(v) for v in r] for r in rows])
        return out.getvalue()
    return "\n".join(sep.join(_cell(v) for v in r) for r in [header, *rows]) + "\n"


def _arrow_column(values):
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def write(rows, fmt: str, folder: Path) -> Path:
    names = ["user_id", "item_id", "timestamp"]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "t.parquet"
        pq.write_table(pa.table({n: _arrow_column([r[k] for r in rows]) for k, n in enumerate(names)}), path)
        return path
    if fmt == "jsonl":
        path = folder / "t.jsonl"
        lines = [json.dumps(dict(zip(names, r)), ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    if fmt == "atomic":
        path = folder / "t.inter"
        text = _delimited(rows, "\t", ["user_id:token", "item_id:token", "timestamp:float"], quoting=False)
    else:
        path = folder / f"t.{fmt}"
        text = _delimited(rows, "," if fmt == "csv" else "\t", names, quoting=True)
    path.write_text(text, encoding="utf-8")
    return path


def prepared_events(ds) -> dict[str, list[tuple[str, int]]]:
    ids = ds.catalogue.item_ids
    return {
        str(u): [(str(ids[x]), int(t)) for x, t in zip(ds.items[a:b], ds.timestamps[a:b])]
        for u, a, b in zip(ds.user_ids, ds.offsets[:-1], ds.offsets[1:])
    }


# ------------------------------------------------------------------------------------------ property


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "atomic"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tables_(), use_pyarrow=st.booleans())
def test_prepares_exactly_or_refuses(fmt, rows, use_pyarrow):
    want = expected(rows)
    before, tables.USE_PYARROW = tables.USE_PYARROW, use_pyarrow
    try:
        with tempfile.TemporaryDirectory() as d:
            path = write(rows, fmt, Path(d))
            cfg = DataConfig(
                interactions=InteractionsSpec(path=str(path)),
                dedup="none",
                min_user_inter=0,
                min_item_inter=0,
                min_seq_len=0,
                cache=False,
            )
            try:
                ds = prepare(cfg, progress=False)
            except DataError:
                event("refused")
                assert want is None, f"refused a valid table: {rows!r}"
                return
    finally:
        tables.USE_PYARROW = before
    event("prepared")
    assert want is not None, f"accepted an invalid table: {rows!r}"
    assert prepared_events(ds) == want
    assert sorted(map(str, ds.catalogue.item_ids[1:])) == sorted({i for s in want.values() for i, _ in s})
