import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from atrank_export.export import (
    ExportValidationError,
    build_golden_requests,
    model_from_checkpoint,
    ort_session,
    request_tolerances,
    validate_onnx,
)
from atrank_export.numerics import (
    U,
    atrank_logit_roundings,
    atrank_magnitude_bound,
    logit_atol,
    logit_magnitudes,
)
from atrank_export.preprocess import Preprocessor, pad_batch
from atrank_export.train import load_checkpoint

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny"


def ort_golden_check(pkg):
    """Scores from the raw golden requests, through preprocess.py reading the package files
    and onnxruntime, match golden.json."""
    spec = json.loads((pkg / "spec.json").read_text())
    golden = json.loads((pkg / spec["golden"]).read_text())
    pre = Preprocessor.from_package(pkg)
    sess = ort_session(pkg / spec["graph"]["file"])
    worst = 0.0
    for r in golden["requests"]:
        got = sess.run([spec["graph"]["output"]], pad_batch([pre.encode_request(r)]))[0][0]
        assert len(got) == len(r["scores"]) == len(r["candidates"])
        diff = float(np.max(np.abs(got - np.array(r["scores"]))))
        # each request's derived tolerance 2 D U M (docs/tolerances.md); M >= |logit|, so it
        # is at least 2 D U max |score| (a check independent of how M was measured)
        assert diff <= r["tolerance"], (r["name"], diff, r["tolerance"])
        assert r["tolerance"] >= 2 * golden["roundings"] * U * float(np.max(np.abs(r["scores"])))
        worst = max(worst, diff)
    assert golden["tolerance"] == max(r["tolerance"] for r in golden["requests"])
    assert golden["bound_any_request"] >= golden["tolerance"]
    return golden, spec


def test_package_layout_and_golden(trained):
    pkg = trained / "pkg"
    for f in ["spec.json", "model.onnx", "vocab/item.txt", "vocab/category.txt", "catalog.tsv",
              "golden.json"]:
        assert (pkg / f).is_file(), f
    golden, spec = ort_golden_check(pkg)
    assert spec["format"] == "atrank-model-package" and spec["spec_version"] == 1
    assert spec["graph"]["opset"] == 20 and spec["groups"][0]["max_history"] == 10
    assert spec["time_buckets"]["boundaries"][-1] == 4096
    names = [r["name"] for r in golden["requests"]]
    for want in ["empty-history", "unknown-action", "history-longer-than-max",
                 "unknown-history-item", "behaviors-after-request-time",
                 "negative-timestamps", "ties-at-truncation-boundary"]:
        assert want in names
    assert 20 <= len(names) <= 30
    long_req = golden["requests"][names.index("history-longer-than-max")]
    assert len(long_req["behaviors"]) > 10
    ties = golden["requests"][names.index("ties-at-truncation-boundary")]
    pre = Preprocessor.from_package(pkg)
    kept = pre.encode_request(ties).hist_item
    flipped = pre.encode(ties["behaviors"][::-1], [], ties["request_time"]).hist_item
    assert sorted(kept) != sorted(flipped)      # caller order decides among tied timestamps
    assert any(b["category"] is None for r in golden["requests"] for b in r["behaviors"])
    assert all(r["candidates"] for r in golden["requests"])
    m = onnx.load(str(pkg / "model.onnx"))
    assert len(m.graph.value_info) == 0
    assert [i.name for i in m.graph.input] == ["hist_item", "hist_category", "hist_action",
                                               "hist_time", "hist_len", "cand_item",
                                               "cand_category"]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert m.opset_import[0].version == 20
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert {"one_neg_auc", "all_items_auc", "global_auc"} <= set(metrics["test"])


def test_committed_fixture_is_consistent():
    if not (FIXTURE / "spec.json").exists():
        pytest.skip("tests/fixtures/tiny not generated")
    _, spec = ort_golden_check(FIXTURE)
    assert spec["name"] == "atrank-tiny"
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 200_000


