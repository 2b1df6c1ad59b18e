"""Behavior data: MovieLens-100k (fetched at run time) and a seeded synthetic generator.

MovieLens-100k ships inside the PyPI wheel ``recbole==1.2.1``; it is downloaded with pip (no
install) into ``$ATRANK_CACHE/wheels`` (default ``./.cache``) and read straight out of the zip.
MovieLens data may not be redistributed: it is never written into the repository.

Mapping onto ATRank behaviors: item = movie id (raw string), category = the movie's FIRST
genre, action = ``"like"`` if rating >= 4 else ``"other"``, timestamp = rating time.

Order rule (read this before comparing figures): each user's behaviors are sorted by
(timestamp, seeded random tie-break). ML-100k was often rated in batches, so many ratings of
one user share a timestamp and their true order is unknown; a tie-break by item id would push
test targets toward high-id (obscure) films and bias the test set. The tie-break key is one
draw of ``numpy.random.default_rng(seed).random(n_rows)`` (seed 1234 by default) per row of
the interaction table in file order.

Split (per user with n >= 3 behaviors; others are dropped): test target = behavior n-1,
validation target = behavior n-2, training targets = behaviors 1 .. n-3, each with history =
all earlier behaviors (truncated to the most recent ``max_history``). Every target (train,
validation and test) gets one negative drawn uniformly from the items the user never
interacted with, drawn once with ``default_rng(seed)``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .preprocess import Preprocessor, TimeBuckets, Vocab

RECBOLE_VERSION = "1.2.1"
ML_PREFIX = "recbole/dataset_example/ml-100k/"
ACTIONS = ["like", "other"]
DEFAULT_SEED = 1234


@dataclass
class Behavior:
    item: str
    category: str | None
    action: str
    timestamp: int


@dataclass
class Dataset:
    name: str
    sequences: dict[str, list[Behavior]]   # per user, in the order rule's order
    catalog: dict[str, str]                # item -> category
    actions: list[str]

    @property
    def users(self) -> list[str]:
        return sort_ids(self.sequences)


def sort_ids(ids) -> list[str]:
    """Deterministic id order: numeric when every id is a decimal number, else lexicographic."""
    ids = list(ids)
    if ids and all(i.isdigit() for i in ids):
        return sorted(ids, key=lambda s: (int(s), s))
    return sorted(ids)


def cache_dir() -> Path:
    return Path(os.environ.get("ATRANK_CACHE", "./.cache"))


# ---------------------------------------------------------------------------------------------
# MovieLens-100k


def fetch_recbole_wheel(cache: Path | None = None) -> Path:
    """Download (once) the recbole wheel with pip and return its path."""
    wheels = (cache or cache_dir()) / "wheels"
    found = sorted(wheels.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    f"recbole=={RECBOLE_VERSION}", "-d", str(wheels)], check=True)
    found = sorted(wheels.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if not found:
        raise RuntimeError(f"pip did not leave a recbole {RECBOLE_VERSION} wheel in {wheels}")
    return found[0]


def _columns(header: str, wanted: list[str]) -> list[int]:
    names = [h.split(":")[0] for h in header.rstrip("\r").split("\t")]
    try:
        return [names.index(w) for w in wanted]
    except ValueError as err:
        raise ValueError(f"header {header!r} lacks one of {wanted}") from err


def parse_ml100k(inter_text: str, item_text: str, seed: int = DEFAULT_SEED,
                 name: str = "ml100k") -> Dataset:
    """Parse recbole-format ``ml-100k.inter`` / ``ml-100k.item`` texts into a Dataset."""
    item_lines = [ln for ln in item_text.split("\n") if ln.strip()]
    iid_col, cls_col = _columns(item_lines[0], ["item_id", "class"])
    catalog = {}
    for ln in item_lines[1:]:
        f = ln.rstrip("\r").split("\t")
        genres = f[cls_col].split() if cls_col < len(f) else []
        catalog[f[iid_col]] = genres[0] if genres else "unknown"

    inter_lines = [ln for ln in inter_text.split("\n") if ln.strip()]
    u_col, i_col, r_col, t_col = _columns(inter_lines[0],
                                          ["user_id", "item_id", "rating", "timestamp"])
    rows = []
    for ln in inter_lines[1:]:
        f = ln.rstrip("\r").split("\t")
        rating = float(f[r_col])
        rows.append((f[u_col], f[i_col], "like" if rating >= 4 else "other",
                     int(float(f[t_col]))))
    return _dataset_from_rows(name, rows, catalog, ACTIONS, seed)


def _dataset_from_rows(name, rows, catalog, actions, seed) -> Dataset:
    """rows: (user, item, action, timestamp) in file order; applies the order rule."""
    tie = np.random.default_rng(seed).random(len(rows))
    per_user: dict[str, list[tuple[int, float, Behavior]]] = {}
    for (user, item, action, ts), key in zip(rows, tie):
        per_user.setdefault(user, []).append((ts, float(key),
                                              Behavior(item, catalog.get(item), action, ts)))
    sequences = {u: [b for _, _, b in sorted(v, key=lambda x: (x[0], x[1]))]
                 for u, v in per_user.items()}
    return Dataset(name, sequences, catalog, list(actions))


def read_ml100k(inter_path: Path, item_path: Path, seed: int = DEFAULT_SEED) -> Dataset:
    return parse_ml100k(Path(inter_path).read_text(encoding="utf-8"),
                        Path(item_path).read_text(encoding="utf-8"), seed)


def load_ml100k(cache: Path | None = None, seed: int = DEFAULT_SEED) -> Dataset:
    wheel = fetch_recbole_wheel(cache)
    with zipfile.ZipFile(wheel) as z:
        inter = z.read(ML_PREFIX + "ml-100k.inter").decode("utf-8")
        item = z.read(ML_PREFIX + "ml-100k.item").decode("utf-8")
    return parse_ml100k(inter, item, seed)


# ---------------------------------------------------------------------------------------------
# Synthetic data with a planted signal


def synthetic_dataset(n_users: int = 80, n_items: int = 120, n_categories: int = 6,
                      min_len: int = 8, max_len: int = 20, seed: int = DEFAULT_SEED) -> Dataset:
    """Seeded toy data: items "i0".., categories "c0".. (item i is in c{i % n_categories}).

    Each user has a favourite category; ~80% of their behaviors are items of it, and they
    "like" those with probability 0.8 (others 0.2). Gaps between behaviors are exponential
    (mean 20 days) with 20% exact ties, so all time buckets and the tie rule get exercised.
    """
    rng = np.random.default_rng(seed)
    catalog = {f"i{i}": f"c{i % n_categories}" for i in range(n_items)}
    rows = []
    for u in range(n_users):
        fav = int(rng.integers(n_categories))
        n = int(rng.integers(min_len, max_len + 1))
        t = 1_000_000_000 + int(rng.integers(0, 10**7))
        used: set[int] = set()
        for _ in range(n):
            pool_fav = [i for i in range(fav, n_items, n_categories) if i not in used]
            pool_all = [i for i in range(n_items) if i not in used]
            pool = pool_fav if (rng.random() < 0.8 and pool_fav) else pool_all
            item = int(pool[int(rng.integers(len(pool)))])
            used.add(item)
            like = rng.random() < (0.8 if item % n_categories == fav else 0.2)
            if rng.random() >= 0.2:
                t += int(rng.exponential(20 * 86400))
            rows.append((f"u{u}", f"i{item}", "like" if like else "other", t))
    return _dataset_from_rows("synthetic", rows, catalog, ["like", "other"], seed)


# ---------------------------------------------------------------------------------------------
# Index arrays and the split


@dataclass
class Split:
    """Everything training needs, as index arrays (see the module docstring for the rules)."""

    preprocessor: Preprocessor
    users: list[str]
    offsets: np.ndarray          # [U+1] into the flat per-behavior arrays
    items: np.ndarray            # flat item indices
    categories: np.ndarray
    actions: np.ndarray
    times: np.ndarray            # unix seconds
    item_category: np.ndarray    # [n_items+1] catalog category index of each item index
    train: np.ndarray            # [S,3]: user row, target position, negative item index
    valid: np.ndarray            # [U',3]
    test: np.ndarray             # [U',3]
    interacted: list[np.ndarray] = field(default_factory=list)  # sorted item indices per user

    @property
    def n_items(self) -> int:
        return len(self.preprocessor.item_vocab)

    def batch(self, rows: np.ndarray, cand_items: np.ndarray) -> dict[str, np.ndarray]:
        """Graph inputs for samples ``rows`` ([B,2] user row, target position) with the given
        candidate item indices [B,N]; history = the behaviors before the target (truncated),
        time buckets relative to the target's timestamp (= the request time)."""
        maxh = self.preprocessor.max_history
        tb = self.preprocessor.time_buckets
        starts = self.offsets[rows[:, 0]]
        ends = starts + rows[:, 1]                         # index of the target behavior
        begins = np.maximum(starts, ends - maxh)
        lens = ends - begins
        length = max(1, int(lens.max()) if len(lens) else 1)
        pos = begins[:, None] + np.arange(length)[None, :]
        valid = np.arange(length)[None, :] < lens[:, None]
        pos = np.where(valid, pos, 0)
        req_t = self.times[ends][:, None]
        out = {
            "hist_item": np.where(valid, self.items[pos], 0),
            "hist_category": np.where(valid, self.categories[pos], 0),
            "hist_action": np.where(valid, self.actions[pos], 0),
            "hist_time": np.where(valid, tb.buckets_int(req_t, self.times[pos]), 0),
            "hist_len": lens.astype(np.int64),
            "cand_item": cand_items.astype(np.int64),
            "cand_category": self.item_category[cand_items].astype(np.int64),
        }
        return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in out.items()}

    def target_items(self, rows: np.ndarray) -> np.ndarray:
        return self.items[self.offsets[rows[:, 0]] + rows[:, 1]]

    def behaviors_of(self, dataset: Dataset, row: int) -> list[Behavior]:
        return dataset.sequences[self.users[row]]


