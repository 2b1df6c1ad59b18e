"""Checkpoint -> model package, format 3 (docs/package-format.md), validated against
onnxruntime.

Writes, for a trained :class:`~atrank_export.model.ATRank`:

* ``model.onnx`` (the encode-once graph, dynamic users x per-group history lengths x
  candidates), ``encoder.onnx`` (behaviors -> ``encoded`` [B, L, H] + ``mask`` [B, L]) and
  ``scorer.onnx`` (``encoded``, ``mask``, candidates -> logits), traced by
  ``torch.onnx.export(dynamo=True)``, then :func:`~atrank_export.external_data.externalize`:
  every initializer of at least 1 KiB (the embedding tables) lives once in ``tables.bin``;
* ``vocab/<table>.atv`` per embedding table, ``catalog/<group>.atv`` (unless the catalog's
  keys are the group's id vocabulary, whose file the spec then names) + one
  ``catalog/<group>.<feature>.u32`` column per catalog feature (``vocabfile``), and a hashed
  index ``<file>x`` per atv file;
* ``golden.json`` (version 3): raw requests with PyTorch's logits and derived tolerances;
* ``spec.json`` (spec_version 3) with ``files`` (every named file's sha256 and size) last.

Golden scores are PyTorch logits of raw requests through the reference preprocessing
(:class:`~atrank_export.preprocess.Preprocessor`) reading the package just written. Export
fails (:class:`ExportValidationError`) when onnxruntime, on ``model.onnx`` or on
``encoder.onnx`` -> ``scorer.onnx``, differs from PyTorch by more than a request's derived
tolerance (2 D U M, docs/tolerances.md), alone or batched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .external_data import TABLES, externalize
from .manifest import write_manifest
from .model import ATRank, ModelConfig, serving_form, table_name
from .numerics import logit_magnitudes, logit_roundings, magnitude_bound, tolerance
from .preprocess import Preprocessor, TimeBuckets, catalog_columns
from .train import load_checkpoint, setup_threads
from .vocabfile import TableIndex, write_atv, write_atv_index, write_column

OPSET = 20
SPEC_VERSION = 3
UNKNOWN_ID = "no-such-object"
GOLDEN_SEED = 1234


class ExportValidationError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model within tolerance."""


def model_from_checkpoint(ckpt: dict) -> tuple[ATRank, Preprocessor]:
    """The model and the in-memory reference preprocessing of a checkpoint."""
    config = ModelConfig.from_dict(ckpt["model_config"])
    model = ATRank(config)
    # assign: the parameters are the checkpoint's tensors (memory-mapped), not copies of them
    model.load_state_dict(ckpt["state_dict"], assign=True)
    model.eval()
    seed = int(ckpt["hash_seed"])
    tables = {t: TableIndex(keys, config.hash_buckets.get(t, 0), seed)
              for t, keys in ckpt["vocabs"].items()}
    pre = Preprocessor(config, tables, catalog_columns(ckpt["catalogs"], tables, config),
                       ckpt["actions"], TimeBuckets.from_json(ckpt["time_buckets"]))
    return model, pre


class _Encoder(nn.Module):
    def __init__(self, model: ATRank, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model.encode(dict(zip(self.names, args)))


class _Scorer(nn.Module):
    def __init__(self, model: ATRank, cand_names: list[str]):
        super().__init__()
        self.model, self.cand_names = model, cand_names

    def forward(self, encoded, mask, *cands):
        inputs = dict(zip(self.cand_names, cands))
        h = self.model.candidates(inputs)
        u = self.model.vanilla_att(h, encoded, mask)
        return self.model.score(u, h, inputs["cand_id"])


class _Full(nn.Module):
    def __init__(self, model: ATRank, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args)))


