"""The binding on the committed packages: golden scores (from the trainer) on both backends,
every way in (score, score_cached, score_batch native and one by one), the error paths with
the C library's codes and messages, and concurrent use from threads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import PACKAGES, SRC, golden, ort_library, tolerance

import atrank

TINY = PACKAGES["tiny"]
MULTI = PACKAGES["tiny-multigroup"]


def _request(r: dict) -> dict:
    return {k: r[k] for k in ("behaviors", "candidates", "request_time")}


def _check_scores(got, want, tol, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    diff = float(np.max(np.abs(got - want)))
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > {tol}"


def _max_candidates(package) -> int:
    with open(package / "spec.json", encoding="utf-8") as f:
        return int(json.load(f)["limits"]["max_candidates"])


# ---------- golden scores ----------


def test_golden_score(package, backend):
    gold = golden(package)
    with atrank.Model(package, backend) as model:
        assert model.backend == backend
        assert model.serving == ("tract" if backend == "tract" else "ort-cpu")
        assert model.max_candidates == _max_candidates(package)
        for r in gold["requests"]:
            scores = model.score(r["behaviors"], r["candidates"], r["request_time"])
            assert scores.dtype == np.float32
            _check_scores(scores, r["scores"], tolerance(gold, r), f"{package.name}/{r['name']}")


def test_golden_score_cached(package, backend):
    gold = golden(package)
    with atrank.Model(package, backend, cache_capacity=8) as model:
        for _ in range(2):  # second pass hits the cache where the package has split graphs
            for r in gold["requests"]:
                scores = model.score(
                    r["behaviors"], r["candidates"], r["request_time"], user_key=r["name"]
                )
                _check_scores(scores, r["scores"], tolerance(gold, r), r["name"])


@pytest.mark.parametrize("native", [True, False], ids=["native-batch", "one-by-one"])
def test_golden_score_batch(package, backend, native, monkeypatch):
    gold = golden(package)
    with atrank.Model(package, backend) as model:
        if native:
            assert model._lib.has_score_batch, "the library lacks atrank_model_score_batch"
        else:
            monkeypatch.setattr(model._lib, "has_score_batch", False)
        results = model.score_batch(_request(r) for r in gold["requests"])
        assert len(results) == len(gold["requests"])
        for r, scores in zip(gold["requests"], results):
            _check_scores(scores, r["scores"], tolerance(gold, r), r["name"])


def test_batch_rows(package, backend):
    """``batch_rows=1`` runs every request of a batch alone, through the same graph and shapes
    as ``score``: the same floats. ``batch_rows=0`` (no row limit) stays within the golden
    tolerance; a negative count is refused."""
    gold = golden(package)
    reqs = [_request(r) for r in gold["requests"]]
    with atrank.Model(package, backend, batch_rows=1) as alone, \
            atrank.Model(package, backend, batch_rows=0) as together:
        got1 = alone.score_batch(reqs)
        got0 = together.score_batch(reqs)
        for r, q, s1, s0 in zip(gold["requests"], reqs, got1, got0):
            want = alone.score(q["behaviors"], q["candidates"], q["request_time"])
            assert np.array_equal(s1, want), r["name"]
            _check_scores(s0, r["scores"], tolerance(gold, r), r["name"])
    with pytest.raises(atrank.InvalidArgumentError, match="batch_rows"):
        atrank.Model(package, backend, batch_rows=-1)


def test_tuples_and_namedtuples_equal_dicts(backend):
    gold = golden(MULTI)
    r = gold["requests"][0]
    as_tuples = [
        (b["id"], None, b.get("action"), b["timestamp"], b.get("group"), b.get("features"))
        for b in r["behaviors"]
    ]
    as_named = [
        atrank.Behavior(b["id"], None, b.get("action"), b["timestamp"], b.get("group"),
                        sorted((b.get("features") or {}).items()))
        for b in r["behaviors"]
    ]
    with atrank.Model(MULTI, backend) as model:
        for form in (as_tuples, as_named, np.array(r["behaviors"], dtype=object)):
            scores = model.score(form, np.array(r["candidates"]), np.int64(r["request_time"]))
            _check_scores(scores, r["scores"], tolerance(gold, r), "tuple form")
        req = atrank.Request(as_named, r["candidates"], r["request_time"])
        _check_scores(model.score_batch([req])[0], r["scores"], tolerance(gold, r), "Request")


def test_empty_history_is_valid():
    with atrank.Model(TINY) as model:
        a = model.score(None, ["i1", "i2"], 1_000_000_000)
        b = model.score([], ["i1", "i2"], 1_000_000_000)
        assert a.shape == (2,) and np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)


# ---------- errors: loading ----------


def test_missing_package_dir():
    with pytest.raises(atrank.PackageIOError) as info:
        atrank.Model("/nonexistent/atrank-package")
    assert info.value.code == atrank.Code.IO
    assert "/nonexistent/atrank-package" in info.value.message


def test_malformed_package(tmp_path):
    shutil.copytree(TINY, tmp_path, dirs_exist_ok=True)
    (tmp_path / "spec.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(atrank.InvalidPackageError) as info:
        atrank.Model(tmp_path)
    assert info.value.code == atrank.Code.INVALID_PACKAGE and info.value.message


def test_bad_options():
    with pytest.raises(atrank.InvalidArgumentError, match="backend"):
        atrank.Model(TINY, "cuda")
    with pytest.raises(atrank.InvalidArgumentError, match="gpu"):
        atrank.Model(TINY, gpu="sometimes")
    with pytest.raises(atrank.InvalidArgumentError) as info:  # from the C builder
        atrank.Model(TINY, intra_threads=0)
    assert info.value.code == atrank.Code.INVALID_ARGUMENT
    with pytest.raises(atrank.InvalidArgumentError, match="sessions"):
        atrank.Model(TINY, sessions=65)
    with pytest.raises(atrank.InvalidArgumentError, match="verify_hashes"):
        atrank.Model(TINY, verify_hashes="some")


@pytest.mark.parametrize("verify", ["small", "all"])
def test_verify_hashes(tmp_path, verify):
    """Both settings load; one flipped byte in a small file (always hashed) is refused under
    both, naming the file."""
    with atrank.Model(TINY, verify_hashes=verify) as model:
        assert model.info().spec_version == 3
    shutil.copytree(TINY, tmp_path, dirs_exist_ok=True)
    tables = tmp_path / "tables.bin"
    data = bytearray(tables.read_bytes())
    data[-1] ^= 0x40
    tables.write_bytes(bytes(data))
    with pytest.raises(atrank.InvalidPackageError, match=r"tables\.bin: SHA-256") as info:
        atrank.Model(tmp_path, verify_hashes=verify)
    assert info.value.code == atrank.Code.INVALID_PACKAGE


def test_ort_library_missing_in_fresh_process():
    # ONNX Runtime loads once per process, so this runs where nothing has loaded it yet.
    code = (
        "import atrank\n"
        "try:\n"
        f"    atrank.Model({str(TINY)!r}, 'ort', ort_library='/nonexistent/libonnxruntime.so.1')\n"
        "except atrank.BackendUnavailableError as e:\n"
        "    print('CODE', e.code, e.message)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ATRANK_ORT_LIB", None)
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"CODE {int(atrank.Code.BACKEND_UNAVAILABLE)} " in out.stdout, out.stdout
    assert "/nonexistent/libonnxruntime.so.1" in out.stdout


def test_library_errors(tmp_path):
    with pytest.raises(atrank.LibraryError, match="cannot load"):
        atrank.Model(TINY, lib_path=tmp_path / "libatrank.so")
    # A real shared library that is not atrank's: refused by the symbol check.
    import ctypes.util

    libm = ctypes.util.find_library("m")
    assert libm, "libm not found"
    with pytest.raises(atrank.LibraryError, match="missing symbol atrank_"):
        atrank.load_library(libm)
    assert atrank.library_version() == "0.1.0"


# ---------- errors: scoring (the C library's codes and messages) ----------


@pytest.fixture(scope="module")
def tiny_model():
    with atrank.Model(TINY) as model:
        yield model


BEHAVIOR = {"item": "i11", "action": "like", "timestamp": 1003551103}


@pytest.mark.parametrize(
    "behaviors, candidates, exc, code, needle",
    [
        ([{"item": None, "timestamp": 1}], ["i1"], atrank.NullArgumentError,
         atrank.Code.NULL_ARGUMENT, "behaviors[0].item"),
        ([BEHAVIOR], ["i1", None], atrank.NullArgumentError, atrank.Code.NULL_ARGUMENT,
         "candidates[1]"),
        ([BEHAVIOR, {**BEHAVIOR, "features": {"category": None}}], ["i1"],
         atrank.NullArgumentError, atrank.Code.NULL_ARGUMENT, "behaviors[1].features[0].value"),
        ([BEHAVIOR], [], atrank.InvalidArgumentError, atrank.Code.INVALID_ARGUMENT, "empty"),
        ([BEHAVIOR], None, atrank.InvalidArgumentError, atrank.Code.INVALID_ARGUMENT,
         "candidates"),
        ([{**BEHAVIOR, "group": "coupon"}], ["i1"], atrank.InvalidArgumentError,
         atrank.Code.INVALID_ARGUMENT, 'behaviors[0].group "coupon"'),
        ([{"item": "\udcff", "timestamp": 1}], ["i1"], atrank.InvalidUtf8Error,
         atrank.Code.INVALID_UTF8, "behaviors[0].item"),
        ([BEHAVIOR], [b"\xff\xfe"], atrank.InvalidUtf8Error, atrank.Code.INVALID_UTF8,
         "candidates[0]"),
    ],
)
def test_score_errors_from_c(tiny_model, behaviors, candidates, exc, code, needle):
    with pytest.raises(exc) as info:
        tiny_model.score(behaviors, candidates, 1028327127)
    assert info.value.code == code
    assert needle in info.value.message, info.value.message


def test_too_many_candidates(tiny_model):
    limit = _max_candidates(TINY)
    assert tiny_model.score([BEHAVIOR], ["i1"] * limit, 1028327127).shape == (limit,)
    with pytest.raises(atrank.InvalidArgumentError) as info:
        tiny_model.score([BEHAVIOR], ["i1"] * (limit + 1), 1028327127)
    assert str(limit + 1) in info.value.message and str(limit) in info.value.message


@pytest.mark.parametrize(
    "behaviors, request_time, needle",
    [
        ([{"item": "i1"}], 5, "behaviors[0].timestamp: is missing"),
        ([{"item": "i1", "timestamp": 1.5}], 5, "behaviors[0].timestamp: expected an integer"),
        ([{"item": "i1", "timestamp": 2**63}], 5, "does not fit in int64"),
        ([{"item": "i1", "timestamp": 1, "when": 2}], 5, "unknown field(s) ['when']"),
        ([{"item": "i1", "id": "i1", "timestamp": 1}], 5, "not both"),
        ([("i1", None, "like")], 5, "4 to 6 fields"),
        ([42], 5, "behaviors[0]: expected a mapping or a tuple"),
        ([{"item": 7, "timestamp": 1}], 5, "behaviors[0].item: expected a string"),
        ([{"item": "i\x001", "timestamp": 1}], 5, "NUL"),
        ("i1", 5, "expected a sequence of behaviors"),
        ([BEHAVIOR], None, "request_time: is missing"),
        ([BEHAVIOR], "now", "request_time: expected an integer"),
    ],
)
def test_score_errors_in_binding(tiny_model, behaviors, request_time, needle):
    with pytest.raises(atrank.InvalidArgumentError) as info:
        tiny_model.score(behaviors, ["i1"], request_time)
    assert info.value.code == atrank.Code.INVALID_ARGUMENT
    assert needle in info.value.message, info.value.message


@pytest.mark.parametrize("native", [True, False], ids=["native-batch", "one-by-one"])
def test_score_batch_bad_request(tiny_model, native, monkeypatch):
    monkeypatch.setattr(tiny_model._lib, "has_score_batch",
                        native and tiny_model._lib.has_score_batch)
    gold = golden(TINY)
    good = [_request(r) for r in gold["requests"][:3]]
    bad_group = {**good[1], "behaviors": [{**BEHAVIOR, "group": "nope"}]}
    bad_time = {**good[1], "request_time": "soon"}
    for bad, exc in ((bad_group, atrank.InvalidArgumentError),
                     (bad_time, atrank.InvalidArgumentError)):
        requests = [good[0], bad, good[2]]
        with pytest.raises(exc) as info:
            tiny_model.score_batch(requests)
        assert "requests[1]" in info.value.message, info.value.message
        results = tiny_model.score_batch(requests, errors="return")
        assert isinstance(results[1], exc)
        assert "requests[" not in results[1].message
        for i in (0, 2):
            want = gold["requests"][i]
            _check_scores(results[i], want["scores"], tolerance(gold, want), f"row {i}")


def test_score_batch_over_one_call(tiny_model):
    # More requests than one atrank_model_score_batch call takes: split, order kept.
    gold = golden(TINY)
    reqs = [_request(r) for r in gold["requests"]]
    n = atrank.MAX_BATCH_REQUESTS + 3
    results = tiny_model.score_batch(reqs[i % len(reqs)] for i in range(n))
    assert len(results) == n
    for i in (0, atrank.MAX_BATCH_REQUESTS - 1, atrank.MAX_BATCH_REQUESTS, n - 1):
        want = gold["requests"][i % len(reqs)]
        _check_scores(results[i], want["scores"], tolerance(gold, want), f"request {i}")


# ---------- lifetime and threads ----------


def test_closed_model_refuses_calls():
    model = atrank.Model(TINY)
    model.close()
    model.close()  # idempotent
    assert model.closed
    with pytest.raises(ValueError, match="closed"):
        model.score([BEHAVIOR], ["i1"], 5)


def test_threads_share_one_model(backend):
    gold = golden(MULTI)
    reqs = gold["requests"]
    with atrank.Model(MULTI, backend, intra_threads=1, sessions=2) as model:

        def work(k: int) -> int:
            for j in range(len(reqs)):
                r = reqs[(k + j) % len(reqs)]
                scores = model.score(r["behaviors"], r["candidates"], r["request_time"])
                _check_scores(scores, r["scores"], tolerance(gold, r), r["name"])
            return len(reqs)

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert sum(pool.map(work, range(8))) == 8 * len(reqs)


def test_close_waits_for_calls_in_flight():
    gold = golden(TINY)
    r = gold["requests"][0]
    model = atrank.Model(TINY)
    done = {"scored": 0, "refused": 0}
    lock = threading.Lock()
    started = threading.Barrier(5)
    enough = threading.Event()

    def work():
        started.wait()
        while True:
            try:
                scores = model.score(r["behaviors"], r["candidates"], r["request_time"])
            except ValueError:
                with lock:
                    done["refused"] += 1
                return
            _check_scores(scores, r["scores"], tolerance(gold, r), r["name"])
            with lock:
                done["scored"] += 1
                if done["scored"] >= 20:
                    enough.set()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    assert enough.wait(timeout=120)
    model.close()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert done["refused"] == 4


# ---------- hot swap ----------


def test_handle_reload_snapshot_and_threads(backend):
    """Threads score through a Handle while it is reloaded (alternately the single-group and the
    multigroup fixture, some reloads failing): no call fails, every failed reload leaves a model
    serving, and every snapshot pairs a model with its own generation (only the multigroup
    model, on even generations, knows the group "query")."""
    with atrank.Model(TINY, backend) as first, atrank.Handle(first) as handle:
        assert handle.generation == 1
        probe = [{"item": "q1_0", "group": "query", "timestamp": 1300000000}]
        stop = threading.Event()
        problems: list[str] = []
        counts = {"scores": 0, "snapshots": 0}

        def work() -> None:
            while not stop.is_set():
                handle.score([], ["i1", "i2"], 1300086400)
                counts["scores"] += 1
                model, gen = handle.snapshot()
                with model:
                    try:
                        model.score(probe, ["i1"], 1300086400)
                        knows_query = True
                    except atrank.InvalidArgumentError:
                        knows_query = False
                if knows_query != (gen % 2 == 0):
                    problems.append(f"generation {gen}: knows query = {knows_query}")
                counts["snapshots"] += 1

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            expected = 1
            for k in range(6):
                target = MULTI if expected % 2 == 1 else TINY
                assert handle.reload(target, backend, ort_library=ort_library()) == expected + 1
                expected += 1
                with pytest.raises(atrank.PackageIOError):
                    handle.reload("/nonexistent/atrank", backend)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert problems == []
        assert handle.generation == expected == 7
        assert counts["snapshots"] > 0
    with pytest.raises(ValueError, match="closed"):
        handle.score([], ["i1"], 0)


def test_exclude_seen_scores_history_items_minus_infinity():
    """Off by default; ``exclude_seen=True`` scores a candidate from the user's own history
    ``-inf`` and leaves the others' scores unchanged; a non-bool is refused."""
    r = next(r for r in golden(TINY)["requests"] if r["behaviors"])
    seen = {b["id"] for b in r["behaviors"]}
    fresh = next(c for c in r["candidates"] if c not in seen)
    cands = [r["behaviors"][0]["id"], fresh]
    with atrank.Model(TINY, "tract") as plain, \
            atrank.Model(TINY, "tract", exclude_seen=True) as on:
        want = plain.score(r["behaviors"], cands, r["request_time"])
        got = on.score(r["behaviors"], cands, r["request_time"])
    assert np.isfinite(want[0])
    assert got[0] == -np.inf
    assert got[1] == want[1]
    with pytest.raises(atrank.InvalidArgumentError, match="exclude_seen"):
        atrank.Model(TINY, "tract", exclude_seen=1)
