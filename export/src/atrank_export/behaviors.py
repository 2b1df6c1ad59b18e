"""The columnar behavior log: what every data reader produces.

ATRank sees a user as behaviors ``(action, object, time)`` grouped by object type. A
:class:`BehaviorLog` holds them as numpy columns (one row per behavior, no Python object per
behavior) plus dictionaries of the raw strings, and per-group catalogs (side tables of object
features), also as columns:

* ``user``, ``group``, ``action``: int32 codes into ``users``, ``groups``, ``actions``;
* ``object``: int32 code into ``objects[group]`` (one dictionary per group);
* ``timestamp``: int64 unix seconds;
* ``features[name]``: int32 code into ``values[name]`` (one dictionary per feature name,
  shared by every group that has the feature), -1 = the behavior does not give it;
* ``catalogs[group]``: a :class:`Catalog`: ``object`` codes and ``features`` value codes
  (-1 = none) per catalog row, in file order (a later row's value wins).

Rows are in file order (the order the reader met them). That order is the tie rule: behaviors
of one user with equal timestamps keep it, here and in the runtime (whose stable sort keeps
the caller's order). Dictionaries are in first-appearance order; vocabularies are built from
them later (byte-sorted, ``vocabfile.sorted_keys``).

:class:`LogBuilder` turns chunks of raw strings into codes: each chunk is dictionary-encoded by
pyarrow, so the Python work per chunk is proportional to its distinct values, not its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

ABSENT = -1


class Dictionary:
    """Raw strings -> dense codes in first-appearance order."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._code: dict[str, int] = {}

    def code(self, key: str) -> int:
        c = self._code.get(key)
        if c is None:
            c = self._code[key] = len(self.keys)
            self.keys.append(key)
        return c

    def encode(self, values) -> np.ndarray:
        """int32 codes of ``values`` (a sequence or pyarrow array of str/None; None -> -1)."""
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
            values, pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != pa.string():
            arr = arr.cast(pa.string())
        enc = arr.dictionary_encode()
        mapping = np.array([self.code(k) for k in enc.dictionary.to_pylist()] + [ABSENT],
                           dtype=np.int32)
        idx = enc.indices.fill_null(len(mapping) - 1).to_numpy(zero_copy_only=False)
        return mapping[idx.astype(np.int64)]


@dataclass
class Catalog:
    object: np.ndarray                                   # int32 [R] codes into objects[group]
    features: dict[str, np.ndarray] = field(default_factory=dict)  # int32 [R], -1 = none


