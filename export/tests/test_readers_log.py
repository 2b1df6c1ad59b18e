import csv
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atrank_export.readers import read_behavior_log
from atrank_export.readers.behavior_log import detect_format, parse_timestamp

T0 = 1_700_000_000                      # 2023-11-14T22:13:20Z
COLS = ["user", "group", "action", "object_id", "timestamp", "category", "shop", "brand"]
ROWS = [  # timestamps: ints as digit strings, and ISO-8601 strings in three spellings
    ["u1", "item", "click", "i1", str(T0), "phones", "s1", "acme"],
    ["u1", "query", "search", "q:red phone", "2023-11-14T22:13:30Z", "", "", ""],
    ["u1", "item", "buy", "i2", "2023-11-14 23:13:40+01:00", "cases", "s2", ""],
    ["u1", "coupon", "receive", "c9", str(T0 + 50), "phones", "s1", ""],
    ["u2", "item", "click", "i2", "2023-11-15", "", "", "zeta, inc."],
    ["u2", "item", "click", "i1", str(T0 + 86400), "phones", "", ""],
    ["u2", "item", "buy", "i3", str(T0 + 90000), "chargers", "s1", "acme"],
]
CATALOG = [["group", "object_id", "category", "shop"],
           ["item", "i1", "phones", "s1"], ["item", "i3", "chargers", "s1"],
           ["coupon", "c9", "phones", ""], ["", "i4", "cables", "s2"]]


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def as_records(rows, header=COLS):
    return [dict(zip(header, r)) for r in rows]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_all(tmp_path):
    """The same log (and catalog) in CSV, JSONL (typed, part nested) and Parquet."""
    csv_log = write_csv(tmp_path / "events.csv", [COLS, *ROWS])
    recs = []
    for k, r in enumerate(as_records(ROWS)):
        rec = {c: (v if v != "" else None) for c, v in r.items()}
        if rec["timestamp"].isdigit():
            rec["timestamp"] = int(rec["timestamp"])
        if k % 2:               # features nested for odd records, top-level for even ones
            rec["features"] = {c: rec.pop(c) for c in ("category", "shop", "brand")}
        recs.append(rec)
    jsonl_log = write_jsonl(tmp_path / "events.jsonl", recs)
    pq_log = tmp_path / "events.parquet"
    table = pa.Table.from_pylist([{c: (v if v != "" else None) for c, v in r.items()}
                                  for r in as_records(ROWS)])
    pq.write_table(table, pq_log)
    cats = {"csv": write_csv(tmp_path / "catalog.csv", CATALOG)}
    crecs = [{k: v for k, v in r.items() if v != ""} for r in as_records(CATALOG[1:], CATALOG[0])]
    cats["jsonl"] = write_jsonl(tmp_path / "catalog.jsonl", crecs)
    cats["parquet"] = tmp_path / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist([{c: (v or None) for c, v in r.items()}
                                         for r in as_records(CATALOG[1:], CATALOG[0])]),
                   cats["parquet"])
    return {"csv": csv_log, "jsonl": jsonl_log, "parquet": pq_log}, cats


def test_formats_give_the_same_log(tmp_path):
    logs, cats = write_all(tmp_path)
    got = {fmt: read_behavior_log(logs[fmt], catalogs=cats[fmt], name="x") for fmt in logs}
    assert got["csv"] == got["jsonl"] == got["parquet"]
    log = got["csv"]
    assert log.groups == ["item", "query", "coupon"]        # first appearance
    assert log.timestamp[:3].tolist() == [T0, T0 + 10, T0 + 20]
    assert log.timestamp[4] == 1_700_006_400     # date-only ISO = midnight UTC
    assert log.event(0)["features"] == {"category": "phones", "shop": "s1", "brand": "acme"}
    assert log.event(1)["features"] == {}
    assert log.event(4)["features"] == {"brand": "zeta, inc."}
    assert log.catalog_dict("item") == {"i1": {"category": "phones", "shop": "s1"},
                                    "i3": {"category": "chargers", "shop": "s1"},
                                    "i4": {"category": "cables", "shop": "s2"}}
    assert log.catalog_dict("coupon") == {"c9": {"category": "phones"}}
    assert log.feature_names("item") == ["brand", "category", "shop"]
    # the default name is the file's stem
    assert read_behavior_log(logs["csv"]).name == "events"


def test_sequences_from_log(tmp_path):
    logs, cats = write_all(tmp_path)
    log = read_behavior_log(logs["jsonl"], catalogs=cats["jsonl"])
    assert log.sequence("u1") == ["i1", "i2"]
    assert log.sequence("u2") == ["i2", "i1", "i3"]
    assert log.sequence("u1", "query") == ["q:red phone"]
    assert {"buy", "click"} <= set(log.actions)


