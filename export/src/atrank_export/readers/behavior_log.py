"""The generic behavior log a search/recommendation team exports, as a BehaviorLog.

One behavior per record. Required columns:

==============  ===============================================================================
``user``        user id (non-empty)
``group``       object type, e.g. ``item``, ``coupon``, ``query`` (non-empty)
``action``      behavior type, e.g. ``click``, ``buy`` (non-empty)
``object_id``   id of the object acted on (non-empty)
``timestamp``   unix seconds (an integer; in JSON/Parquet a float with an integral value is
                accepted), or an ISO-8601 string such as ``2024-03-01T12:30:00Z`` /
                ``2024-03-01 12:30:00+01:00`` / ``2024-03-01``, converted to UTC unix
                seconds. An ISO string without an offset is taken as UTC; fractional seconds
                are floored. A string of digits only is unix seconds. Parquet timestamp/date
                columns are accepted too.
==============  ===============================================================================

Every other column is a feature of the behavior's object (``category``, ``shop``, ``brand``,
...). In JSON Lines, features may also sit in a nested ``"features"`` object (a name given both
ways must have one value). Missing values (empty CSV cell, JSON ``null``, Parquet null) mean
"no such feature" for that behavior. Ids and feature values become strings: integers as
decimals, booleans as ``true``/``false``; nested lists/objects are rejected.

Formats, chosen by the ``format`` argument or else by the extension (``.gz`` allowed for the
text formats): CSV (``.csv``: header line, :mod:`csv` module, UTF-8 with or without BOM),
JSON Lines (``.jsonl``, ``.ndjson``, ``.json`` -- one object per line, not a JSON array),
Parquet (``.parquet``, ``.pq``; needs pyarrow).

Catalogs (optional side tables, same formats): ``object_id`` plus feature columns, and an
optional ``group`` column; records without a group (no such column, or an empty value) belong
to the default group (``catalog_group``, else the log's target group). They fill
``BehaviorLog.catalogs``; a feature on an event overrides the catalog for that event.

Errors -- missing required columns, non-integer timestamps, empty ids, malformed records --
raise ValueError naming the file, the line (CSV/JSONL, 1-based, header = line 1) or the row
(Parquet, 1-based data row) and the column.
"""

from __future__ import annotations

import calendar
import csv
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from ..behaviors import BehaviorLog, LogBuilder, RowBuffer, with_event_catalog
from ._io import numbered_lines, open_text, strip_gz

REQUIRED = ("user", "group", "action", "object_id", "timestamp")
CATALOG_REQUIRED = ("object_id",)
FORMATS = ("csv", "jsonl", "parquet")
_ALIASES = {"csv": "csv", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl",
            "parquet": "parquet", "pq": "parquet"}
_INT = re.compile(r"[+-]?\d+")


def detect_format(path: Path, format: str | None = None) -> str:
    """``format`` (csv, jsonl/json/ndjson, parquet/pq) or the one the file extension names."""
    key = format if format is not None else strip_gz(path).rsplit(".", 1)[-1]
    fmt = _ALIASES.get(key.lower().lstrip("."))
    if fmt is None:
        how = f"format {format!r}" if format is not None else "its extension"
        raise ValueError(f"{path}: cannot tell the format from {how}; use one of "
                         f".csv, .jsonl/.json, .parquet or pass format= {FORMATS}")
    return fmt


