"""Read and validate raw tables: interactions and the item catalogue.

Formats: CSV, TSV, Parquet, JSON Lines and RecBole atomic files (``.inter``, ``.item``: TSV whose
header cells are ``field:type``; the ``:type`` suffix is stripped and ``token_seq``/``float_seq``
cells become lists of space-separated tokens). ``format="auto"`` decides by file extension
(a trailing ``.gz``/``.bz2`` is looked through).

Ids are always read as strings (``"007"`` stays ``"007"``); timestamps become int64 seconds.
Every problem a user can fix raises :class:`DataError` naming the file and the column, row or id.
Delimited files are parsed with pyarrow when it is installed (multi-threaded, about 0.3 s for the
1M rows of ml-1m) and with pandas' C parser otherwise.
"""

from __future__ import annotations

import csv
import io
import math
import os
import string
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from modalrec.config import InteractionsSpec, ItemsSpec
from modalrec.utils import image_file_stem  # noqa: F401  (the image_dir naming rule; re-exported)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
FIELD_PREFIX = "field:"  # read_items: a raw catalogue column kept as display text (Catalogue.fields)
_COMPRESSION_EXTS = (".gz", ".bz2")
_FORMAT_BY_EXT = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".inter": "atomic",
    ".item": "atomic",
    ".user": "atomic",
}
FORMATS = ("csv", "tsv", "parquet", "jsonl", "atomic")
_ATOMIC_LIST_TYPES = ("token_seq", "float_seq")

# pandas < 3 also needs convert_dates=False to leave a "timestamp" column alone (deprecated in 3)
_NO_DATES = {"convert_dates": False} if int(pd.__version__.split(".")[0]) < 3 else {}

# Set to False to force the pandas C parser (used by the tests to cover both paths).
USE_PYARROW = True


class DataError(ValueError):
    """A problem with the input data that the user can fix (names file, column, row or id)."""


# --------------------------------------------------------------------------------------------
# Format detection and low-level reading


def detect_format(path: str | Path, format: str = "auto") -> str:
    """The table format: ``format`` itself unless it is ``auto``, then by extension."""
    if format and format != "auto":
        if format not in FORMATS:
            raise DataError(f"{path}: unknown format {format!r}; choose one of auto, {', '.join(FORMATS)}")
        return format
    name = Path(path).name.lower()
    for c in _COMPRESSION_EXTS:
        if name.endswith(c):
            name = name[: -len(c)]
    ext = os.path.splitext(name)[1]
    if ext not in _FORMAT_BY_EXT:
        raise DataError(
            f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; set format to one of "
            f"{', '.join(FORMATS)} (known extensions: {', '.join(sorted(_FORMAT_BY_EXT))})"
        )
    return _FORMAT_BY_EXT[ext]


def _default_sep(fmt: str, sep: str) -> str:
    if sep:
        return {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    return "," if fmt == "csv" else "\t"


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    return open(path, "rb")


def check_file(path: Path, what: str) -> None:
    """A DataError unless ``path`` is an existing file (a folder is named as such)."""
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    if path.is_dir():
        raise DataError(f"{what} path {path} is a folder; give the path of a file")


def find_bad_utf8(path: str | Path) -> tuple[int, int, bytes] | None:
    """(1-based line, 1-based byte column, offending bytes) of the first non-UTF-8 line, or None."""
    with _open_binary(Path(path)) as f:
        for lineno, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return lineno, e.start + 1, line[e.start : e.end]
    return None


def _raise_if_bad_utf8(path: Path, cause: BaseException | None = None) -> None:
    bad = find_bad_utf8(path)
    if bad is not None:
        line, col, raw = bad
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 text (byte {raw.hex()} at byte {col}); "
            "re-save the file with UTF-8 encoding"
        ) from cause


def _read_header(path: Path, sep: str, quoting: bool) -> list[str]:
    with _open_binary(path) as f:
        raw = f.readline()
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: line 1 (the header) is not valid UTF-8 text; re-save the file as UTF-8") from e
    line = line.lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        raise DataError(f"{path}: the file is empty (no header row)")
    if quoting:
        cells = next(csv.reader([line], delimiter=sep))
    else:
        cells = line.split(sep)
    return [c.strip() for c in cells]