def build_vocabs(dataset: Dataset) -> tuple[Vocab, Vocab]:
    items = set(dataset.catalog)
    for seq in dataset.sequences.values():
        items.update(b.item for b in seq)
    cates = {c for c in dataset.catalog.values() if c is not None}
    return Vocab(sort_ids(items)), Vocab(sorted(cates))


def build_split(dataset: Dataset, max_history: int = 50, seed: int = DEFAULT_SEED,
                max_users: int | None = None,
                time_buckets: TimeBuckets | None = None) -> Split:
    item_vocab, cate_vocab = build_vocabs(dataset)
    pre = Preprocessor(item_vocab, cate_vocab, dict(dataset.catalog), list(dataset.actions),
                       max_history, time_buckets or TimeBuckets())
    users = [u for u in dataset.users if len(dataset.sequences[u]) >= 3]
    if max_users is not None:
        users = users[:max_users]
    n_items = len(item_vocab)
    item_category = np.zeros(n_items + 1, dtype=np.int64)
    for k, tok in enumerate(item_vocab.tokens):
        item_category[k + 1] = pre.candidate_category(tok)
    all_items = np.arange(1, n_items + 1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    offsets = [0]
    items, cates, acts, times, interacted = [], [], [], [], []
    train, valid, test = [], [], []
    for row, u in enumerate(users):
        seq = dataset.sequences[u]
        n = len(seq)
        it = np.array(item_vocab.indices([b.item for b in seq]), dtype=np.int64)
        items.append(it)
        cates.append(np.array([pre.behavior_category(b.item, b.category) for b in seq],
                              dtype=np.int64))
        acts.append(np.array([pre.action_index(b.action) for b in seq], dtype=np.int64))
        times.append(np.array([b.timestamp for b in seq], dtype=np.int64))
        offsets.append(offsets[-1] + n)
        seen = np.unique(it[it > 0])
        interacted.append(seen)
        pool = np.setdiff1d(all_items, seen, assume_unique=True)
        if len(pool) == 0:
            raise ValueError(f"user {u} interacted with every item: no negatives")
        negs = pool[rng.integers(0, len(pool), size=n - 1)]   # targets 1 .. n-1
        for i in range(1, n - 2):
            train.append((row, i, negs[i - 1]))
        valid.append((row, n - 2, negs[n - 3]))
        test.append((row, n - 1, negs[n - 2]))
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64))
    arr = (lambda xs: np.array(xs, dtype=np.int64).reshape(-1, 3))
    return Split(pre, users, np.array(offsets, dtype=np.int64), cat(items), cat(cates),
                 cat(acts), cat(times), item_category, arr(train), arr(valid), arr(test),
                 interacted)


def describe(dataset: Dataset) -> str:
    n = [len(s) for s in dataset.sequences.values()]
    buf = io.StringIO()
    buf.write(f"{dataset.name}: {len(n)} users, {len(dataset.catalog)} catalog items, "
              f"{len(set(dataset.catalog.values()))} categories, {sum(n)} behaviors")
    return buf.getvalue()