def test_tampered_graph_is_rejected(trained, tmp_path):
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, pre = model_from_checkpoint(ckpt)
    requests = build_golden_requests(ckpt, pre)
    tols = request_tolerances(model, pre, requests)
    assert validate_onnx(model, trained / "pkg" / "model.onnx", pre, requests) <= max(tols)
    m = onnx.load(str(trained / "pkg" / "model.onnx"))
    init = next(i for i in m.graph.initializer if i.name == "item_emb.weight")
    w = onnx.numpy_helper.to_array(init).copy()
    w += 1e-3
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(ExportValidationError, match="tolerance"):
        validate_onnx(model, tmp_path / "bad.onnx", pre, requests)


def test_onnx_padding_invariance(trained):
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, pre = model_from_checkpoint(ckpt)
    sess = ort_session(trained / "pkg" / "model.onnx")
    u = ckpt["golden_users"][1]
    enc = pre.encode(u["behaviors"], [u["target"], u["negative"]], u["target_time"])
    b = pad_batch([enc])
    length = b["hist_item"].shape[1]
    padded = {k: (np.pad(v, ((0, 0), (0, 7))) if v.ndim == 2 and v.shape[1] == length
                  and k.startswith("hist") else v) for k, v in b.items()}
    a = sess.run(["logits"], b)[0]
    p = sess.run(["logits"], padded)[0]
    # two float32 evaluations of the same logits: 2 D U max M (docs/tolerances.md)
    tol = logit_atol(model, *({k: torch.from_numpy(v) for k, v in x.items()} for x in (b, padded)))
    assert np.allclose(a, p, atol=tol, rtol=0)
    with torch.no_grad():
        t = model(**{k: torch.from_numpy(v) for k, v in padded.items()}).numpy()
    # ORT vs PyTorch: two float32 evaluations of the same logits too, the same 2 D U max M
    assert np.allclose(a, t, atol=tol, rtol=0)


def test_golden_tolerances_are_derived_and_the_package_bound_holds(trained):
    """golden.json's tolerances are 2 D U M with D at max_history; bound_any_request bounds M
    for requests the golden file does not hold: random histories of random items, actions and
    time buckets, every item as a candidate, with random categories (not only the catalog's)."""
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, pre = model_from_checkpoint(ckpt)
    golden = json.loads((trained / "pkg" / "golden.json").read_text())
    d = atrank_logit_roundings(model.config, pre.max_history)
    assert golden["roundings"] == d
    for r in golden["requests"]:
        m = logit_magnitudes(model, {k: torch.from_numpy(v) for k, v in
                                     pad_batch([pre.encode_request(r)]).items()})
        assert r["tolerance"] == pytest.approx(2 * d * U * float(m.max()), rel=1e-12)
    bound = atrank_magnitude_bound(model)
    assert golden["bound_any_request"] == pytest.approx(2 * d * U * bound, rel=1e-12)
    c = model.config
    g = torch.Generator().manual_seed(7)
    b, length, n = 64, pre.max_history, c.n_items + 1
    x = {"hist_item": torch.randint(0, c.n_items + 1, (b, length), generator=g),
         "hist_category": torch.randint(0, c.n_categories + 1, (b, length), generator=g),
         "hist_action": torch.randint(0, c.n_actions + 1, (b, length), generator=g),
         "hist_time": torch.randint(0, c.n_time_buckets, (b, length), generator=g),
         "hist_len": torch.randint(0, length + 1, (b,), generator=g),
         "cand_item": torch.arange(n).repeat(b, 1),
         "cand_category": torch.randint(0, c.n_categories + 1, (b, n), generator=g)}
    m = logit_magnitudes(model, x)
    assert float(m.max()) <= bound
    # not a tolerance: a guard that the bound stays useful (Cauchy-Schwarz over H = 16 terms
    # and the sum of the tables' largest rows lose far less than a factor 10 on this model)
    assert bound <= 10 * float(m.max())