def test_chunks_and_ties_keep_file_order(tmp_path):
    """Many rows (several RowBuffer chunks), equal timestamps: rows keep file order."""
    rows = [COLS[:5]] + [[f"u{k % 3}", "item", "click", f"i{k}", str(T0 + k // 10)]
                         for k in range(250)]
    log = read_behavior_log(write_csv(tmp_path / "many.csv", rows))
    from atrank_export.behaviors import RowBuffer

    assert RowBuffer.__init__.__defaults__ == (65536,)
    assert [log.event(k)["id"] for k in range(250)] == [f"i{k}" for k in range(250)]
    assert log.sequence("u1") == [f"i{k}" for k in range(1, 250, 3)]


def test_format_detection_and_gzip_and_explicit_format(tmp_path):
    import gzip

    logs, _ = write_all(tmp_path)
    assert detect_format(tmp_path / "a.JSON") == "jsonl"
    assert detect_format(tmp_path / "a.csv.gz") == "csv"
    assert detect_format(tmp_path / "a.txt", "ndjson") == "jsonl"
    with pytest.raises(ValueError, match="format"):
        detect_format(tmp_path / "a.txt")
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(logs["jsonl"].read_bytes()))
    odd = tmp_path / "events.dat"
    odd.write_bytes(logs["csv"].read_bytes())
    base = read_behavior_log(logs["csv"], name="x")
    assert read_behavior_log(gz, name="x") == base
    assert read_behavior_log(odd, format="csv", name="x") == base


def test_parse_timestamp():
    assert parse_timestamp(5) == 5 and parse_timestamp("-3") == -3 and parse_timestamp(7.0) == 7
    assert parse_timestamp("2023-11-14T22:13:20.999Z") == T0          # floored
    assert parse_timestamp("2023-11-14T22:13:20") == T0               # naive = UTC
    assert parse_timestamp(datetime(2023, 11, 14, 22, 13, 20)) == T0
    assert parse_timestamp(datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)) == T0
    for bad in ("1.5", 1.5, True, "yesterday", "2023-13-45", None):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_parquet_typed_timestamp_columns(tmp_path):
    base = {"user": ["u"], "group": ["item"], "action": ["a"], "object_id": ["i"]}
    for ts in (pa.array([T0], pa.int64()),
               pa.array([datetime(2023, 11, 14, 22, 13, 20)], pa.timestamp("s")),
               pa.array([datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)],
                        pa.timestamp("ms", tz="UTC"))):
        pq.write_table(pa.table({**base, "timestamp": ts}), tmp_path / "t.parquet")
        assert read_behavior_log(tmp_path / "t.parquet").timestamp.tolist() == [T0]


