"""ATRank (Zhou et al., AAAI 2018): behavior groups by object type (paper, seed slides).

A user's behaviors are partitioned into groups by object type (item, coupon, query, ...).
Each group has its own object features; a feature with the same name in several groups (e.g.
``category``, ``shop``) shares one embedding table across them, the object id of each group has
a table of its own (``<group>_id``). A behavior ``(a, o, t)`` of group g becomes
``u = [emb(o's features)..., onehot(time bucket), onehot(action)]`` and is projected by the
group's own ``F_M_g`` (Linear) to the common width H. The groups are concatenated along the
sequence axis (their masks too) and go through one self-attention block whose heads are the K
latent semantic spaces (per-space projections = the head slices of Q/K/V, attention per space,
``F_self`` = the feed-forward after the concatenated spaces). A candidate of the target group is
embedded from its features (from the catalog) and projected by ``F_C`` (identity in the Amazon
preset, where 2 x 32 = H), attends over the encoded behaviors per space ("vanilla attention"),
and the ranking network scores it: ``item_bias + <e_u, h_t>`` (``ranking="dot"``, the original
code's) or an MLP on ``[e_u, h_t, e_u * h_t]`` (``ranking="mlp"``). The paper's single-group
Amazon configuration is :func:`amazon_preset` (group ``item``, features ``id``, ``category``).

Embedding tables (and the item bias) are ``nn.Embedding(sparse=True)``: a training step's
gradient holds only the rows the batch touches, so with a sparse optimizer a step costs
O(batch), not O(vocabulary). A table has ``size + 1 + hash_buckets`` rows: 0 = padding and
unknown, 1..size the vocabulary, then the hashed buckets (docs/package-format.md).

Deliberate differences from the authors' code:

* The time bucket is one-hot encoded with depth 13 (buckets 0..12). The original used depth
  12, which silently turned bucket 12 (gaps >= 4096 days) into an all-zero vector.
* The action is one-hot encoded too (depth ``n_actions + 1``, index 0 = unknown) and
  concatenated to the behavior's input of F_M.
* One-hots are ``F.embedding`` lookups into fixed identity buffers (exported as Gather).
* Masking is additive (-1e9 on padded keys, built in-graph from ``<group>_len``), and the
  softmax weights are multiplied by the key mask afterwards, so padding has exactly zero weight
  and a user with no behaviors attends to nothing (attention output 0 before the residual).
  The exported graphs compute the same values in a cheaper form (``serving_form``,
  ``AttentionBlock._serving_attention``): the mask's bias as one more column of each head's
  score matmul, and padding zeroed in the values instead of the weights.

Graph inputs (one set per group g; all int64): ``{g}_{feature}`` [B, L_g] for every feature
of g (``id`` first), ``{g}_action`` [B, L_g], ``{g}_time`` [B, L_g], ``{g}_len`` [B]; and
``cand_{feature}`` [B, N] for the target group's features. Output: logits [B, N].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MASK_FILL = -1e9
LN_EPS = 1e-8


class AttentionBlock(nn.Module):
    """Multi-head attention (ReLU projections, no output projection) + residual/LN + FFN."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ff1 = nn.Linear(hidden, ffn)
        self.ff2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)
        # evaluation only (train.evaluate, through ``fused_attention``): the same attention
        # through torch's fused kernel, never in training or in the exported graph
        self.fused = False
        # export only (through ``serving_form``): the same attention in the form the exported
        # graphs use (``_serving_attention``)
        self.serving = False
        self._serving: tuple[torch.Tensor, ...] | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """queries [B,Q,H], keys [B,L,H], key_mask [B,L] (1 real, 0 padding) -> [B,Q,H]."""
        b, nq, hdim = queries.shape
        if self.serving and not self.training:
            # rows flattened to 2-D once: each Linear is one Gemm with its bias
            q2 = queries.reshape(-1, hdim)                              # [B*Q, H]
            att = self._serving_attention(q2, b, nq, keys, key_mask)    # [B*Q, H]
            if query_mask is not None:
                att = att * query_mask.reshape(-1, 1)
            x = self.ln1(q2 + att)
            y = self.ff2(F.relu(self.ff1(x)))
            return self.ln2(x + y).reshape(b, nq, hdim)
        q = self._split(F.relu(self.q(queries)))        # [B,h,Q,d]
        k = self._split(F.relu(self.k(keys)))           # [B,h,L,d]
        v = self._split(F.relu(self.v(keys)))           # [B,h,L,d]
        km = key_mask[:, None, None, :]                 # [B,1,1,L]
        if self.fused and not self.training and not torch.is_grad_enabled():
            # The same softmax(q k^T scale + mask) v in one kernel. A padded key's weight is
            # exp(-1e9 + ...) = 0 in float32 whenever a real key exists, as below; a row
            # with no real key gets 0 from the multiplication that follows, as below.
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=(1.0 - km) * MASK_FILL,
                                                 scale=self.scale)
            att = att * (key_mask.sum(-1) > 0).to(att.dtype)[:, None, None, None]
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + (1.0 - km) * MASK_FILL
            weights = torch.softmax(scores, dim=-1) * km    # padding: exactly 0 weight
            weights = self.drop(weights)
            att = torch.matmul(weights, v)
        att = att.transpose(1, 2).reshape(b, nq, hdim)
        if query_mask is not None:
            att = att * query_mask[:, :, None]
        x = self.ln1(queries + att)
        y = self.ff2(self.drop(F.relu(self.ff1(x))))
        return self.ln2(x + y)


    def serving_weights(self) -> tuple[torch.Tensor, ...]:
        """The query and key projections with one more output per head, as constants:
        ``wq, bq, wk, bk`` ([heads * (head_dim + 1), H] and [heads * (head_dim + 1)]; the extra
        query output has weight row 0 and bias 1, the extra key output weight row 0 and bias
        0) and ``col`` ([heads * (head_dim + 1)]: 1 at each head's extra output, else 0)."""
        h, d = self.heads, self.head_dim

        def widen(lin: nn.Linear, extra_bias: float) -> tuple[torch.Tensor, torch.Tensor]:
            w = lin.weight.detach().reshape(h, d, -1)
            w = torch.cat([w, torch.zeros_like(w[:, :1])], 1).reshape(h * (d + 1), -1)
            b = lin.bias.detach().reshape(h, d)
            b = torch.cat([b, torch.full_like(b[:, :1], extra_bias)], 1).reshape(-1)
            return w.contiguous(), b.contiguous()

        with torch.no_grad():
            wq, bq = widen(self.q, 1.0)
            wk, bk = widen(self.k, 0.0)
            col = torch.zeros(h, d + 1, dtype=wq.dtype)
            col[:, d] = 1.0
        return wq, bq, wk, bk, col.reshape(-1)

    def _serving_attention(self, q2: torch.Tensor, b: int, nq: int, keys: torch.Tensor,
                           key_mask: torch.Tensor) -> torch.Tensor:
        """The attention of :meth:`forward` (before the residual) in the form the exported
        graphs use: the same values, fewer operations over [B, heads, Q, L].

        - The key mask's additive bias rides in the score matmul instead of an ``Add`` over
          [B, heads, Q, L]: each head's query gets one more column, constant 1 (weight row 0,
          bias 1 in the query projection, so ``relu(1) = 1`` and no ``Concat`` over Q), and
          each head's keys one more column, ``(1 - mask) * MASK_FILL / scale``. A real key's
          extra term is ``1 * 0``, so its score is unchanged; a padded key's is
          ``MASK_FILL`` after the scale, as before.
        - Padding's zero weight comes from zeroed values (``v * mask``, [B, L, H]) instead of
          multiplying the weights ([B, heads, Q, L]) by the mask: a real key exists -> the
          padded weights are exp(MASK_FILL - max) = 0 in float32 either way; no real key ->
          every value is 0, so the output is 0, as the weights' mask gives.
        """
        hdim = q2.shape[1]
        nk, h, d = keys.shape[1], self.heads, self.head_dim
        k2 = keys.reshape(-1, hdim)                                    # [B*L, H]
        km = key_mask.reshape(-1, 1)
        wq, bq, wk, bk, col = (self._serving if self._serving is not None
                               else self.serving_weights())
        q = F.relu(F.linear(q2, wq, bq)).reshape(b, nq, h, d + 1).transpose(1, 2)
        # the keys' extra column: relu(0) = 0, + the mask bias (an Add over [B*L, h (d + 1)],
        # not a Concat, which tract splits the score matmul over)
        k = F.relu(F.linear(k2, wk, bk)) + (1.0 - km) * (MASK_FILL / self.scale) * col
        kt = k.reshape(b, nk, h, d + 1).permute(0, 2, 3, 1)           # [B,h,d+1,L]
        v = (F.relu(self.v(k2)) * km).reshape(b, nk, h, d).transpose(1, 2)   # [B,h,L,d]
        weights = torch.softmax(torch.matmul(q, kt) * self.scale, dim=-1)
        return torch.matmul(weights, v).transpose(1, 2).reshape(-1, hdim)