def _records(path: Path, fmt: str, required: Sequence[str],
             columns: Sequence[str] | None = None,
             header: bool = True) -> Iterator[tuple[str, dict]]:
    """(location, record) pairs; header-level checks of ``required`` for CSV and Parquet.
    CSV: ``columns`` names the columns in file order (instead of the header line, which is
    skipped when ``header``); ``header=False`` without ``columns`` is an error."""
    path = Path(path)
    if fmt != "csv" and (columns is not None or not header):
        raise ValueError(f"{path}: columns= and header=False apply to CSV only")
    if fmt == "csv":
        if columns is None and not header:
            raise ValueError(f"{path}: a CSV file without a header line needs columns=")
        with open_text(path, encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, fieldnames=list(columns) if columns else None)
            if columns is not None and header:
                next(reader, None)                     # the file's own header line
            fields = reader.fieldnames or []
            _check_columns(path, "columns" if columns else "line 1", fields, required)
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row:
                    raise ValueError(f"{path} {where}: more fields than the header has columns")
                yield where, {k: v for k, v in row.items() if v is not None and v != ""}
    elif fmt == "jsonl":
        for lineno, line in numbered_lines(path):
            where = f"line {lineno}"
            try:
                rec = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path} {where}: not valid JSON ({err})") from None
            if isinstance(rec, dict):
                _check_columns(path, where, rec, required)
                yield where, rec
                continue
            raise ValueError(f"{path} {where}: expected one JSON object per line, got "
                             f"{type(rec).__name__} (a JSON array is not read: use JSON Lines)")
    elif fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:  # pragma: no cover - pyarrow is pinned in requirements
            raise ImportError("reading Parquet needs pyarrow") from err
        pf = pq.ParquetFile(path)
        _check_columns(path, "schema", pf.schema_arrow.names, required)
        n = 0
        for batch in pf.iter_batches(batch_size=65536):        # chunked, never the whole file
            for rec in batch.to_pylist():
                n += 1
                yield f"row {n}", rec
    else:
        raise ValueError(f"{path}: unknown format {fmt!r}; use one of {FORMATS}")


def _check_columns(path: Path, where: str, present, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in present]
    if missing:
        raise ValueError(f"{path} {where}: missing required column(s) {', '.join(missing)}")


def _text(value, path: Path, where: str, col: str) -> str | None:
    """A cell as a string (None when missing)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueError(f"{path} {where}: column {col}: expected a scalar, got "
                     f"{type(value).__name__} {value!r}")


def _id(rec: dict, path: Path, where: str, col: str) -> str:
    v = _text(rec.get(col), path, where, col)
    if v is None or not v.strip():
        raise ValueError(f"{path} {where}: column {col}: empty id")
    return v


def parse_timestamp(value) -> int:
    """Unix seconds from an int, an integral float, a digit string, an ISO-8601 string or a
    datetime/date (naive = UTC). Raises ValueError (without location) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return calendar.timegm(value.utctimetuple())
    if isinstance(value, date):
        return calendar.timegm(value.timetuple())
    if isinstance(value, str):
        s = value.strip()
        if _INT.fullmatch(s):
            return int(s)
        if re.match(r"\d{4}-\d{2}-\d{2}", s):
            try:
                iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s     # "Z": Python < 3.11
                return parse_timestamp(datetime.fromisoformat(iso))
            except ValueError:
                pass
        raise ValueError(f"not an integer timestamp or ISO-8601 time: {value!r}")
    raise ValueError(f"not an integer timestamp: {value!r}")


def _features(rec: dict, exclude: Sequence[str], path: Path, where: str) -> dict[str, str]:
    feats: dict[str, str] = {}
    nested = rec.get("features")
    for k, v in rec.items():
        if k in exclude or (k == "features" and (isinstance(nested, dict) or v is None)):
            continue
        t = _text(v, path, where, k)
        if t is not None:
            feats[k] = t
    if isinstance(nested, dict):
        for k, v in nested.items():
            t = _text(v, path, where, f"features.{k}")
            if t is None:
                continue
            if k in feats and feats[k] != t:
                raise ValueError(f"{path} {where}: column {k}: given as {feats[k]!r} and as "
                                 f"features.{k} = {t!r}")
            feats[str(k)] = t
    return feats


def read_events(path: Path, builder: LogBuilder, format: str | None = None,
                columns: Sequence[str] | None = None, header: bool = True,
                default_group: str | None = None) -> None:
    """Every behavior of ``path`` into ``builder`` (chunk by chunk). ``default_group``: the
    group of a record without one (then the ``group`` column is optional)."""
    path = Path(path)
    required = [c for c in REQUIRED if c != "group" or default_group is None]
    fmt = detect_format(path, format)
    if fmt == "parquet" and columns is None and header:
        _read_parquet_columnar(path, builder, required, default_group)
        return
    _read_rows(_records(path, fmt, required, columns, header), path, builder, default_group)


def _read_rows(records, path: Path, builder: LogBuilder, default_group: str | None) -> None:
    """Record by record (text formats, and Parquet batches the columnar path cannot take)."""
    buf = RowBuffer(builder)
    intern: dict[str, str] = {}
    for where, rec in records:
        if default_group is not None and rec.get("group") in (None, ""):
            rec = {**rec, "group": default_group}
        user, group, action, oid = (intern.setdefault(v, v) for v in
                                    (_id(rec, path, where, c) for c in REQUIRED[:4]))
        ts_raw = rec.get("timestamp")
        if ts_raw is None or ts_raw == "":
            raise ValueError(f"{path} {where}: column timestamp: empty value")
        try:
            ts = parse_timestamp(ts_raw)
        except ValueError as err:
            raise ValueError(f"{path} {where}: column timestamp: {err}") from None
        buf.add(user, group, action, oid, ts, _features(rec, REQUIRED, path, where))
        if len(intern) > 1 << 20:
            intern.clear()
    buf.flush()


