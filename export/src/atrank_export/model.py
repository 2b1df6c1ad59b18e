"""ATRank (Zhou et al., AAAI 2018), the Amazon configuration with one behavior group.

Encode-once scoring: each user's history is encoded once by the self-attention block, and the
N candidates are N queries of the "vanilla attention" block over that encoding (the history is
never repeated per candidate).

Deliberate differences from the authors' code:

* The time bucket is one-hot encoded with depth 13 (buckets 0..12). The original used depth
  12, which silently turned bucket 12 (gaps >= 4096 days) into an all-zero vector.
* The action (e.g. "like"/"other") is one-hot encoded too (depth ``n_actions + 1``, index 0 =
  unknown) and concatenated to the history input: ``[item_emb, cate_emb, onehot(time),
  onehot(action)] -> Linear(H)`` is F_M.
* One-hots are ``F.embedding`` lookups into fixed identity buffers (exported as Gather).
* Masking is additive (-1e9 on padded keys, built in-graph from ``hist_len``), and the softmax
  weights are multiplied by the key mask afterwards, so padding has exactly zero weight and a
  user with an empty history attends to nothing (attention output 0 before the residual).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MASK_FILL = -1e9
LN_EPS = 1e-8


@dataclass
class ModelConfig:
    n_items: int
    n_categories: int
    n_actions: int
    embedding_dim: int = 32
    hidden: int = 64
    heads: int = 4
    ffn: int = 32
    n_time_buckets: int = 13
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


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

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """queries [B,Q,H], keys [B,L,H], key_mask [B,L] (1 real, 0 padding) -> [B,Q,H]."""
        b, nq, hdim = queries.shape
        q = self._split(F.relu(self.q(queries)))        # [B,h,Q,d]
        k = self._split(F.relu(self.k(keys)))           # [B,h,L,d]
        v = self._split(F.relu(self.v(keys)))           # [B,h,L,d]
        km = key_mask[:, None, None, :]                 # [B,1,1,L]
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + (1.0 - km) * MASK_FILL
        weights = torch.softmax(scores, dim=-1) * km    # padding: exactly 0 weight
        weights = self.drop(weights)
        att = torch.matmul(weights, v).transpose(1, 2).reshape(b, nq, hdim)
        if query_mask is not None:
            att = att * query_mask[:, :, None]
        x = self.ln1(queries + att)
        y = self.ff2(self.drop(F.relu(self.ff1(x))))
        return self.ln2(x + y)


class ATRank(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        if 2 * c.embedding_dim != c.hidden:
            raise ValueError("candidate width 2*embedding_dim must equal hidden (no projection)")
        self.config = c
        self.item_emb = nn.Embedding(c.n_items + 1, c.embedding_dim, padding_idx=0)
        self.cate_emb = nn.Embedding(c.n_categories + 1, c.embedding_dim, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(c.n_items + 1))
        self.register_buffer("time_onehot", torch.eye(c.n_time_buckets), persistent=False)
        self.register_buffer("action_onehot", torch.eye(c.n_actions + 1), persistent=False)
        in_dim = 2 * c.embedding_dim + c.n_time_buckets + c.n_actions + 1
        self.f_m = nn.Linear(in_dim, c.hidden)
        self.self_att = AttentionBlock(c.hidden, c.heads, c.ffn, c.dropout)
        self.vanilla_att = AttentionBlock(c.hidden, c.heads, c.ffn, c.dropout)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.cate_emb.weight, std=0.05)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.cate_emb.weight[0].zero_()

    def candidate_vectors(self, cand_item: torch.Tensor, cand_category: torch.Tensor):
        return torch.cat([self.item_emb(cand_item), self.cate_emb(cand_category)], dim=-1)

    def encode_history(self, hist_item, hist_category, hist_action, hist_time, hist_len):
        """-> (encoded history [B,L,H], key mask [B,L] float)."""
        length = hist_item.shape[1]
        positions = torch.arange(length, device=hist_item.device)
        mask = (positions[None, :] < hist_len[:, None]).to(torch.float32)
        x = torch.cat([
            self.item_emb(hist_item),
            self.cate_emb(hist_category),
            F.embedding(hist_time, self.time_onehot),
            F.embedding(hist_action, self.action_onehot),
        ], dim=-1)
        h = self.f_m(x)
        enc = self.self_att(h, h, mask, query_mask=mask)
        return enc, mask

    def forward(self, hist_item, hist_category, hist_action, hist_time, hist_len,
                cand_item, cand_category):
        """int64 [B,L] x4, [B], [B,N] x2 -> logits float32 [B,N]."""
        enc, mask = self.encode_history(hist_item, hist_category, hist_action, hist_time,
                                        hist_len)
        cand = self.candidate_vectors(cand_item, cand_category)          # [B,N,H]
        u = self.vanilla_att(cand, enc, mask)                             # [B,N,H]
        bias = F.embedding(cand_item, self.item_bias[:, None])[..., 0]      # Gather
        return bias + (u * cand).sum(-1)
