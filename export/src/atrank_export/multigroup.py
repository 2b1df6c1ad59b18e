"""ATRank's whole framework: behavior groups by object type (paper, seed slides).

A user's behaviors are partitioned into groups by object type (item, coupon, query, ...).
Each group has its own object features; a feature with the same name in several groups (e.g.
``category``, ``shop``) shares one embedding table across them, the object id of each group has
a table of its own. A behavior ``(a, o, t)`` of group g becomes
``u = [emb(o's features)..., onehot(time bucket), onehot(action)]`` and is projected by the
group's own ``F_M_g`` (Linear) to the common width H. The groups are concatenated along the
sequence axis (their masks too) and go through one self-attention block whose heads are the K
latent semantic spaces (per-space projections = the head slices of Q/K/V, attention per space,
``F_self`` = the feed-forward after the concatenated spaces). A candidate of the target group is
embedded from its features (from the catalog) and projected by ``F_C`` (identity in the Amazon
preset, where 2 x 32 = H), attends over the encoded behaviors per space ("vanilla attention"),
and the ranking network scores it: ``item_bias + <e_u, h_t>`` (``ranking="dot"``, the original
code's) or an MLP on ``[e_u, h_t, e_u * h_t]`` (``ranking="mlp"``).

With a single ``item`` group with features ``id`` and ``category`` and the Amazon preset, this
model computes exactly what :class:`atrank_export.model.ATRank` computes (tested by loading the
same weights into both).

Graph inputs (one set per group g; all int64): ``{g}_{feature}`` [B, L_g] for every feature
of g (``id`` first), ``{g}_action`` [B, L_g], ``{g}_time`` [B, L_g], ``{g}_len`` [B]; and
``cand_{feature}`` [B, N] for the target group's features. Output: logits [B, N].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .behaviors import BehaviorLog
from .data import DEFAULT_SEED, sort_ids
from .model import AttentionBlock
from .preprocess import TimeBuckets, Vocab


@dataclass
class GroupConfig:
    name: str
    features: list[str]            # "id" first, then object features, e.g. ["id", "category"]
    max_history: int = 50


@dataclass
class MultiGroupConfig:
    groups: list[GroupConfig]
    table_sizes: dict[str, int]    # embedding table -> vocabulary size (without index 0)
    n_actions: int
    target_group: str = "item"
    embedding_dim: int = 32
    hidden: int = 64
    heads: int = 4
    ffn: int = 32
    n_time_buckets: int = 13
    candidate_projection: bool = False
    ranking: str = "dot"
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MultiGroupConfig:
        d = dict(d)
        d["groups"] = [GroupConfig(**g) for g in d["groups"]]
        return cls(**d)

    def group(self, name: str) -> GroupConfig:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


def table_name(group: str, feature: str) -> str:
    """Object ids get a table per group; other features share one table per feature name."""
    return f"{group}_id" if feature == "id" else feature


def amazon_preset(n_items: int, n_categories: int, n_actions: int, max_history: int = 50,
                  embedding_dim: int = 32) -> MultiGroupConfig:
    """The original code's Amazon configuration: one item group (id + category), candidate =
    concat(item, category) with no projection, dot-product ranking with an item bias."""
    return MultiGroupConfig(
        groups=[GroupConfig("item", ["id", "category"], max_history)],
        table_sizes={"item_id": n_items, "category": n_categories},
        n_actions=n_actions, embedding_dim=embedding_dim, hidden=2 * embedding_dim,
        heads=4, ffn=32, candidate_projection=False, ranking="dot")


class MultiGroupATRank(nn.Module):
    def __init__(self, config: MultiGroupConfig):
        super().__init__()
        c = self.config = config
        e = c.embedding_dim
        self.tables = nn.ModuleDict({
            name: nn.Embedding(size + 1, e, padding_idx=0) for name, size in c.table_sizes.items()})
        for emb in self.tables.values():
            nn.init.normal_(emb.weight, std=0.05)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.register_buffer("time_onehot", torch.eye(c.n_time_buckets), persistent=False)
        self.register_buffer("action_onehot", torch.eye(c.n_actions + 1), persistent=False)
        self.f_m = nn.ModuleDict({
            g.name: nn.Linear(len(g.features) * e + c.n_time_buckets + c.n_actions + 1, c.hidden)
            for g in c.groups})
        target = c.group(c.target_group)
        cand_dim = len(target.features) * e
        if c.candidate_projection:
            self.f_c = nn.Linear(cand_dim, c.hidden)
        elif cand_dim != c.hidden:
            raise ValueError(f"candidate width {cand_dim} != hidden {c.hidden}: set "
                             "candidate_projection=True")
        else:
            self.f_c = nn.Identity()
        self.item_bias = nn.Parameter(torch.zeros(c.table_sizes[table_name(c.target_group, "id")]
                                                  + 1))
        self.self_att = AttentionBlock(c.hidden, c.heads, c.ffn, c.dropout)
        self.vanilla_att = AttentionBlock(c.hidden, c.heads, c.ffn, c.dropout)
        if c.ranking == "mlp":
            self.rank = nn.Sequential(nn.Linear(3 * c.hidden, c.hidden), nn.ReLU(),
                                      nn.Linear(c.hidden, 1))
        elif c.ranking != "dot":
            raise ValueError(f"ranking {c.ranking!r} is not 'dot' or 'mlp'")

    def l2_penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of squares of the embedding rows this batch touches (all tables)."""
        touched: dict[str, list[torch.Tensor]] = {}
        for g in self.config.groups:
            for f in g.features:
                touched.setdefault(table_name(g.name, f), []).append(batch[f"{g.name}_{f}"])
        for f in self.config.group(self.config.target_group).features:
            touched.setdefault(table_name(self.config.target_group, f), []).append(
                batch[f"cand_{f}"])
        total = torch.zeros(())
        for name, parts in touched.items():
            rows = torch.unique(torch.cat([p.ravel() for p in parts]))
            total = total + self.tables[name].weight[rows].pow(2).sum()
        return total

    def input_names(self) -> list[str]:
        names = []
        for g in self.config.groups:
            names += [f"{g.name}_{f}" for f in g.features]
            names += [f"{g.name}_action", f"{g.name}_time", f"{g.name}_len"]
        names += [f"cand_{f}" for f in self.config.group(self.config.target_group).features]
        return names

    def embed_group(self, g: GroupConfig, inputs: dict[str, torch.Tensor]):
        feats = [self.tables[table_name(g.name, f)](inputs[f"{g.name}_{f}"]) for f in g.features]
        x = torch.cat(feats + [F.embedding(inputs[f"{g.name}_time"], self.time_onehot),
                               F.embedding(inputs[f"{g.name}_action"], self.action_onehot)],
                      dim=-1)
        length = x.shape[1]
        positions = torch.arange(length, device=x.device)
        mask = (positions[None, :] < inputs[f"{g.name}_len"][:, None]).to(torch.float32)
        return self.f_m[g.name](x), mask

    def encode(self, inputs: dict[str, torch.Tensor]):
        """All groups -> encoded behaviors [B, sum L_g, H] and their mask."""
        parts = [self.embed_group(g, inputs) for g in self.config.groups]
        s = torch.cat([p[0] for p in parts], dim=1)
        mask = torch.cat([p[1] for p in parts], dim=1)
        return self.self_att(s, s, mask, query_mask=mask), mask

    def candidates(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.config.group(self.config.target_group)
        return self.f_c(torch.cat([self.tables[table_name(t.name, f)](inputs[f"cand_{f}"])
                                   for f in t.features], dim=-1))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        enc, mask = self.encode(inputs)
        h = self.candidates(inputs)                          # [B,N,H]
        u = self.vanilla_att(h, enc, mask)                   # [B,N,H]
        cand_id = inputs["cand_id"]
        bias = F.embedding(cand_id, self.item_bias[:, None])[..., 0]
        if self.config.ranking == "dot":
            return bias + (u * h).sum(-1)
        return bias + self.rank(torch.cat([u, h, u * h], dim=-1))[..., 0]


# ---------------------------------------------------------------------------------------------
# Data: a BehaviorLog -> vocabularies, a per-user time-ordered split, padded batches


@dataclass
class MultiGroupSplit:
    """Same interface as :class:`atrank_export.data.Split` (train/valid/test rows of
    ``(user row, target position, negative item index)``, ``batch``, ``target_items``,
    ``n_items``, ``interacted``), so :func:`atrank_export.train.train` and ``evaluate`` run it.
    Positions index a user's events of *all* groups in time order; targets are events of the
    target group."""

    config: MultiGroupConfig
    vocabs: dict[str, Vocab]
    actions: list[str]
    time_buckets: TimeBuckets
    users: list[str]
    offsets: np.ndarray        # [U+1]
    group: np.ndarray          # [E] group index of each event
    action: np.ndarray         # [E]
    time: np.ndarray           # [E]
    feats: np.ndarray          # [E, F_max] feature indices, columns in the group's order
    item_feats: np.ndarray     # [n_items+1, F_target] catalog features of each target object
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    interacted: list[np.ndarray]
    catalogs: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    sequences: list[list] = field(default_factory=list)   # raw events per user row, in order

    @property
    def n_items(self) -> int:
        return self.item_feats.shape[0] - 1

    def target_items(self, rows: np.ndarray) -> np.ndarray:
        return self.feats[self.offsets[rows[:, 0]] + rows[:, 1], 0]

    def batch(self, rows: np.ndarray, cand_items: np.ndarray) -> dict[str, np.ndarray]:
        c = self.config
        b = len(rows)
        per_group: list[list[np.ndarray]] = [[] for _ in c.groups]
        req_t = np.zeros(b, dtype=np.int64)
        for r, (u, p) in enumerate(rows[:, :2]):
            start = self.offsets[u]
            end = start + p
            req_t[r] = self.time[end]
            g_of = self.group[start:end]
            for gi, g in enumerate(c.groups):
                idx = start + np.flatnonzero(g_of == gi)
                per_group[gi].append(idx[len(idx) - min(len(idx), g.max_history):])
        out: dict[str, np.ndarray] = {}
        for gi, g in enumerate(c.groups):
            lens = np.array([len(ix) for ix in per_group[gi]], dtype=np.int64)
            length = max(1, int(lens.max()) if b else 1)
            pos = np.zeros((b, length), dtype=np.int64)
            valid = np.arange(length)[None, :] < lens[:, None]
            for r, ix in enumerate(per_group[gi]):
                pos[r, :len(ix)] = ix
            for k, f in enumerate(g.features):
                out[f"{g.name}_{f}"] = np.where(valid, self.feats[pos, k], 0)
            out[f"{g.name}_action"] = np.where(valid, self.action[pos], 0)
            out[f"{g.name}_time"] = np.where(
                valid, self.time_buckets.buckets_int(req_t[:, None], self.time[pos]), 0)
            out[f"{g.name}_len"] = lens
        target = c.group(c.target_group)
        for k, f in enumerate(target.features):
            out[f"cand_{f}"] = self.item_feats[cand_items, k]
        return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in out.items()}


