"""Multi-group model package (format version 2, docs/package-format.md) with split graphs.

Writes, for a trained :class:`~atrank_export.multigroup.MultiGroupATRank`:

* ``model.onnx``: the encode-once graph, dynamic users x per-group history lengths x
  candidates (``B``, ``L_<group>``, ``N``);
* ``encoder.onnx`` (behaviors -> ``encoded`` [B, L, H] + ``mask`` [B, L]) and ``scorer.onnx``
  (``encoded``, ``mask``, candidates -> logits), so a runtime can cache a user's encoding;
* ``spec.json`` (version 2), ``vocab/<table>.txt``, ``catalog/<group>.tsv`` (header row of
  feature names, then ``id<TAB>values``), ``golden.json`` (version 2).

:class:`MultiGroupPreprocessor` is the reference implementation of the version-2 request
rules; golden scores are PyTorch logits of raw requests passed through it, and export fails
(:class:`~atrank_export.export.ExportValidationError`) when onnxruntime, on the full graph or
on encoder + scorer, differs from PyTorch by more than the request's derived tolerance
(2 D U M, written into golden.json per request; docs/tolerances.md).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .export import (
    OPSET,
    ExportValidationError,
    _per_request,
    golden_header,
    ort_session,
)
from .manifest import write_manifest
from .multigroup import MultiGroupATRank, MultiGroupConfig, MultiGroupSplit, table_name
from .numerics import (
    multigroup_logit_magnitudes,
    multigroup_logit_roundings,
    multigroup_magnitude_bound,
    tolerance,
)
from .preprocess import TimeBuckets, Vocab

SPEC_VERSION = 2
UNKNOWN_ID = "no-such-object"


class MultiGroupPreprocessor:
    """Raw requests -> graph inputs (spec version 2).

    A request is ``{"request_time": t, "behaviors": [...], "candidates": [ids]}``; a behavior
    is ``{"group": g, "id": oid, "action": a, "timestamp": t, "features": {name: value}}``
    (``group`` defaults to the target group, ``features`` is optional). Rules: ids and feature
    values map through their table's vocabulary (line k -> k+1, unknown -> 0); a feature not
    given by the caller comes from the group's catalog, else 0; actions as in version 1; time
    buckets as in version 1; per group, behaviors are stably sorted by timestamp and only the
    most recent ``max_history`` kept; a group with no behaviors is sent as L = 1 with length 0.
    Candidates are ids of the target group with all features from its catalog. A behavior of
    a group the model does not have is an error.
    """

    def __init__(self, config: MultiGroupConfig, vocabs: Mapping[str, Vocab],
                 catalogs: Mapping[str, Mapping[str, Mapping[str, str]]], actions: Sequence[str],
                 time_buckets: TimeBuckets):
        self.config = config
        self.vocabs = dict(vocabs)
        self.catalogs = {g: dict(c) for g, c in catalogs.items()}
        self.actions = list(actions)
        self._action = {a: k + 1 for k, a in enumerate(self.actions)}
        self.time_buckets = time_buckets

    @classmethod
    def from_split(cls, split: MultiGroupSplit) -> MultiGroupPreprocessor:
        return cls(split.config, split.vocabs, split.catalogs, split.actions, split.time_buckets)

    @classmethod
    def from_package(cls, package_dir: str | Path) -> MultiGroupPreprocessor:
        """Reads a version-2 package's spec, vocabularies and catalogs (no model)."""
        from .multigroup import GroupConfig

        package_dir = Path(package_dir)
        spec = json.loads((package_dir / "spec.json").read_text(encoding="utf-8"))
        if spec.get("format") != "atrank-model-package" or spec.get("spec_version") != 2:
            raise ValueError(f"{package_dir} is not an atrank model package of spec_version 2")
        vocabs = {t: Vocab.read(package_dir / f) for t, f in spec["tables"].items()}
        catalogs: dict[str, dict[str, dict[str, str]]] = {}
        groups = []
        for g in spec["groups"]:
            feats = [f["name"] for f in g["features"]]
            groups.append(GroupConfig(g["name"], feats, int(g["max_history"])))
            table: dict[str, dict[str, str]] = {}
            if g.get("catalog"):
                lines = (package_dir / g["catalog"]).read_text(encoding="utf-8").split("\n")
                header = lines[0].split("\t")
                for line in lines[1:]:
                    if line:
                        cells = line.split("\t")
                        table[cells[0]] = {k: v for k, v in zip(header[1:], cells[1:]) if v}
            catalogs[g["name"]] = table
        config = MultiGroupConfig(groups=groups, table_sizes={t: len(v) for t, v in vocabs.items()},
                                  n_actions=len(spec["actions"]), target_group=spec["target_group"])
        return cls(config, vocabs, catalogs, spec["actions"], TimeBuckets.from_json(spec["time_buckets"]))

    def _index(self, group: str, feature: str, value: str | None) -> int:
        return self.vocabs[table_name(group, feature)].index(value)

    def _feature(self, group: str, oid: str, feature: str, own: Mapping[str, Any]) -> int:
        if feature == "id":
            return self._index(group, "id", oid)
        value = own.get(feature)
        if value is None:
            value = self.catalogs.get(group, {}).get(oid, {}).get(feature)
        return self._index(group, feature, value)

    def encode(self, request: Mapping[str, Any]) -> dict[str, list]:
        c = self.config
        names = {g.name for g in c.groups}
        per_group: dict[str, list] = {g.name: [] for g in c.groups}
        for k, b in enumerate(request["behaviors"]):
            g = b.get("group") or c.target_group
            if g not in names:
                raise ValueError(f"behaviors[{k}].group {g!r} is not one of {sorted(names)}")
            known = [f for f in c.group(g).features if f != "id"]
            for name in b.get("features") or {}:
                if name not in known:  # a typo would otherwise be silently ignored
                    raise ValueError(
                        f"behaviors[{k}].features: {name!r} is not a feature of group {g!r} "
                        f"({known})")
            per_group[g].append(b)
        t_req = request["request_time"]
        out: dict[str, list] = {}
        for g in c.groups:
            seq = sorted(per_group[g.name], key=lambda b: b["timestamp"])
            seq = seq[len(seq) - min(len(seq), g.max_history):]
            for f in g.features:
                out[f"{g.name}_{f}"] = [self._feature(g.name, b["id"], f, b.get("features") or {})
                                        for b in seq]
            out[f"{g.name}_action"] = [self._action.get(b.get("action"), 0) for b in seq]
            out[f"{g.name}_time"] = self.time_buckets.buckets(
                t_req, [b["timestamp"] for b in seq]).tolist()
            out[f"{g.name}_len"] = [len(seq)]
        t = c.group(c.target_group)
        for f in t.features:
            out[f"cand_{f}"] = [self._feature(t.name, cid, f, {}) for cid in request["candidates"]]
        return out

    def pad(self, encoded: Sequence[Mapping[str, list]]) -> dict[str, np.ndarray]:
        c = self.config
        b = len(encoded)
        out: dict[str, np.ndarray] = {}
        for g in c.groups:
            lens = [e[f"{g.name}_len"][0] for e in encoded]
            length = max([1] + lens)
            for key in [f"{g.name}_{f}" for f in g.features] + [f"{g.name}_action",
                                                                f"{g.name}_time"]:
                arr = np.zeros((b, length), dtype=np.int64)
                for r, e in enumerate(encoded):
                    arr[r, :len(e[key])] = e[key]
                out[key] = arr
            out[f"{g.name}_len"] = np.array(lens, dtype=np.int64)
        n = max([1] + [len(e["cand_id"]) for e in encoded])
        for f in c.group(c.target_group).features:
            arr = np.zeros((b, n), dtype=np.int64)
            for r, e in enumerate(encoded):
                arr[r, :len(e[f"cand_{f}"])] = e[f"cand_{f}"]
            out[f"cand_{f}"] = arr
        return out

    def batch(self, requests: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        return self.pad([self.encode(r) for r in requests])


# ---------------------------------------------------------------------------------------------
# Graphs


class _Encoder(nn.Module):
    def __init__(self, model: MultiGroupATRank, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model.encode(dict(zip(self.names, args)))


class _Scorer(nn.Module):
    def __init__(self, model: MultiGroupATRank, cand_names: list[str]):
        super().__init__()
        self.model, self.cand_names = model, cand_names

    def forward(self, encoded, mask, *cands):
        inputs = dict(zip(self.cand_names, cands))
        h = self.model.candidates(inputs)
        u = self.model.vanilla_att(h, encoded, mask)
        bias = torch.nn.functional.embedding(inputs["cand_id"], self.model.item_bias[:, None])
        if self.model.config.ranking == "dot":
            return bias[..., 0] + (u * h).sum(-1)
        return bias[..., 0] + self.model.rank(torch.cat([u, h, u * h], dim=-1))[..., 0]


class _Full(nn.Module):
    def __init__(self, model: MultiGroupATRank, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args)))


