"""Raw behaviors -> graph input tensors, exactly as docs/package-format.md specifies.

This is the exporter's reference implementation of the package contract. Training uses the
same vocabulary and time-bucket functions, so what the model learned is what the runtime
feeds it. The rules (numbered as in the document):

1. ids: the raw string on line k (0-based) of a vocab file has index k+1; 0 = unknown/padding.
2. categories: the caller's if non-null, else the catalog's, else 0; candidates: catalog only.
3. actions: ``actions[k]`` has index k+1; anything else is 0.
4. time buckets: ``day(t) = floor(t / unit)``; ``d = day(request) - day(behavior) + offset``;
   bucket = number of boundaries ``b <= d``; a behavior later than the request time gets 0.
5. behaviors are stably sorted by timestamp (oldest first) and the most recent
   ``max_history`` kept.
6. int64 tensors; empty history is sent as L = 1 with ``hist_len`` = 0; padding value 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BOUNDARIES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_UNIT_SECONDS = 86400
DEFAULT_OFFSET = 1


class Vocab:
    """Raw id strings -> indices; line k (0-based) has index k+1, 0 means unknown."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self._index = {}
        for k, tok in enumerate(self.tokens):
            if not isinstance(tok, str) or "\t" in tok or "\n" in tok or "\r" in tok:
                raise ValueError(f"vocab token {tok!r} is not a tab/newline-free string")
            if tok in self._index:
                raise ValueError(f"duplicate vocab token {tok!r}")
            self._index[tok] = k + 1

    def __len__(self) -> int:
        return len(self.tokens)

    def index(self, token: str | None) -> int:
        if token is None:
            return 0
        return self._index.get(token, 0)

    def indices(self, tokens: Sequence[str | None]) -> list[int]:
        return [self.index(t) for t in tokens]

    def write(self, path: Path) -> None:
        path.write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Vocab:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls(lines)


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


@dataclass
class Encoded:
    """One user's preprocessed request (unpadded)."""

    hist_item: list[int]
    hist_category: list[int]
    hist_action: list[int]
    hist_time: list[int]
    cand_item: list[int]
    cand_category: list[int]


@dataclass
class Preprocessor:
    item_vocab: Vocab
    category_vocab: Vocab
    catalog: dict[str, str]
    actions: list[str]
    max_history: int
    time_buckets: TimeBuckets = field(default_factory=TimeBuckets)

    def __post_init__(self) -> None:
        self._action_index = {a: k + 1 for k, a in enumerate(self.actions)}

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    def action_index(self, action: str | None) -> int:
        return self._action_index.get(action, 0) if action is not None else 0

    def behavior_category(self, item: str, category: str | None) -> int:
        if category is not None:
            return self.category_vocab.index(category)
        return self.category_vocab.index(self.catalog.get(item))

    def candidate_category(self, item: str) -> int:
        return self.category_vocab.index(self.catalog.get(item))

    def encode(self, behaviors: Sequence[Mapping[str, Any]], candidates: Sequence[str],
               request_time: float) -> Encoded:
        """Encode one raw request. ``behaviors`` are dicts with item/category/action/timestamp."""
        # Rule 5: Python's sort is stable, so equal timestamps keep the caller's order.
        ordered = sorted(behaviors, key=lambda b: b["timestamp"])
        if self.max_history >= 0:
            ordered = ordered[len(ordered) - min(len(ordered), self.max_history):]
        items = [b["item"] for b in ordered]
        return Encoded(
            hist_item=self.item_vocab.indices(items),
            hist_category=[self.behavior_category(b["item"], b.get("category"))
                           for b in ordered],
            hist_action=[self.action_index(b.get("action")) for b in ordered],
            hist_time=self.time_buckets.buckets(request_time,
                                                [b["timestamp"] for b in ordered]).tolist(),
            cand_item=self.item_vocab.indices(list(candidates)),
            cand_category=[self.candidate_category(c) for c in candidates],
        )

    def encode_request(self, request: Mapping[str, Any]) -> Encoded:
        return self.encode(request["behaviors"], request["candidates"], request["request_time"])

    @classmethod
    def from_package(cls, package_dir: str | Path) -> Preprocessor:
        package_dir = Path(package_dir)
        spec = json.loads((package_dir / "spec.json").read_text(encoding="utf-8"))
        if spec.get("format") != "atrank-model-package" or spec.get("spec_version") != 1:
            raise ValueError("not an atrank model package of spec_version 1")
        group = spec["groups"][0]
        feats = {f["name"]: f["vocab"] for f in group["features"]}
        catalog = {}
        cat_text = (package_dir / spec["catalog"]["file"]).read_text(encoding="utf-8")
        for line in cat_text.split("\n"):
            if line:
                item, cate = line.split("\t")
                catalog[item] = cate
        return cls(
            item_vocab=Vocab.read(package_dir / feats["item"]),
            category_vocab=Vocab.read(package_dir / feats["category"]),
            catalog=catalog,
            actions=list(spec["actions"]),
            max_history=int(group["max_history"]),
            time_buckets=TimeBuckets.from_json(spec["time_buckets"]),
        )


def pad_batch(encoded: Sequence[Encoded]) -> dict[str, np.ndarray]:
    """Stack encoded requests into the graph's int64 inputs (rule 6).

    L = the longest history (at least 1, so an empty history is L = 1 with hist_len 0);
    N = the most candidates (shorter candidate lists are padded with item 0).
    """
    b = len(encoded)
    length = max([1] + [len(e.hist_item) for e in encoded])
    n = max([1] + [len(e.cand_item) for e in encoded])
    out = {name: np.zeros((b, length), dtype=np.int64)
           for name in ("hist_item", "hist_category", "hist_action", "hist_time")}
    out["hist_len"] = np.zeros(b, dtype=np.int64)
    out["cand_item"] = np.zeros((b, n), dtype=np.int64)
    out["cand_category"] = np.zeros((b, n), dtype=np.int64)
    for r, e in enumerate(encoded):
        k = len(e.hist_item)
        out["hist_len"][r] = k
        out["hist_item"][r, :k] = e.hist_item
        out["hist_category"][r, :k] = e.hist_category
        out["hist_action"][r, :k] = e.hist_action
        out["hist_time"][r, :k] = e.hist_time
        out["cand_item"][r, :len(e.cand_item)] = e.cand_item
        out["cand_category"][r, :len(e.cand_category)] = e.cand_category
    return out


INPUT_NAMES = ("hist_item", "hist_category", "hist_action", "hist_time", "hist_len",
               "cand_item", "cand_category")
OUTPUT_NAME = "logits"