def _columnar_type(t) -> bool:
    """Arrow types whose cells the columnar path turns into the same strings as ``_text``:
    strings (plain or dictionary-encoded), integers (decimal) and booleans (true/false).
    Floats (``str(1.0)`` is ``"1.0"``), nested and temporal types go record by record."""
    import pyarrow as pa
    if pa.types.is_dictionary(t):
        t = t.value_type
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_boolean(t))


def _arrow_text(col):
    """A column as strings, as ``_text`` makes them; an empty string is null (missing)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    col = col.cast(pa.string())
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _first(mask, start: int) -> int:
    """The 1-based row number of the first true (or null) entry of ``mask``."""
    return start + int(np.flatnonzero(np.asarray(mask.fill_null(True)))[0]) + 1


def _arrow_ids(v, path: Path, start: int, col: str):
    """``v`` checked as ``_id`` checks each cell: no missing, empty or blank id."""
    import pyarrow.compute as pc
    bad = pc.or_kleene(pc.is_null(v), pc.equal(pc.utf8_trim_whitespace(v), ""))
    if pc.any(bad.fill_null(True)).as_py():
        raise ValueError(f"{path} row {_first(bad, start)}: column {col}: empty id")
    return v


def _arrow_features(cols: dict, exclude: Sequence[str], n: int) -> dict:
    """Every other column as a feature; a column missing in every row of the batch is left
    out, as the record-by-record path never sees it."""
    texts = ((k, _arrow_text(c)) for k, c in cols.items() if k not in exclude)
    return {k: v for k, v in texts if v.null_count < n}


def _read_parquet_columnar(path: Path, builder: LogBuilder, required: Sequence[str],
                           default_group: str | None, batch_size: int = 1 << 20) -> None:
    """A Parquet log column by column (a batch at a time, never the whole file): the same
    strings, errors and order as reading it record by record (``_records``), at memory and
    time proportional to the batch. A batch with a column of another type (a float,
    a nested ``features`` struct, a timestamp given as text or as a date) is read record by
    record instead."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    _check_columns(path, "schema", names, required)
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        n = batch.num_rows
        cols = {name: batch.column(name) for name in batch.schema.names}
        ts = cols.get("timestamp")
        simple = (ts is not None and pa.types.is_integer(ts.type) and "features" not in cols
                  and all(_columnar_type(c.type) for k, c in cols.items() if k != "timestamp"))
        if not simple:
            rows = ((f"row {start + i + 1}", rec) for i, rec in enumerate(batch.to_pylist()))
            _read_rows(rows, path, builder, default_group)
            start += n
            continue
        ids = {}
        for c in REQUIRED[:4]:
            if c not in cols:                         # no group column: the default group
                ids[c] = pa.array(np.full(n, default_group, dtype=object), pa.string())
                continue
            v = _arrow_text(cols[c])
            if c == "group" and default_group is not None:
                v = pc.fill_null(v, default_group)
            ids[c] = _arrow_ids(v, path, start, c)
        if ts.null_count:
            raise ValueError(f"{path} row {_first(pc.is_null(ts), start)}: column timestamp: "
                             f"empty value")
        feats = _arrow_features(cols, REQUIRED, n)
        builder.add_events(ids["user"], ids["group"], ids["action"], ids["object_id"],
                           np.asarray(ts.cast(pa.int64())), feats)
        start += n