def build_multigroup_split(log: BehaviorLog, groups: list[str] | None = None,
                           max_history: int | dict[str, int] = 50, seed: int = DEFAULT_SEED,
                           max_users: int | None = None, embedding_dim: int = 32,
                           heads: int = 4, ffn: int = 32, ranking: str = "dot",
                           time_buckets: TimeBuckets | None = None) -> MultiGroupSplit:
    """Per user, events sorted by (timestamp, seeded random tie-break); targets = events of the
    target group: the last one is test, the one before validation, earlier ones (with at
    least one earlier event of any group) train. One negative per target, drawn once, uniform
    over target objects the user never interacted with. ``groups`` limits which behavior
    groups the model reads (the target group is always included): item-only vs multi-group
    ablations use the same targets and negatives."""
    target = log.target_group
    groups = sorted(set(groups or log.groups) | {target}, key=lambda g: (g != target, g))
    tb = time_buckets or TimeBuckets()
    feat_names = {g: ["id"] + [f for f in log.feature_names(g) if f != "id"] for g in groups}
    # Vocabularies per embedding table, over every object the log mentions.
    tokens: dict[str, set[str]] = {}
    for g in log.groups:
        for oid, feats in log.catalogs.get(g, {}).items():
            tokens.setdefault(table_name(g, "id"), set()).add(oid)
            for f, v in feats.items():
                tokens.setdefault(f, set()).add(v)
    for e in log.events:
        tokens.setdefault(table_name(e.group, "id"), set()).add(e.object_id)
        for f, v in e.features.items():
            tokens.setdefault(f, set()).add(v)
    used_tables = {table_name(g, f) for g in groups for f in feat_names[g]}
    vocabs = {t: Vocab(sort_ids(tokens.get(t, set()))) for t in sorted(used_tables)}
    actions = log.actions()
    action_index = {a: k + 1 for k, a in enumerate(actions)}
    gmax = {g: (max_history[g] if isinstance(max_history, dict) else max_history)
            for g in groups}
    config = MultiGroupConfig(
        groups=[GroupConfig(g, feat_names[g], gmax[g]) for g in groups],
        table_sizes={t: len(v) for t, v in vocabs.items()}, n_actions=len(actions),
        target_group=target, embedding_dim=embedding_dim,
        hidden=len(feat_names[target]) * embedding_dim, heads=heads, ffn=ffn,
        n_time_buckets=tb.n_buckets, ranking=ranking)
    f_max = max(len(f) for f in feat_names.values())

    def feature_row(group: str, oid: str, own: dict[str, str]) -> list[int]:
        cat = log.catalogs.get(group, {}).get(oid, {})
        row = []
        for f in feat_names[group]:
            value = oid if f == "id" else own.get(f, cat.get(f))
            row.append(vocabs[table_name(group, f)].index(value))
        return row + [0] * (f_max - len(row))

    item_vocab = vocabs[table_name(target, "id")]
    item_feats = np.zeros((len(item_vocab) + 1, len(feat_names[target])), dtype=np.int64)
    for k, oid in enumerate(item_vocab.tokens):
        item_feats[k + 1] = feature_row(target, oid, {})[:len(feat_names[target])]

    gindex = {g: i for i, g in enumerate(groups)}
    per_user: dict[str, list] = {}
    tie = np.random.default_rng(seed).random(len(log.events))
    for e, key in zip(log.events, tie):
        if e.group in gindex:
            per_user.setdefault(e.user, []).append((int(e.timestamp), float(key), e))
    users = sort_ids(per_user)
    rng = np.random.default_rng(seed)
    all_items = np.arange(1, len(item_vocab) + 1, dtype=np.int64)
    offsets, grp, act, tim, fts, seqs = [0], [], [], [], [], []
    train, valid, test, interacted, kept = [], [], [], [], []
    for u in users:
        seq = [e for _, _, e in sorted(per_user[u], key=lambda x: (x[0], x[1]))]
        tpos = [i for i, e in enumerate(seq) if e.group == target]
        if len(tpos) < 3:
            continue
        if max_users is not None and len(kept) >= max_users:
            break
        row = len(kept)
        kept.append(u)
        seqs.append(seq)
        grp.append(np.array([gindex[e.group] for e in seq], dtype=np.int64))
        act.append(np.array([action_index.get(e.action, 0) for e in seq], dtype=np.int64))
        tim.append(np.array([e.timestamp for e in seq], dtype=np.int64))
        fts.append(np.array([feature_row(e.group, e.object_id, e.features) for e in seq],
                            dtype=np.int64).reshape(len(seq), f_max))
        offsets.append(offsets[-1] + len(seq))
        seen = np.unique([item_vocab.index(seq[i].object_id) for i in tpos])
        seen = seen[seen > 0]
        interacted.append(seen)
        pool = np.setdiff1d(all_items, seen, assume_unique=True)
        negs = pool[rng.integers(0, len(pool), size=len(tpos))]
        for j, p in enumerate(tpos[:-2]):
            if p >= 1:
                train.append((row, p, negs[j]))
        valid.append((row, tpos[-2], negs[-2]))
        test.append((row, tpos[-1], negs[-1]))

    def cat(xs, shape=(0,)):
        return np.concatenate(xs) if xs else np.zeros(shape, dtype=np.int64)

    def arr(xs):
        return np.array(xs, dtype=np.int64).reshape(-1, 3)

    return MultiGroupSplit(config, vocabs, actions, tb, kept, np.array(offsets, dtype=np.int64),
                           cat(grp), cat(act), cat(tim), cat(fts, (0, f_max)), item_feats,
                           arr(train), arr(valid), arr(test), interacted,
                           {g: log.catalogs.get(g, {}) for g in groups}, seqs)


