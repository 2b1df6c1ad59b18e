"""Checkpoint -> model package (docs/package-format.md), validated against onnxruntime.

The package holds spec.json, model.onnx (dynamo export, opset 20, dynamic B/L/N, with
``graph.value_info`` removed so tract can concretise shapes), vocab/item.txt,
vocab/category.txt, catalog.tsv and golden.json. Golden scores are PyTorch logits of raw
requests preprocessed by :mod:`atrank_export.preprocess`. Validation runs onnxruntime (CPU) on
every golden request and on one batch of all of them padded together, and raises
:class:`ExportValidationError` if any logit differs from PyTorch by more than its request's
derived tolerance.

Tolerances (docs/tolerances.md): each golden request carries ``tolerance`` = 2 D U M, the
first-order bound on two float32 evaluations of its logits (D: the forward pass's roundings at
max_history, :func:`atrank_export.numerics.atrank_logit_roundings`; M: the largest
|.|-magnitude of its logits, measured on the trained model); golden.json's top-level
``tolerance`` is their maximum and ``bound_any_request`` = 2 D U M_max with M_max bounded from
the weights for any request (:func:`atrank_export.numerics.atrank_magnitude_bound`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .manifest import write_manifest
from .model import ATRank, ModelConfig
from .numerics import (
    atrank_logit_roundings,
    atrank_magnitude_bound,
    logit_magnitudes,
    tolerance,
)
from .preprocess import INPUT_NAMES, OUTPUT_NAME, Preprocessor, TimeBuckets, Vocab, pad_batch
from .train import load_checkpoint, setup_threads, to_tensors

OPSET = 20
UNKNOWN_ITEM = "no-such-movie"
GOLDEN_SEED = 1234


class ExportValidationError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model within tolerance."""


def model_from_checkpoint(ckpt: dict) -> tuple[ATRank, Preprocessor]:
    model = ATRank(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    pre = Preprocessor(Vocab(ckpt["item_vocab"]), Vocab(ckpt["category_vocab"]),
                       dict(ckpt["catalog"]), list(ckpt["actions"]), int(ckpt["max_history"]),
                       TimeBuckets.from_json(ckpt["time_buckets"]))
    return model, pre


def _example_inputs(model: ATRank) -> tuple[torch.Tensor, ...]:
    # sizes > 1 and pairwise distinct so no dimension gets specialised during tracing
    b, length, n = 3, 5, 4
    g = torch.Generator().manual_seed(0)
    c = model.config

    def r(hi, *shape):
        return torch.randint(0, hi, shape, generator=g)

    return (r(c.n_items + 1, b, length), r(c.n_categories + 1, b, length),
            r(c.n_actions + 1, b, length), r(c.n_time_buckets, b, length),
            torch.tensor([5, 2, 0]), r(c.n_items + 1, b, n), r(c.n_categories + 1, b, n))


def export_onnx(model: ATRank, path: Path) -> None:
    """torch.onnx.export(dynamo=True), B/L/N dynamic, opset 20; drops graph.value_info
    and the per-node metadata."""
    import onnx

    model.eval()
    bd, ld, nd = torch.export.Dim("B"), torch.export.Dim("L"), torch.export.Dim("N")
    hist = {0: bd, 1: ld}
    cand = {0: bd, 1: nd}
    dynamic_shapes = {"hist_item": hist, "hist_category": hist, "hist_action": hist,
                      "hist_time": hist, "hist_len": {0: bd}, "cand_item": cand,
                      "cand_category": cand}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, _example_inputs(model), None, dynamo=True,
                                    dynamic_shapes=dynamic_shapes, opset_version=OPSET,
                                    input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                    verbose=False)
    proto = program.model_proto
    # tract cannot unify the exporter's symbolic value_info with concrete shapes: drop it.
    del proto.graph.value_info[:]
    # per-node metadata holds FX stack traces with local paths: bulky and not reproducible
    for node in proto.graph.node:
        del node.metadata_props[:]
    onnx.checker.check_model(proto)
    names = [i.name for i in proto.graph.input]
    if names != list(INPUT_NAMES) or [o.name for o in proto.graph.output] != [OUTPUT_NAME]:
        raise ExportValidationError(f"unexpected graph inputs/outputs {names}")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))


@torch.no_grad()
def torch_scores(model: ATRank, batch: dict[str, np.ndarray]) -> np.ndarray:
    return model(**to_tensors(batch)).numpy()


def score_request(model: ATRank, pre: Preprocessor, request: dict) -> list[float]:
    """PyTorch logits for one raw request (B = 1), through the exporter's preprocessing."""
    return torch_scores(model, pad_batch([pre.encode_request(request)]))[0].tolist()


