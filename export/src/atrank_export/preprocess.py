"""Raw requests -> graph input tensors: the reference implementation of package format 3
(docs/package-format.md, "From raw behaviors to the graph's inputs").

:class:`Preprocessor` reads a written package (:meth:`Preprocessor.from_package`: the atv
vocabularies, hashed buckets and catalog columns, through ``vocabfile``) or the trainer's
in-memory vocabularies (:meth:`Preprocessor.from_split`). Training batches
(``split.Split``) follow the same rules, vectorised; ``tests/test_split.py`` checks that both
give the same tensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BOUNDARIES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_UNIT_SECONDS = 86400
DEFAULT_OFFSET = 1


@dataclass(frozen=True)
class TimeBuckets:
    unit_seconds: int = DEFAULT_UNIT_SECONDS
    offset: int = DEFAULT_OFFSET
    boundaries: tuple[int, ...] = DEFAULT_BOUNDARIES

    @property
    def n_buckets(self) -> int:
        return len(self.boundaries) + 1

    def to_json(self) -> dict[str, Any]:
        return {"unit_seconds": self.unit_seconds, "offset": self.offset,
                "boundaries": list(self.boundaries)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TimeBuckets:
        return cls(int(obj["unit_seconds"]), int(obj["offset"]),
                   tuple(int(b) for b in obj["boundaries"]))

    def day(self, t: float) -> int:
        """floor(t / unit_seconds), also for negative t (exact for integers)."""
        if isinstance(t, (int, np.integer)):
            return int(t) // self.unit_seconds
        return math.floor(t / self.unit_seconds)

    def bucket_of_gap(self, d: np.ndarray) -> np.ndarray:
        """Number of boundaries b with b <= d, elementwise (int64)."""
        return np.searchsorted(np.asarray(self.boundaries, dtype=np.int64),
                               np.asarray(d, dtype=np.int64), side="right").astype(np.int64)

    def buckets(self, request_time: float, times: Sequence[int | float]) -> np.ndarray:
        """Bucket of every behavior time relative to ``request_time`` (rule 4)."""
        if len(times) == 0:
            return np.zeros(0, dtype=np.int64)
        rday = self.day(request_time)
        days = np.array([self.day(t) for t in times], dtype=np.int64)
        out = self.bucket_of_gap(rday - days + self.offset)
        later = np.array([t > request_time for t in times], dtype=bool)
        out[later] = 0
        return out

    def buckets_int(self, request_time: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Vectorised version for integer arrays (training); broadcasts like numpy."""
        request_time = np.asarray(request_time, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        d = request_time // self.unit_seconds - times // self.unit_seconds + self.offset
        out = self.bucket_of_gap(d)
        return np.where(times > request_time, 0, out)


class Preprocessor:
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

    def __init__(self, config, tables: Mapping[str, Any],
                 catalogs: Mapping[str, tuple[Any, Mapping[str, np.ndarray]]],
                 actions: Sequence[str], time_buckets: TimeBuckets):
        """``tables``: table -> ``vocabfile.TableIndex``; ``catalogs``: group -> (keys: an
        ``Atv`` or a sorted key list, {feature: u32 column of table indices})."""
        self.config = config
        self.tables = dict(tables)
        self.catalogs: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}
        for g, (keys, cols) in catalogs.items():
            if not hasattr(keys, "find"):
                keys = _KeyList(keys)
            self.catalogs[g] = (keys, dict(cols))
        self.actions = list(actions)
        self._action = {a: k + 1 for k, a in enumerate(self.actions)}
        self.time_buckets = time_buckets

    @classmethod
    def from_split(cls, split) -> Preprocessor:
        """The trainer's vocabularies and catalogs (what the exporter writes)."""
        from .vocabfile import TableIndex

        c = split.config
        tables = {t: TableIndex(keys, c.hash_buckets.get(t, 0), split.hash_seed)
                  for t, keys in split.vocabs.items()}
        return cls(c, tables, catalog_columns(split.catalogs, tables, c), split.actions,
                   split.time_buckets)

    @classmethod
    def from_package(cls, package_dir: str | Path) -> Preprocessor:
        """Reads a version-3 package's spec, vocabularies and catalogs (no model)."""
        from .model import GroupConfig, ModelConfig
        from .vocabfile import Atv, TableIndex, read_column

        package_dir = Path(package_dir)
        spec = json.loads((package_dir / "spec.json").read_text(encoding="utf-8"))
        if spec.get("format") != "atrank-model-package" or spec.get("spec_version") != 3:
            raise ValueError(f"{package_dir} is not an atrank model package of spec_version 3")
        if spec["hash"]["function"] != "xxh3_64":
            raise ValueError(f"unknown hash function {spec['hash']['function']!r}")
        seed = int(spec["hash"]["seed"])
        tables = {}
        for t, d in spec["tables"].items():
            atv = Atv.open(package_dir / d["vocab"])
            if len(atv) != d["size"]:
                raise ValueError(f"vocab of table {t}: {len(atv)} keys, spec says {d['size']}")
            tables[t] = TableIndex(atv, int(d["hash_buckets"]), seed)
        catalogs = {}
        groups = []
        for g in spec["groups"]:
            groups.append(GroupConfig(g["name"], [f["name"] for f in g["features"]],
                                      int(g["max_history"])))
            cat = g.get("catalog")
            if cat:
                keys = Atv.open(package_dir / cat["keys"])
                cols = {f: read_column(package_dir / p) for f, p in cat["columns"].items()}
                for f, col in cols.items():
                    if len(col) != len(keys):
                        raise ValueError(f"catalog {g['name']}.{f}: {len(col)} rows, keys "
                                         f"{len(keys)}")
                catalogs[g["name"]] = (keys, cols)
        config = ModelConfig(groups=groups,
                             table_sizes={t: d["size"] for t, d in spec["tables"].items()},
                             n_actions=len(spec["actions"]), target_group=spec["target_group"],
                             hash_buckets={t: d["hash_buckets"] for t, d in
                                           spec["tables"].items() if d["hash_buckets"]})
        return cls(config, tables, catalogs, spec["actions"],
                   TimeBuckets.from_json(spec["time_buckets"]))

    def _catalog(self, group: str, oid: str, feature: str) -> int:
        cat = self.catalogs.get(group)
        if cat is None or feature not in cat[1]:
            return 0
        k = cat[0].find(oid)
        return int(cat[1][feature][k - 1]) if k else 0

    def _feature(self, group: str, oid: str, feature: str, own: Mapping[str, Any]) -> int:
        """id: the id table's index (hashed buckets included); another feature: the caller's
        value through its table, else the catalog column's index, else 0."""
        from .model import table_name

        if feature == "id":
            return self.tables[table_name(group, "id")].index(oid)
        value = own.get(feature)
        if value is not None:
            return self.tables[table_name(group, feature)].index(value)
        return self._catalog(group, oid, feature)

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
                out[f"{g.name}_{f}"] = [self._feature(g.name, b["id"], f,
                                                      b.get("features") or {}) for b in seq]
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


class _KeyList:
    """A sorted key list with Atv's ``find`` (k + 1, or 0)."""

    def __init__(self, keys: Sequence[str]):
        self._index = {k: i + 1 for i, k in enumerate(keys)}

    def find(self, s: str) -> int:
        return self._index.get(s, 0)

    def __len__(self) -> int:
        return len(self._index)


def catalog_columns(catalogs: Mapping[str, Mapping[str, Any]], tables: Mapping[str, Any],
                    config) -> dict[str, tuple[list[str], dict[str, np.ndarray]]]:
    """Raw catalogs (group -> {"keys": sorted keys, "features": {f: [value or None]}}) ->
    (keys, {feature: u32 table indices}) with the v3 rule (missing -> 0, never hashed)."""
    from .model import table_name

    out = {}
    for g, cat in catalogs.items():
        cols = {}
        for f, vals in cat["features"].items():
            cols[f] = tables[table_name(g, f)].indices(vals).astype(np.uint32)
        out[g] = (list(cat["keys"]), cols)
    return out