@dataclass
class GroupConfig:
    name: str
    features: list[str]            # "id" first, then object features, e.g. ["id", "category"]
    max_history: int = 50


@dataclass
class ModelConfig:
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
    hash_buckets: dict[str, int] = field(default_factory=dict)   # table -> hashed rows
    extra: dict = field(default_factory=dict)

    def table_rows(self, table: str) -> int:
        """Rows of a table's embedding: padding/unknown, the vocabulary, hashed buckets."""
        return self.table_sizes[table] + 1 + self.hash_buckets.get(table, 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["groups"] = [GroupConfig(**g) for g in d["groups"]]
        return cls(**d)

    def table(self, group: str, feature: str) -> str:
        """The embedding table of a group's feature. ``extra["table_group"]`` maps a group to
        the group whose id table it shares (the behaviors-grouped-by-action ablation, where
        ``item@buy`` and ``item@pv`` look up the same ``item_id`` rows)."""
        return table_name(self.extra.get("table_group", {}).get(group, group), feature)

    def group(self, name: str) -> GroupConfig:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


class fused_attention:
    """``with fused_attention(model):`` every AttentionBlock of ``model`` uses torch's fused
    attention kernel in eval mode without gradients (train.evaluate scores every candidate,
    where the explicit softmax over [B, heads, N, L] costs most of the time)."""

    def __init__(self, model: nn.Module):
        self.blocks = [m for m in model.modules() if isinstance(m, AttentionBlock)]

    def __enter__(self):
        for m in self.blocks:
            m.fused = True
        return self

    def __exit__(self, *exc):
        for m in self.blocks:
            m.fused = False
        return False


class serving_form(fused_attention):
    """``with serving_form(model):`` every AttentionBlock of ``model`` computes its attention
    in eval mode the way the exported graphs do (``AttentionBlock._serving_attention``); the
    exporter traces under it."""

    def __enter__(self):
        for m in self.blocks:
            m.serving = True
            # constants while tracing, so the graph holds the folded weights, not the folding
            m._serving = m.serving_weights()
        return self

    def __exit__(self, *exc):
        for m in self.blocks:
            m.serving = False
            m._serving = None
        return False


def table_name(group: str, feature: str) -> str:
    """Object ids get a table per group; other features share one table per feature name."""
    return f"{group}_id" if feature == "id" else feature


def amazon_preset(n_items: int, n_categories: int, n_actions: int, max_history: int = 50,
                  embedding_dim: int = 32, heads: int = 4, ffn: int = 32) -> ModelConfig:
    """The original code's Amazon configuration: one item group (id + category), candidate =
    concat(item, category) with no projection, dot-product ranking with an item bias."""
    return ModelConfig(
        groups=[GroupConfig("item", ["id", "category"], max_history)],
        table_sizes={"item_id": n_items, "category": n_categories},
        n_actions=n_actions, embedding_dim=embedding_dim, hidden=2 * embedding_dim,
        heads=heads, ffn=ffn, candidate_projection=False, ranking="dot")


class ATRank(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        e = c.embedding_dim
        self.tables = nn.ModuleDict({
            name: nn.Embedding(c.table_rows(name), e, padding_idx=0, sparse=True)
            for name in c.table_sizes})
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
        self.item_bias = nn.Embedding(c.table_rows(c.table(c.target_group, "id")), 1,
                                      sparse=True)
        nn.init.zeros_(self.item_bias.weight)
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
                touched.setdefault(self.config.table(g.name, f), []).append(
                    batch[f"{g.name}_{f}"])
        for f in self.config.group(self.config.target_group).features:
            touched.setdefault(self.config.table(self.config.target_group, f), []).append(
                batch[f"cand_{f}"])
        total = torch.zeros(())
        for name, parts in touched.items():
            rows = torch.unique(torch.cat([p.ravel() for p in parts]))
            # a lookup, not weight[rows]: its gradient stays sparse (O(rows), not O(table))
            total = total + F.embedding(rows, self.tables[name].weight,
                                        sparse=True).pow(2).sum()
        return total

    def input_names(self) -> list[str]:
        names = []
        for g in self.config.groups:
            names += [f"{g.name}_{f}" for f in g.features]
            names += [f"{g.name}_action", f"{g.name}_time", f"{g.name}_len"]
        names += [f"cand_{f}" for f in self.config.group(self.config.target_group).features]
        return names

    def embed_group(self, g: GroupConfig, inputs: dict[str, torch.Tensor]):
        feats = [self.tables[self.config.table(g.name, f)](inputs[f"{g.name}_{f}"])
                 for f in g.features]
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
        return self.f_c(torch.cat([self.tables[self.config.table(t.name, f)](inputs[f"cand_{f}"])
                                   for f in t.features], dim=-1))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        enc, mask = self.encode(inputs)
        h = self.candidates(inputs)                          # [B,N,H]
        u = self.vanilla_att(h, enc, mask)                   # [B,N,H]
        return self.score(u, h, inputs["cand_id"])

    def score(self, u: torch.Tensor, h: torch.Tensor, cand_id: torch.Tensor) -> torch.Tensor:
        """The ranking network: user vectors u, candidate vectors h [B,N,H] -> logits [B,N]."""
        bias = self.item_bias(cand_id)[..., 0]
        if self.config.ranking == "dot":
            return bias + (u * h).sum(-1)
        return bias + self.rank(torch.cat([u, h, u * h], dim=-1))[..., 0]
