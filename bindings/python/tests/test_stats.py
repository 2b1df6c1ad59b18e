"""Model.stats() and Model.info() on the committed packages: counts that agree with the calls made
here (failures under the C library's codes, threads), and an info that agrees with the package
read here (spec.json, vocabulary line counts, hashlib's SHA-256 of the graph)."""

from __future__ import annotations

import hashlib
import json
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import PACKAGES, golden

import atrank


def _request(r: dict) -> dict:
    return {k: r[k] for k in ("behaviors", "candidates", "request_time")}


def test_stats_count_calls(package, backend):
    r = _request(golden(package)["requests"][0])
    with atrank.Model(package, backend=backend) as model:
        assert model.stats().score.calls == 0
        n = 6
        for _ in range(n):
            model.score(**r)
        with pytest.raises(atrank.InvalidUtf8Error):
            model.score(r["behaviors"], [b"\xff\xfe"], r["request_time"])
        for _ in range(2):
            model.score(**r, user_key="user-1")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: model.score(**r), range(40)))
        s = model.stats()
    assert s.score.calls == n + 1 + 40
    assert s.score.succeeded == n + 40
    assert s.score.failures[atrank.Code.INVALID_UTF8] == 1
    assert s.score.failures_by_code == {"INVALID_UTF8": 1}
    assert s.score.latency_sum_ns > 0
    assert s.score_cached.calls == 2 and s.score_cached.failed == 0
    assert s.score_batch.calls == 0
    spec = json.loads((package / "spec.json").read_text(encoding="utf-8"))
    split = "encoder" in spec["graph"]  # split encoder/scorer graphs: every format-3 package
    assert (s.cache_hits, s.cache_misses) == ((1, 1) if split else (0, 0))
    if backend == "tract":
        assert s.tract_plans_built >= 1 and s.ort_sessions == 0
    else:
        assert s.ort_sessions >= 1 and s.ort_sessions_busy == 0
        assert s.tract_symbolic_runs + s.tract_concrete_runs == 0


def _cpu_has_avx2_fma() -> bool:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line.split() for line in f if line.startswith("flags")), [])
    return "avx2" in flags and "fma" in flags


def test_tract_fusion_is_counted(package, backend):
    """``tract_fusion={"layer_norm"}`` fuses the layer norms (every committed fixture's and the
    fresh package's, on a CPU with the kernels' AVX2 and FMA) and no attention; ``set()`` fuses
    nothing; ONNX Runtime counts 0. The scores stay within the golden tolerance."""
    from conftest import tolerance

    gold = golden(package)
    with atrank.Model(package, backend, tract_fusion={"layer_norm"}) as ln, \
            atrank.Model(package, backend, tract_fusion=set()) as none:
        s, s0 = ln.stats(), none.stats()
        for r in gold["requests"]:
            got = ln.score(r["behaviors"], r["candidates"], r["request_time"])
            assert max(abs(float(g) - w) for g, w in zip(got, r["scores"])) <= tolerance(gold, r)
    assert (s0.tract_fused_attention, s0.tract_fused_layer_norm) == (0, 0)
    assert s.tract_fused_attention == 0
    if backend == "tract" and _cpu_has_avx2_fma():
        assert s.tract_fused_layer_norm >= 2
    elif backend != "tract":
        assert s.tract_fused_layer_norm == 0
    with pytest.raises(atrank.InvalidArgumentError, match="tract_fusion"):
        atrank.Model(package, backend, tract_fusion={"softmax"})


def test_latency_bounds():
    bounds = atrank.latency_bounds()
    assert len(bounds) == 14
    assert bounds[0] == 50_000 and bounds[-2] == 1_000_000_000 and bounds[-1] == 2**64 - 1
    assert list(bounds) == sorted(set(bounds))


def _atv_keys(path) -> int:
    """The key count n of a format-3 atv file (docs/package-format-v3.md), from its header,
    after checking the magic and that the file is exactly 32 + 8 (n + 1) + key_bytes bytes."""
    data = path.read_bytes()
    assert len(data) >= 40 and data[:8] == b"ATRVOC01", f"{path} is not an atv file"
    n, key_bytes = struct.unpack_from("<QQ", data, 8)
    assert 32 + 8 * (n + 1) + key_bytes == len(data), f"{path}: header does not match its size"
    return n


def test_info_matches_the_package(package):
    spec = json.loads((package / "spec.json").read_text(encoding="utf-8"))
    with atrank.Model(package) as model:
        info = model.info()
    assert info.name == spec.get("name", "")
    assert info.spec_version == spec["spec_version"]
    assert info.created_by == spec.get("created_by", "")
    mapping = spec.get("input_mapping")
    assert (json.loads(info.input_mapping) if info.input_mapping else None) == mapping
    digest = hashlib.sha256((package / spec["graph"]["file"]).read_bytes()).hexdigest()
    assert info.graph_sha256 == digest
    assert info.serving == "tract"
    assert info.max_candidates == spec["limits"]["max_candidates"]
    assert info.max_behaviors == spec["limits"]["max_behaviors"]
    assert info.max_history == {g["name"]: g["max_history"] for g in spec["groups"]}
    tables = spec["tables"]
    assert set(info.vocab_sizes) == set(tables)
    for table, size in info.vocab_sizes.items():
        keys = _atv_keys(package / tables[table]["vocab"])
        assert size == keys == tables[table]["size"], table


def test_closed_model_refuses_stats():
    model = atrank.Model(PACKAGES["tiny"])
    model.close()
    with pytest.raises(ValueError):
        model.stats()
    with pytest.raises(ValueError):
        model.info()