def _split_atomic_header(cells: list[str]) -> tuple[list[str], dict[str, str]]:
    names, types = [], {}
    for c in cells:
        name, _, typ = c.partition(":")
        names.append(name)
        types[name] = typ
    return names, types


def _read_delimited(
    path: Path, sep: str, header: list[str], columns: list[str], *, quoting: bool, multiline: bool
) -> pd.DataFrame:
    """Read ``columns`` (all strings) from a delimited file whose header row is ``header``."""
    try:
        if USE_PYARROW:
            return _read_delimited_arrow(path, sep, header, columns, quoting=quoting, multiline=multiline)
    except ImportError:
        pass
    return _read_delimited_pandas(path, sep, header, columns, quoting=quoting)


def _read_delimited_arrow(path, sep, header, columns, *, quoting, multiline) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read_opts = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=8 << 20)
    parse_opts = pacsv.ParseOptions(
        delimiter=sep, quote_char='"' if quoting else False, newlines_in_values=multiline and quoting
    )
    conv_opts = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        include_columns=columns,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        msg = str(e)
        if "UTF8" in msg or "utf-8" in msg.lower() or isinstance(e, UnicodeDecodeError):
            _raise_if_bad_utf8(path, e)
        raise DataError(f"{path}: cannot parse as a table with separator {sep!r}: {msg.splitlines()[0]}") from e
    return table.to_pandas()


def _read_delimited_pandas(path, sep, header, columns, *, quoting) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=1,
            names=header,
            usecols=columns,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
            encoding="utf-8",
            engine="c",
        )
    except UnicodeDecodeError as e:
        _raise_if_bad_utf8(path, e)
        raise DataError(f"{path}: not valid UTF-8 text; re-save the file as UTF-8") from e
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: cannot parse as a table with separator {sep!r}: {e}") from e
    return df[columns]


def _missing_column(path: Path, col: str, available: Iterable[str], role: str) -> DataError:
    avail = ", ".join(repr(c) for c in available)
    return DataError(
        f"{path}: no column {col!r} ({role}); the file has columns {avail}. "
        f"Set the {role} in the data spec to one of them."
    )


