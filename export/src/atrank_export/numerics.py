"""Float32 error bounds: the tolerances the exporter writes into golden.json, and those its
tests derive.

See docs/tolerances.md for the derivations and the table of every tolerance in the tests.
Notation: U = 2^-24, the float32 unit roundoff (round to nearest: fl(x) = x (1 + d), |d| <= U).
To first order, a value made by a chain of s roundings errs by at most s U times its
|.|-magnitude (the same computation with every term replaced by its absolute value; Higham,
Accuracy and Stability of Numerical Algorithms, 2nd ed., ch. 3-4). Two float32 evaluations
of the same real-number function (another summation order, padding, batch shape, kernel or
runtime) therefore differ by at most 2 s U times that magnitude.
"""

from __future__ import annotations

import math

import torch

from .model import ATRank, ModelConfig, table_name

U = 2.0 ** -24


def forward_roundings(cfg: ModelConfig, length: int, in_dim: int | None = None) -> dict[str, int]:
    """Upper bounds on the roundings of ATRank's float32 forward pass: for each Linear that
    feeds a ReLU, those behind its output z = W x + b (x's roundings + a length-hidden dot
    product + the bias), and "logits" for the whole pass. Generous: every reduction of
    length n counts as n roundings; element-wise operations count one each. ``cfg`` needs
    hidden, ffn and heads; ``in_dim``: F_M's input width (default ATRank's: two embeddings
    and the time and action one-hots)."""
    h, f, d, l = cfg.hidden, cfg.ffn, cfg.hidden // cfg.heads, length
    layer_norm = 2 * h + 5            # mean and variance (h-term sums), + eps, sqrt, /, *w, +b
    proj = h + 1                      # q/k/v/ff1: a length-h dot product, + bias
    attention = (proj + d + 2         # q.k (length head_dim + 1: the exported graphs' mask
                                      # column, model.AttentionBlock._serving_attention), * scale
                 + 2 * l + 3          # softmax: max, exp, l-term sum, divide; + mask
                 + l + 1              # weights @ v (length l), query mask
                 + 1 + layer_norm)    # residual, LayerNorm -> input of ff1
    block = attention + proj + f + 1 + 1 + layer_norm    # ff1, ff2 (length ffn), res, LN
    if in_dim is None:
        in_dim = 2 * cfg.embedding_dim + cfg.n_time_buckets + cfg.n_actions + 1
    f_m = in_dim + 1
    return {"self_att.q": f_m + proj, "self_att.k": f_m + proj, "self_att.v": f_m + proj,
            "self_att.ff1": f_m + attention + proj,
            "vanilla_att.q": proj,                     # candidate embeddings are exact
            "vanilla_att.k": f_m + block + proj, "vanilla_att.v": f_m + block + proj,
            "vanilla_att.ff1": f_m + block + attention + proj,
            "logits": f_m + 2 * block + h + 1 + 4}    # u . cand (length h) + bias, BCE


def logit_roundings(config: ModelConfig, length: int | None = None) -> int:
    """D for ATRank's logit: the encoder at concatenated history ``length`` (default:
    every group at its max_history, at least 1, the longest input the preprocessing of the
    trainer or the runtime ever builds) with the widest group's F_M input, + the candidate
    projection when there is one; ranking "mlp" replaces u . h + bias (H + 1) by u * h (1),
    Linear(3H) (3H + 1), ReLU (1), Linear(H) (H + 1) and + bias (1)."""
    c = config
    if length is None:
        length = sum(max(1, g.max_history) for g in c.groups)
    in_dim = max(len(g.features) * c.embedding_dim + c.n_time_buckets + c.n_actions + 1
                 for g in c.groups)
    d = forward_roundings(c, length, in_dim)["logits"]
    if c.candidate_projection:
        d += len(c.group(c.target_group).features) * c.embedding_dim + 1
    if c.ranking == "mlp":
        d += (1 + 3 * c.hidden + 1 + 1 + c.hidden + 1 + 1) - (c.hidden + 1)
    return d


