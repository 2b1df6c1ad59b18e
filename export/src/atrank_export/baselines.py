"""Baselines for the model comparison, runnable by the same harness as ATRank.

Every model here takes ATRank's inputs (``forward(**inputs)``; the one split's batches,
``split.Split``) and reads the target group's tensors only: ``<target>_id`` as the item,
its first other feature (``category`` where there is one) as the category, ``<target>_len``,
``cand_id``/``cand_<feature>`` (index 0 = padding/unknown, masks built from the length), so
``train.train`` and ``train.evaluate`` run them unchanged; :class:`BaselineConfig` holds the
sizes they need. Sizes follow ATRank's defaults: 32-wide item and category embeddings (a 64-wide
item vector), hidden 64.

* ``BPRMF``: classic matrix factorisation, ``b_i + <p_u, q_i>`` (d = 64), trained with the BPR
  loss. It needs the user: ``UserSplit`` is a ``Split`` whose ``batch`` adds a ``user`` input
  (user row + 1; 0 = unknown), which ``BPRMF.forward`` takes as an optional keyword. Without
  it (a plain ``Split``) the user vector falls back to the mean of the history's item factors
  (the sequence-free, user-id-free equivalent, as in FISM / asymmetric SVD).
* ``MeanPool``: masked mean of the history's [item, category] embeddings -> score head.
* ``DIN``: target attention (Zhou et al., KDD 2018): an MLP on [h, c, h-c, h*c] per history
  position gives a weight; softmax over the real positions (as in the authors' released code;
  ``normalize="none"`` gives the paper's unnormalised weights); weighted sum -> score head.
* ``GRU4Rec``-style ``GRU``: a GRU over the time-ordered history (packed), last state -> score
  head; an empty history gives a zero state.
* ``SASRec`` (Kang & McAuley, ICDM 2018): causal self-attention blocks over the history with
  positions counted from the newest behavior; the output at the last real position u scores
  ``b_i + <u, c>`` with the shared item embeddings (see :class:`SASRec`).

The score head shared by mean-pool, DIN and GRU is ``b_i + MLP([u, c, u*c])`` (hidden 64,
ReLU), with ``c = [item_emb, cate_emb]`` of the candidate, ``u`` the user vector (64).

By default these baselines see item and category only; ATRank additionally sees the action and
the time bucket. :class:`BaselineConfig`'s ``use_action`` / ``use_time`` give the
history-reading ones (mean-pool, DIN, GRU, SASRec) a learned embedding of each behavior's
action index / time bucket, summed into its history vector (width unchanged; candidates get
neither), and ``dropout`` drops out the history vectors (and the head's hidden layer; SASRec
takes it as its own dropout rate) in training mode. BPR-MF ignores all three.
``MODELS[name](cfg, split)`` builds each of them for the comparison.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import LN_EPS, ModelConfig, table_name
from .split import Split

MASK_FILL = -1e9


@dataclass
class BaselineConfig:
    """The sizes a baseline needs, read from the split's ATRank config, and the history
    options of the history-reading baselines (mean-pool, DIN, GRU, SASRec; BPR ignores them):
    ``use_action`` / ``use_time`` add a learned embedding of each behavior's action index /
    time bucket to its history vector; ``dropout`` is the dropout rate on the history vectors
    (and the head's hidden layer) in training mode."""

    n_items: int                     # rows of the target id table, less the padding row
    n_categories: int
    n_actions: int
    embedding_dim: int = 32
    hidden: int = 64
    target: str = "item"
    category: str | None = "category"   # the target group's feature used as the category
    use_action: bool = False
    use_time: bool = False
    n_time_buckets: int = 13
    dropout: float = 0.0

    @classmethod
    def of(cls, config: ModelConfig, embedding_dim: int | None = None, *,
           use_action: bool = False, use_time: bool = False,
           dropout: float = 0.0) -> BaselineConfig:
        t = config.group(config.target_group)
        cat = t.features[1] if len(t.features) > 1 else None
        e = embedding_dim or config.embedding_dim
        return cls(config.table_rows(table_name(t.name, "id")) - 1,
                   config.table_rows(table_name(t.name, cat)) - 1 if cat else 0,
                   config.n_actions, e, 2 * e, t.name, cat, use_action=use_action,
                   use_time=use_time, n_time_buckets=config.n_time_buckets, dropout=dropout)

    def to_dict(self) -> dict:
        return asdict(self)

    def unpack(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """ATRank inputs -> (hist_item, hist_category, hist_action, hist_time, hist_len,
        cand_item, cand_category) of the target group."""
        t = self.target
        item, cand = x[f"{t}_id"], x["cand_id"]
        hc = x[f"{t}_{self.category}"] if self.category else torch.zeros_like(item)
        cc = x[f"cand_{self.category}"] if self.category else torch.zeros_like(cand)
        return (item, hc, x[f"{t}_action"], x[f"{t}_time"], x[f"{t}_len"], cand, cc)


class UserSplit(Split):
    """A Split whose batches also carry ``user`` = user row + 1 (int64 [B]) for BPR-MF."""

    @classmethod
    def of(cls, split: Split) -> UserSplit:
        return cls(**{f.name: getattr(split, f.name) for f in dataclasses.fields(split)})

    def batch(self, rows: np.ndarray, cand_items: np.ndarray) -> dict[str, np.ndarray]:
        out = super().batch(rows, cand_items)
        out["user"] = np.ascontiguousarray(rows[:, 0] + 1, dtype=np.int64)
        return out

    def training_batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = super().training_batch(rows)
        out["user"] = np.ascontiguousarray(rows[:, 0] + 1, dtype=np.int64)
        return out


def _mask(hist_item: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(hist_item.shape[1], device=hist_item.device)
    return (positions[None, :] < hist_len[:, None]).to(torch.float32)


class _HistoryBase(nn.Module):
    """Item + category embeddings (32 each, std 0.05 as in ATRank), an item bias, and the
    history vectors: ``[item_emb, cate_emb]`` (+ ``action_emb`` + ``time_emb`` with
    ``use_action`` / ``use_time``; std 0.05 too), zero at padding, then dropout (training
    mode only). The action and time tables exist only when their option is on, so a model
    without them has the same parameters as before the options existed."""

    def __init__(self, config: BaselineConfig, dropout: float | None = None):
        super().__init__()
        c = config
        self.config = c
        d = c.embedding_dim
        self.item_emb = nn.Embedding(c.n_items + 1, d, padding_idx=0)
        self.cate_emb = nn.Embedding(c.n_categories + 1, d, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(c.n_items + 1))
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.cate_emb.weight, std=0.05)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.cate_emb.weight[0].zero_()
        width = 2 * d
        if c.use_action:          # rows n_actions + 1; 0 = unknown/padding (a zero vector)
            self.action_emb = nn.Embedding(c.n_actions + 1, width, padding_idx=0)
            nn.init.normal_(self.action_emb.weight, std=0.05)
            with torch.no_grad():
                self.action_emb.weight[0].zero_()
        if c.use_time:            # one row per time bucket (bucket 0 is a real one)
            self.time_emb = nn.Embedding(c.n_time_buckets, width)
            nn.init.normal_(self.time_emb.weight, std=0.05)
        self.drop = nn.Dropout(c.dropout if dropout is None else dropout)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(*self.config.unpack(inputs))

    def vectors(self, items: torch.Tensor, cates: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item_emb(items), self.cate_emb(cates)], dim=-1)

    def behavior_vectors(self, hist_item, hist_category, hist_action, hist_time):
        """``[item_emb, cate_emb]`` (+ ``action_emb``, + ``time_emb``) [B,L,2E], unmasked.
        Candidates never get the action/time terms (they have neither)."""
        h = self.vectors(hist_item, hist_category)
        if self.config.use_action:
            h = h + self.action_emb(hist_action)
        if self.config.use_time:
            h = h + self.time_emb(hist_time)
        return h

    def history(self, hist_item, hist_category, hist_action, hist_time, mask) -> torch.Tensor:
        """History vectors [B,L,2E]: zero at padding (``mask`` [B,L], 1 real), dropped out in
        training mode."""
        h = self.behavior_vectors(hist_item, hist_category, hist_action, hist_time)
        return self.drop(h * mask[..., None])


class _EmbeddingBase(_HistoryBase):
    """The history vectors + the score head ``b_i + MLP([u, c, u*c])`` (dropout on its hidden
    layer in training mode)."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        width = 2 * config.embedding_dim
        self.head = nn.Sequential(nn.Linear(3 * width, config.hidden), nn.ReLU(),
                                  nn.Linear(config.hidden, 1))

    def head_logits(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``MLP([u, c, u*c])`` [..., D] -> [...]; the hidden layer dropped out in training
        (head stays ``Linear, ReLU, Linear``: same state_dict keys as before the option)."""
        x = torch.cat([u, c, u * c], -1)
        return self.head[2](self.drop(self.head[1](self.head[0](x))))[..., 0]

    def score(self, u: torch.Tensor, cand_item: torch.Tensor, cand_category: torch.Tensor):
        """u [B,D] or [B,N,D] -> logits [B,N]."""
        c = self.vectors(cand_item, cand_category)                      # [B,N,D]
        if u.dim() == 2:
            u = u[:, None, :].expand_as(c)
        return self.item_bias[cand_item] + self.head_logits(u, c)


class MeanPool(_EmbeddingBase):
    def _forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                 cand_item, cand_category):
        mask = _mask(hist_item, hist_len)
        h = self.history(hist_item, hist_category, hist_action, hist_time, mask)
        u = h.sum(1) / hist_len.clamp(min=1)[:, None].to(h.dtype)
        return self.score(u, cand_item, cand_category)


