"""Shared preprocessing vectors: raw requests and the exact tensors they must become.

``python -m atrank_export.vectors --out tests/fixtures/preprocess-vectors.json`` writes, for the
committed format-3 fixture packages (single-group ``tests/fixtures/tiny`` and multi-group
``tests/fixtures/tiny-multigroup``, whose tables have hashed buckets), every golden request
plus hand-made edge cases (hashed buckets, catalog columns, caller features over the catalog,
unknowns, truncation, future behaviors, empty groups, ties), each with the int64 tensors the
exporter's reference preprocessing (``preprocess.Preprocessor.from_package``) produces. The exporter's tests
check that this Python code still produces them; the Rust runtime's tests check that its
independent implementation produces the same tensors. Training and serving cannot drift apart
without one of the two failing.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from .preprocess import Preprocessor

FORMAT = "atrank-preprocess-vectors"


def _edge_cases(requests: list[dict], spec: dict) -> list[dict]:
    base = copy.deepcopy(next(r for r in requests if len(r["behaviors"]) >= 2))
    t = base["request_time"]
    first = base["behaviors"][0]
    target = spec["target_group"]
    extra = []
    # Equal timestamps in reverse caller order, far-past and future behaviors, an empty id.
    ties = [dict(first, timestamp=t - 3600, action=a) for a in
            (spec["actions"][0], spec["actions"][-1], "never")]
    extra.append({"name": "vectors-ties-keep-caller-order", "request_time": t,
                  "behaviors": ties + base["behaviors"][:2], "candidates": base["candidates"][:3]})
    extra.append({"name": "vectors-far-past-and-future", "request_time": t,
                  "behaviors": [dict(first, timestamp=-(10 ** 12)),
                                dict(first, timestamp=t + 10 ** 9),
                                dict(first, timestamp=t - 1)],
                  "candidates": base["candidates"][:2]})
    extra.append({"name": "vectors-empty-id-and-unicode", "request_time": t,
                  "behaviors": [dict(first, id=""), dict(first, id="é😀")],
                  "candidates": ["", "é😀", base["candidates"][0]]})
    # unseen ids and feature values: hashed buckets where the table has them, else 0; a
    # caller feature (hashed too) over the catalog's column; a missing one from the catalog
    unseen = [f"vectors-unseen-{k}" for k in range(6)]
    feats = [f["name"] for g in spec["groups"] if g["name"] == target
             for f in g["features"]][1:]
    extra.append({"name": "vectors-hashed-buckets-and-catalog-columns", "request_time": t,
                  "behaviors": [{"group": target, "id": u, "action": spec["actions"][0],
                                 "timestamp": t - 60 * k,
                                 **({"features": {feats[0]: unseen[-1 - k]}}
                                    if feats and k % 2 else {})}
                                for k, u in enumerate(unseen)]
                  + [dict(b, features={f: "vectors-unseen-value" for f in feats[:1]})
                     for b in base["behaviors"] if b.get("group", target) == target][:1],
                  "candidates": [*unseen, *base["candidates"][:3]]})
    # every group empty but one, and groups without any behavior at all
    for g in spec["groups"]:
        mine = [b for b in base["behaviors"] if b.get("group", target) == g["name"]]
        extra.append({"name": f"vectors-only-{g['name']}", "request_time": t,
                      "behaviors": mine, "candidates": base["candidates"][:2]})
    return extra


def _tensors(batch: dict) -> dict:
    return {k: {"shape": list(v.shape), "data": [int(x) for x in v.ravel()]}
            for k, v in batch.items()}


def build(root: Path) -> dict:
    out = {"format": FORMAT, "version": 3, "vectors": []}
    for name in ("tiny", "tiny-multigroup"):
        pkg = root / "tests" / "fixtures" / name
        spec = json.loads((pkg / "spec.json").read_text(encoding="utf-8"))
        golden = json.loads((pkg / "golden.json").read_text(encoding="utf-8"))["requests"]
        requests = [{k: r[k] for k in ("name", "request_time", "behaviors", "candidates")}
                    for r in golden] + _edge_cases(golden, spec)
        pre = Preprocessor.from_package(pkg)
        for r in requests:
            out["vectors"].append({"package": f"tests/fixtures/{name}", "request": r,
                                   "tensors": _tensors(pre.batch([r]))})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="atrank_export.vectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."), help="repository root")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    a.out.write_text(json.dumps(build(a.root), indent=None, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
