"""externalize(): one aligned, deduplicated external data file for several graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from atrank_export.external_data import externalize

ROWS, DIM = 40, 8  # a 40 x 8 float32 table: 1,280 bytes, over the 1 KiB threshold


def _arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    proj = rng.standard_normal((DIM, 64)).astype(np.float32)  # 2,048 bytes
    bias = rng.standard_normal(64).astype(np.float32)  # 256 bytes: stays inline
    return table, proj, bias


def _model(table, proj, bias, *, scale: float = 1.0) -> onnx.ModelProto:
    """ids [B] int64 -> Gather(table) -> MatMul(proj) + bias -> * scale -> out [B, 64]."""
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(proj, "proj"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array(scale, np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "proj"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["biased"]),
        helper.make_node("Mul", ["biased", "scale"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["B"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


IDS = np.array([0, 3, ROWS - 1, 7, 3], np.int64)


def _run(source) -> np.ndarray:
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"ids": IDS})[0]


def _ext(t: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def test_round_trip_onnx_and_onnxruntime_bit_identical(tmp_path):
    table, proj, bias = _arrays()
    models = {"a.onnx": _model(table, proj, bias), "b.onnx": _model(table, proj, bias, scale=2.0)}
    inline = {k: m.SerializeToString() for k, m in models.items()}
    want = {k: _run(b) for k, b in inline.items()}
    summary = externalize(models, tmp_path)
    for name in models:
        # onnxruntime resolves tables.bin next to the model file.
        got = _run(str(tmp_path / name))
        assert got.tobytes() == want[name].tobytes(), name
        # onnx.load reads the external data back: every initializer equals the original.
        loaded = onnx.load(str(tmp_path / name))
        original = onnx.load_from_string(inline[name])
        for a, b in zip(loaded.graph.initializer, original.graph.initializer, strict=True):
            assert a.name == b.name
            np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert summary["tensors"] == 2  # table and proj, each once
    assert summary["references"] == 4 and summary["shared"] == 2
    assert summary["data_bytes"] == table.nbytes + proj.nbytes


def test_offsets_aligned_shared_once_small_inline(tmp_path):
    table, proj, bias = _arrays()
    models = {"a.onnx": _model(table, proj, bias), "b.onnx": _model(table, proj, bias)}
    summary = externalize(models, tmp_path, alignment=4096)
    data = (tmp_path / "tables.bin").read_bytes()
    refs = {}
    for name in models:
        on_disk = onnx.load(str(tmp_path / name), load_external_data=False)
        for t in on_disk.graph.initializer:
            if t.name in ("bias", "scale"):
                assert t.data_location == TensorProto.DEFAULT and t.HasField("raw_data")
                continue
            assert t.data_location == TensorProto.EXTERNAL
            e = _ext(t)
            assert set(e) == {"location", "offset", "length"} and e["location"] == "tables.bin"
            offset, length = int(e["offset"]), int(e["length"])
            assert offset % 4096 == 0
            refs.setdefault(t.name, set()).add((offset, length))
    # Each tensor at one place for both graphs; table first at 0, proj at the next boundary.
    assert refs == {"table": {(0, table.nbytes)}, "proj": {(4096, proj.nbytes)}}
    assert len(data) == summary["bytes"] == 4096 + proj.nbytes
    assert data[: table.nbytes] == table.tobytes()
    assert data[table.nbytes:4096] == b"\0" * (4096 - table.nbytes)
    assert data[4096:] == proj.tobytes()


def test_same_bytes_other_shape_not_shared(tmp_path):
    """The key is dtype, dims and bytes: the same bytes with other dims are a second tensor,
    and a tensor with other values is too."""
    table, proj, bias = _arrays()
    other = _arrays(seed=1)
    models = {
        "a.onnx": _model(table, proj, bias),
        "b.onnx": _model(table.copy(), proj, bias),
        "c.onnx": _model(other[0], proj, bias),
    }
    # b: equal table (another array object) and proj, both shared; c: its own table, written.
    summary = externalize(models, tmp_path)
    assert (summary["tensors"], summary["shared"]) == (3, 3)

    reshaped = {
        "a.onnx": _model(table, proj, bias),
        "b.onnx": _model(table, proj, bias),
    }
    # b's table: the same bytes with dims [16, 20]: not the same tensor.
    b = reshaped["b.onnx"].graph
    b.initializer[0].CopyFrom(numpy_helper.from_array(table.reshape(DIM * 2, ROWS // 2), "table"))
    summary = externalize(reshaped, tmp_path / "r")
    assert (summary["tensors"], summary["shared"]) == (3, 1)


def test_threshold_is_inclusive(tmp_path):
    table, proj, bias = _arrays()
    model = _model(table, proj, bias)
    externalize({"m.onnx": model}, tmp_path, threshold=table.nbytes)
    kinds = {t.name: t.data_location for t in model.graph.initializer}
    assert kinds["table"] == TensorProto.EXTERNAL  # exactly threshold bytes
    assert kinds["proj"] == TensorProto.EXTERNAL
    assert kinds["bias"] == TensorProto.DEFAULT

    model = _model(table, proj, bias)
    externalize({"m.onnx": model}, tmp_path / "b", threshold=table.nbytes + 1)
    kinds = {t.name: t.data_location for t in model.graph.initializer}
    assert kinds["table"] == TensorProto.DEFAULT and kinds["proj"] == TensorProto.EXTERNAL


def test_typed_fields_become_raw(tmp_path):
    """A tensor stored in float_data (not raw_data) is written as little-endian raw bytes."""
    table, proj, bias = _arrays()
    model = _model(table, proj, bias)
    want = _run(model.SerializeToString())
    typed = helper.make_tensor("table", TensorProto.FLOAT, table.shape, table.ravel().tolist())
    assert not typed.HasField("raw_data")
    model.graph.initializer[0].CopyFrom(typed)
    externalize({"m.onnx": model}, tmp_path)
    assert _run(str(tmp_path / "m.onnx")).tobytes() == want.tobytes()
    assert (tmp_path / "tables.bin").read_bytes()[: table.nbytes] == table.astype("<f4").tobytes()


@pytest.mark.parametrize("location", ["../x.bin", "/tmp/x.bin", "a/b.bin", "", ".."])
def test_location_must_be_plain_name(tmp_path, location):
    table, proj, bias = _arrays()
    with pytest.raises(ValueError, match="plain file name"):
        externalize({"m.onnx": _model(table, proj, bias)}, tmp_path, location=location)


def test_already_external_refused(tmp_path):
    table, proj, bias = _arrays()
    model = _model(table, proj, bias)
    externalize({"m.onnx": model}, tmp_path)
    with pytest.raises(ValueError, match="already uses external data"):
        externalize({"m.onnx": model}, tmp_path / "again")