def read_table(
    path: str | Path,
    format: str = "auto",
    sep: str = "",
    columns: dict[str, str] | list[str] | None = None,
    *,
    what: str = "Table",
    multiline: bool = False,
) -> pd.DataFrame:
    """Read a table; ``columns`` maps column -> role (for error messages) and limits what is read.

    Delimited and atomic files are read with every column as a string (no NA guessing: an empty
    cell is ``""``); Parquet and JSONL keep their own types. Atomic ``token_seq``/``float_seq``
    cells become lists of strings.
    """
    path = Path(path)
    check_file(path, what)
    fmt = detect_format(path, format)
    try:
        return _read_table(path, fmt, sep, columns, multiline)
    except DataError:
        raise
    except _unreadable_errors() as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"{path}: cannot read the file as {fmt} ({type(e).__name__}: {detail}); "
            "it may be truncated or corrupt, or not readable by you"
        ) from e


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of a damaged or unreadable file: I/O, decompression, Arrow decoding."""
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a test dependency
        return errors
    return (*errors, pa.ArrowException)


def _read_table(path: Path, fmt: str, sep: str, columns, multiline: bool) -> pd.DataFrame:
    if isinstance(columns, list):
        columns = {c: "column" for c in columns}
    roles = dict(columns or {})

    if fmt in ("csv", "tsv", "atomic"):
        sep_ = _default_sep(fmt, sep)
        quoting = fmt != "atomic"
        header = _read_header(path, sep_, quoting)
        list_cols: list[str] = []
        if fmt == "atomic":
            header, types = _split_atomic_header(header)
            list_cols = [c for c, t in types.items() if t in _ATOMIC_LIST_TYPES]
        if len(set(header)) != len(header):
            dup = sorted({c for c in header if header.count(c) > 1})
            raise DataError(f"{path}: the header repeats column name(s) {', '.join(map(repr, dup))}")
        for col, role in roles.items():
            if col not in header:
                raise _missing_column(path, col, header, role)
        wanted = list(roles) if roles else header
        df = _read_delimited(path, sep_, header, wanted, quoting=quoting, multiline=multiline)
        for c in list_cols:
            if c in df.columns:
                df[c] = [v.split() for v in df[c].tolist()]
        return df

    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:  # pragma: no cover - pyarrow is a test dependency
            raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'modalrec[parquet]'") from e
        try:
            schema_names = pq.read_schema(path).names
        except Exception as e:
            raise DataError(f"{path}: not a readable Parquet file ({e})") from e
        for col, role in roles.items():
            if col not in schema_names:
                raise _missing_column(path, col, schema_names, role)
        table = pq.read_table(path, columns=list(roles) if roles else None)
        return table.to_pandas()

    # jsonl
    with _open_binary(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _raise_if_bad_utf8(path, e)
        raise DataError(f"{path}: not valid UTF-8 text; re-save the file as UTF-8") from e
    try:
        df = pd.read_json(io.StringIO(text), lines=True, dtype=False, **_NO_DATES)
    except ValueError as e:
        bad = _first_bad_json_line(text)
        if bad is not None:
            raise DataError(f"{path}: not valid JSON Lines (line {bad}): {e}") from e
        df = _jsonl_records(text, path)  # valid JSON pandas cannot type (e.g. integers beyond 64 bits)
    for col, role in roles.items():
        if col not in df.columns:
            raise _missing_column(path, col, list(df.columns), role)
    return df[list(roles)] if roles else df


def _jsonl_records(text: str, path: Path) -> pd.DataFrame:
    """JSON Lines read line by line into object columns (values kept as Python objects)."""
    import json

    records = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.strip():
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise DataError(f"{path}: line {i} is not a JSON object ({line[:40]!r}); give one object per line")
            records.append(rec)
    return pd.DataFrame.from_records(records).astype(object)


def _first_bad_json_line(text: str) -> int | None:
    import json

    for i, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                return i
    return None


# --------------------------------------------------------------------------------------------
# Column conversion


def ids_as_str(values: pd.Series) -> pd.Series:
    """Id column -> strings; integral floats lose their ``.0``; missing (None, NaN, NA) -> ``""``;
    a list or mapping cell -> a NUL character (never an id: :func:`check_ids` rejects it)."""
    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(arr)
        if finite.all() and np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**63):
            return pd.Series(arr.astype(np.int64), index=values.index).astype(str)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype(str)
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        return values.fillna("")
    return values.map(_id_text).astype(str)


def _id_text(v) -> str:
    if _is_missing(v):
        return ""
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return _NOT_AN_ID
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


_NOT_AN_ID = "\0"


def check_ids(ids: pd.Series, path, col: str, what: str = "every event needs an id") -> None:
    """Raise a DataError naming the first row whose id is missing, empty, blank or not a scalar."""
    blank = ids.str.strip().eq("").to_numpy() | ids.eq(_NOT_AN_ID).to_numpy()
    if not blank.any():
        return
    i = int(np.flatnonzero(blank)[0])
    problem = (
        "is a list or mapping, not an id"
        if ids.iloc[i] == _NOT_AN_ID
        else ("is empty (missing, null or NaN)" if ids.iloc[i] == "" else f"is blank ({ids.iloc[i]!r})")
    )
    raise DataError(
        f"{path}: data row {i + 1}, column {col!r} {problem}; {what} ({int(blank.sum())} row(s) "
        "affected). Fix or remove those rows."
    )


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return v is pd.NA or v is pd.NaT


def parse_timestamps(values: pd.Series, path: str | Path, col: str) -> np.ndarray:
    """A time column -> int64 seconds since the epoch.

    Accepted: numbers (epoch seconds; fractions are floored), datetime columns, and strings that
    are either all numeric or all ISO-like datetimes (``2001-02-03``, ``2001-02-03 04:05:06``,
    ``2001-02-03T04:05:06+01:00``; naive times are taken as UTC). The first value that does not
    parse is reported with its 1-based data row.
    """
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        bad = values.isna().to_numpy()
        if bad.any():
            _bad_time(path, col, int(np.flatnonzero(bad)[0]), "")
        return _datetimes_to_seconds(values)
    if pd.api.types.is_bool_dtype(dtype):
        _bad_time(path, col, 0, values.iloc[0])
    if pd.api.types.is_integer_dtype(dtype) and not values.isna().any():
        if dtype.kind == "u" and len(values) and values.max() > _INT64_MAX:
            i = int(np.flatnonzero(values.to_numpy() > _INT64_MAX)[0])
            _bad_time(path, col, i, values.iloc[i])
        return values.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~_fits_int64(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _bad_time(path, col, i, values.iloc[i])
        return np.floor(arr).astype(np.int64)

    s = values if pd.api.types.is_string_dtype(dtype) else values.map(lambda v: "" if _is_missing(v) else str(v))
    s = s.astype(str).str.strip()
    fast = _numeric_strings_fast(s)
    if fast is not None:
        return fast
    num = pd.to_numeric(s, errors="coerce")
    arr = np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    bad = ~_fits_int64(arr)
    for k in np.flatnonzero(bad & np.isfinite(arr)):  # an integer literal next to 2**63 rounds past it as a float
        bad[k] = not _int64_literal(s.iloc[k])
    if not bad.any():
        if np.all(np.abs(arr) < 2**53):
            return np.floor(arr).astype(np.int64)
        return _exact_int64(s, arr, path, col)  # very large integers: parse exactly
    if bad.all():
        dt = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        bad = dt.isna().to_numpy()
        if not bad.any():
            return _datetimes_to_seconds(dt)
    i = int(np.flatnonzero(bad)[0])
    _bad_time(path, col, i, s.iloc[i])
    raise AssertionError  # unreachable


_INT64_MAX = np.iinfo(np.int64).max


def _fits_int64(arr: np.ndarray) -> np.ndarray:
    """Finite floats whose floor is an int64 (2**63 itself is a float64 but not an int64)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (arr >= -(2.0**63)) & (arr < 2.0**63)


