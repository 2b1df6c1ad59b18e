"""export --precision int8: the graph rewrite against ONNX Runtime's own quantizer, and the
package it writes."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from atrank_export.quantize import QMAX, quantize_graph, quantize_weight


def _graph() -> onnx.ModelProto:
    """x [B, 8] -> Gemm(transB, bias) -> Relu -> MatMul(const) -> y; plus z = y @ y^T, a
    product of two activations, which must stay float."""
    rng = np.random.default_rng(7)
    w1 = rng.normal(size=(6, 8)).astype(np.float32)        # transposed: [out, in]
    b1 = rng.normal(size=(6,)).astype(np.float32)
    w2 = rng.normal(size=(6, 5)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="proj"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="out"),
             helper.make_node("Transpose", ["y"], ["yt"], perm=[1, 0]),
             helper.make_node("MatMul", ["y", "yt"], ["z"], name="gram")]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 5]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", "B"])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2")])
    # IR 10 (opset 20), which the pinned onnxruntime reads; onnx would write its newest
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), opts,
                             providers=["CPUExecutionProvider"])
    return s.run(["y", "z"], {"x": x})


def test_weights_are_symmetric_7_bit():
    w = np.array([[-3.0, 0.5], [1.5, 0.0]], dtype=np.float32)
    q, s = quantize_weight(w)
    assert s == np.float32(3.0 / QMAX) and QMAX == 64
    assert q.dtype == np.int8 and q.min() == -64 and q.max() <= 64
    np.testing.assert_array_equal(q, np.round(w / s).astype(np.int8))
    q0, s0 = quantize_weight(np.zeros((2, 2), np.float32))
    assert s0 == 1.0 and not q0.any()


def test_rewrite_matches_onnxruntime_quantize_dynamic(tmp_path):
    """ORT's quantize_dynamic (reduce_range, QInt8, MatMul; on the Gemm already written as
    MatMul + Add, which its tool skips) is the independent reference: the same quantized
    weights and scales, and the same outputs from the same engine."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from atrank_export.quantize import gemm_as_matmul

    plain = _graph()
    assert gemm_as_matmul(plain) == 1
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    quantize_dynamic(str(tmp_path / "plain.onnx"), str(tmp_path / "ref.onnx"),
                     op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     reduce_range=True)
    ref = onnx.load(str(tmp_path / "ref.onnx"))
    ours = _graph()
    assert quantize_graph(ours) == {"gemm": 1, "matmul": 2}
    onnx.checker.check_model(ours)

    def inits(m):
        return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}

    a, b = inits(ours), inits(ref)
    for w in ("w1_t", "w2"):
        np.testing.assert_array_equal(a[f"{w}_quantized"], b[f"{w}_quantized"])
        assert a[f"{w}_scale"] == b[f"{w}_scale"]
    ops = sorted(n.op_type for n in ours.graph.node)
    assert ops == sorted(n.op_type for n in ref.graph.node)
    assert ops.count("MatMulInteger") == 2 and ops.count("MatMul") == 1   # the gram stays
    x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    got, want = _run(ours, x), _run(ref, x)
    # the same nodes and constants on the same engine and thread count: the same bits
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # and it is a quantization of the float graph, not something else. Not a rounding bound:
    # a loose sanity check (7-bit weights and 8-bit activations err by about 1% of each
    # product), whose integer part is exact on every CPU; a wrong rewrite misses it by far.
    flt = _run(_graph(), x)[0]
    assert np.max(np.abs(got[0] - flt)) < 0.1 * np.max(np.abs(flt))


def test_int8_package(trained, tmp_path):
    """The exporter's int8 package: projections quantized in all three graphs, the spec and
    golden say so, golden scores are onnxruntime's on the int8 model.onnx, and tables.bin
    still holds the float32 embedding tables once."""
    from atrank_export.cli import main

    out = tmp_path / "int8"
    assert main(["export", "--checkpoint", str(trained / "run" / "checkpoint.pt"),
                 "--out", str(out), "--precision", "int8"]) == 0
    spec = json.loads((out / "spec.json").read_text())
    assert spec["graph"]["precision"] == "int8"
    assert "precision" not in json.loads((trained / "pkg" / "spec.json").read_text())["graph"]
    for f in ("model.onnx", "encoder.onnx", "scorer.onnx"):
        ops = [n.op_type for n in onnx.load(str(out / f), load_external_data=False).graph.node]
        assert "MatMulInteger" in ops and "Gemm" not in ops, f
    golden = json.loads((out / "golden.json").read_text())
    assert golden["precision"] == "int8"
    assert 0 < golden["max_abs_drift_from_float32"] < 1.0
    from atrank_export.preprocess import Preprocessor

    pre = Preprocessor.from_package(out)
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    float_golden = json.loads((trained / "pkg" / "golden.json").read_text())["requests"]
    moved = 0.0
    for r, fr in zip(golden["requests"], float_golden):
        n = len(r["candidates"])
        got = s.run(["logits"], pre.batch([r]))[0][0, :n]
        # the same graph, inputs and engine as the exporter's: within the float32 tolerance
        assert np.max(np.abs(got - np.array(r["scores"]))) <= r["tolerance"], r["name"]
        moved = max(moved, float(np.max(np.abs(np.array(r["scores"]) - fr["scores"]))))
    assert moved == pytest.approx(golden["max_abs_drift_from_float32"], rel=1e-6)
    # tables.bin: the float tables plus int8 weights, smaller than the float32 package's
    assert (out / "tables.bin").stat().st_size <= (trained / "pkg" / "tables.bin").stat().st_size
