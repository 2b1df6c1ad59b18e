"""atrank.spark with a real local PySpark (local[2]): golden requests written as a
multi-partition Parquet dataset, scored with mapInPandas, every score checked against the
trainer's; bad rows get an error and the other rows still score."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import pytest
from conftest import PACKAGES, SRC, golden, ort_library, tolerance

from atrank.spark import request_schema

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (see requirements.txt)")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.spark

SCHEMA = request_schema(pa.int64())


def _behavior(b: dict) -> dict:
    features = b.get("features") or {}
    return {
        "item": b.get("item", b.get("id")),
        "category": b.get("category"),
        "action": b.get("action"),
        "timestamp": b["timestamp"],
        "group": b.get("group"),
        "features": sorted(features.items()) or None,
    }


def _bad_rows(gold: dict, first_id: int, max_candidates: int) -> dict[int, tuple[dict, str]]:
    """Rows that must fail, by id: (row, a piece of the expected error)."""
    r = gold["requests"][0]
    base = {"behaviors": [_behavior(b) for b in r["behaviors"]], "candidates": r["candidates"],
            "request_time": r["request_time"]}
    unknown_group = dict(base, behaviors=[dict(base["behaviors"][0], group="no-such-group")])
    null_time = dict(base, request_time=None)
    no_candidates = dict(base, candidates=None)
    too_many = dict(base, candidates=["x"] * (max_candidates + 1))
    null_item = dict(base, behaviors=[dict(base["behaviors"][0], item=None)])
    null_timestamp = dict(base, behaviors=[dict(base["behaviors"][0], timestamp=None)])
    rows = [
        (unknown_group,
         'ATRANK_ERROR_INVALID_ARGUMENT: invalid argument: behaviors[0].group "no-such-group"'),
        (null_time, "request_time: is missing"),
        (no_candidates, "ATRANK_ERROR_INVALID_ARGUMENT"),
        (too_many, f"this model's limit of {max_candidates}"),
        (null_item, "ATRANK_ERROR_NULL_ARGUMENT: behaviors[0].item is NULL"),
        (null_timestamp, "behaviors[0].timestamp"),
    ]
    return {first_id + i: ({"request_id": first_id + i, **row}, err)
            for i, (row, err) in enumerate(rows)}


def _write_dataset(package, out_dir, parts: int = 3):
    gold = golden(package)
    with open(package / "spec.json", encoding="utf-8") as f:
        max_candidates = json.load(f)["limits"]["max_candidates"]
    rows = [
        {"request_id": i, "behaviors": [_behavior(b) for b in r["behaviors"]],
         "candidates": r["candidates"], "request_time": r["request_time"]}
        for i, r in enumerate(gold["requests"])
    ]
    bad = _bad_rows(gold, 1000, max_candidates)
    # Bad rows go into the middle of the files, among good ones.
    for k, (row, _) in enumerate(bad.values()):
        rows.insert((k * 7 + 3) % len(rows), row)
    os.makedirs(out_dir)
    for p in range(parts):
        table = pa.Table.from_pylist(rows[p::parts], schema=SCHEMA)
        pq.write_table(table, os.path.join(out_dir, f"part-{p:05d}.parquet"))
    return gold, bad


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("atrank-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "8")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    # Ship the binding to the Python workers as a cluster would (--py-files).
    zpath = tmp_path_factory.mktemp("pyfiles") / "atrank.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for path in sorted((SRC / "atrank").glob("*.py")):
            z.write(path, f"atrank/{path.name}")
    session.sparkContext.addPyFile(str(zpath))
    yield session
    session.stop()


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_spark_scores_parquet_dataset(spark, tmp_path, name, backend):
    from atrank.spark import score_dataframe

    package = PACKAGES[name]
    gold, bad = _write_dataset(package, str(tmp_path / "requests"))
    df = spark.read.parquet(str(tmp_path / "requests"))
    assert df.rdd.getNumPartitions() >= 2, "the dataset should span several partitions"
    scored = score_dataframe(df, str(package), backend=backend, ort_library=ort_library(),
                             batch_size=4)
    out_dir = str(tmp_path / "scored")
    scored.write.parquet(out_dir)
    result = pq.read_table(out_dir).to_pylist()

    by_id = {row["request_id"]: row for row in result}
    assert len(result) == len(by_id) == len(gold["requests"]) + len(bad)
    for i, r in enumerate(gold["requests"]):
        tol = tolerance(gold, r)
        row = by_id[i]
        assert row["error"] is None, f"{r['name']}: {row['error']}"
        assert len(row["scores"]) == len(r["scores"])
        diff = max(abs(a - b) for a, b in zip(row["scores"], r["scores"]))
        assert diff <= tol, f"{name}/{r['name']} on {backend}: max |diff| {diff:.3g} > {tol}"
    for rid, (_, needle) in bad.items():
        row = by_id[rid]
        assert row["scores"] is None, rid
        assert row["error"] and needle in row["error"], (rid, row["error"])


def test_spark_package_shipped_with_addfile(spark, tmp_path):
    """The package given by name only, resolved through SparkFiles (as --files/--archives)."""
    from atrank.spark import score_dataframe

    package = PACKAGES["tiny"]
    spark.sparkContext.addFile(str(package), recursive=True)
    gold = golden(package)
    rows = [
        (i, [_behavior(b) for b in r["behaviors"]], r["candidates"], r["request_time"])
        for i, r in enumerate(gold["requests"][:6])
    ]
    schema = ("request_id long, behaviors array<struct<item:string, category:string, "
              "action:string, timestamp:long, group:string, features:map<string,string>>>, "
              "candidates array<string>, request_time long")
    df = spark.createDataFrame(rows, schema).repartition(2)
    result = score_dataframe(df, package.name).collect()
    assert len(result) == 6
    for row in result:
        assert row["error"] is None, row["error"]
        want = gold["requests"][row["request_id"]]
        assert (max(abs(a - b) for a, b in zip(row["scores"], want["scores"]))
                <= tolerance(gold, want))


def test_spark_missing_columns(spark):
    from atrank.spark import score_dataframe

    df = spark.createDataFrame([(1, ["i1"])], "request_id long, candidates array<string>")
    with pytest.raises(ValueError, match="behaviors"):
        score_dataframe(df, str(PACKAGES["tiny"]))