def read_catalog(path: Path, builder: LogBuilder, group: str = "item",
                 format: str | None = None, chunk: int = 65536) -> None:
    """Catalog records into ``builder``: (group, object_id, features); ``group`` unless the
    record has one."""
    path = Path(path)
    if detect_format(path, format) == "parquet" and _read_catalog_columnar(path, builder, group):
        return
    rows: dict[str, tuple[list[str], dict[str, list]]] = {}

    def flush() -> None:
        for g, (objs, feats) in rows.items():
            builder.add_catalog(g, objs, feats)
        rows.clear()

    records = _records(path, detect_format(path, format), CATALOG_REQUIRED)
    for n, (where, rec) in enumerate(records, 1):
        oid = _id(rec, path, where, "object_id")
        g = _text(rec.get("group"), path, where, "group")
        g = group if g is None or not g.strip() else g
        objs, feats = rows.setdefault(g, ([], {}))
        for f, v in _features(rec, ("object_id", "group"), path, where).items():
            feats.setdefault(f, [None] * len(objs)).append(v)
        objs.append(oid)
        for col in feats.values():
            if len(col) < len(objs):
                col.append(None)
        if n % chunk == 0:
            flush()
    flush()


def _read_catalog_columnar(path: Path, builder: LogBuilder, group: str,
                           batch_size: int = 1 << 20) -> bool:
    """A Parquet catalog column by column, as ``read_catalog`` reads it record by record;
    False (nothing read) when a column has a type the columnar path does not take."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    _check_columns(path, "schema", pf.schema_arrow.names, CATALOG_REQUIRED)
    if not all(_columnar_type(f.type) for f in pf.schema_arrow):
        return False
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        n = batch.num_rows
        cols = {name: batch.column(name) for name in batch.schema.names}
        oid = _arrow_ids(_arrow_text(cols["object_id"]), path, start, "object_id")
        if "group" in cols:
            g = _arrow_text(cols["group"])
            g = pc.if_else(pc.equal(pc.utf8_trim_whitespace(g), ""),
                           pa.scalar(None, pa.string()), g)
            g = np.asarray(pc.fill_null(g, group).to_numpy(zero_copy_only=False), dtype=object)
        else:
            g = None
        feats = _arrow_features(cols, ("object_id", "group"), n)
        for name in ([group] if g is None else list(dict.fromkeys(g))):
            sel = None if g is None else pa.array(np.flatnonzero(g == name))
            take = (lambda a: a) if sel is None else (lambda a, s=sel: a.take(s))
            sub = {f: take(v) for f, v in feats.items()}
            builder.add_catalog(name, take(oid),
                                {f: v for f, v in sub.items() if v.null_count < len(v)})
        start += n
    return True


CatalogArg = str | Path | Sequence[str | Path] | Mapping[str, str | Path] | None


def read_behavior_log(path: Path, format: str | None = None, catalogs: CatalogArg = None,
                      catalog_format: str | None = None, name: str | None = None,
                      target_group: str = "item",
                      catalog_group: str | None = None,
                      columns: Sequence[str] | None = None, header: bool = True,
                      default_group: str | None = None,
                      catalog_from_events: bool = False) -> BehaviorLog:
    """Read a behavior log (CSV/JSONL/Parquet) and optional catalogs into a BehaviorLog.

    ``catalogs``: one path, a list of paths, or a mapping group -> path (the group a file's
    records belong to unless they carry a ``group`` column). ``catalog_format`` overrides the
    catalogs' extensions. ``name`` defaults to the log file's stem.

    ``columns`` / ``header``: a CSV log's column names in file order, for a file without a
    header line (``header=False``) or to override its header. ``default_group``: the group
    of behaviors without one (a log with no ``group`` column, e.g. items only).
    ``catalog_from_events``: objects' features given on events also form catalog rows
    (``behaviors.with_event_catalog``), so candidates carry them; an explicit catalog wins.
    """
    path = Path(path)
    if name is None:
        name = strip_gz(path).rsplit(".", 1)[0] or "log"
    builder = LogBuilder(name, target_group)
    read_events(path, builder, format, columns, header, default_group)
    if catalogs is None:
        pairs: list[tuple[str, Path]] = []
    elif isinstance(catalogs, Mapping):
        pairs = [(g, Path(p)) for g, p in catalogs.items()]
    elif isinstance(catalogs, (str, Path)):
        pairs = [(catalog_group or target_group, Path(catalogs))]
    else:
        pairs = [(catalog_group or target_group, Path(p)) for p in catalogs]
    for group_of_file, cpath in pairs:
        read_catalog(cpath, builder, group_of_file, catalog_format)
    log = builder.build()
    for f in log.values:
        log.feature_sources[f] = (f"the behavior log's column {f!r}"
                                  + (" (and its catalog rows)" if pairs else "")
                                  + (", also as catalog rows for candidates"
                                     if catalog_from_events else ""))
    return with_event_catalog(log) if catalog_from_events else log
