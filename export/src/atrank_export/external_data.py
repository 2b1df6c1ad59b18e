"""ONNX external data for a model package: one aligned, deduplicated ``tables.bin``.

A package's graphs (``model.onnx``, ``encoder.onnx``, ``scorer.onnx``) share their embedding
tables. :func:`externalize` moves every large initializer of every graph into ONE file, each
tensor at an offset that is a multiple of ``alignment`` (65,536 by default, so the runtime can
map it on Linux and Windows), and writes a tensor that is byte-identical in several graphs
(same dtype, same dims, same bytes) once, referenced by each graph. See "External data" in
docs/package-format.md.

Why not ``onnx.save_model(..., save_as_external_data=True)``: onnx 1.23 writes each model's
tensors at the end of that model's own data file, aligned only if the caller presets every
offset, and it cannot share a tensor between models saved separately (each save appends its
own copy). So this module lays the file out itself and sets each tensor's
``external_data`` entries (``location``, ``offset``, ``length``) directly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

TABLES = "tables.bin"
ALIGNMENT = 65536
THRESHOLD = 1024


def _plain_name(name: str, what: str) -> None:
    """A file name inside the package directory: no separator, not ``.``/``..``, not empty."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
    ):
        raise ValueError(f"{what} {name!r} must be a plain file name inside the package")


def _graphs(graph: onnx.GraphProto):
    """``graph`` and every subgraph under it (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _raw_bytes(tensor: onnx.TensorProto) -> bytes | None:
    """The tensor's data as ONNX raw_data (little-endian), or None for string tensors."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise ValueError(
            f"initializer {tensor.name!r} already uses external data; load the model with its "
            "data (onnx.load with load_external_data=True) before externalize"
        )
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data


def _clear_data(tensor: onnx.TensorProto) -> None:
    for field in ("raw_data", "float_data", "int32_data", "string_data", "int64_data",
                  "double_data", "uint64_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]


def externalize(
    graphs: dict[str, onnx.ModelProto],
    out_dir: Path,
    location: str = TABLES,
    threshold: int = THRESHOLD,
    alignment: int = ALIGNMENT,
    substitutes: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Moves every initializer of at least ``threshold`` bytes of every graph into
    ``out_dir/location`` and saves each graph as ``out_dir/<key>``.

    ``graphs`` maps a graph's file name (``"model.onnx"``) to its model, with all its data in
    memory. The models are changed in place: each large initializer gets
    ``data_location = EXTERNAL`` and ``external_data`` {location, offset, length}, and loses
    its in-memory data. Tensors are written in the order met (graphs in dict order,
    initializers in graph order, subgraphs included); each starts at a multiple of
    ``alignment``; a tensor with the same dtype, dims and bytes as one already written is not
    written again but referenced at the same offset. ``location`` is always created (empty
    when nothing reaches the threshold).

    ``substitutes`` maps initializer names to arrays written in their place (dims from the
    array; same dtype): a graph traced with a small placeholder for a large table gets the real
    table, written straight from the array (no copy of it in memory). Every reference to one
    name shares the one copy written.

    Returns a summary: ``location``, ``bytes`` (the file's size), ``tensors`` (distinct
    tensors written), ``references`` (initializers made external, over all graphs),
    ``shared`` (references that reuse a tensor already written), ``data_bytes`` (tensor bytes
    written, padding excluded), ``graphs`` (per graph file: its size and external
    initializers).
    """
    if alignment < 1 or threshold < 0:
        raise ValueError(f"alignment {alignment} must be >= 1 and threshold {threshold} >= 0")
    _plain_name(location, "location")
    for name in graphs:
        _plain_name(name, "graph file name")
        if name == location:
            raise ValueError(f"graph file name {name!r} is the external data file's name")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # (dtype, dims, sha256) -> [(offset, length)]; a hit is confirmed against the bytes in the
    # file, so equal digests of different bytes (never seen, but cheap to rule out) stay apart.
    written: dict[tuple[int, tuple[int, ...], bytes], list[tuple[int, int]]] = {}
    summary: dict[str, Any] = {
        "location": location, "bytes": 0, "tensors": 0, "references": 0, "shared": 0,
        "data_bytes": 0, "graphs": {},
    }
    end = 0
    with open(out_dir / location, "w+b") as f:

        def place(tensor: onnx.TensorProto, raw: bytes) -> tuple[int, bool]:
            nonlocal end
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).digest())
            for offset, length in written.get(key, []):
                if length == len(raw):
                    f.seek(offset)
                    if f.read(length) == raw:
                        return offset, True
            offset = -(-end // alignment) * alignment
            f.seek(end)
            f.write(b"\0" * (offset - end))
            f.write(raw)
            end = offset + len(raw)
            written.setdefault(key, []).append((offset, len(raw)))
            return offset, False

        placed: dict[str, tuple[int, int]] = {}

        def place_array(tensor: onnx.TensorProto, arr: np.ndarray) -> tuple[int, int, bool]:
            nonlocal end
            want = helper.tensor_dtype_to_np_dtype(tensor.data_type)
            if arr.dtype != want:
                raise ValueError(f"substitute for {tensor.name!r} is {arr.dtype}, the graph's "
                                 f"initializer {want}")
            del tensor.dims[:]
            tensor.dims.extend(arr.shape)
            if tensor.name in placed:
                return (*placed[tensor.name], True)
            data = memoryview(np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"),
                                                              copy=False))).cast("B")
            offset = -(-end // alignment) * alignment
            f.seek(end)
            f.write(b"\0" * (offset - end))
            f.write(data)
            end = offset + data.nbytes
            placed[tensor.name] = (offset, data.nbytes)
            return offset, data.nbytes, False

        for name, model in graphs.items():
            external = 0
            for graph in _graphs(model.graph):
                for tensor in graph.initializer:
                    if substitutes is not None and tensor.name in substitutes:
                        arr = substitutes[tensor.name]
                        if arr.nbytes < threshold:          # small: inline, as any other
                            tensor.CopyFrom(numpy_helper.from_array(arr, tensor.name))
                            continue
                        offset, length, shared = place_array(tensor, arr)
                    else:
                        raw = _raw_bytes(tensor)
                        if raw is None or len(raw) < threshold:
                            continue
                        offset, shared = place(tensor, raw)
                        length = len(raw)
                    _clear_data(tensor)
                    tensor.data_location = onnx.TensorProto.EXTERNAL
                    for k, v in (("location", location), ("offset", str(offset)),
                                 ("length", str(length))):
                        entry = tensor.external_data.add()
                        entry.key, entry.value = k, v
                    summary["references"] += 1
                    external += 1
                    if shared:
                        summary["shared"] += 1
                    else:
                        summary["tensors"] += 1
                        summary["data_bytes"] += length
            data = model.SerializeToString()
            (out_dir / name).write_bytes(data)
            summary["graphs"][name] = {"bytes": len(data), "external": external}
        f.truncate(end)
    summary["bytes"] = end
    return summary