def _dims(config: MultiGroupConfig) -> dict[str, dict[int, Any]]:
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


def _save(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
          dynamic: tuple, path: Path) -> None:
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
        raise ExportValidationError(f"{path.name}: unexpected inputs/outputs {got}")
    onnx.save(proto, str(path))


def export_graphs(model: MultiGroupATRank, example: dict[str, np.ndarray], out: Path) -> None:
    """model.onnx, encoder.onnx and scorer.onnx; ``example`` must have every dimension > 1
    and distinct sizes so no dimension is specialised while tracing."""
    model.eval()
    names = model.input_names()
    cand_names = [n for n in names if n.startswith("cand_")]
    hist_names = [n for n in names if not n.startswith("cand_")]
    dims = _dims(model.config)
    ex = {k: torch.from_numpy(v) for k, v in example.items()}
    # forward(*args) takes its inputs as one varargs tuple: dynamic_shapes mirrors that.
    _save(_Full(model, names), tuple(ex[n] for n in names), names, ["logits"],
          (tuple(dims[n] for n in names),), out / "model.onnx")
    _save(_Encoder(model, hist_names), tuple(ex[n] for n in hist_names), hist_names,
          ["encoded", "mask"], (tuple(dims[n] for n in hist_names),), out / "encoder.onnx")
    with torch.no_grad():
        enc, mask = model.encode(ex)
    _save(_Scorer(model, cand_names), (enc, mask, *(ex[n] for n in cand_names)),
          ["encoded", "mask", *cand_names], ["logits"],
          (dims["encoded"], dims["mask"], tuple(dims[n] for n in cand_names)),
          out / "scorer.onnx")