def _int64_literal(text: str) -> bool:
    try:
        return -(2**63) <= int(text) <= _INT64_MAX
    except ValueError:
        return False


def _exact_int64(s: pd.Series, arr: np.ndarray, path, col: str) -> np.ndarray:
    """Numeric strings, some beyond 2**53: integer literals exactly, other numbers floored."""
    with np.errstate(invalid="ignore"):
        out = np.floor(np.clip(arr, -(2.0**63), 2.0**63 - 1024)).astype(np.int64)
    for i in np.flatnonzero(np.abs(arr) >= 2**53):
        text = s.iloc[i]
        try:
            v = int(text)
        except ValueError:
            continue  # "1e18": a float literal, already floored
        if not -(2**63) <= v <= _INT64_MAX:
            _bad_time(path, col, int(i), text)
        out[i] = v
    return out


def _numeric_strings_fast(s: pd.Series) -> np.ndarray | None:
    """All-numeric string column -> int64 via pyarrow casts (10x faster); None if not that case."""
    if not USE_PYARROW:
        return None
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return None
    try:
        arr = pa.array(s, type=pa.string())
        if arr.null_count:
            return None
        try:
            return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            f = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return None
    if not np.all(np.isfinite(f)) or not np.all(np.abs(f) < 2**53):
        return None
    return np.floor(f).astype(np.int64)


