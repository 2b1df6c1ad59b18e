"""The committed preprocessing vectors still come out of the exporter's reference code (the
Rust runtime checks the same file against its own implementation)."""

import json
from pathlib import Path

from atrank_export.vectors import build

ROOT = Path(__file__).resolve().parents[2]


def test_reference_preprocessing_reproduces_the_committed_vectors():
    committed = json.loads((ROOT / "tests/fixtures/preprocess-vectors.json").read_text())
    fresh = build(ROOT)
    assert len(committed["vectors"]) == len(fresh["vectors"]) >= 50
    for want, got in zip(committed["vectors"], fresh["vectors"]):
        assert want["request"] == got["request"]
        assert want["tensors"] == got["tensors"], want["request"]["name"]
    names = {v["request"]["name"] for v in committed["vectors"]}
    assert {"vectors-ties-keep-caller-order", "vectors-far-past-and-future",
            "vectors-empty-id-and-unicode", "empty-history", "only-coupon",
            "vectors-hashed-buckets-and-catalog-columns", "vectors-only-query"} <= names
    assert committed["version"] == 3
