"""Scores a Parquet dataset of requests with an atrank model package on Spark.

Input columns: request_id, behaviors (array<struct<item, category, action, timestamp, group,
features>>), candidates (array<string>), request_time (bigint). Output: Parquet with
request_id, scores (array<float>), error (string, null when the row scored). See
docs/spark.md for the local and the cluster (spark-submit) commands.

    python examples/spark/score_parquet.py --package PACKAGE --input requests/ \\
        --output scored/ --master 'local[2]'
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from atrank.spark import score_dataframe
from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True,
                    help="model package directory: a path readable on every executor, or the "
                         "name it was shipped under (--archives pkg.tar.gz#NAME)")
    ap.add_argument("--input", required=True, help="Parquet file or directory of requests")
    ap.add_argument("--output", required=True, help="output directory (Parquet)")
    ap.add_argument("--master", help="Spark master, e.g. local[2] (default: spark-submit's)")
    ap.add_argument("--backend", choices=["tract", "ort"], default="tract")
    ap.add_argument("--lib", help="libatrank.so on the executors: a path or a --files name "
                                  "(default: $ATRANK_LIB there, then the loader's path)")
    ap.add_argument("--ort-lib", help="libonnxruntime.so.<version> for --backend ort: a path or "
                                      "a --files name (default: $ATRANK_ORT_LIB there)")
    ap.add_argument("--batch-size", type=int, default=256,
                    help="requests per atrank_model_score_batch call")
    ap.add_argument("--mode", default="errorifexists",
                    help="Spark save mode for the output (e.g. overwrite)")
    args = ap.parse_args()

    builder = SparkSession.builder.appName("atrank-score-parquet")
    if args.master and args.master.startswith("local"):
        # Local workers run this interpreter (on a cluster, spark.pyspark.python decides).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if args.master:
        builder = builder.master(args.master).config("spark.ui.enabled", "false")
    spark = builder.getOrCreate()
    try:
        started = time.monotonic()
        requests = spark.read.parquet(args.input)
        scored = score_dataframe(
            requests,
            args.package,
            backend=args.backend,
            lib_path=args.lib,
            ort_library=args.ort_lib,
            batch_size=args.batch_size,
        )
        scored.write.mode(args.mode).parquet(args.output)
        out = spark.read.parquet(args.output)
        summary = out.agg(
            F.count("*").alias("rows"),
            F.count("error").alias("errors"),
            F.sum(F.size("scores")).alias("scores"),
        ).first()
        seconds = time.monotonic() - started
        print(f"scored {summary['rows']} requests ({summary['scores'] or 0} candidate scores, "
              f"{summary['errors']} rows with an error) in {seconds:.1f} s -> {args.output}")
        for row in out.where(F.col("error").isNotNull()).limit(5).collect():
            print(f"  error in {row['request_id']}: {row['error']}", file=sys.stderr)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
