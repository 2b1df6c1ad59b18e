"""The one split: a columnar BehaviorLog -> vocabularies, per-user time order, targets, batches.

Rules (all vectorised with numpy; no Python work per behavior):

* Order: each user's behaviors (all groups the model reads) sorted by timestamp, equal
  timestamps in the log's row order (file order; the runtime's stable sort keeps the caller's
  order the same way).
* Users with at least 3 behaviors of the target group are kept (``max_users``: the first ones
  in user order: numeric when every user id is a decimal number, else byte order).
* Targets are behaviors of the target group: a user's last is test, the one before validation,
  every earlier one with at least one earlier behavior (any group) is a training target. The
  history of a target is every earlier behavior, per group truncated to the group's
  ``max_history`` most recent; its time buckets count from the target's timestamp.
* One negative per target, drawn once with ``default_rng(seed)``, uniform over the target
  group's vocabulary minus the objects the user interacted with (rejection sampling).
* Vocabularies (``vocabfile.sorted_keys``, byte order; key k -> index k + 1): with
  ``min_count`` <= 1 every key the log mentions (events and catalogs); with ``min_count`` K > 1
  the keys seen at least K times in training events (each user's behaviors before their
  validation target). With ``hash_buckets`` N > 0 every other key maps to
  ``size + 1 + xxh3_64(key) mod N`` (``vocabfile.TableIndex``), in training as at serving.
* Features: a behavior's own value, else its object's catalog value, else 0. Candidates
  (targets and negatives) take every feature from the catalog (as the runtime does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .behaviors import ABSENT, BehaviorLog
from .model import GroupConfig, ModelConfig, table_name
from .preprocess import TimeBuckets
from .vocabfile import TableIndex, sorted_keys

DEFAULT_SEED = 1234
HASH_SEED = 0


def sort_ids(ids) -> list[str]:
    """Deterministic user order: numeric when every id is a decimal number, else byte order."""
    ids = list(ids)
    if ids and all(i.isdigit() for i in ids):
        return sorted(ids, key=lambda s: (int(s), s))
    return sorted(ids, key=lambda s: s.encode("utf-8"))


@dataclass
class Split:
    config: ModelConfig
    vocabs: dict[str, list[str]]          # table -> sorted keys
    hash_seed: int
    actions: list[str]
    time_buckets: TimeBuckets
    users: list[str]                      # kept users (rows)
    offsets: np.ndarray                   # [U+1] into the per-event arrays
    event: np.ndarray                     # [E] row of the event in the log
    group: np.ndarray                     # [E] index into config.groups
    action: np.ndarray                    # [E] action index
    time: np.ndarray                      # [E] unix seconds
    feats: np.ndarray                     # [E, F_max] table indices, the group's feature order
    before: np.ndarray                    # [G, E] the user's events of group g before e
    g_offsets: np.ndarray                 # [G, U] start of user u's group-g run in g_index[g]
    g_index: list[np.ndarray]             # per group: event positions in (user, time) order
    cand_of_event: np.ndarray             # [E, F_target] catalog features of a target event
    item_feats: np.ndarray                # [size+1, F_target] catalog features per id row
    train: np.ndarray                     # [S,3]: user row, target position, negative
    valid: np.ndarray
    test: np.ndarray
    interacted: list[np.ndarray]          # per user row: sorted id rows of target objects
    catalogs: dict[str, dict] = field(default_factory=dict)   # raw, for the exporter
    log: BehaviorLog | None = None
    # The candidate universe: row r (1..K; 0 unused) is a candidate's features (id row first),
    # universe_count[r] the number of objects behind it (several objects share a row when
    # they are out of the vocabulary and alike in every feature); interacted[u] are the rows
    # the user touched (sorted), interacted_count[u] how many objects of each.
    universe: np.ndarray | None = None
    universe_count: np.ndarray | None = None
    interacted_count: list[np.ndarray] | None = None
    universe_object: np.ndarray | None = None      # [K+1] an object code per row (objects)
    use_time: bool = True

    def __post_init__(self) -> None:
        if self.universe is None:                  # the vocabulary rows, one object each
            self.universe = self.item_feats
            self.universe_count = np.r_[0, np.ones(len(self.item_feats) - 1, np.int64)]
            self.interacted_count = [np.ones(len(r), np.int64) for r in self.interacted]

    @property
    def n_candidates(self) -> int:
        """K: rows of the candidate universe (evaluation scores rows 1..K)."""
        return len(self.universe) - 1

    def universe_key(self, row: int) -> str:
        """The raw id of an object behind universe row ``row`` (golden requests)."""
        t = self.config.target_group
        if self.universe_object is not None and self.log is not None:
            return self.log.objects[t][int(self.universe_object[row])]
        return self.vocabs[table_name(t, "id")][int(self.universe[row, 0]) - 1]

    @property
    def n_items(self) -> int:
        """Vocabulary size of the target group's id table (evaluation scores 1..n_items)."""
        return self.config.table_sizes[table_name(self.config.target_group, "id")]

    def target_items(self, rows: np.ndarray) -> np.ndarray:
        return self.feats[self.offsets[rows[:, 0]] + rows[:, 1], 0]

    def history(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's behavior inputs of samples ``rows`` ([B,2]: user row, target position)."""
        c = self.config
        starts = self.offsets[rows[:, 0]]
        at = starts + rows[:, 1]                       # the target event
        req_t = self.time[at]
        out: dict[str, np.ndarray] = {}
        for gi, g in enumerate(c.groups):
            n = self.before[gi, at].astype(np.int64)
            lens = np.minimum(n, g.max_history)
            length = max(1, int(lens.max()) if len(lens) else 1)
            first = self.g_offsets[gi, rows[:, 0]] + n - lens
            valid = np.arange(length)[None, :] < lens[:, None]
            gidx = self.g_index[gi]
            pos = np.where(valid, first[:, None] + np.arange(length)[None, :], 0)
            ev = gidx[np.minimum(pos, max(len(gidx) - 1, 0))] if len(gidx) else np.zeros_like(pos)
            for k, f in enumerate(g.features):
                out[f"{g.name}_{f}"] = np.where(valid, self.feats[ev, k], 0)
            out[f"{g.name}_action"] = np.where(valid, self.action[ev], 0)
            out[f"{g.name}_time"] = np.where(
                valid & self.use_time,
                self.time_buckets.buckets_int(req_t[:, None], self.time[ev]), 0)
            out[f"{g.name}_len"] = lens
        return out

    def batch(self, rows: np.ndarray, cand_items: np.ndarray) -> dict[str, np.ndarray]:
        """Behavior inputs of ``rows`` + candidates given as id-table rows [B,N] (features from
        the catalog)."""
        out = self.history(rows)
        t = self.config.group(self.config.target_group)
        for k, f in enumerate(t.features):
            out[f"cand_{f}"] = self.item_feats[cand_items, k]
        return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in out.items()}

    def training_batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Samples ``rows`` ([B,3]) with candidates (their target, their negative)."""
        out = self.history(rows[:, :2])
        at = self.offsets[rows[:, 0]] + rows[:, 1]
        t = self.config.group(self.config.target_group)
        for k, f in enumerate(t.features):
            out[f"cand_{f}"] = np.stack([self.cand_of_event[at, k],
                                         self.universe[rows[:, 2], k]], axis=1)
        return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in out.items()}

    def target_candidates(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The target of each sample as one candidate ([B,1] per candidate input)."""
        at = self.offsets[rows[:, 0]] + rows[:, 1]
        t = self.config.group(self.config.target_group)
        return {f"cand_{f}": self.cand_of_event[at, k][:, None].astype(np.int64)
                for k, f in enumerate(t.features)}

    def raw_behaviors(self, row: int, end: int) -> list[dict]:
        """A user's first ``end`` behaviors as raw request behaviors (golden requests)."""
        assert self.log is not None
        s = int(self.offsets[row])
        out = []
        for e in self.event[s:s + end]:
            ev = self.log.event(int(e))
            b = {"group": ev["group"], "id": ev["id"], "action": ev["action"],
                 "timestamp": ev["timestamp"]}
            if ev["features"]:
                b["features"] = ev["features"]
            out.append(b)
        return out

    def raw_target(self, row: int, pos: int) -> tuple[str, int]:
        assert self.log is not None
        ev = self.log.event(int(self.event[int(self.offsets[row]) + pos]))
        return ev["id"], ev["timestamp"]