def logit_magnitudes(model: ATRank, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """M per logit (float64) of ATRank: ranking "dot": |bias| + sum_i |u_i| |h_i|
    (u: the vanilla-attention output, h: the candidate vector); ranking "mlp": |bias| + |b| +
    sum_j |w_j| |r_j| (w, b: the ranking network's last Linear, r: its input)."""
    seen = {}
    dot = model.config.ranking == "dot"
    mod = model.vanilla_att if dot else model.rank[-1]
    hook = mod.register_forward_hook(lambda _m, i, out: seen.update(u=out if dot else i[0]))
    try:
        with torch.no_grad():
            model(**inputs)
            h = model.candidates(inputs)
    finally:
        hook.remove()
    m = model.item_bias.weight[inputs["cand_id"], 0].detach().double().abs()
    if dot:
        return m + (seen["u"].double().abs() * h.double().abs()).sum(-1)
    last = model.rank[-1]
    return (m + last.bias.detach().double().abs()[0]
            + seen["u"].double().abs() @ last.weight.detach().double().abs()[0])


def logit_atol(model: ATRank, *inputs: dict[str, torch.Tensor]) -> float:
    """Absolute tolerance for two float32 evaluations of the same ATRank logits (any padding,
    batching or candidate grouping; PyTorch or onnxruntime): 2 D U max M with D
    (``logit_roundings``) at the inputs' concatenated length (every group's history) and M
    from ``logit_magnitudes`` (first-order worst case; the largest of the inputs' bounds)."""
    c = model.config
    worst = 0.0
    for x in inputs:
        length = sum(int(x[f"{g.name}_time"].shape[1]) for g in c.groups)
        d = logit_roundings(c, length)
        worst = max(worst, 2 * d * U * float(logit_magnitudes(model, x).max()))
    return worst


def tolerance(roundings: int, magnitude: float) -> float:
    """2 D U M: the most two float32 evaluations of one logit with ``roundings`` (D) and
    |.|-magnitude ``magnitude`` (M) can differ, to first order (docs/tolerances.md)."""
    return 2.0 * roundings * U * float(magnitude)


def _table_max(tables: list[torch.Tensor], weight: torch.Tensor, power: int) -> float:
    """max over every concatenation c = [row of tables[0], row of tables[1], ...] of
    sum_j weight_j |c_j|^power: the tables are independent, so it is the sum over tables of
    each table's largest row sum (every row counts, the unknown/padding row 0 included)."""
    total, at = 0.0, 0
    for t in tables:
        e = t.shape[1]
        total += float((t.detach().double().abs() ** power @ weight[at:at + e]).max())
        at += e
    if at != weight.shape[0]:
        raise ValueError(f"candidate width {at} != LayerNorm width {weight.shape[0]}")
    return total


def _layer_norm_dot_bound(ln: torch.nn.LayerNorm, tables: list[torch.Tensor] | None,
                          hmax: torch.Tensor | None = None) -> float:
    """An upper bound on sum_i |u_i| |c_i| for u = LayerNorm(x) (any x) and any candidate c.

    u_i = gamma_i xhat_i + beta_i with xhat = (x - mean) / sqrt(var + eps), so sum_i xhat_i^2 =
    H var / (var + eps) <= H, and by Cauchy-Schwarz
    sum_i |u_i| |c_i| <= sqrt(H) sqrt(sum_i gamma_i^2 c_i^2) + sum_i |beta_i| |c_i|.
    c ranges over the concatenations of the ``tables``' rows, or (``hmax``) over vectors with
    |c_i| <= hmax_i."""
    g2 = ln.weight.detach().double() ** 2
    b = ln.bias.detach().double().abs()
    h = g2.shape[0]
    if hmax is not None:
        hmax = hmax.double()
        return math.sqrt(h * float(g2 @ hmax ** 2)) + float(b @ hmax)
    return math.sqrt(h * _table_max(tables, g2, 2)) + _table_max(tables, b, 1)


def magnitude_bound(model: ATRank) -> float | None:
    """An upper bound on M = |bias| + sum_i |u_i| |h_i| over every request ATRank can be given,
    ranking "dot": u is the vanilla-attention block's last LayerNorm's output
    (``_layer_norm_dot_bound``), the candidate h is the concatenation of the target group's feature rows, or with a candidate projection
    h = W c + b, |h| <= |W| cmax + |b| element-wise (cmax: every table's largest |entry| per
    dimension). None for ranking "mlp" (no bound derived for the ranking network)."""
    c = model.config
    if c.ranking != "dot":
        return None
    t = c.group(c.target_group)
    tables = [model.tables[table_name(t.name, f)].weight for f in t.features]
    bias = float(model.item_bias.weight.detach().double().abs().max())
    if not c.candidate_projection:
        return bias + _layer_norm_dot_bound(model.vanilla_att.ln2, tables)
    cmax = torch.cat([w.detach().double().abs().max(0).values for w in tables])
    hmax = (model.f_c.weight.detach().double().abs() @ cmax
            + model.f_c.bias.detach().double().abs())
    return bias + _layer_norm_dot_bound(model.vanilla_att.ln2, None, hmax)


def baseline_logit_atol(model, *inputs: dict[str, torch.Tensor]) -> float:
    """``logit_atol`` for the baselines (baselines.py): 2 D U max M with, at history length
    L, embedding width W = 2 embedding_dim and head hidden K (generous counts as above):

    * head b_i + MLP([u, c, u*c]): u*c 1, Linear(3W) 3W + 1, ReLU 1, Linear(K) K + 1, + b_i 1;
      M = |b_i| + |b2| + sum_j |w2_j| |h_j| (h: the ReLU output);
    * MeanPool: + L-term sum and divide (L + 1);
    * DIN: + a_h, a_c, a_p (W each, + bias), two adds, ReLU, att2 (att_hidden + 1), softmax
      (2 L + 3), mask, weights @ h (L);
    * GRU: + L steps of two length-W gate products (+ biases) and ~10 element-wise operations
      each, the mask;
    * BPR-MF: b_i + <p, q> (length dim, + the mean over the history when there is no user
      id); M = |b_i| + sum |p| |q|."""
    from atrank_export.baselines import BPRMF, DIN, GRU, MeanPool

    worst, seen = 0.0, {}
    names = ("hist_item", "hist_category", "hist_action", "hist_time", "hist_len", "cand_item",
             "cand_category")
    for raw in inputs:
        x = dict(zip(names, model.config.unpack(raw)))
        if "user" in raw:
            x["user"] = raw["user"]
        length = int(x["hist_item"].shape[1])
        with torch.no_grad():
            if isinstance(model, BPRMF):
                q = model.item_emb(x["cand_item"]).double().abs()
                if "user" in x:
                    p, d = model.user_emb(x["user"]).double().abs(), q.shape[-1] + 2
                else:
                    mask = (torch.arange(length)[None, :] < x["hist_len"][:, None]).double()
                    p = ((model.item_emb(x["hist_item"]).double().abs() * mask[..., None]).sum(1)
                         / x["hist_len"].clamp(min=1)[:, None].double())
                    d = length + 1 + q.shape[-1] + 2
                m = (q * p[:, None]).sum(-1)
            else:
                last = model.head[-1]
                hook = last.register_forward_hook(lambda _m, i, _o: seen.update(h=i[0]))
                try:
                    model(**raw)
                finally:
                    hook.remove()
                m = (last.bias.double().abs()
                     + seen["h"].double().abs() @ last.weight.double().abs()[0])
                w, k = 2 * model.config.embedding_dim, last.in_features
                d = 3 * w + k + 5
                if isinstance(model, MeanPool):
                    d += length + 1
                elif isinstance(model, DIN):
                    d += 3 * (w + 1) + 3 + model.att2.in_features + 1 + 3 * length + 4
                elif isinstance(model, GRU):
                    d += length * (2 * (w + 1) + 10) + 1
                else:
                    raise TypeError(f"no rounding count for {type(model).__name__}")
            m = m + model.item_bias[x["cand_item"]].double().abs()
        worst = max(worst, 2 * d * U * float(m.max()))
    return worst
