"""Float32 error bounds that the exporter's tests derive their tolerances from.

See docs/tolerances.md for the derivations and the table of every tolerance in the tests.
Notation: U = 2^-24, the float32 unit roundoff (round to nearest: fl(x) = x (1 + d), |d| <= U).
To first order, a value made by a chain of s roundings errs by at most s U times its
|.|-magnitude (the same computation with every term replaced by its absolute value; Higham,
Accuracy and Stability of Numerical Algorithms, 2nd ed., ch. 3-4). Two float32 evaluations
of the same real-number function (another summation order, padding, batch shape, kernel or
runtime) therefore differ by at most 2 s U times that magnitude.
"""

from __future__ import annotations

import torch

from atrank_export.model import ATRank, ModelConfig

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
    attention = (proj + d + 1         # q.k (length head_dim), * 1/sqrt(head_dim)
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


def logit_magnitudes(model: ATRank, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """M per logit (float64): |item_bias| + sum_i |u_i| |c_i|, the |.|-magnitude of ATRank's
    last step logit = bias + u . c (u: the vanilla-attention output, c: the candidate
    embedding). Deeper cancellations (inside the LayerNorms) are not in M: the generous
    rounding count D (every reduction at full length) stands in for them."""
    seen = {}
    hook = model.vanilla_att.register_forward_hook(lambda _m, _i, out: seen.update(u=out))
    try:
        with torch.no_grad():
            model(**inputs)
            cand = model.candidate_vectors(inputs["cand_item"], inputs["cand_category"])
            bias = model.item_bias[inputs["cand_item"]]
    finally:
        hook.remove()
    return bias.double().abs() + (seen["u"].double().abs() * cand.double().abs()).sum(-1)


def logit_atol(model: ATRank, *inputs: dict[str, torch.Tensor]) -> float:
    """Absolute tolerance for two float32 evaluations of the same ATRank logits (any padding,
    batching or candidate grouping; PyTorch or onnxruntime): 2 D U max M, with D the forward
    pass's rounding count at the longest history among ``inputs`` and M its logit magnitudes
    (first-order worst case; the largest of the inputs' bounds)."""
    return max(2 * forward_roundings(model.config, int(x["hist_item"].shape[1]))["logits"] * U
               * float(logit_magnitudes(model, x).max()) for x in inputs)


def multigroup_logit_atol(model, *inputs: dict[str, torch.Tensor]) -> float:
    """``logit_atol`` for MultiGroupATRank (ranking "dot": logit = bias + u . h): D of the
    encoder at its concatenated length (every group's history) with the widest group's F_M
    input (+ the candidate projection when there is one), M = |bias| + sum_i |u_i| |h_i|."""
    c = model.config
    if c.ranking != "dot":
        raise ValueError("multigroup_logit_atol covers ranking='dot' only")
    in_dim = max(len(g.features) * c.embedding_dim + c.n_time_buckets + c.n_actions + 1
                 for g in c.groups)
    proj = len(c.group(c.target_group).features) * c.embedding_dim + 1 \
        if c.candidate_projection else 0
    worst, seen = 0.0, {}
    for x in inputs:
        hook = model.vanilla_att.register_forward_hook(lambda _m, _i, out: seen.update(u=out))
        try:
            with torch.no_grad():
                model(**x)
                h = model.candidates(x)
        finally:
            hook.remove()
        m = (model.item_bias[x["cand_id"]].detach().double().abs()
             + (seen["u"].double().abs() * h.double().abs()).sum(-1))
        length = sum(int(x[f"{g.name}_time"].shape[1]) for g in c.groups)
        d = forward_roundings(c, length, in_dim)["logits"] + proj
        worst = max(worst, 2 * d * U * float(m.max()))
    return worst


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
    for x in inputs:
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
                    model(**x)
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
