"""AUC metrics (numpy only)."""

from __future__ import annotations

import numpy as np


def one_negative_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """The paper's per-user AUC: mean of [score(pos) > score(neg)]; ties count as losses."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if pos.shape != neg.shape or pos.size == 0:
        raise ValueError("need equally many positive and negative scores (at least one)")
    return float(np.mean(pos > neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties get the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], n]
    run_rank = (starts + ends + 1) / 2.0          # mean of (start+1 .. end)
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Global ROC AUC (Mann-Whitney U with average ranks; ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")
    r = average_ranks(scores)
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _weights(negs: np.ndarray, weights) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != negs.shape or (w < 0).any():
        raise ValueError("weights must be non-negative, one per negative")
    return w


def pos_vs_many_auc(pos: float, negs: np.ndarray, weights=None) -> float:
    """AUC of one positive against many negatives (ties count one half). ``weights``: how
    many negatives each score stands for (candidates that share one score because they are
    alike in every input); None = one each."""
    negs = np.asarray(negs, dtype=np.float64)
    w = _weights(negs, weights)
    if w is None:
        if negs.size == 0:
            raise ValueError("no negatives")
        return float(((negs < pos).sum() + 0.5 * (negs == pos).sum()) / negs.size)
    total = w.sum()
    if total <= 0:
        raise ValueError("no negatives")
    return float((w[negs < pos].sum() + 0.5 * w[negs == pos].sum()) / total)


def target_rank(pos: float, negs: np.ndarray, weights=None) -> float:
    """1-based rank of one target among itself and ``negs`` (higher score = better).

    r = 1 + #(negs scoring strictly higher) + 0.5 * #(negs scoring exactly the same): ties
    get the AVERAGE rank, as ``pos_vs_many_auc`` counts a tie one half, so that
    ``pos_vs_many_auc(pos, negs) == 1 - (r - 1) / len(negs)``. With ties r can be a half
    integer. A NaN target ranks last (no negative is below or equal to it).
    """
    negs = np.asarray(negs, dtype=np.float64)
    w = _weights(negs, weights)
    if w is None:
        w = np.ones(negs.shape)
    if np.isnan(pos):
        return float(w.sum() + 1)
    return float(1 + w[negs > pos].sum() + 0.5 * w[negs == pos].sum())


def recall_ndcg_at_k(pos: float, negs: np.ndarray, k: int = 10,
                     weights=None) -> tuple[float, float]:
    """Full-ranking Recall@k and NDCG@k of one held-out target against ``negs`` (every
    candidate, no sampling), from the average-tie rank r of ``target_rank``.

    With one relevant item, Recall@k = HitRate@k = 1 if r <= k else 0, and (ideal DCG = 1)
    NDCG@k = 1 / log2(r + 1) if r <= k else 0.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    r = target_rank(pos, negs, weights)
    if r > k:
        return 0.0, 0.0
    return 1.0, float(1.0 / np.log2(r + 1.0))