def _dims(config: ModelConfig) -> dict[str, dict[int, Any]]:
    b, n = torch.export.Dim("B"), torch.export.Dim("N")
    dims: dict[str, dict[int, Any]] = {}
    for g in config.groups:
        lg = torch.export.Dim(f"L_{g.name}")
        for key in [f"{g.name}_{f}" for f in g.features] + [f"{g.name}_action",
                                                            f"{g.name}_time"]:
            dims[key] = {0: b, 1: lg}
        dims[f"{g.name}_len"] = {0: b}
    for f in config.group(config.target_group).features:
        dims[f"cand_{f}"] = {0: b, 1: n}
    dims["encoded"] = {0: b, 1: torch.export.Dim("L")}
    dims["mask"] = {0: b, 1: dims["encoded"][1]}
    return dims


def _trace(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
           dynamic: tuple, name: str):
    """torch.onnx.export(dynamo=True) -> the checked ModelProto (data in memory)."""
    import onnx

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, None, dynamo=True, dynamic_shapes=dynamic,
                                    opset_version=OPSET, input_names=input_names,
                                    output_names=output_names, verbose=False)
    proto = program.model_proto
    del proto.graph.value_info[:]          # tract cannot unify exporter's symbolic value_info
    for node in proto.graph.node:
        del node.metadata_props[:]          # FX stack traces: bulky, not reproducible
    onnx.checker.check_model(proto)
    got = [i.name for i in proto.graph.input]
    if got != input_names or [o.name for o in proto.graph.output] != output_names:
        raise ExportValidationError(f"{name}: unexpected inputs/outputs {got}")
    return proto


def example_inputs(config: ModelConfig, seed: int = 0,
                   max_rows: int | None = None) -> dict[str, np.ndarray]:
    """Random valid inputs for tracing: B = 3, N = 4, L_g = 5 + 2 g, so no dimension has size
    1 or equals another (none gets specialised). ``max_rows``: draw indices below it (for
    tables traced as placeholders, :func:`_placeholder_tables`)."""
    rng = np.random.default_rng(seed)
    b, n = 3, 4
    out: dict[str, np.ndarray] = {}
    for gi, g in enumerate(config.groups):
        length = 5 + 2 * gi
        for f in g.features:
            rows = config.table_rows(table_name(g.name, f))
            out[f"{g.name}_{f}"] = rng.integers(0, min(rows, max_rows or rows), (b, length))
        out[f"{g.name}_action"] = rng.integers(0, config.n_actions + 1, (b, length))
        out[f"{g.name}_time"] = rng.integers(0, config.n_time_buckets, (b, length))
        out[f"{g.name}_len"] = np.array([length, 2, 0])
    for f in config.group(config.target_group).features:
        rows = config.table_rows(table_name(config.target_group, f))
        out[f"cand_{f}"] = rng.integers(0, min(rows, max_rows or rows), (b, n))
    return {k: v.astype(np.int64) for k, v in out.items()}


#: Embedding tables with more rows than this are traced as placeholders of this many rows.
PLACEHOLDER_ROWS = 64


@contextlib.contextmanager
def _placeholder_tables(model: ATRank, rows: int):
    """While tracing, every embedding table of more than ``rows`` rows is replaced by its first
    ``rows`` rows, so the traced graphs (three of them, each a protobuf with its initializers
    in memory) stay small whatever the catalogue; yields {initializer name: the real table as
    a float32 array (a view, no copy)} for :func:`externalize` to write instead. The tables
    are only ever read through ``Gather`` (``F.embedding``), whose graph does not depend on
    the row count; the validation that follows runs the written package against the real
    model."""
    real: dict[str, tuple[nn.Embedding, nn.Parameter]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding) and mod.num_embeddings > rows:
            real[f"model.{name}.weight"] = (mod, mod.weight)
            mod.weight = nn.Parameter(mod.weight.detach()[:rows].clone(), requires_grad=False)
    try:
        yield {k: w.detach().numpy() for k, (_, w) in real.items()}
    finally:
        for mod, w in real.values():
            mod.weight = w