class DIN(_EmbeddingBase):
    """Target attention. The attention MLP's first layer acts on [h, c, h-c, h*c]; it is
    evaluated in its algebraically equal split form (no [B,N,L,4D] tensor), in chunks of
    candidates, because evaluation scores every item."""

    def __init__(self, config: BaselineConfig, att_hidden: int = 16, normalize: str = "softmax",
                 chunk: int = 256):
        super().__init__(config)
        if normalize not in ("softmax", "none"):
            raise ValueError(f"normalize must be softmax or none, not {normalize!r}")
        width = 2 * config.embedding_dim
        self.att1 = nn.Linear(4 * width, att_hidden)
        self.att2 = nn.Linear(att_hidden, 1)
        self.normalize = normalize
        self.chunk = chunk

    def attend(self, h, mask, c):
        """h [B,L,D], mask [B,L], c [B,n,D] -> user vectors [B,n,D]."""
        d = h.shape[-1]
        w = self.att1.weight                                           # [K,4D]
        wh, wc, wd, wp = w[:, :d], w[:, d:2 * d], w[:, 2 * d:3 * d], w[:, 3 * d:]
        b, length, _ = h.shape
        k = w.shape[0]
        a_h = h @ (wh + wd).T                                          # [B,L,K]
        a_c = c @ (wc - wd).T + self.att1.bias                         # [B,n,K]
        # (h*c) @ wp.T = ((h[...,None,:] * wp) @ c.T): one large GEMM per user
        hw = (h[:, :, None, :] * wp).reshape(b, length * k, -1)        # [B,L*K,D]
        a_p = torch.matmul(hw, c.transpose(1, 2)).reshape(b, length, k, -1)  # [B,L,K,n]
        if torch.is_grad_enabled():
            z = F.relu(a_p + a_h[..., None] + a_c.transpose(1, 2)[:, None])  # [B,L,K,n]
        else:                                   # evaluation: in place, ~2x faster
            z = a_p.add_(a_h[..., None]).add_(a_c.transpose(1, 2)[:, None]).relu_()
        s = (z.transpose(2, 3) @ self.att2.weight[0]).transpose(1, 2) + self.att2.bias
        km = mask[:, None, :]
        if self.normalize == "softmax":
            s = torch.softmax(s + (1.0 - km) * MASK_FILL, dim=-1) * km
        else:
            s = s * km
        return torch.matmul(s, h)                                      # [B,n,D]

    def _forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                 cand_item, cand_category):
        mask = _mask(hist_item, hist_len)
        h = self.history(hist_item, hist_category, hist_action, hist_time, mask)
        c = self.vectors(cand_item, cand_category)
        u = torch.cat([self.attend(h, mask, c[:, s:s + self.chunk])
                       for s in range(0, c.shape[1], self.chunk)], dim=1)
        return self.item_bias[cand_item] + self.head_logits(u, c)