# ---------------------------------------------------------------------------------------------
# Golden requests and validation


def _raw(event, with_features: bool) -> dict:
    b = {"group": event.group, "id": event.object_id, "action": event.action,
         "timestamp": int(event.timestamp)}
    if with_features and event.features:
        b["features"] = dict(event.features)
    return b


def golden_requests(split: MultiGroupSplit, n_users: int = 12, seed: int = 1234) -> list[dict]:
    """Real test-time requests plus edge cases: empty history, each group alone, unknown ids
    in every group, a history longer than every group's maximum, caller features overriding
    the catalog, behaviors after the request time, unknown actions."""
    rng = np.random.default_rng(seed)
    c = split.config
    items = split.vocabs[table_name(c.target_group, "id")].tokens
    reqs: list[dict] = []

    def cands(target: str, neg_index: int) -> list[str]:
        extra = [items[int(k)] for k in rng.choice(len(items), size=min(6, len(items)),
                                                   replace=False)]
        return [target, items[neg_index - 1], *extra, UNKNOWN_ID]

    order = rng.permutation(len(split.test))[:n_users]
    lengths = split.test[:, 1]
    longest = int(np.argmax(lengths))
    picked = [longest] + [int(k) for k in order if int(k) != longest]
    base = None
    for k in picked[:n_users]:
        u, p, neg = (int(x) for x in split.test[k])
        seq = split.sequences[u]
        req = {"name": f"test-user-{split.users[u]}", "request_time": int(seq[p].timestamp),
               "behaviors": [_raw(e, True) for e in seq[:p]],
               "candidates": cands(seq[p].object_id, neg)}
        reqs.append(req)
        base = base or req
    assert base is not None
    t = base["request_time"]
    reqs.append({"name": "empty-history", "request_time": t, "behaviors": [],
                 "candidates": base["candidates"]})
    for g in c.groups:
        only = [b for b in base["behaviors"] if b["group"] == g.name]
        reqs.append({"name": f"only-{g.name}", "request_time": t, "behaviors": only,
                     "candidates": base["candidates"]})
        unknown = [dict(b) for b in only[:3]] + [
            {"group": g.name, "id": UNKNOWN_ID, "action": split.actions[0], "timestamp": t - 86400},
            {"group": g.name, "id": UNKNOWN_ID + "-with-features", "action": "never-seen-action",
             "timestamp": t - 3600, "features": {f: "no-such-value" for f in g.features[1:]}}]
        reqs.append({"name": f"unknown-ids-{g.name}", "request_time": t, "behaviors": unknown,
                     "candidates": base["candidates"]})
    over = [dict(b) for b in base["behaviors"]]
    for g in c.groups:
        have = [b for b in over if b["group"] == g.name]
        for k in range(g.max_history + 5 - len(have)):
            src = have[k % len(have)] if have else {"group": g.name, "id": UNKNOWN_ID,
                                                    "action": split.actions[0]}
            over.append({**src, "timestamp": t - 86400 * (k + 1) * 7})
    reqs.append({"name": "longer-than-every-max-history", "request_time": t, "behaviors": over,
                 "candidates": base["candidates"]})
    override = []
    for b in base["behaviors"][-6:]:
        g = c.group(b["group"])
        b = dict(b)
        if len(g.features) > 1:
            f = g.features[-1]
            other = split.vocabs[table_name(g.name, f)].tokens
            b["features"] = {f: other[int(rng.integers(len(other)))]}
        override.append(b)
    reqs.append({"name": "caller-features-override-catalog", "request_time": t,
                 "behaviors": override, "candidates": base["candidates"]})
    future = [dict(b) for b in base["behaviors"][-4:]] + [
        {**base["behaviors"][-1], "timestamp": t + 30 * 86400}] if base["behaviors"] else []
    reqs.append({"name": "behaviors-after-request-time", "request_time": t, "behaviors": future,
                 "candidates": base["candidates"]})
    return reqs