def _datetimes_to_seconds(dt: pd.Series) -> np.ndarray:
    if getattr(dt.dt, "tz", None) is None:
        dt = dt.dt.tz_localize("UTC")
    delta = dt - pd.Timestamp(0, tz="UTC")
    return (delta // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _bad_time(path, col, i: int, value) -> None:
    value = value.item() if isinstance(value, np.generic) else value
    raise DataError(
        f"{path}: data row {i + 1}, column {col!r}: cannot parse timestamp {value!r} (missing, not a number or "
        "date, or beyond the 64-bit range of seconds). Give epoch seconds (e.g. 978300760) or ISO dates "
        "(e.g. 2000-12-31 22:12:40) in the whole column."
    )


def _as_text(values: pd.Series) -> list[str]:
    """A column as display strings: lists joined by ", ", integral floats without ".0", NaN -> ""."""
    out = []
    for v in values.tolist():
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append(", ".join(s for s in (_scalar_text(x) for x in v) if s))
        else:
            out.append(_scalar_text(v))
    return out


def _scalar_text(v) -> str:
    if _is_missing(v):
        return ""
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else str(v)
    return str(v).strip()


def template_fields(template: str) -> list[str]:
    """Column names used by a ``str.format`` template, in order of first use."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"text_template {template!r} is not a valid format string: {e}") from e
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise DataError(f"text_template {template!r}: placeholders must name columns, e.g. {{title}}")
        base = field.split(".")[0].split("[")[0]
        if base not in names:
            names.append(base)
    return names


def render_text(df: pd.DataFrame, fields: list[str], template: str = "") -> np.ndarray:
    """Item text per row: ``template.format(**row)`` with display strings (surrounding white space
    stripped, so an empty last field leaves none), else non-empty ``fields`` joined by ``". "``. Missing
    values render as ``""``; list values as ``"a, b"``."""
    n = len(df)
    if template:
        cols = {f: _as_text(df[f]) for f in template_fields(template)}
        out = [template.format(**{f: cols[f][i] for f in cols}).strip() for i in range(n)]
    elif fields:
        cols_l = [_as_text(df[f]) for f in fields]
        out = [". ".join(p for p in parts if p) for parts in zip(*cols_l)]
    else:
        out = [""] * n
    return np.asarray(out, dtype=str) if n else np.zeros(0, dtype=str)


# --------------------------------------------------------------------------------------------
# Interactions and items


def _resolve(path: str, base_dir: str | Path | None) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def read_interactions(spec: InteractionsSpec, base_dir: str | Path | None = None) -> pd.DataFrame:
    """The interaction table as columns ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64).

    Rows keep file order. With ``spec.time_col == ""`` the timestamp is the 0-based row number
    (file order is time order).
    """
    if not spec.path:
        raise DataError("No interactions file given: set data.interactions.path (or data.dataset)")
    path = _resolve(spec.path, base_dir)
    roles = {spec.user_col: "user_col", spec.item_col: "item_col"}
    if spec.time_col:
        roles[spec.time_col] = "time_col"
    if len(roles) < (3 if spec.time_col else 2):
        raise DataError(f"{path}: user_col, item_col and time_col must be different columns")
    df = read_table(path, spec.format, spec.sep, roles, what="Interactions")
    return interactions_from_frame(df, spec, path)


def interactions_from_frame(df: pd.DataFrame, spec: InteractionsSpec, path) -> pd.DataFrame:
    """:func:`read_interactions` of a table already read (a file, or a user's DataFrame named by ``path``)."""
    missing = [c for c in (spec.user_col, spec.item_col, spec.time_col) if c and c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; the columns are {', '.join(map(repr, df.columns[:20]))}")
    if len(df) == 0:
        raise DataError(f"{path}: the interactions table is empty (a header but no rows)")
    users = ids_as_str(df[spec.user_col])
    items = ids_as_str(df[spec.item_col])
    check_ids(users, path, spec.user_col)
    check_ids(items, path, spec.item_col)
    if spec.time_col:
        ts = parse_timestamps(df[spec.time_col], path, spec.time_col)
    else:
        ts = np.arange(len(df), dtype=np.int64)
    return pd.DataFrame(
        {"user_id": users.reset_index(drop=True), "item_id": items.reset_index(drop=True), "timestamp": ts}
    )


def read_items(spec: ItemsSpec, base_dir: str | Path | None = None) -> pd.DataFrame:
    """The catalogue as columns ``item_id`` (str), ``text`` (str), ``image_path`` (str, "" = none) and
    ``field:<name>`` (display text) for every raw column the text uses or ``keep_fields`` names.

    Image paths are absolute. From ``image_col``: relative paths are resolved against
    ``image_dir`` (or, if unset, the table's folder); from ``image_dir`` alone: the file
    ``<item_id>.jpg|jpeg|png|webp`` (first existing in that order). Missing files give ``""``.
    """
    if not spec.path:
        raise DataError("No items file given: set data.items.path")
    path = _resolve(spec.path, base_dir)
    fields = list(dict.fromkeys(template_fields(spec.text_template) if spec.text_template else spec.text_fields))
    roles = {spec.item_col: "item_col"}
    for f in fields:
        roles.setdefault(f, "text field" if not spec.text_template else "text_template field")
    for f in spec.keep_fields:
        roles.setdefault(f, "kept field")
    if spec.image_col:
        roles.setdefault(spec.image_col, "image_col")
    df = read_table(path, spec.format, spec.sep, roles, what="Items", multiline=True)
    return items_from_frame(df, spec, path, _resolve(spec.image_dir, base_dir) if spec.image_dir else None)


def items_from_frame(df: pd.DataFrame, spec: ItemsSpec, path, image_dir: Path | None = None) -> pd.DataFrame:
    """:func:`read_items` of a table already read (a file, or a user's DataFrame named by ``path``)."""
    fields = list(dict.fromkeys(template_fields(spec.text_template) if spec.text_template else spec.text_fields))
    needed = [spec.item_col, *fields, *spec.keep_fields] + ([spec.image_col] if spec.image_col else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; the columns are {', '.join(map(repr, df.columns[:20]))}")
    if len(df) == 0:
        raise DataError(f"{path}: the item table is empty (a header but no rows)")
    ids = ids_as_str(df[spec.item_col])
    check_ids(ids, path, spec.item_col, "every catalogue row needs an id")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        names = list(dict.fromkeys(ids[dup].tolist()))
        raise DataError(
            f"{path}: {len(names)} item id(s) occur more than once in column {spec.item_col!r}, e.g. "
            f"{', '.join(map(repr, names[:5]))}; each catalogue row must have a unique id"
        )
    text = render_text(df, spec.text_fields, spec.text_template)
    if spec.image_col:
        images = _images_from_column(df[spec.image_col], image_dir or Path(path).parent)
    elif image_dir is not None:
        if not image_dir.is_dir():
            raise DataError(f"Image folder not found: {image_dir} (items.image_dir)")
        images = _images_from_dir(ids.tolist(), image_dir)
    else:
        images = np.full(len(df), "", dtype=object)
    kept = {
        f"{FIELD_PREFIX}{f}": _as_text(df[f]) for f in dict.fromkeys([*fields, *spec.keep_fields]) if f != spec.item_col
    }
    return pd.DataFrame({"item_id": ids.to_numpy(), "text": text, "image_path": np.asarray(images, dtype=str), **kept})


def _images_from_column(values: pd.Series, root: Path) -> np.ndarray:
    cache: dict[str, str] = {}
    out = []
    for v in _as_text(values):
        if v not in cache:
            p = _resolve(v, root) if v else None
            cache[v] = str(p.resolve()) if p is not None and p.is_file() else ""
        out.append(cache[v])
    return np.asarray(out, dtype=object)


def _images_from_dir(ids: list[str], image_dir: Path) -> np.ndarray:
    found: dict[str, tuple[int, str]] = {}
    rank = {e: i for i, e in enumerate(IMAGE_EXTS)}
    root = image_dir.resolve()
    with os.scandir(root) as it:
        for entry in it:
            stem, ext = os.path.splitext(entry.name)
            r = rank.get(ext.lower())
            if r is None or not entry.is_file():
                continue
            if stem not in found or r < found[stem][0]:
                found[stem] = (r, str(root / entry.name))
    stems = (image_file_stem(i) for i in ids)
    return np.asarray([found[s][1] if s in found else "" for s in stems], dtype=object)


def check_known_items(
    inter: pd.DataFrame, items: pd.DataFrame, drop_unknown: bool, inter_path="", items_path=""
) -> tuple[pd.DataFrame, int]:
    """Interactions whose item is not in the catalogue: error, or drop them (returns count)."""
    known = inter["item_id"].isin(items["item_id"]).to_numpy()
    n_bad = int((~known).sum())
    if n_bad == 0:
        return inter, 0
    if not drop_unknown:
        bad_ids = list(dict.fromkeys(inter["item_id"].to_numpy()[~known][:1000].tolist()))
        n_ids = int(inter["item_id"][~known].nunique())
        raise DataError(
            f"{inter_path or 'interactions'}: {n_bad} interaction(s) reference {n_ids} item id(s) missing "
            f"from the catalogue {items_path or ''}, e.g. {', '.join(map(repr, bad_ids[:5]))}. Add them "
            "to the catalogue or set data.drop_unknown_items=true to drop those interactions."
        )
    return inter.loc[known].reset_index(drop=True), n_bad
