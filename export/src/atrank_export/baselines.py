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

The score head shared by mean-pool, DIN and GRU is ``b_i + MLP([u, c, u*c])`` (hidden 64,
ReLU), with ``c = [item_emb, cate_emb]`` of the candidate, ``u`` the user vector (64).

By default these baselines see item and category only; ATRank additionally sees the action and
the time bucket. :class:`BaselineConfig`'s ``use_action`` / ``use_time`` give the
history-reading ones (mean-pool, DIN, GRU) a learned embedding of each behavior's
action index / time bucket, summed into its history vector (width unchanged; candidates get
neither), and ``dropout`` drops out the history vectors (and the head's hidden layer) in
training mode. BPR-MF ignores all three.
``MODELS[name](cfg, split)`` builds each of them for the comparison.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import ModelConfig, table_name
from .split import Split

MASK_FILL = -1e9


@dataclass
class BaselineConfig:
    """The sizes a baseline needs, read from the split's ATRank config, and the history
    options of the history-reading baselines (mean-pool, DIN, GRU; BPR ignores them):
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


MODELS = {
    "BPR": lambda cfg, split: BPRMF(cfg, n_users=len(split.users), dim=cfg.hidden),
    "mean-pool": lambda cfg, split: MeanPool(cfg),
    "DIN": lambda cfg, split: DIN(cfg),
    "GRU": lambda cfg, split: GRU(cfg),
}