#: ``export --precision``: float32 (every engine), or int8 (ONNX Runtime only; quantize.py).
PRECISIONS = ("float32", "int8")


def export_graphs(model: ATRank, out: Path, precision: str = "float32") -> dict[str, Any]:
    """model.onnx, encoder.onnx and scorer.onnx into ``out``, their large initializers in one
    shared ``tables.bin``; -> externalize's summary. Large embedding tables are traced as
    placeholders and written to ``tables.bin`` straight from the model's tensors
    (:func:`_placeholder_tables`), so the export holds no copy of them. ``precision="int8"``
    quantizes each graph's dense projections (:mod:`~atrank_export.quantize`) before its
    weights are written."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    model.eval()
    with _placeholder_tables(model, PLACEHOLDER_ROWS) as tables, serving_form(model):
        return _export_graphs(model, out, tables, precision)


def _export_graphs(model: ATRank, out: Path, tables: dict[str, np.ndarray],
                   precision: str = "float32") -> dict[str, Any]:
    names = model.input_names()
    cand_names = [n for n in names if n.startswith("cand_")]
    hist_names = [n for n in names if not n.startswith("cand_")]
    dims = _dims(model.config)
    ex = {k: torch.from_numpy(v) for k, v in example_inputs(model.config,
                                                            max_rows=PLACEHOLDER_ROWS).items()}
    graphs = {}
    # forward(*args) takes its inputs as one varargs tuple: dynamic_shapes mirrors that.
    graphs["model.onnx"] = _trace(_Full(model, names), tuple(ex[n] for n in names), names,
                                  ["logits"], (tuple(dims[n] for n in names),), "model.onnx")
    graphs["encoder.onnx"] = _trace(_Encoder(model, hist_names), tuple(ex[n] for n in hist_names),
                                    hist_names, ["encoded", "mask"],
                                    (tuple(dims[n] for n in hist_names),), "encoder.onnx")
    with torch.no_grad():
        enc, mask = model.encode(ex)
    graphs["scorer.onnx"] = _trace(_Scorer(model, cand_names),
                                   (enc, mask, *(ex[n] for n in cand_names)),
                                   ["encoded", "mask", *cand_names], ["logits"],
                                   (dims["encoded"], dims["mask"],
                                    tuple(dims[n] for n in cand_names)), "scorer.onnx")
    quantized = {}
    if precision == "int8":
        from .quantize import quantize_graph

        for name, proto in graphs.items():
            # the embedding tables stay float32 (and are only ever read by Gather)
            quantized[name] = quantize_graph(proto, skip=frozenset(tables))
            if not quantized[name]["matmul"]:
                raise ExportValidationError(f"{name}: no projection was quantized")
    summary = externalize(graphs, out, substitutes=tables)
    if quantized:
        summary["quantized"] = quantized
    return summary


def golden_requests(ckpt: dict, config: ModelConfig, seed: int = GOLDEN_SEED) -> list[dict]:
    """Real test-time requests plus edge cases: an empty history, each group alone, unknown ids
    (hashed buckets where the table has them) and feature values in every group, a history
    longer than every group's maximum, caller features overriding the catalog, behaviors
    after the request time, unknown actions, equal timestamps across the truncation point."""
    rng = np.random.default_rng(seed)
    users = ckpt["golden_users"]
    if not users:
        raise ValueError("checkpoint has no golden users")
    items = ckpt["vocabs"][table_name(config.target_group, "id")]
    actions = ckpt["actions"]

    def cands(u: dict) -> list[str]:
        extra = [items[int(k)] for k in rng.choice(len(items), size=min(6, len(items)),
                                                   replace=False)]
        return [u["target"], u["negative"], *extra, UNKNOWN_ID, u["target"]]

    reqs: list[dict] = []
    for u in users:
        reqs.append({"name": f"test-user-{u['user']}", "request_time": u["target_time"],
                     "behaviors": [dict(b) for b in u["behaviors"]], "candidates": cands(u)})
    base = next((r for r in reqs[1:] if r["behaviors"]), reqs[0])
    t = base["request_time"]
    reqs.append({"name": "empty-history", "request_time": t, "behaviors": [],
                 "candidates": base["candidates"]})
    for g in config.groups:
        only = [b for b in base["behaviors"] if b["group"] == g.name]
        reqs.append({"name": f"only-{g.name}", "request_time": t, "behaviors": only,
                     "candidates": base["candidates"]})
        unknown = [dict(b) for b in only[:3]] + [
            {"group": g.name, "id": UNKNOWN_ID, "action": actions[0], "timestamp": t - 86400},
            {"group": g.name, "id": UNKNOWN_ID + "-2", "action": actions[-1],
             "timestamp": t - 7200},
            {"group": g.name, "id": UNKNOWN_ID + "-with-features", "action": "never-seen-action",
             "timestamp": t - 3600, "features": {f: "no-such-value" for f in g.features[1:]}}]
        reqs.append({"name": f"unknown-ids-{g.name}", "request_time": t, "behaviors": unknown,
                     "candidates": base["candidates"]})
    longest = reqs[0]
    over = [dict(b) for b in longest["behaviors"]]
    for g in config.groups:
        have = [b for b in over if b["group"] == g.name]
        for k in range(g.max_history + 5 - len(have)):
            src = have[k % len(have)] if have else {"group": g.name, "id": UNKNOWN_ID,
                                                    "action": actions[0]}
            over.append({**src, "timestamp": longest["request_time"] - 86400 * (k + 1) * 7})
    reqs.append({"name": "longer-than-every-max-history", "request_time": longest["request_time"],
                 "behaviors": over, "candidates": longest["candidates"]})
    # equal timestamps straddling the truncation point, in reverse caller order: the stable
    # sort must keep the caller's order
    g0 = config.groups[0]
    mine = [dict(b) for b in over if b["group"] == g0.name]
    mine.sort(key=lambda b: b["timestamp"])
    cut = len(mine) - g0.max_history
    if cut >= 1:
        lo, hi = max(0, cut - 3), min(len(mine), cut + 4)
        ts = mine[hi - 1]["timestamp"]
        block = [dict(b, timestamp=ts) for b in mine[lo:hi]][::-1]
        mine[lo:hi] = block
        reqs.append({"name": "ties-at-truncation-boundary",
                     "request_time": longest["request_time"], "behaviors": mine,
                     "candidates": longest["candidates"]})
    override = []
    for b in base["behaviors"][-6:]:
        g = config.group(b["group"])
        b = dict(b)
        if len(g.features) > 1:
            f = g.features[-1]
            other = ckpt["vocabs"][table_name(g.name, f)]
            b["features"] = {f: other[int(rng.integers(len(other)))] if other else "x"}
        override.append(b)
    reqs.append({"name": "caller-features-override-catalog", "request_time": t,
                 "behaviors": override, "candidates": base["candidates"]})
    future = ([dict(b) for b in base["behaviors"][-4:]]
              + [{**base["behaviors"][-1], "timestamp": t + 30 * 86400}]
              if base["behaviors"] else [])
    reqs.append({"name": "behaviors-after-request-time", "request_time": t, "behaviors": future,
                 "candidates": base["candidates"]})
    return reqs


def ort_session(onnx_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def _per_request(atol, requests: Sequence[dict], derive) -> list[float]:
    if atol is None:
        return list(derive())
    if isinstance(atol, (int, float)):
        return [float(atol)] * len(requests)
    if len(atol) != len(requests):
        raise ValueError(f"{len(atol)} tolerances for {len(requests)} requests")
    return [float(t) for t in atol]


@torch.no_grad()
def _torch_logits(model: ATRank, batch: dict[str, np.ndarray]) -> np.ndarray:
    return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).numpy()


def request_tolerances(model: ATRank, pre: Preprocessor,
                       requests: Sequence[dict]) -> list[float]:
    """Per request: 2 D U max M over its logits (first-order bound on any two float32
    evaluations of them; D at every group's max_history, M measured on ``model``)."""
    d = logit_roundings(model.config)
    out = []
    for r in requests:
        batch = {k: torch.from_numpy(v) for k, v in pre.batch([r]).items()}
        m = logit_magnitudes(model, batch)[:, :len(r["candidates"])]
        out.append(tolerance(d, float(m.max()) if m.numel() else 0.0))
    return out


def validate(model: ATRank, out: Path, pre: Preprocessor,
             requests: Sequence[dict], atol: float | Sequence[float] | None = None,
             log=print) -> float:
    """onnxruntime vs PyTorch: full graph and encoder -> scorer, every request alone and all of
    them in one padded batch. ``atol``: per request (or one for all; default: derived,
    :func:`request_tolerances`). Raises ExportValidationError where a request's logits differ
    by more than its tolerance."""
    tols = _per_request(atol, requests, lambda: request_tolerances(model, pre, requests))
    full, enc_s, sc_s = (ort_session(out / f) for f in ("model.onnx", "encoder.onnx",
                                                         "scorer.onnx"))
    names = model.input_names()
    cand = [n for n in names if n.startswith("cand_")]
    worst = 0.0
    singles = []
    batches = [pre.batch([r]) for r in requests] + [pre.batch(requests)]
    for j, batch in enumerate(batches):
        ref = _torch_logits(model, batch)
        got = full.run(["logits"], batch)[0]
        hist = {k: v for k, v in batch.items() if k not in cand}
        encoded, mask = enc_s.run(["encoded", "mask"], hist)
        split = sc_s.run(["logits"], {"encoded": encoded, "mask": mask,
                                      **{k: batch[k] for k in cand}})[0]
        rows = [j] if j < len(requests) else range(len(requests))
        for i, r in enumerate(rows):
            n = len(requests[r]["candidates"])
            for what, g in (("model.onnx", got), ("encoder.onnx -> scorer.onnx", split)):
                g = g[i, :n]
                d = float(np.max(np.abs(g - ref[i, :n]))) if n else 0.0
                if not np.isfinite(g).all():
                    d = float("inf")
                if not d <= tols[r]:
                    raise ExportValidationError(
                        f"{requests[r].get('name')}: onnxruntime ({what}) differs from PyTorch "
                        f"by {d:.6g} > its tolerance {tols[r]:.3g}")
                worst = max(worst, d)
        singles.append(ref)
    together = singles.pop()
    pad = 0.0
    for i, (s, tol) in enumerate(zip(singles, tols)):
        n = len(requests[i]["candidates"])
        p = float(np.max(np.abs(together[i, :n] - s[0, :n]))) if n else 0.0
        if not p <= tol:
            raise ExportValidationError(
                f"{requests[i].get('name')}: batched scores differ from single ones by "
                f"{p:.6g} > its tolerance {tol:.3g}")
        pad = max(pad, p)
    log(f"onnxruntime vs PyTorch (model.onnx and encoder.onnx -> scorer.onnx): max abs diff "
        f"{worst:.3g} over {len(requests)} requests + one padded batch (per-request "
        f"tolerances {min(tols):.3g}..{max(tols):.3g}); batched vs alone {pad:.3g}")
    return worst


def validate_int8(model: ATRank, out: Path, pre: Preprocessor, requests: Sequence[dict],
                  tols: Sequence[float], log=print) -> tuple[float, float, list[np.ndarray]]:
    """The int8 graphs on onnxruntime, every request alone: ``model.onnx`` against
    ``encoder.onnx`` -> ``scorer.onnx`` within the request's float32 tolerance (both quantize
    the same activation tensors, so only float32 rounding separates them), and both against
    PyTorch's float32 logits (the drift, reported). -> (largest model/split difference,
    largest drift, each request's model.onnx logits: the golden scores).

    Batched requests are not compared with single ones: an activation's int8 scale is taken
    over the whole tensor, so it depends on the other rows of the call (quantize.py)."""
    full, enc_s, sc_s = (ort_session(out / f) for f in ("model.onnx", "encoder.onnx",
                                                         "scorer.onnx"))
    cand = [n for n in model.input_names() if n.startswith("cand_")]
    worst = drift = 0.0
    scores = []
    for r, tol in zip(requests, tols):
        batch = pre.batch([r])
        n = len(r["candidates"])
        got = full.run(["logits"], batch)[0][0, :n]
        encoded, mask = enc_s.run(["encoded", "mask"],
                                  {k: v for k, v in batch.items() if k not in cand})
        split = sc_s.run(["logits"], {"encoded": encoded, "mask": mask,
                                      **{k: batch[k] for k in cand}})[0][0, :n]
        if not (np.isfinite(got).all() and np.isfinite(split).all()):
            raise ExportValidationError(f"{r.get('name')}: int8 logits are not finite")
        d = float(np.max(np.abs(got - split))) if n else 0.0
        if not d <= tol:
            raise ExportValidationError(
                f"{r.get('name')}: int8 model.onnx and encoder.onnx -> scorer.onnx differ by "
                f"{d:.6g} > its tolerance {tol:.3g}")
        ref = _torch_logits(model, batch)[0, :n]
        drift = max(drift, float(np.max(np.abs(got - ref))) if n else 0.0)
        worst = max(worst, d)
        scores.append(got)
    log(f"int8 on onnxruntime: model.onnx vs encoder.onnx -> scorer.onnx max abs diff "
        f"{worst:.3g} over {len(requests)} requests; largest drift from PyTorch's float32 "
        f"logits {drift:.3g}")
    return worst, drift, scores


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


TIE_ORDER = ("Behaviors are ordered by timestamp; behaviors with equal timestamps keep the order "
             "the request lists them in (training kept the log's order: file order). Per "
             "group, the most recent max_history behaviors in that order are used.")


def input_mapping(c, ckpt: dict) -> dict:
    """What the package's inputs mean, from the reader that built its training data: each
    action's rule, each feature's source, the tie order (spec.json "input_mapping", and the
    package README)."""
    rules = dict(ckpt.get("action_rules") or {})
    sources = dict(ckpt.get("feature_sources") or {})
    hashed = c.hash_buckets
    features: dict[str, str] = {}
    for g in c.groups:
        for f in g.features:
            t = table_name(g.name, f)
            if f == "id":
                rest = (f"hashed into one of {hashed[t]} buckets" if hashed.get(t)
                        else "unknown (row 0)")
                features[f"{g.name}.id"] = (f"the {g.name}'s id, looked up in vocab/{t}.atv; "
                                            f"an id not in it is {rest}")
            else:
                features[f"{g.name}.{f}"] = sources.get(
                    f, "no source recorded by the reader") + (
                    "; given on a behavior it overrides the catalog, a candidate's comes "
                    "from the catalog only")
    return {
        "actions": {a: rules.get(a, "no rule recorded by the reader")
                    for a in ckpt["actions"]},
        "unknown_action": "a missing action, or one not listed, is index 0 (unknown)",
        "features": features,
        "order": TIE_ORDER,
        "time": ("a behavior's time bucket comes from the gap request_time // unit_seconds - "
                 "timestamp // unit_seconds (+ offset), bucketed by time_buckets.boundaries; "
                 "a behavior after request_time gets bucket 0"),
        "candidates": (f"ids of the target group ({c.target_group}); their other features "
                       "come from its catalog"),
    }


def package_readme(spec: dict) -> str:
    """README.md of a package: what it is and what its inputs mean (from spec.json)."""
    m = spec["input_mapping"]
    lines = [f"# {spec['name']}", "",
             (f"An atrank model package (format {spec['spec_version']}), written by "
              f"{spec['created_by']}. `spec.json` is the authority; this file repeats its "
              "`input_mapping` for people."), "", "## Actions", ""]
    lines += [f"- `{a}`: {r}" for a, r in m["actions"].items()]
    lines += [f"- {m['unknown_action']}", "", "## Features", ""]
    lines += [f"- `{f}`: {src}" for f, src in m["features"].items()]
    lines += ["", "## Order, time and candidates", "", f"- {m['order']}", f"- {m['time']}",
              f"- {m['candidates']}", "", "## Scoring a request from the shell", "",
              "    atrank score -m . requests.jsonl   # cargo feature batch; see the README",
              ""]
    return "\n".join(lines)


def catalog_keys_file(group: str, keys: list[str], config, ckpt: dict) -> str:
    """The atv file that holds group ``group``'s catalog keys: its id vocabulary's when the two
    hold the same keys (one file, one index, and the runtime then reads catalog row i - 1 for
    id index i with no second look-up), else ``catalog/<group>.atv``."""
    table = config.table(group, "id")
    vocab = ckpt["vocabs"].get(table)
    if vocab is not None and len(vocab) == len(keys) and list(vocab) == list(keys):
        return f"vocab/{table}.atv"
    return f"catalog/{group}.atv"


def write_spec(out: Path, model: ATRank, ckpt: dict, name: str,
               catalogs: dict[str, tuple[list[str], dict[str, np.ndarray]]],
               keys_files: dict[str, str], precision: str = "float32") -> dict:
    """spec.json and the package README; ``keys_files``: each catalog's keys file
    (``catalog_keys_file``); ``precision`` goes to ``graph.precision`` (written for int8
    only: a reader that knows no such field reads float32)."""
    c = model.config
    names = model.input_names()
    groups = []
    for g in c.groups:
        entry: dict[str, Any] = {
            "name": g.name, "max_history": g.max_history,
            "features": [{"name": f, "table": table_name(g.name, f),
                          "input": f"{g.name}_{f}"} for f in g.features],
            "inputs": {"action": f"{g.name}_action", "time_bucket": f"{g.name}_time",
                       "length": f"{g.name}_len"}}
        if g.name in catalogs:
            keys, cols = catalogs[g.name]
            entry["catalog"] = {"keys": keys_files[g.name],
                                "rows": len(keys),
                                "columns": {f: f"catalog/{g.name}.{f}.u32" for f in cols}}
        groups.append(entry)
    spec = {
        "format": "atrank-model-package", "spec_version": SPEC_VERSION, "name": name,
        "created_by": f"atrank-export {__version__} (torch {torch.__version__.split('+')[0]})",
        "graph": {"file": "model.onnx", "opset": OPSET, "inputs": names, "output": "logits",
                  "output_kind": "logit",
                  "encoder": {"file": "encoder.onnx", "outputs": ["encoded", "mask"]},
                  "scorer": {"file": "scorer.onnx",
                             "inputs": ["encoded", "mask"] + [n for n in names
                                                             if n.startswith("cand_")],
                             "output": "logits"},
                  "external_data": [TABLES],
                  **({"precision": precision} if precision != "float32" else {})},
        "hash": {"function": "xxh3_64", "seed": int(ckpt["hash_seed"])},
        "tables": {t: {"vocab": f"vocab/{t}.atv", "size": len(keys),
                       "hash_buckets": c.hash_buckets.get(t, 0)}
                   for t, keys in sorted(ckpt["vocabs"].items())},
        # every atv file's hashed index (docs/package-format.md, "The atv index file")
        "atv_index": {**{f"vocab/{t}.atv": f"vocab/{t}.atvx" for t in sorted(ckpt["vocabs"])},
                      **{f: f"{f}x" for f in keys_files.values() if f.startswith("catalog/")}},
        "groups": groups,
        "target_group": c.target_group,
        "candidate_inputs": {f: f"cand_{f}" for f in c.group(c.target_group).features},
        "actions": list(ckpt["actions"]),
        "action_rules": dict(ckpt.get("action_rules") or {}),
        "input_mapping": input_mapping(c, ckpt),
        "time_buckets": dict(ckpt["time_buckets"]),
        "limits": {"max_candidates": 10000, "max_behaviors": 100000},
        "golden": "golden.json",
        "model": c.to_dict(),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(package_readme(spec), encoding="utf-8")
    return spec


def write_package(checkpoint: Path | dict, out: Path, log=print,
                  precision: str = "float32") -> dict[str, Any]:
    """Write and validate a format-3 model package; returns a summary. ``precision="int8"``:
    the graphs' projections quantized (:mod:`~atrank_export.quantize`), golden scores from
    onnxruntime on them (:func:`validate_int8`), for ONNX Runtime only."""
    setup_threads()
    ckpt = load_checkpoint(Path(checkpoint)) if not isinstance(checkpoint, dict) else checkpoint
    model, pre_mem = model_from_checkpoint(ckpt)
    out = Path(out)
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    summary = export_graphs(model, out, precision)
    for t, keys in ckpt["vocabs"].items():
        write_atv(out / "vocab" / f"{t}.atv", keys)
        write_atv_index(out / "vocab" / f"{t}.atvx", keys)
    raw = {g: (list(ckpt["catalogs"][g]["keys"]), cols)
           for g, (_keys, cols) in pre_mem.catalogs.items()}
    keys_files = {g: catalog_keys_file(g, keys, model.config, ckpt)
                  for g, (keys, _cols) in raw.items()}
    for g, (keys, cols) in raw.items():
        if keys_files[g].startswith("catalog/"):
            write_atv(out / keys_files[g], keys)
            write_atv_index(out / f"{keys_files[g]}x", keys)
        for f, col in cols.items():
            write_column(out / "catalog" / f"{g}.{f}.u32", col)
    write_spec(out, model, ckpt, ckpt["name"], raw, keys_files, precision)
    # the reference preprocessing reads the package just written (atv, hashes, columns)
    pre = Preprocessor.from_package(out)
    requests = golden_requests(ckpt, model.config)
    tols = request_tolerances(model, pre, requests)
    drift = None
    if precision == "int8":
        worst, drift, scores = validate_int8(model, out, pre, requests, tols, log=log)
    else:
        worst = validate(model, out, pre, requests, tols, log=log)
        scores = [_torch_logits(model, pre.batch([r]))[0] for r in requests]
    for r, tol, sc in zip(requests, tols, scores):
        r["scores"] = [float(x) for x in sc]
        r["tolerance"] = tol
    golden = golden_header(max(tols), logit_roundings(model.config), magnitude_bound(model),
                           version=SPEC_VERSION)
    if drift is not None:
        golden["precision"] = precision
        golden["max_abs_drift_from_float32"] = drift
    golden["requests"] = requests
    (out / "golden.json").write_text(golden_text(golden), encoding="utf-8")
    write_manifest(out)                 # last: hashes the files as validated
    log(f"wrote package {out}: {summary['bytes']} bytes of tables.bin "
        f"({summary['tensors']} tensors, {summary['shared']} shared references)")
    return {"package": str(out), "requests": len(requests), "max_abs_diff": worst,
            "atol": max(tols), "tables_bin": summary, "precision": precision,
            "max_abs_drift_from_float32": drift}


def golden_header(max_tolerance: float, roundings: int, bound: float | None,
                  version: int) -> dict:
    """golden.json's fields before ``requests`` (docs/package-format.md): ``tolerance``, the
    largest per-request tolerance (what readers that know no per-request field use);
    ``roundings``, the D behind every tolerance; ``bound_any_request`` = 2 D U M_max when a
    bound M_max on every request's |.|-magnitudes is derived from the weights."""
    head = {"format": "atrank-golden", "version": version, "tolerance": max_tolerance,
            "roundings": roundings}
    if bound is not None:
        head["bound_any_request"] = tolerance(roundings, bound)
    return head
