"""Shared preprocessing vectors: raw requests and the exact tensors they must become.

``python -m atrank_export.vectors --out tests/fixtures/preprocess-vectors.json`` writes, for the
committed fixture packages (format 1 ``tests/fixtures/tiny`` and format 2
``tests/fixtures/tiny-multigroup``), every golden request plus hand-made edge cases, each with
the int64 tensors the exporter's reference preprocessing produces (``preprocess.Preprocessor``
for format 1, ``export_multigroup.MultiGroupPreprocessor`` for format 2). The exporter's tests
check that this Python code still produces them; the Rust runtime's tests check that its
independent implementation produces the same tensors. Training and serving cannot drift apart
without one of the two failing.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from .export_multigroup import MultiGroupPreprocessor
from .preprocess import Preprocessor, pad_batch

FORMAT = "atrank-preprocess-vectors"


def _edge_cases(requests: list[dict], v2: bool) -> list[dict]:
    base = copy.deepcopy(next(r for r in requests if r["behaviors"]))
    t = base["request_time"]
    first = base["behaviors"][0]
    extra = []
    # Equal timestamps in reverse caller order, far-past and future behaviors, an empty id.
    ties = [dict(first, timestamp=t - 3600) for _ in range(3)]
    for k, b in enumerate(ties):
        b["action"] = ["like", "other", "never"][k] if not v2 else b.get("action")
    extra.append({"name": "vectors-ties-keep-caller-order", "request_time": t,
                  "behaviors": ties + base["behaviors"][:2], "candidates": base["candidates"][:3]})
    extra.append({"name": "vectors-far-past-and-future", "request_time": t,
                  "behaviors": [dict(first, timestamp=-(10 ** 12)),
                                dict(first, timestamp=t + 10 ** 9),
                                dict(first, timestamp=t - 1)],
                  "candidates": base["candidates"][:2]})
    key = "id" if v2 else "item"
    extra.append({"name": "vectors-empty-id-and-unicode", "request_time": t,
                  "behaviors": [dict(first, **{key: ""}), dict(first, **{key: "é😀"})],
                  "candidates": ["", "é😀", base["candidates"][0]]})
    return extra


def _tensors(batch: dict) -> dict:
    return {k: {"shape": list(v.shape), "data": [int(x) for x in v.ravel()]}
            for k, v in batch.items()}


def build(root: Path) -> dict:
    out = {"format": FORMAT, "version": 1, "vectors": []}
    for name in ("tiny", "tiny-multigroup"):
        pkg = root / "tests" / "fixtures" / name
        spec = json.loads((pkg / "spec.json").read_text(encoding="utf-8"))
        golden = json.loads((pkg / "golden.json").read_text(encoding="utf-8"))["requests"]
        v2 = spec["spec_version"] == 2
        requests = [{k: r[k] for k in ("name", "request_time", "behaviors", "candidates")}
                    for r in golden] + _edge_cases(golden, v2)
        if v2:
            pre = MultiGroupPreprocessor.from_package(pkg)
            batch_of = pre.batch
        else:
            pre1 = Preprocessor.from_package(pkg)

            def batch_of(reqs, pre1=pre1):
                return pad_batch([pre1.encode_request(r) for r in reqs])
        for r in requests:
            out["vectors"].append({"package": f"tests/fixtures/{name}", "request": r,
                                   "tensors": _tensors(batch_of([r]))})
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
