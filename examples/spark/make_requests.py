"""Writes a package's golden requests as a Parquet requests dataset in the layout
`score_parquet.py` reads (one file per part), to try the Spark scorer on real requests.

    PYTHONPATH=bindings/python/src python examples/spark/make_requests.py \
        --golden PACKAGE/golden.json --out build/requests
"""

from __future__ import annotations

import argparse
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
from atrank.spark import request_schema

SCHEMA = request_schema()


def rows(golden: dict, repeat: int) -> list[dict]:
    out = []
    for k in range(repeat):
        for r in golden["requests"]:
            out.append(
                {
                    "request_id": r["name"] if repeat == 1 else f"{r['name']}#{k}",
                    "behaviors": [
                        {
                            "item": b.get("item", b.get("id")),
                            "category": b.get("category"),
                            "action": b.get("action"),
                            "timestamp": b["timestamp"],
                            "group": b.get("group"),
                            "features": sorted((b.get("features") or {}).items()) or None,
                        }
                        for b in r["behaviors"]
                    ],
                    "candidates": r["candidates"],
                    "request_time": r["request_time"],
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--golden", required=True, help="a package's golden.json")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--parts", type=int, default=2, help="number of Parquet files")
    ap.add_argument("--repeat", type=int, default=1, help="copies of each request")
    args = ap.parse_args()
    with open(args.golden, encoding="utf-8") as f:
        golden = json.load(f)
    data = rows(golden, args.repeat)
    os.makedirs(args.out, exist_ok=False)
    for p in range(args.parts):
        table = pa.Table.from_pylist(data[p::args.parts], schema=SCHEMA)
        pq.write_table(table, os.path.join(args.out, f"part-{p:05d}.parquet"))
    print(f"wrote {len(data)} requests in {args.parts} files to {args.out}")


if __name__ == "__main__":
    main()