@torch.no_grad()
def _torch_logits(model: MultiGroupATRank, batch: dict[str, np.ndarray]) -> np.ndarray:
    return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).numpy()


def request_tolerances(model: MultiGroupATRank, pre: MultiGroupPreprocessor,
                       requests: Sequence[dict]) -> list[float]:
    """Per request: 2 D U max M over its logits (first-order bound on any two float32
    evaluations of them; D at every group's max_history, M measured on ``model``)."""
    d = multigroup_logit_roundings(model.config)
    out = []
    for r in requests:
        batch = {k: torch.from_numpy(v) for k, v in pre.batch([r]).items()}
        m = multigroup_logit_magnitudes(model, batch)[:, :len(r["candidates"])]
        out.append(tolerance(d, float(m.max()) if m.numel() else 0.0))
    return out


def validate(model: MultiGroupATRank, out: Path, pre: MultiGroupPreprocessor,
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


# ---------------------------------------------------------------------------------------------
# The package


def spec_v2(model: MultiGroupATRank, pre: MultiGroupPreprocessor, name: str) -> dict:
    c = model.config
    names = model.input_names()
    groups = []
    for g in c.groups:
        groups.append({
            "name": g.name, "max_history": g.max_history,
            "features": [{"name": f, "table": table_name(g.name, f),
                          "input": f"{g.name}_{f}"} for f in g.features],
            "inputs": {"action": f"{g.name}_action", "time_bucket": f"{g.name}_time",
                       "length": f"{g.name}_len"},
            "catalog": f"catalog/{g.name}.tsv",
        })
    return {
        "format": "atrank-model-package", "spec_version": SPEC_VERSION, "name": name,
        "created_by": f"atrank-export {__version__} (torch {torch.__version__})",
        "graph": {"file": "model.onnx", "opset": OPSET, "inputs": names, "output": "logits",
                  "output_kind": "logit",
                  "encoder": {"file": "encoder.onnx", "outputs": ["encoded", "mask"]},
                  "scorer": {"file": "scorer.onnx",
                             "inputs": ["encoded", "mask"] + [n for n in names
                                                             if n.startswith("cand_")],
                             "output": "logits"}},
        "tables": {t: f"vocab/{t}.txt" for t in sorted(pre.vocabs)},
        "groups": groups,
        "target_group": c.target_group,
        "candidate_inputs": {f: f"cand_{f}" for f in c.group(c.target_group).features},
        "actions": pre.actions,
        "time_buckets": pre.time_buckets.to_json(),
        "limits": {"max_candidates": 10000, "max_behaviors": 100000},
        "golden": "golden.json",
        "model": c.to_dict(),
    }


def write_package(model: MultiGroupATRank, split: MultiGroupSplit, out: Path,
                  name: str = "atrank-multigroup", log=print) -> Path:
    out = Path(out)
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    model.eval()
    pre = MultiGroupPreprocessor.from_split(split)
    requests = golden_requests(split)
    example_reqs = [r for r in requests if all(
        len([b for b in r["behaviors"] if b["group"] == g.name]) > 2 for g in model.config.groups)]
    example = pre.batch(example_reqs[:3] or requests[:3])
    export_graphs(model, example, out)
    for table, vocab in pre.vocabs.items():
        vocab.write(out / "vocab" / f"{table}.txt")
    for g in model.config.groups:
        feats = g.features[1:]
        lines = ["\t".join(["id", *feats])]
        for oid in sorted(split.catalogs.get(g.name, {})):
            row = split.catalogs[g.name][oid]
            lines.append("\t".join([oid, *(row.get(f, "") for f in feats)]))
        (out / "catalog" / f"{g.name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tols = request_tolerances(model, pre, requests)
    worst = validate(model, out, pre, requests, tols, log=log)
    for r, tol in zip(requests, tols):
        r["scores"] = [float(x) for x in _torch_logits(model, pre.batch([r]))[0]]
        r["tolerance"] = tol
    golden = golden_header(max(tols), multigroup_logit_roundings(model.config),
                           multigroup_magnitude_bound(model), version=SPEC_VERSION)
    golden["requests"] = requests
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    (out / "spec.json").write_text(json.dumps(spec_v2(model, pre, name), indent=2) + "\n",
                                   encoding="utf-8")
    write_manifest(out)                 # spec.json's "files": every file it names, hashed
    log(f"wrote package {out} ({len(requests)} golden requests; max |onnxruntime - torch| = "
        f"{worst:.3g} <= {max(tols):.3g})")
    return out
