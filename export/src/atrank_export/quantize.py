"""INT8 graphs: dynamic quantization of the dense projections, for ONNX Runtime (issue 14).

``export --precision int8`` rewrites each traced graph before its weights go to ``tables.bin``:

1. every ``Gemm`` with a constant weight becomes ``MatMul`` + ``Add`` (:func:`gemm_as_matmul`,
   the same arithmetic), because dynamic quantization applies to ``MatMul``;
2. every ``MatMul`` whose weight B is a constant float32 matrix becomes ONNX Runtime's
   dynamic-quantization pattern (:func:`quantize_matmuls`)::

       DynamicQuantizeLinear(A) -> A_q (uint8), A_scale, A_zero_point
       MatMulInteger(A_q, B_q, A_zero_point, 0) -> int32
       Cast(float) * (A_scale * B_scale)

   with B quantized symmetrically per tensor to 7 bits: ``B_scale = max|B| / 64``,
   ``B_q = round(B / B_scale)`` in [-64, 64], stored as int8. ONNX Runtime fuses the pattern
   into one ``DynamicQuantizeMatMul`` kernel.

Why 7 bits: on x86 CPUs without VNNI, ONNX Runtime's uint8 x int8 kernel adds pairs of
products in int16 (``VPMADDUBSW``), which saturates for full 8-bit weights (2 x 255 x 127 =
64,770 > 32,767) and so computes other integers than a VNNI CPU does. With |B_q| <= 64 a
pair is at most 2 x 255 x 64 = 32,640: every machine computes the same integers, and a
package exported on one CPU scores alike on another.

This is what ``onnxruntime.quantization.quantize_dynamic(op_types_to_quantize=["MatMul"],
weight_type=QInt8, reduce_range=True)`` writes: the same pattern and the same weights (a test
checks both). It is
done here, on the graphs in memory, because ORT's tool works on a file with all its weights in
memory and saves each graph's external data separately: the three graphs of a package would
each get their own copy of the embedding tables instead of sharing one ``tables.bin``.

Left in float32: the embedding tables (``Gather``), the attention's products of two
activations, softmax, LayerNorm and the ranking. The activations' scale is computed per call
over the whole tensor, so a candidate's score depends slightly (about one quantization step of
the projections' inputs) on the other rows in the same call: other candidates of the request,
other requests of a batch. Rankings within one call use one scale.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The weight range, symmetric: [-64, 64], as ORT's dynamic quantizer with reduce_range.
QMAX = 64


def _inline(init: onnx.TensorProto) -> bool:
    return init.data_location != TensorProto.EXTERNAL


def gemm_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrites every ``Gemm`` (alpha = beta = 1, A not transposed, B a constant held in the
    graph) as ``MatMul`` + ``Add``, in place; a transposed B is stored transposed. Returns how
    many were rewritten. Any other Gemm is left as it is."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], 0
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or attrs.get("alpha", 1.0) != 1.0
                or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)
                or node.input[1] not in inits or not _inline(inits[node.input[1]])):
            nodes.append(node)
            continue
        b = node.input[1]
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[b]).T
            b = f"{b}_t"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), b))
        mm = f"{node.output[0]}_mm"
        nodes.append(helper.make_node("MatMul", [node.input[0], b], [mm], name=f"{node.name}_mm"))
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Add", [mm, node.input[2]], [node.output[0]],
                                          name=f"{node.name}_add"))
        else:
            nodes.append(helper.make_node("Identity", [mm], [node.output[0]]))
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    _drop_unused(g)
    return done


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Symmetric per-tensor 7-bit: (round(w / s) as int8 in [-64, 64], s) with
    s = max|w| / 64 (1 for an all-zero w, as any scale gives zeros)."""
    w = np.asarray(w, dtype=np.float32)
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    scale = np.float32(amax / QMAX) if amax > 0 else np.float32(1.0)
    q = np.clip(np.round(w / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale


def quantize_matmuls(model: onnx.ModelProto, skip: frozenset[str] = frozenset()) -> int:
    """Replaces every ``MatMul`` whose B is a 2-D float32 initializer held in the graph (and
    not named in ``skip``) by the dynamic-quantization pattern above, in place. Returns how
    many were replaced. Needs opset >= 10 (MatMulInteger, DynamicQuantizeLinear: 11)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, done, new_inits = [], 0, []
    quantized: dict[str, tuple[str, str, str]] = {}
    for node in g.node:
        b = node.input[1] if node.op_type == "MatMul" else None
        init = inits.get(b) if b is not None else None
        if (init is None or b in skip or not _inline(init) or len(init.dims) != 2
                or init.data_type != TensorProto.FLOAT):
            nodes.append(node)
            continue
        if b not in quantized:
            q, scale = quantize_weight(numpy_helper.to_array(init))
            names = (f"{b}_quantized", f"{b}_scale", f"{b}_zero_point")
            new_inits += [numpy_helper.from_array(q, names[0]),
                          numpy_helper.from_array(np.array(scale, dtype=np.float32), names[1]),
                          numpy_helper.from_array(np.array(0, dtype=np.int8), names[2])]
            quantized[b] = names
        bq, bs, bz = quantized[b]
        a, y = node.input[0], node.output[0]
        base = node.name or y
        aq, as_, az = f"{a}_quantized", f"{a}_scale", f"{a}_zero_point"
        if not any(aq in n.output for n in nodes):   # one quantization per activation
            nodes.append(helper.make_node("DynamicQuantizeLinear", [a], [aq, as_, az],
                                          name=f"{a}_QuantizeLinear"))
        scales = f"{base}_scales"
        nodes += [
            helper.make_node("Mul", [as_, bs], [scales], name=f"{base}_scale_mul"),
            helper.make_node("MatMulInteger", [aq, bq, az, bz], [f"{y}_int32"],
                             name=f"{base}_MatMulInteger"),
            helper.make_node("Cast", [f"{y}_int32"], [f"{y}_cast"], to=TensorProto.FLOAT,
                             name=f"{base}_cast"),
            helper.make_node("Mul", [f"{y}_cast", scales], [y], name=f"{base}_rescale"),
        ]
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    _drop_unused(g)
    return done


def quantize_graph(model: onnx.ModelProto, skip: frozenset[str] = frozenset()) -> dict:
    """Both steps on one graph, in place; -> {"gemm": rewritten, "matmul": quantized}."""
    return {"gemm": gemm_as_matmul(model), "matmul": quantize_matmuls(model, skip)}


def _drop_unused(g: onnx.GraphProto) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