def _count_keys(codes: np.ndarray, n: int) -> np.ndarray:
    codes = codes[codes != ABSENT]
    return np.bincount(codes, minlength=n)


def build_split(log: BehaviorLog, groups: list[str] | None = None,
                max_history: int | dict[str, int] = 50, seed: int = DEFAULT_SEED,
                max_users: int | None = None, embedding_dim: int = 32, heads: int = 4,
                ffn: int = 32, ranking: str = "dot", time_buckets: TimeBuckets | None = None,
                hash_buckets: int = 0, min_count: int = 1,
                candidate_projection: bool | None = None, vocabulary: str = "all",
                universe: str = "vocabulary", target_actions: Sequence[str] | None = None,
                first_touch: bool = False, use_actions: bool = True,
                use_time: bool = True, group_by_action: bool = False) -> Split:
    """See the module docstring. ``groups`` limits which behavior groups the model reads (the
    target group is always included), so item-only vs multi-group ablations share targets
    and negatives.

    ``vocabulary="train"``: count keys on the training events even with ``min_count`` 1 (a key
    never seen in training is unknown, or hashed). ``universe="objects"``: the candidates
    (negatives, full-ranking evaluation) are every object of the target group, each through
    its own id row (unknown/hashed when out of the vocabulary) and catalog features, counted
    with multiplicity (see ``Split.universe``). ``target_actions``: only target-group
    behaviors with one of these actions are targets (the history still holds every earlier
    behavior). ``first_touch``: only a user's first behavior on an object is a target.
    ``use_actions`` / ``use_time`` off (ablations): every behavior gets action 1 of 1 / time
    bucket 0. ``group_by_action`` (ablation): the target group's behaviors form one group per
    action (``<target>@<action>``, each with its own projection and history budget, sharing
    the target group's embedding tables); the target group itself keeps no behaviors and
    serves the candidates."""
    if vocabulary not in ("all", "train"):
        raise ValueError(f"vocabulary must be 'all' or 'train', not {vocabulary!r}")
    if universe not in ("vocabulary", "objects"):
        raise ValueError(f"universe must be 'vocabulary' or 'objects', not {universe!r}")
    target = log.target_group
    if target not in log.groups:
        raise ValueError(f"the log has no behaviors of the target group {target!r}")
    groups = sorted(set(groups or [g for g in log.groups
                                   if (log.group == log.group_code(g)).any()]) | {target},
                    key=lambda g: (g != target, g))
    tb = time_buckets or TimeBuckets()
    feat_names = {g: ["id"] + [f for f in log.feature_names(g) if f != "id"] for g in groups}
    gcode = np.array([log.group_code(g) for g in groups], dtype=np.int64)
    gmax = {g: (max_history[g] if isinstance(max_history, dict) else max_history)
            for g in groups}

    # --- which events, in which order -------------------------------------------------------
    remap = np.full(len(log.groups), -1, dtype=np.int64)
    remap[gcode] = np.arange(len(groups))
    ev_group = remap[log.group]
    rows = np.flatnonzero(ev_group >= 0)
    user_order = sort_ids(log.users)
    user_rank = np.empty(len(log.users), dtype=np.int64)
    code_of = {u: k for k, u in enumerate(log.users)}
    user_rank[np.array([code_of[u] for u in user_order], dtype=np.int64)] = np.arange(
        len(user_order))
    order = rows[np.lexsort((rows, log.timestamp[rows], user_rank[log.user[rows]]))]
    ur = user_rank[log.user[order]]
    if target_actions is not None:
        unknown = sorted(set(target_actions) - set(log.actions))
        if unknown:
            raise ValueError(f"target actions {unknown} are not among the log's actions "
                             f"{sorted(log.actions)}")
        t_action = np.isin(log.action, [log.actions.index(a) for a in target_actions])
    n_obj = max(1, len(log.objects.get(target, [])))

    def target_mask(order: np.ndarray, ur: np.ndarray) -> np.ndarray:
        """Which events of ``order`` are targets (target group, target actions, first touch)."""
        m = ev_group[order] == 0
        if target_actions is not None:
            m &= t_action[order]
        if first_touch:
            tg = np.flatnonzero(ev_group[order] == 0)
            key = ur[tg] * n_obj + log.object[order[tg]]
            _, first = np.unique(key, return_index=True)   # earliest in (user, time) order
            is_first = np.zeros(len(order), dtype=bool)
            is_first[tg[first]] = True
            m &= is_first
        return m

    is_t = target_mask(order, ur)
    n_targets = np.bincount(ur[is_t], minlength=len(user_order))
    keep_user = n_targets >= 3
    if max_users is not None:
        keep_user &= np.cumsum(keep_user) <= max_users
    order = order[keep_user[ur]]
    ur = user_rank[log.user[order]]
    kept_ranks = np.flatnonzero(keep_user)
    new_row = np.full(len(user_order), -1, dtype=np.int64)
    new_row[kept_ranks] = np.arange(len(kept_ranks))
    urow = new_row[ur]
    n_users = len(kept_ranks)
    counts = np.bincount(urow, minlength=n_users)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    pos_in_user = np.arange(len(order)) - offsets[urow]
    egroup = ev_group[order]
    is_t = target_mask(order, ur)
    is_tg = egroup == 0

    # targets: rank of each target event among its user's target events
    t_idx = np.flatnonzero(is_t)
    t_user = urow[t_idx]
    t_start = np.r_[0, np.cumsum(np.bincount(t_user, minlength=n_users))]
    t_rank = np.arange(len(t_idx)) - t_start[t_user]
    t_total = np.bincount(t_user, minlength=n_users)[t_user]
    valid_pos = np.zeros(n_users, dtype=np.int64)
    sel = t_rank == t_total - 2
    valid_pos[t_user[sel]] = pos_in_user[t_idx[sel]]

    # --- vocabularies ----------------------------------------------------------------------
    train_events = order[pos_in_user < valid_pos[urow]]
    tables: dict[str, tuple[list[str], np.ndarray]] = {}   # table -> (dictionary, codes)
    for g in groups:
        tables.setdefault(table_name(g, "id"), (log.objects.get(g, []), None))
        for f in feat_names[g][1:]:
            tables.setdefault(f, (log.values[f], None))
    vocabs: dict[str, list[str]] = {}
    for t, (dictionary, _) in sorted(tables.items()):
        if min_count <= 1 and vocabulary == "all":
            vocabs[t] = sorted_keys(dictionary)
            continue
        n = len(dictionary)
        if t.endswith("_id") and t[:-3] in groups:
            g = t[:-3]
            sel = train_events[log.group[train_events] == log.group_code(g)]
            cnt = _count_keys(log.object[sel], n)
        else:
            cnt = np.zeros(n, dtype=np.int64)
            for g in groups:
                if t in feat_names[g]:
                    sel = train_events[log.group[train_events] == log.group_code(g)]
                    own = log.features[t][sel] if t in log.features else np.full(len(sel), -1)
                    cat = log.catalog_column(g, t)[log.object[sel]]
                    cnt += _count_keys(np.where(own != ABSENT, own, cat), n)
        vocabs[t] = sorted_keys([k for k, c in zip(dictionary, cnt) if c >= min_count])
    h = {t: (max(0, hash_buckets)) for t in vocabs}
    index = {t: TableIndex(vocabs[t], h[t], HASH_SEED) for t in vocabs}

    def code_map(t: str, dictionary: list[str]) -> np.ndarray:
        """Table index of every dictionary code, plus 0 for code -1 (at position -1)."""
        m = np.zeros(len(dictionary) + 1, dtype=np.int64)
        if dictionary:
            m[:-1] = index[t].indices(dictionary)
        return m

    # --- per-event features ----------------------------------------------------------------
    f_max = max(len(f) for f in feat_names.values())
    feats = np.zeros((len(order), f_max), dtype=np.int64)
    for gi, g in enumerate(groups):
        sel = np.flatnonzero(egroup == gi)
        ev = order[sel]
        obj = log.object[ev]
        feats[sel, 0] = code_map(table_name(g, "id"), log.objects[g])[obj]
        for k, f in enumerate(feat_names[g][1:], start=1):
            own = log.features[f][ev] if f in log.features else np.full(len(ev), ABSENT)
            cat = log.catalog_column(g, f)[obj]
            feats[sel, k] = code_map(f, log.values[f])[np.where(own != ABSENT, own, cat)]
    target_feats = feat_names[target]
    obj_cand = np.zeros((len(log.objects[target]), len(target_feats)), dtype=np.int64)
    obj_cand[:, 0] = code_map(table_name(target, "id"), log.objects[target])[:-1]
    for k, f in enumerate(target_feats[1:], start=1):
        obj_cand[:, k] = code_map(f, log.values[f])[log.catalog_column(target, f)]
    cand_of_event = np.zeros((len(order), len(target_feats)), dtype=np.int64)
    cand_of_event[is_tg] = obj_cand[log.object[order[is_tg]]]
    id_vocab = vocabs[table_name(target, "id")]
    item_feats = np.zeros((len(id_vocab) + 1, len(target_feats)), dtype=np.int64)
    item_feats[:, 0] = np.arange(len(id_vocab) + 1)
    if id_vocab:
        pos_of = {k: i for i, k in enumerate(log.objects[target])}
        codes = np.array([pos_of.get(k, -1) for k in id_vocab], dtype=np.int64)
        known = codes >= 0
        item_feats[1:][known, 1:] = obj_cand[codes[known], 1:]

    # --- per-group runs --------------------------------------------------------------------
    group_cfgs = [GroupConfig(g, feat_names[g], gmax[g]) for g in groups]
    run_group, extra = egroup, {}
    if group_by_action:
        acts = sorted(log.actions)
        sub = [GroupConfig(f"{target}@{a}", feat_names[target], gmax[target]) for a in acts]
        group_cfgs = [GroupConfig(target, feat_names[target], 1)] + sub + group_cfgs[1:]
        rank = np.array([acts.index(a) for a in log.actions], dtype=np.int64)
        run_group = np.where(egroup == 0, 1 + rank[log.action[order]], egroup + len(acts))
        extra = {"table_group": {g.name: target for g in sub}}
    n_g = len(group_cfgs)
    before = np.zeros((n_g, len(order)), dtype=np.int32)
    g_offsets = np.zeros((n_g, n_users), dtype=np.int64)
    g_index = []
    for gi in range(n_g):
        is_g = (run_group == gi).astype(np.int64)
        incl = np.cumsum(is_g)
        user_base = np.r_[0, incl][offsets[:-1]]      # group-g events before the user's run
        before[gi] = incl - is_g - user_base[urow]
        g_index.append(np.flatnonzero(is_g))
        g_offsets[gi] = user_base

    # --- targets and negatives -------------------------------------------------------------
    n_items = len(id_vocab)
    if n_items == 0:
        raise ValueError("the target group's vocabulary is empty")
    # Sampling units (what a negative is drawn from, uniformly) and the universe rows they
    # map to: vocabulary rows 1..n_items (unit j -> row j), or every object of the target
    # group, ordered by its candidate row (so with a bijection unit j is row j again).
    tg_pos = np.flatnonzero(is_tg)
    universe_object = None
    if universe == "vocabulary":
        universe_feats = item_feats
        unit_row = np.arange(1, n_items + 1, dtype=np.int64)
        tg_unit = feats[tg_pos, 0]
        tg_ok = (tg_unit >= 1) & (tg_unit <= n_items)
    else:
        ids = obj_cand[:, 0]
        if (len(ids) == n_items and ids.min(initial=1) >= 1 and ids.max(initial=0) <= n_items
                and len(np.unique(ids)) == n_items):
            universe_feats, obj_row = item_feats, ids       # every object has its own row
        else:
            uniq, inv = np.unique(obj_cand, axis=0, return_inverse=True)
            universe_feats = np.vstack([np.zeros((1, obj_cand.shape[1]), np.int64), uniq])
            obj_row = inv.reshape(-1).astype(np.int64) + 1
        unit_obj = np.argsort(obj_row, kind="stable")
        unit_row = obj_row[unit_obj]
        unit_of_obj = np.empty(len(obj_row), dtype=np.int64)
        unit_of_obj[unit_obj] = np.arange(1, len(obj_row) + 1)
        tg_unit = unit_of_obj[log.object[order[tg_pos]]]
        tg_ok = np.ones(len(tg_pos), dtype=bool)
        universe_object = np.full(len(universe_feats), -1, dtype=np.int64)
        universe_object[unit_row[::-1]] = unit_obj[::-1]      # first object of each row
    n_units = len(unit_row)
    pair = np.unique(urow[tg_pos[tg_ok]] * (n_units + 1) + tg_unit[tg_ok])  # touched (user, unit)
    rng = np.random.default_rng(seed)
    pair_users = pair // (n_units + 1)
    n_seen = np.bincount(pair_users, minlength=n_users)
    if (n_seen[t_user] >= n_units).any():
        raise ValueError("a user interacted with every item: no negatives")
    negs = rng.integers(1, n_units + 1, size=len(t_idx))
    bad = np.isin(t_user * (n_units + 1) + negs, pair)
    while bad.any():
        negs[bad] = rng.integers(1, n_units + 1, size=int(bad.sum()))
        bad = np.isin(t_user * (n_units + 1) + negs, pair)
    negs = unit_row[negs - 1]
    p = pos_in_user[t_idx]
    trows = np.stack([t_user, p, negs], axis=1).astype(np.int64)
    train = trows[(t_rank < t_total - 2) & (p >= 1)]
    valid = trows[t_rank == t_total - 2]
    test = trows[t_rank == t_total - 1]
    n_rows = len(universe_feats)
    universe_count = np.bincount(unit_row, minlength=n_rows).astype(np.int64)
    row_key, row_cnt = np.unique(pair_users * n_rows + unit_row[pair % (n_units + 1) - 1],
                                 return_counts=True)
    r_start = np.r_[0, np.cumsum(np.bincount(row_key // n_rows, minlength=n_users))]
    touched_row = row_key % n_rows
    interacted = [touched_row[r_start[u]:r_start[u + 1]] for u in range(n_users)]
    interacted_count = [row_cnt[r_start[u]:r_start[u + 1]] for u in range(n_users)]

    config = ModelConfig(
        groups=group_cfgs, extra=extra,
        table_sizes={t: len(v) for t, v in vocabs.items()},
        n_actions=len(log.actions) if use_actions else 1,
        target_group=target, embedding_dim=embedding_dim,
        hidden=len(target_feats) * embedding_dim, heads=heads, ffn=ffn,
        n_time_buckets=tb.n_buckets, ranking=ranking,
        candidate_projection=bool(candidate_projection),
        hash_buckets={t: n for t, n in h.items() if n})
    catalogs = {}
    for g in groups:
        objs = log.catalog_objects(g)
        if len(feat_names[g]) < 2 or len(objs) == 0:
            continue
        names = [log.objects[g][o] for o in objs]
        by_key = sorted(range(len(objs)), key=names.__getitem__)   # atv order (code points)
        objs = objs[np.array(by_key, dtype=np.int64)]
        keys = [names[k] for k in by_key]
        cols = {}
        for f in feat_names[g][1:]:
            col = log.catalog_column(g, f)[objs]
            vals = log.values[f]
            cols[f] = [vals[c] if c != ABSENT else None for c in col]
        catalogs[g] = {"keys": keys, "features": cols}
    actions = sorted(log.actions)
    action_index = np.array([actions.index(a) + 1 for a in log.actions], dtype=np.int64)
    if not use_actions:                                  # ablation: one action for all
        actions, action_index = ["any"], np.ones(len(log.actions), dtype=np.int64)
    return Split(config, vocabs, HASH_SEED, actions, tb,
                 [user_order[r] for r in kept_ranks], offsets, order.astype(np.int64),
                 run_group, action_index[log.action[order]], log.timestamp[order], feats,
                 before, g_offsets, g_index, cand_of_event, item_feats, train, valid, test,
                 interacted, catalogs, log, universe_feats, universe_count, interacted_count,
                 universe_object, use_time)