class GRU(_EmbeddingBase):
    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        width = 2 * config.embedding_dim
        self.gru = nn.GRU(width, width, batch_first=True)

    def _forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                 cand_item, cand_category):
        mask = _mask(hist_item, hist_len)
        x = self.history(hist_item, hist_category, hist_action, hist_time, mask)
        packed = nn.utils.rnn.pack_padded_sequence(x, hist_len.clamp(min=1).cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        u = last[-1] * (hist_len > 0).to(x.dtype)[:, None]             # empty history -> 0
        return self.score(u, cand_item, cand_category)


class SASRecBlock(nn.Module):
    """One SASRec block (paper eq. for g: ``x + Dropout(g(LayerNorm(x)))``): causal
    self-attention (linear Q/K/V, scaled dot product, no output projection, as the authors'
    code), then the point-wise FFN ``ReLU(x W1 + b1) W2 + b2`` (width = hidden). Dropout on
    the attention weights, the FFN's hidden layer and each sub-layer's output."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} not divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.ln1 = nn.LayerNorm(width, eps=LN_EPS)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width, eps=LN_EPS)
        self.ff1 = nn.Linear(width, width)
        self.ff2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor):
        """x [B,L,D] (zero at padding), allowed [B,1,L,L] (1: query i may attend to key j),
        mask [B,L] -> [B,L,D], zero at padding. Masking is additive (-1e9) and the softmax
        weights are multiplied by ``allowed`` afterwards, so a disallowed key gets exactly
        zero weight and a query with no allowed key (padding of an empty history) gets a zero
        attention output instead of NaN."""
        b, length, width = x.shape
        y = self.ln1(x)
        q, k, v = self._split(self.q(y)), self._split(self.k(y)), self._split(self.v(y))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + (1.0 - allowed) * MASK_FILL
        weights = self.drop(torch.softmax(scores, dim=-1) * allowed)       # [B,h,L,L]
        att = torch.matmul(weights, v).transpose(1, 2).reshape(b, length, width)
        x = x + self.drop(att)
        y = self.ln2(x)
        x = x + self.drop(self.ff2(self.drop(F.relu(self.ff1(y)))))
        return x * mask[..., None]


class SASRec(_HistoryBase):
    """SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

    Input: the history vectors ``[item_emb, cate_emb]`` (width 2E = hidden, the other
    baselines' embedding budget; + action/time embeddings with ``use_action``/``use_time``)
    plus a learned positional embedding. Histories are left-aligned (real behaviors at
    0..len-1, padding after); the position of behavior i is its distance from the most
    recent behavior, ``len - 1 - i``, so the newest behavior is always position 0 and
    truncation to ``max_len`` (the group's max_history) does not shift what a position
    means. Then ``blocks`` pre-LayerNorm transformer blocks (:class:`SASRecBlock`): causal
    self-attention (a position attends to itself and earlier real positions only; padding
    gets exactly zero weight), point-wise FFN, residuals, dropout (``dropout``, on the
    embeddings, attention weights, FFN and sub-layer outputs); a final LayerNorm. LayerNorm
    eps 1e-8 as in the authors' code.

    The user vector ``u`` is the final output at the last real position; a candidate c scores
    ``item_bias[c] + <u, [item_emb(c), cate_emb(c)]>`` (the input item embeddings are shared
    with the prediction layer, as in SASRec). The history is encoded once per row and the
    candidates cost one dot product each (no [B,N,L,*] tensor), so N = 1000+ candidates
    (evaluation over every item, sampled softmax over shared negatives) is cheap. An empty
    history gives u = 0, i.e. logits = item_bias (as GRU's zero state).

    Training: the harness (``train.train``) trains on one (history, target) row at a time,
    each history being all earlier behaviors truncated to the ``max_len`` most recent. With
    causal attention the output at a position depends on that position and earlier ones
    only, so this is the objective of SASRec's all-positions training, where the output at
    each position of a sequence predicts the next item, computed per prefix: the same
    prefixes and next items, up to the ``max_len`` truncation (here a sliding window per
    prefix; SASRec truncates each user's whole sequence once) and the negatives. The
    positions of a prefix count from its own newest behavior (in SASRec's all-positions pass
    they count within the user's window). The all-positions pass shares one encoding among a
    user's prefixes; here each prefix is encoded on its own (more compute, same function).

    Differences from the paper, deliberate: candidates are ``[item, category]`` vectors (the
    comparison's shared embedding budget); the paper's blocks are as written here, where the
    authors' code feeds the un-normalised sequence as keys and adds the residual to the
    normalised queries; embeddings are not scaled by sqrt(d) (the authors' code does, the
    paper does not). :meth:`encode` returns every position's output (for causality checks).
    """

    def __init__(self, config: BaselineConfig, max_len: int, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2):
        super().__init__(config, dropout=dropout)
        width = 2 * config.embedding_dim
        self.max_len = max(1, int(max_len))
        self.pos_emb = nn.Embedding(self.max_len, width)
        nn.init.normal_(self.pos_emb.weight, std=0.05)
        self.blocks = nn.ModuleList(SASRecBlock(width, heads, dropout) for _ in range(blocks))
        self.ln = nn.LayerNorm(width, eps=LN_EPS)

    def encode(self, hist_item, hist_category, hist_action, hist_time, hist_len):
        """Every position's final (LayerNorm'd) output [B,L,D]; zero at padding. Position i's
        output depends on behaviors 0..i only (and on ``hist_len``, through the positions).
        A history longer than ``max_len`` shares the last positional row among its oldest
        behaviors (the split never builds one)."""
        length = hist_item.shape[1]
        mask = _mask(hist_item, hist_len)
        i = torch.arange(length, device=hist_item.device)
        pos = (hist_len[:, None] - 1 - i[None, :]).clamp(0, self.max_len - 1)
        x = self.behavior_vectors(hist_item, hist_category, hist_action, hist_time)
        x = self.drop((x + self.pos_emb(pos)) * mask[..., None])
        causal = (i[None, :] <= i[:, None]).to(x.dtype)                 # [L(query), L(key)]
        allowed = (causal[None] * mask[:, None, :])[:, None]            # [B,1,L,L]
        for block in self.blocks:
            x = block(x, allowed, mask)
        return self.ln(x) * mask[..., None]

    def sequence_outputs(self, **inputs: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` on ATRank's graph inputs."""
        return self.encode(*self.config.unpack(inputs)[:5])

    def user_vector(self, hist_item, hist_category, hist_action, hist_time, hist_len):
        """u [B,D]: the output at the last real position; 0 for an empty history."""
        out = self.encode(hist_item, hist_category, hist_action, hist_time, hist_len)
        last = (hist_len - 1).clamp(min=0)
        u = out[torch.arange(out.shape[0], device=out.device), last]
        return u * (hist_len > 0).to(u.dtype)[:, None]

    def _forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                 cand_item, cand_category):
        u = self.user_vector(hist_item, hist_category, hist_action, hist_time, hist_len)
        c = self.vectors(cand_item, cand_category)                      # [B,N,D]
        return self.item_bias[cand_item] + torch.matmul(c, u[:, :, None])[..., 0]

    def shared_logits(self, inputs: dict[str, torch.Tensor], neg_item: torch.Tensor,
                      neg_category: torch.Tensor) -> torch.Tensor:
        """Logits [B, 1 + M] of each row's own candidate (``cand_*`` [B,1]) followed by M
        negatives shared by every row ([M] each): the same numbers as ``forward`` with the
        negatives repeated per row, but the negatives' vectors are looked up once and scored
        in one [B,D] x [D,M] product (the sampled-softmax training step, train.py)."""
        x = self.config.unpack(inputs)
        u = self.user_vector(*x[:5])                                    # [B,D]
        own = self.item_bias[x[5]] + torch.matmul(self.vectors(x[5], x[6]),
                                                  u[:, :, None])[..., 0]  # [B,1]
        neg = self.item_bias[neg_item][None, :] + u @ self.vectors(neg_item, neg_category).T
        return torch.cat([own, neg], dim=1)


class BPRMF(nn.Module):
    """``b_i + <p_u, q_i>``; ``user`` = user row + 1 (see ``UserSplit``)."""

    def __init__(self, config: BaselineConfig, n_users: int, dim: int = 64):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, dim, padding_idx=0)
        self.user_emb = nn.Embedding(n_users + 1, dim, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(config.n_items + 1))
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.user_emb.weight, std=0.05)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.user_emb.weight[0].zero_()

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(*self.config.unpack(inputs), user=inputs.get("user"))

    def _forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                 cand_item, cand_category, user=None):
        if user is None:        # user-id-free fallback: mean of the history's item factors
            mask = _mask(hist_item, hist_len)
            p = (self.item_emb(hist_item) * mask[..., None]).sum(1)
            p = p / hist_len.clamp(min=1)[:, None].to(p.dtype)
        else:
            p = self.user_emb(user)
        q = self.item_emb(cand_item)                                    # [B,N,d]
        return self.item_bias[cand_item] + (q * p[:, None, :]).sum(-1)

    def l2_penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of squares of the factors this batch touches (users, candidate items)."""
        items = torch.unique(batch["cand_id"].ravel())
        reg = self.item_emb.weight[items].pow(2).sum()
        if "user" in batch:
            reg = reg + self.user_emb.weight[torch.unique(batch["user"])].pow(2).sum()
        return reg


# The comparison's constructors. SASRec's dropout is cfg.dropout (BaselineConfig's default 0.0;
# the paper's 0.2 is SASRec's own constructor default); its max_len is the group's max_history.
MODELS = {
    "BPR": lambda cfg, split: BPRMF(cfg, n_users=len(split.users), dim=cfg.hidden),
    "mean-pool": lambda cfg, split: MeanPool(cfg),
    "DIN": lambda cfg, split: DIN(cfg),
    "GRU": lambda cfg, split: GRU(cfg),
    "SASRec": lambda cfg, split: SASRec(cfg, split.config.group(cfg.target).max_history,
                                        dropout=cfg.dropout),
}