# ---------------------------------------------------------------------------------------------
# Training and the multi-group vs item-only comparison


def train_multigroup(split: MultiGroupSplit, epochs: int = 8, seed: int = DEFAULT_SEED,
                     lr: float = 1e-3, batch_size: int = 128, progress: bool = False,
                     log=print):
    """The shared training harness (:func:`atrank_export.train.train`: Adam, BCE on target vs
    its negative, epoch chosen on validation all-items AUC) on a multi-group split."""
    from .train import train

    return train(split, split.config, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                 progress=progress, log=log, model_factory=MultiGroupATRank)


def compare_groups(log_data: BehaviorLog, seeds=(1, 2, 3), epochs: int = 8,
                   embedding_dim: int = 16, heads: int = 4, ffn: int = 32,
                   max_users: int | None = None, log=print) -> dict:
    """Multi-group ATRank vs item-only ATRank on the same targets and negatives, per seed.
    Returns {"multi-group": [metrics...], "item-only": [metrics...]} (test metrics of the
    epoch chosen on validation, plus chosen epoch and wall time)."""
    import time

    out: dict[str, list] = {"multi-group": [], "item-only": []}
    for seed in seeds:
        for name, groups in (("multi-group", None), ("item-only", [log_data.target_group])):
            t0 = time.perf_counter()
            split = build_multigroup_split(log_data, groups=groups, seed=seed,
                                           max_users=max_users, embedding_dim=embedding_dim,
                                           heads=heads, ffn=ffn)
            _, m = train_multigroup(split, epochs=epochs, seed=seed, log=lambda _m: None)
            row = {**m["test"], "best_epoch": m["best_epoch"], "valid": m["valid"],
                   "seconds": time.perf_counter() - t0, "seed": seed,
                   "curve": [e["valid"]["all_items_auc"] for e in m["epochs"]],
                   "train_samples": len(split.train), "users": len(split.users)}
            out[name].append(row)
            log(f"seed {seed} {name:<12} test all-items {row['all_items_auc']:.4f} one-neg "
                f"{row['one_neg_auc']:.4f} global {row['global_auc']:.4f} (epoch "
                f"{row['best_epoch']}, {row['seconds']:.0f}s)")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m atrank_export.multigroup {compare,package} ...``"""
    import argparse
    import json
    from pathlib import Path

    from .synthetic import synthetic_multigroup

    p = argparse.ArgumentParser(prog="atrank_export.multigroup", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="multi-group vs item-only ATRank on synthetic data")
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--epochs", type=int, default=8)
    c.add_argument("--users", type=int, default=400)
    c.add_argument("--out", type=Path, default=None, help="write the raw results as JSON")
    k = sub.add_parser("package", help="train a multi-group model, export format 2 (with "
                       "the split encoder/scorer graphs)")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--data", choices=["synthetic", "ml100k", "log"], default="synthetic")
    k.add_argument("--log", type=Path, default=None, help="with --data log: a behavior log "
                   "(CSV, JSONL or Parquet; see atrank_export.readers.behavior_log)")
    k.add_argument("--max-history", type=int, default=None,
                   help="per group (default: 10/4/5 for synthetic data, else 50)")
    k.add_argument("--users", type=int, default=60, help="synthetic users")
    k.add_argument("--epochs", type=int, default=2)
    k.add_argument("--embedding-dim", type=int, default=8)
    a = p.parse_args(argv)
    from .train import setup_threads

    setup_threads()
    if a.cmd == "compare":
        data = synthetic_multigroup(n_users=a.users)
        res = compare_groups(data, seeds=tuple(range(1, a.seeds + 1)), epochs=a.epochs)
        for name, rows in res.items():
            v = np.array([r["all_items_auc"] for r in rows])
            print(f"{name:<12} test all-items AUC {v.mean():.4f} +- {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    from .export_multigroup import write_package

    if a.data == "synthetic":
        data = synthetic_multigroup(n_users=a.users)
        max_history = a.max_history or {"item": 10, "coupon": 4, "query": 5}
    elif a.data == "ml100k":
        from .readers import ml100k_log

        data, max_history = ml100k_log(), a.max_history or 50
    else:
        from .readers import read_behavior_log

        if a.log is None:
            p.error("--data log needs --log PATH")
        data, max_history = read_behavior_log(a.log), a.max_history or 50
    split = build_multigroup_split(data, embedding_dim=a.embedding_dim, heads=2,
                                   ffn=2 * a.embedding_dim, max_history=max_history)
    model, _ = train_multigroup(split, epochs=a.epochs, progress=True)
    write_package(model.eval(), split, a.out, name=f"atrank-{data.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
