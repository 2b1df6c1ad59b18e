import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from numerics import logit_atol

from atrank_export.export import (
    ATOL,
    ExportValidationError,
    build_golden_requests,
    model_from_checkpoint,
    ort_session,
    validate_onnx,
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
        worst = max(worst, float(np.max(np.abs(got - np.array(r["scores"])))))
    assert worst <= golden["tolerance"]
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
    assert validate_onnx(model, trained / "pkg" / "model.onnx", pre, requests) <= ATOL
    m = onnx.load(str(trained / "pkg" / "model.onnx"))
    init = next(i for i in m.graph.initializer if i.name == "item_emb.weight")
    w = onnx.numpy_helper.to_array(init).copy()
    w += 1e-3
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(ExportValidationError, match="atol"):
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
    # the exporter's own acceptance bound (export.ATOL; see docs/tolerances.md for its status)
    assert np.allclose(a, t, atol=ATOL, rtol=0)