BAD = [  # (rows, expected message pieces for csv/jsonl, for parquet)
    ("missing", [["user", "group", "action", "object_id", "shop"], ["u", "item", "a", "i", "s"]],
     "missing required column(s) timestamp"),
    ("float ts", [COLS[:5], ["u", "item", "a", "i", "5"], ["u", "item", "a", "i", "1.5"]],
     "column timestamp: not an integer"),
    ("empty user", [COLS[:5], ["u", "item", "a", "i", "5"], ["", "item", "a", "i", "6"]],
     "column user: empty id"),
    ("empty object", [COLS[:5], ["u", "item", "a", "", "5"]], "column object_id: empty id"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("case,rows,msg", BAD, ids=[b[0] for b in BAD])
def test_validation_errors_name_file_line_and_column(tmp_path, fmt, case, rows, msg):
    path = tmp_path / f"bad.{fmt}"
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "jsonl":
        write_jsonl(path, [{k: (float(v) if k == "timestamp" and "." in v else v)
                            for k, v in r.items()} for r in as_records(rows[1:], rows[0])])
    else:
        pq.write_table(pa.Table.from_pylist(as_records(rows[1:], rows[0])), path)
    where = {"csv": f"line {len(rows)}", "jsonl": f"line {len(rows) - 1}",
             "parquet": f"row {len(rows) - 1}"}[fmt]
    if case == "missing":
        where = {"csv": "line 1", "jsonl": "line 1", "parquet": "schema"}[fmt]
    with pytest.raises(ValueError) as err:
        read_behavior_log(path)
    text = str(err.value)
    assert str(path) in text and where in text and msg in text, text


def test_malformed_records(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"user": "u", "group": "g", "action": "a", "object_id": "o", '
                 '"timestamp": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"x\.jsonl line 2: expected one JSON object"):
        read_behavior_log(p)
    p.write_text('{"user": "u", "group": "g", "action": "a", "object_id": "o", "timestamp": 1,'
                 ' "category": "c", "features": {"category": "d"}}\n')
    with pytest.raises(ValueError, match="line 1: column category"):
        read_behavior_log(p)
    p.write_text('{"user": "u", "group": "g", "action": "a", "object_id": "o", "timestamp": 1,'
                 ' "tags": ["a", "b"]}\n')
    with pytest.raises(ValueError, match="line 1: column tags: expected a scalar"):
        read_behavior_log(p)
    c = write_csv(tmp_path / "x.csv", [COLS[:5], ["u", "g", "a", "o", "1", "extra"]])
    with pytest.raises(ValueError, match=r"x\.csv line 2: more fields"):
        read_behavior_log(c)
    cat = write_csv(tmp_path / "cat.csv", [["group", "category"], ["item", "x"]])
    with pytest.raises(ValueError, match=r"cat\.csv line 1: missing required column\(s\) "
                                         "object_id"):
        read_behavior_log(write_csv(tmp_path / "ok.csv", [COLS[:5], ["u", "g", "a", "o", "1"]]),
                          catalogs=cat)


def typed_log():
    """A log a pipeline would write as Parquet: integer ids and times, a dictionary-encoded
    action, a boolean and an integer feature, missing values, a feature column missing in
    every row, and no group column (one default group)."""
    n = 11
    return pa.table({
        "user": pa.array([f"u{k % 3}" for k in range(n)]),
        "action": pa.array(["click", "buy"] * 5 + ["click"]).dictionary_encode(),
        "object_id": pa.array([100 + (k * 7) % 5 for k in range(n)], pa.int64()),
        "timestamp": pa.array([T0 + 60 * k for k in range(n)], pa.int32()),
        "category": pa.array([None if k % 4 == 0 else f"c{k % 3}" for k in range(n)]),
        "promoted": pa.array([k % 2 == 0 for k in range(n)]),
        "shop": pa.array([k // 4 for k in range(n)], pa.uint16()),
        "never": pa.array([None] * n, pa.string()),
    })


def test_parquet_columnar_path_reads_what_the_record_path_reads(tmp_path):
    """The columnar Parquet path (int timestamps) against the same rows read record by record
    as CSV, with batches smaller than the file so that codes continue across batches."""
    from atrank_export.behaviors import LogBuilder
    from atrank_export.readers.behavior_log import REQUIRED, _read_parquet_columnar
    table = typed_log()
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=4)
    rows = table.to_pylist()
    text = [[("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
             for v in r.values()] for r in rows]
    write_csv(tmp_path / "t.csv", [table.column_names, *text])
    want = read_behavior_log(tmp_path / "t.csv", name="t", default_group="item")
    got = read_behavior_log(tmp_path / "t.parquet", name="t", default_group="item")
    assert got == want
    assert got.objects["item"][:2] == ["100", "102"]
    assert got.values["promoted"] == ["true", "false"] and "never" not in got.values
    builder = LogBuilder("t", "item")
    _read_parquet_columnar(tmp_path / "t.parquet", builder,
                           [c for c in REQUIRED if c != "group"], "item", batch_size=3)
    alone = builder.build()
    alone.feature_sources = want.feature_sources        # set by read_behavior_log
    assert alone == want


def test_parquet_columnar_catalog_matches_csv(tmp_path):
    cat = pa.table({"object_id": pa.array([5, 6, 7, 8], pa.int64()),
                    "group": pa.array(["item", "", None, "coupon"]),
                    "category": pa.array(["a", None, "b", "c"]).dictionary_encode(),
                    "rank": pa.array([1, 2, None, 4], pa.int8())})
    pq.write_table(cat, tmp_path / "c.parquet")
    write_csv(tmp_path / "c.csv", [cat.column_names, ["5", "item", "a", "1"], ["6", "", "", "2"],
                                    ["7", "", "b", ""], ["8", "coupon", "c", "4"]])
    log = write_csv(tmp_path / "e.csv", [COLS[:5], ["u", "item", "a", "5", "1"]])
    want = read_behavior_log(log, catalogs=tmp_path / "c.csv", name="x")
    got = read_behavior_log(log, catalogs=tmp_path / "c.parquet", name="x")
    assert got == want and got.catalogs["item"].object.size == 3


@pytest.mark.parametrize("column,value,msg", [
    ("user", "", "row 4: column user: empty id"),
    ("object_id", None, "row 4: column object_id: empty id"),
    ("action", "  ", "row 4: column action: empty id"),
    ("timestamp", None, "row 4: column timestamp: empty value"),
])
def test_parquet_columnar_errors_name_the_row(tmp_path, column, value, msg):
    table = typed_log()
    col = table.column(column).to_pylist()
    col[3] = value
    if column == "object_id" or column == "timestamp":
        arr = pa.array(col, table.schema.field(column).type)
    else:
        arr = pa.array(col, pa.string())
    table = table.set_column(table.column_names.index(column), column, arr)
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=msg):
        read_behavior_log(tmp_path / "bad.parquet", default_group="item")