@dataclass
class BehaviorLog:
    name: str
    users: list[str]
    groups: list[str]
    actions: list[str]
    objects: dict[str, list[str]]
    values: dict[str, list[str]]
    user: np.ndarray
    group: np.ndarray
    action: np.ndarray
    object: np.ndarray
    timestamp: np.ndarray
    features: dict[str, np.ndarray]
    catalogs: dict[str, Catalog]
    target_group: str = "item"
    action_rules: dict[str, str] = field(default_factory=dict)   # informational, for the spec
    # where each object feature comes from (e.g. "category": "the movie's first genre"), for
    # the spec's input mapping
    feature_sources: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.timestamp)

    def group_code(self, group: str) -> int:
        return self.groups.index(group) if group in self.groups else ABSENT

    def feature_names(self, group: str) -> list[str]:
        """Features (other than the id) that some behavior or catalog row of ``group`` has."""
        names = set()
        g = self.group_code(group)
        sel = self.group == g
        for f, col in self.features.items():
            if (col[sel] != ABSENT).any():
                names.add(f)
        cat = self.catalogs.get(group)
        if cat is not None:
            names.update(f for f, col in cat.features.items() if (col != ABSENT).any())
        return sorted(names)

    def catalog_column(self, group: str, feature: str) -> np.ndarray:
        """int32 [len(objects[group])]: the catalog's value code of ``feature`` per object
        (the last catalog row that gives one), -1 where none."""
        n = len(self.objects.get(group, []))
        out = np.full(n, ABSENT, dtype=np.int32)
        cat = self.catalogs.get(group)
        if cat is None or feature not in cat.features:
            return out
        col = cat.features[feature]
        rev = np.flatnonzero(col != ABSENT)[::-1]      # last row first
        objs, first = np.unique(cat.object[rev], return_index=True)
        out[objs] = col[rev[first]]
        return out

    def catalog_objects(self, group: str) -> np.ndarray:
        """Sorted unique object codes that have a catalog row."""
        cat = self.catalogs.get(group)
        return np.unique(cat.object) if cat is not None else np.zeros(0, dtype=np.int32)

    def event(self, i: int) -> dict:
        """Behavior ``i`` as raw strings (tests, golden requests; not for bulk use)."""
        g = self.groups[self.group[i]]
        return {"user": self.users[self.user[i]], "group": g,
                "action": self.actions[self.action[i]], "id": self.objects[g][self.object[i]],
                "timestamp": int(self.timestamp[i]),
                "features": {f: self.values[f][c[i]] for f, c in sorted(self.features.items())
                             if c[i] != ABSENT}}

    def sequence(self, user: str, group: str | None = None) -> list[str]:
        """A user's object ids of ``group`` (default: the target group) in the tie rule's
        order: by timestamp, equal timestamps in row order (tests, not for bulk use)."""
        g = self.group_code(group or self.target_group)
        rows = np.flatnonzero((self.user == self.users.index(user)) & (self.group == g))
        rows = rows[np.argsort(self.timestamp[rows], kind="stable")]
        objs = self.objects[self.groups[g]]
        return [objs[self.object[r]] for r in rows]

    def catalog_dict(self, group: str) -> dict[str, dict[str, str]]:
        """The merged catalog of ``group`` as {object: {feature: value}} (tests)."""
        objs = self.objects.get(group, [])
        out: dict[str, dict[str, str]] = {objs[o]: {} for o in self.catalog_objects(group)}
        cat = self.catalogs.get(group)
        for f in (cat.features if cat else {}):
            col = self.catalog_column(group, f)
            for o in self.catalog_objects(group):
                if col[o] != ABSENT:
                    out[objs[o]][f] = self.values[f][col[o]]
        return out

    def __eq__(self, other) -> bool:         # numpy columns: compare element-wise
        if not isinstance(other, BehaviorLog):
            return NotImplemented
        a, b = self.__dict__, other.__dict__
        if a.keys() != b.keys():
            return False
        return all(_same(a[k], b[k]) for k in a)


def _same(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, Catalog):
        return isinstance(y, Catalog) and _same(x.__dict__, y.__dict__)
    return x == y


def with_event_catalog(log: BehaviorLog) -> BehaviorLog:
    """``log`` with catalog rows taken from its behaviors' own features (every group, every
    feature an event gives), for a log that carries object features only on its events (a
    candidate's features come from the catalog, as at serving). They go before the log's
    own catalog rows, so an explicit catalog still wins, and among events the last one that
    gives a value wins (catalog rows: a later row's value wins)."""
    if not log.features:
        return log
    catalogs = dict(log.catalogs)
    for gi, g in enumerate(log.groups):
        sel = np.flatnonzero(log.group == gi)
        if len(sel) == 0:
            continue
        old = catalogs.get(g, Catalog(np.zeros(0, np.int32)))
        names = sorted(set(log.features) | set(old.features))
        feats = {}
        for f in names:
            ev = log.features[f][sel] if f in log.features else np.full(len(sel), ABSENT,
                                                                       np.int32)
            own = old.features.get(f, np.full(len(old.object), ABSENT, np.int32))
            feats[f] = np.concatenate([ev, own]).astype(np.int32)
        catalogs[g] = Catalog(np.concatenate([log.object[sel], old.object]).astype(np.int32),
                              feats)
    out = BehaviorLog(**{k: v for k, v in log.__dict__.items() if k != "catalogs"},
                      catalogs=catalogs)
    return out