def ort_session(onnx_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def request_tolerances(model: ATRank, pre: Preprocessor, requests: Sequence[dict]) -> list[float]:
    """Per request: 2 D U max M over its logits (first-order bound on any two float32
    evaluations of them; D at ``pre.max_history``, M measured on ``model``)."""
    d = atrank_logit_roundings(model.config, pre.max_history)
    out = []
    for r in requests:
        m = logit_magnitudes(model, to_tensors(pad_batch([pre.encode_request(r)])))
        out.append(tolerance(d, float(m.max()) if m.numel() else 0.0))
    return out


def _per_request(atol, requests: Sequence[dict], derive) -> list[float]:
    if atol is None:
        return list(derive())
    if isinstance(atol, (int, float)):
        return [float(atol)] * len(requests)
    if len(atol) != len(requests):
        raise ValueError(f"{len(atol)} tolerances for {len(requests)} requests")
    return [float(t) for t in atol]


def validate_onnx(model: ATRank, onnx_path: Path, pre: Preprocessor,
                  requests: Sequence[dict], atol: float | Sequence[float] | None = None,
                  log=print) -> float:
    """Compare onnxruntime with PyTorch on every request alone and on all of them batched
    (mixed history lengths, padded). ``atol``: per request (or one for all; default: derived,
    :func:`request_tolerances`). Returns the max abs diff; raises ExportValidationError if a
    request's logits differ by more than its tolerance (or if batching/padding changes them by
    more)."""
    tols = _per_request(atol, requests, lambda: request_tolerances(model, pre, requests))
    sess = ort_session(onnx_path)
    encoded = [pre.encode_request(r) for r in requests]
    worst = 0.0
    singles = []
    for req, enc, tol in zip(requests, encoded, tols):
        batch = pad_batch([enc])
        ref = torch_scores(model, batch)
        got = sess.run([OUTPUT_NAME], batch)[0]
        if got.shape != ref.shape or got.dtype != np.float32:
            raise ExportValidationError(f"{req.get('name')}: onnxruntime returned "
                                        f"{got.dtype}{got.shape}, expected float32{ref.shape}")
        diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        if not np.isfinite(got).all():
            diff = float("inf")
        if not diff <= tol:
            raise ExportValidationError(
                f"{req.get('name')}: onnxruntime differs from PyTorch by {diff:.6g} > "
                f"its tolerance {tol:.3g} ({onnx_path})")
        worst = max(worst, diff)
        singles.append(ref[0])
    batch = pad_batch(encoded)
    ref = torch_scores(model, batch)
    got = sess.run([OUTPUT_NAME], batch)[0]
    pad_diff = 0.0
    for i, (req, s, tol) in enumerate(zip(requests, singles, tols)):
        n = len(s)
        d = float(np.max(np.abs(got[i, :n] - ref[i, :n]))) if n else 0.0
        if not np.isfinite(got[i, :n]).all():
            d = float("inf")
        p = float(np.max(np.abs(ref[i, :n] - s))) if n else 0.0
        if not d <= tol:
            raise ExportValidationError(
                f"{req.get('name')} (batched): onnxruntime differs from PyTorch by {d:.6g} > "
                f"its tolerance {tol:.3g} ({onnx_path})")
        if not p <= tol:
            raise ExportValidationError(
                f"{req.get('name')}: batched/padded scores differ from single-request scores "
                f"by {p:.6g} > its tolerance {tol:.3g}")
        worst, pad_diff = max(worst, d), max(pad_diff, p)
    log(f"onnxruntime vs PyTorch: max abs diff {worst:.3g} over {len(requests)} requests + "
        f"one batch B={batch['hist_len'].shape[0]} L={batch['hist_item'].shape[1]} "
        f"N={batch['cand_item'].shape[1]} (per-request tolerances {min(tols):.3g}.."
        f"{max(tols):.3g}); batched vs alone {pad_diff:.3g}")
    return worst


def build_golden_requests(ckpt: dict, pre: Preprocessor, seed: int = GOLDEN_SEED) -> list[dict]:
    """About 24 raw requests: real test-time requests plus edge cases (see the package doc)."""
    rng = np.random.default_rng(seed)
    users = ckpt["golden_users"]
    if not users:
        raise ValueError("checkpoint has no golden users")
    tokens = pre.item_vocab.tokens
    categories = pre.category_vocab.tokens

    def candidates(u: dict) -> list[str]:
        extra = [tokens[int(k)] for k in rng.choice(len(tokens), size=min(8, len(tokens)),
                                                    replace=False)]
        return [u["target"], u["negative"], *extra, UNKNOWN_ITEM]

    def behaviors(u: dict, null_every: int) -> list[dict]:
        out = []
        for k, b in enumerate(u["behaviors"]):
            b = dict(b)
            if null_every and k % null_every == 0:
                b["category"] = None
            out.append(b)
        return out

    reqs = []
    longest, others = users[0], users[1:] or users
    for k, u in enumerate(others[:16]):
        reqs.append({"name": f"test-user-{u['user']}", "request_time": u["target_time"],
                     "behaviors": behaviors(u, [1, 3, 0][k % 3]), "candidates": candidates(u)})
    u = others[0]
    reqs.append({"name": "empty-history", "request_time": u["target_time"], "behaviors": [],
                 "candidates": candidates(u)})
    acts = behaviors(u, 0)
    for k, b in enumerate(acts):
        if k % 2 == 0:
            b["action"] = "watched" if k % 4 == 0 else pre.actions[0].upper()
    reqs.append({"name": "unknown-action", "request_time": u["target_time"], "behaviors": acts,
                 "candidates": candidates(u)})
    reqs.append({"name": "history-longer-than-max", "request_time": longest["target_time"],
                 "behaviors": behaviors(longest, 2), "candidates": candidates(longest)})
    u = others[1 % len(others)]
    bs = behaviors(u, 0)
    mid = bs[len(bs) // 2]["timestamp"] if bs else u["target_time"]
    bs.insert(len(bs) // 2, {"item": UNKNOWN_ITEM, "category": None, "action": pre.actions[0],
                             "timestamp": mid})
    bs.insert(len(bs) // 3, {"item": "unknown-with-category", "category": categories[0],
                             "action": pre.actions[-1], "timestamp": mid})
    reqs.append({"name": "unknown-history-item", "request_time": u["target_time"],
                 "behaviors": bs, "candidates": candidates(u)})
    u = others[2 % len(others)]
    bs = behaviors(u, 2)
    cut = bs[len(bs) // 2]["timestamp"] if bs else u["target_time"]
    reqs.append({"name": "behaviors-after-request-time", "request_time": cut - 1,
                 "behaviors": bs, "candidates": candidates(u)})
    u = others[3 % len(others)]
    reqs.append({"name": "caller-order-reversed-stable-sort", "request_time": u["target_time"],
                 "behaviors": list(reversed(behaviors(u, 0))), "candidates": candidates(u)})
    # The model has no positional signal, so caller order only matters where equal timestamps
    # straddle the truncation point: give 7 behaviors around the cut one timestamp and pass
    # them reversed; the stable sort must keep the caller's (reversed) order.
    bs = behaviors(longest, 0)
    cut = len(bs) - pre.max_history
    if cut >= 1 and pre.max_history >= 1:
        lo, hi = max(0, cut - 3), min(len(bs), cut + 4)
        ts = bs[hi - 1]["timestamp"]
        block = [dict(b, timestamp=ts) for b in bs[lo:hi]]
        bs[lo:hi] = block[::-1]
        reqs.append({"name": "ties-at-truncation-boundary",
                     "request_time": longest["target_time"], "behaviors": bs,
                     "candidates": candidates(longest)})
    u = others[4 % len(others)]
    shift = 2_000_000_000 + 4321
    bs = [dict(b, timestamp=b["timestamp"] - shift) for b in behaviors(u, 3)]
    reqs.append({"name": "negative-timestamps", "request_time": u["target_time"] - shift,
                 "behaviors": bs, "candidates": candidates(u)})
    u = others[5 % len(others)]
    bs = behaviors(u, 0)
    for k, b in enumerate(bs):
        b["category"] = "NoSuchGenre" if k % 5 == 0 else categories[k % len(categories)]
    reqs.append({"name": "caller-categories-override-catalog", "request_time": u["target_time"],
                 "behaviors": bs, "candidates": candidates(u)})
    u = others[6 % len(others)]
    reqs.append({"name": "one-known-candidate-and-duplicates", "request_time": u["target_time"],
                 "behaviors": behaviors(u, 0),
                 "candidates": [u["target"], u["target"], "x", UNKNOWN_ITEM]})
    return reqs


def golden_text(golden: dict) -> str:
    """golden.json with one behavior per line (compact, diff-friendly, still plain JSON)."""
    head = {k: v for k, v in golden.items() if k != "requests"}
    parts = [json.dumps(head)[:-1] + ', "requests": [']
    for i, r in enumerate(golden["requests"]):
        fields = [f"  {json.dumps(k)}: {json.dumps(r[k])}"
                  for k in r if k not in ("behaviors",)]
        beh = ",\n".join("    " + json.dumps(b) for b in r["behaviors"])
        fields.insert(2, '  "behaviors": [' + ("\n" + beh + "\n  ]" if beh else "]"))
        parts.append(" {\n" + ",\n".join(fields) + "\n }" + ("," if i + 1 < len(
            golden["requests"]) else ""))
    parts.append("]}")
    text = "\n".join(parts) + "\n"
    if json.loads(text) != json.loads(json.dumps(golden)):
        raise AssertionError("golden.json writer lost information")
    return text


def write_spec(out: Path, ckpt: dict, pre: Preprocessor) -> dict:
    c = ckpt["model_config"]
    spec = {
        "format": "atrank-model-package",
        "spec_version": 1,
        "name": ckpt["name"],
        "created_by": f"atrank-export {__version__} (torch {torch.__version__.split('+')[0]})",
        "graph": {
            "file": "model.onnx",
            "opset": OPSET,
            "inputs": {
                "history": {"item": "hist_item", "category": "hist_category",
                            "action": "hist_action", "time_bucket": "hist_time"},
                "history_length": "hist_len",
                "candidate": {"item": "cand_item", "category": "cand_category"},
            },
            "output": OUTPUT_NAME,
            "output_kind": "logit",
        },
        "groups": [{"name": "item", "max_history": pre.max_history,
                    "features": [{"name": "item", "vocab": "vocab/item.txt"},
                                 {"name": "category", "vocab": "vocab/category.txt"}]}],
        "actions": list(pre.actions),
        "time_buckets": pre.time_buckets.to_json(),
        "catalog": {"file": "catalog.tsv", "key": "item", "features": ["category"]},
        "limits": {"max_candidates": 10000, "max_behaviors": 100000},
        "golden": "golden.json",
        "model": {"preset": "amazon", "embedding_dim": c["embedding_dim"],
                  "hidden": c["hidden"], "heads": c["heads"], "ffn": c["ffn"]},
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return spec


def write_package(checkpoint: Path | dict, out: Path, log=print) -> dict[str, Any]:
    """Write and validate a model package; returns a summary."""
    setup_threads()
    ckpt = load_checkpoint(Path(checkpoint)) if not isinstance(checkpoint, dict) else checkpoint
    model, pre = model_from_checkpoint(ckpt)
    out = Path(out)
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    pre.item_vocab.write(out / "vocab" / "item.txt")
    pre.category_vocab.write(out / "vocab" / "category.txt")
    lines = []
    for item in pre.item_vocab.tokens:
        cate = pre.catalog.get(item)
        if cate is not None:
            if "\t" in cate or "\n" in cate:
                raise ValueError(f"category {cate!r} contains a tab or newline")
            lines.append(f"{item}\t{cate}\n")
    (out / "catalog.tsv").write_text("".join(lines), encoding="utf-8")
    write_spec(out, ckpt, pre)
    export_onnx(model, out / "model.onnx")
    requests = build_golden_requests(ckpt, pre)
    tols = request_tolerances(model, pre, requests)
    for r, tol in zip(requests, tols):
        r["scores"] = score_request(model, pre, r)
        r["tolerance"] = tol
    golden = golden_header(max(tols),
                           atrank_logit_roundings(model.config, pre.max_history),
                           atrank_magnitude_bound(model), version=1)
    golden["requests"] = requests
    (out / "golden.json").write_text(golden_text(golden), encoding="utf-8")
    # round-trip through the package files, so the written vocab/catalog/spec are what is checked
    pre_pkg = Preprocessor.from_package(out)
    diff = validate_onnx(model, out / "model.onnx", pre_pkg, requests, tols, log=log)
    write_manifest(out)                 # last: hashes the files as validated
    return {"package": str(out), "requests": len(requests), "max_abs_diff": diff,
            "atol": max(tols)}


def golden_header(max_tolerance: float, roundings: int, magnitude_bound: float | None,
                  version: int) -> dict:
    """golden.json's fields before ``requests`` (docs/package-format.md): ``tolerance``, the
    largest per-request tolerance (what readers that know no per-request field use);
    ``roundings``, the D behind every tolerance; ``bound_any_request`` = 2 D U M_max when a
    bound M_max on every request's |.|-magnitudes is derived from the weights."""
    head = {"format": "atrank-golden", "version": version, "tolerance": max_tolerance,
            "roundings": roundings}
    if magnitude_bound is not None:
        head["bound_any_request"] = tolerance(roundings, magnitude_bound)
    return head