class LogBuilder:
    """Accumulates chunks of behaviors and catalog rows (raw strings) into a BehaviorLog."""

    def __init__(self, name: str, target_group: str = "item",
                 action_rules: dict[str, str] | None = None,
                 feature_sources: dict[str, str] | None = None):
        self.name, self.target_group = name, target_group
        self.action_rules = dict(action_rules or {})
        self.feature_sources = dict(feature_sources or {})
        self.users, self.groups, self.actions = Dictionary(), Dictionary(), Dictionary()
        self.objects: dict[str, Dictionary] = {}
        self.values: dict[str, Dictionary] = {}
        self._cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                                   ("user", "group", "action", "object",
                                                    "timestamp")}
        self._feats: dict[str, list[np.ndarray]] = {}
        self._n = 0
        self._cat: dict[str, dict[str, list[np.ndarray]]] = {}
        self._cat_n: dict[str, int] = {}

    def _objects(self, group_codes: np.ndarray, objects) -> np.ndarray:
        objs = objects if isinstance(objects, pa.Array) else pa.array(objects, pa.string())
        out = np.empty(len(group_codes), dtype=np.int32)
        for g in np.unique(group_codes):
            sel = np.flatnonzero(group_codes == g)
            d = self.objects.setdefault(self.groups.keys[g], Dictionary())
            out[sel] = d.encode(objs.take(pa.array(sel)))
        return out

    def add_events(self, user, group, action, object, timestamp,
                   features: dict[str, Sequence] | None = None) -> None:
        """One chunk: equally long sequences (or pyarrow arrays) of raw strings, int
        timestamps, and per feature name a sequence of values (None = absent)."""
        n = len(timestamp)
        gcodes = self.groups.encode(group)
        if (gcodes == ABSENT).any():
            raise ValueError("a behavior has no group")
        self._cols["user"].append(self.users.encode(user))
        self._cols["group"].append(gcodes)
        self._cols["action"].append(self.actions.encode(action))
        self._cols["object"].append(self._objects(gcodes, object))
        self._cols["timestamp"].append(np.asarray(timestamp, dtype=np.int64))
        for f, vals in (features or {}).items():
            if f not in self._feats:
                self._feats[f] = [np.full(self._n, ABSENT, dtype=np.int32)]
            self._feats[f].append(self.values.setdefault(f, Dictionary()).encode(vals))
        for f, parts in self._feats.items():
            if f not in (features or {}):
                parts.append(np.full(n, ABSENT, dtype=np.int32))
        self._n += n

    def add_catalog(self, group: str, object, features: dict[str, Sequence]) -> None:
        n = len(object)
        self.groups.code(group)
        d = self.objects.setdefault(group, Dictionary())
        cols = self._cat.setdefault(group, {"": []})
        have = self._cat_n.get(group, 0)
        cols[""].append(d.encode(object))
        for f, vals in features.items():
            if f not in cols:
                cols[f] = [np.full(have, ABSENT, dtype=np.int32)]
            cols[f].append(self.values.setdefault(f, Dictionary()).encode(vals))
        for f, parts in cols.items():
            if f and f not in features:
                parts.append(np.full(n, ABSENT, dtype=np.int32))
        self._cat_n[group] = have + n

    def build(self) -> BehaviorLog:
        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        catalogs = {}
        for g, cols in self._cat.items():
            catalogs[g] = Catalog(cat(cols[""], np.int32),
                                  {f: cat(p, np.int32) for f, p in sorted(cols.items()) if f})
        return BehaviorLog(
            name=self.name, users=self.users.keys, groups=self.groups.keys,
            actions=self.actions.keys,
            objects={g: d.keys for g, d in self.objects.items()},
            values={f: d.keys for f, d in sorted(self.values.items())},
            user=cat(self._cols["user"], np.int32), group=cat(self._cols["group"], np.int32),
            action=cat(self._cols["action"], np.int32),
            object=cat(self._cols["object"], np.int32),
            timestamp=cat(self._cols["timestamp"], np.int64),
            features={f: cat(p, np.int32) for f, p in sorted(self._feats.items())},
            catalogs=catalogs, target_group=self.target_group, action_rules=self.action_rules,
            feature_sources=self.feature_sources)


class RowBuffer:
    """Collects records one at a time (readers that must parse line by line) and hands them
    to a LogBuilder in chunks of ``chunk`` rows, so no Python object outlives its chunk."""

    def __init__(self, builder: LogBuilder, chunk: int = 65536):
        self.builder, self.chunk = builder, chunk
        self._reset()

    def _reset(self) -> None:
        self.user: list[str] = []
        self.group: list[str] = []
        self.action: list[str] = []
        self.object: list[str] = []
        self.timestamp: list[int] = []
        self.features: dict[str, list[str | None]] = {}

    def add(self, user: str, group: str, action: str, object: str, timestamp: int,
            features: dict[str, str] | None = None) -> None:
        n = len(self.timestamp)
        for f, v in (features or {}).items():
            col = self.features.get(f)
            if col is None:
                col = self.features[f] = [None] * n
            col.append(v)
        self.user.append(user)
        self.group.append(group)
        self.action.append(action)
        self.object.append(object)
        self.timestamp.append(timestamp)
        for col in self.features.values():
            if len(col) == n:
                col.append(None)
        if n + 1 >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.timestamp:
            self.builder.add_events(self.user, self.group, self.action, self.object,
                                    self.timestamp, self.features)
        self._reset()
