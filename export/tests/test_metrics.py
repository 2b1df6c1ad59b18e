import numpy as np
import pytest

from atrank_export.metrics import (
    average_ranks,
    one_negative_auc,
    pos_vs_many_auc,
    recall_ndcg_at_k,
    roc_auc,
    target_rank,
)


def test_one_negative_auc_ties_lose():
    assert one_negative_auc([1.0, 0.5, 0.2, 0.3], [0.0, 0.5, 0.9, 0.1]) == 0.5


def test_average_ranks():
    assert average_ranks(np.array([3, 1, 3, 2])).tolist() == [3.5, 1.0, 3.5, 2.0]


# AUCs are float64 ratios of exact sums: average ranks are multiples of 1/2 and counts are
# small integers, all exact in float64, so each AUC is one rounded division (relative error
# <= 2^-53) and two ways of computing it differ by at most 2 roundings.
EXACT = {"rel": 2 * 2.0 ** -53, "abs": 0}


def test_roc_auc_hand_cases():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75, **EXACT)
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5, **EXACT)
    assert roc_auc([3, 2, 1], [1, 1, 0]) == 1.0
    assert roc_auc([1, 2, 3], [1, 1, 0]) == 0.0
    # brute force on random data with ties
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 50).astype(float)
    y = rng.integers(0, 2, 50)
    p, n = s[y == 1], s[y == 0]
    brute = ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum())
    assert roc_auc(s, y) == pytest.approx(brute / (len(p) * len(n)), **EXACT)
    with pytest.raises(ValueError):
        roc_auc([1, 2], [1, 1])


def test_pos_vs_many():
    assert pos_vs_many_auc(0.5, [0.1, 0.5, 0.9]) == pytest.approx(0.5, **EXACT)
    assert pos_vs_many_auc(1.0, [0.1, 0.5]) == 1.0


def test_recall_ndcg_hand_cases():
    negs = np.arange(20, dtype=float)                 # scores 0..19
    # target first: recall 1, ndcg 1/log2(2) = 1
    assert target_rank(100.0, negs) == 1.0
    assert recall_ndcg_at_k(100.0, negs) == (1.0, 1.0)
    # target 3rd (two negatives above it): ndcg 1/log2(4) = 0.5
    assert target_rank(17.5, negs) == 3.0
    assert recall_ndcg_at_k(17.5, negs) == (1.0, 0.5)
    # target 10th: still in the top 10, ndcg 1/log2(11)
    rec, nd = recall_ndcg_at_k(10.5, negs)
    assert rec == 1.0 and nd == pytest.approx(1 / np.log2(11), rel=1e-15)
    # target 11th (ten above it): outside the top 10
    assert target_rank(9.5, negs) == 11.0
    assert recall_ndcg_at_k(9.5, negs) == (0.0, 0.0)
    # target last
    assert recall_ndcg_at_k(-1.0, negs) == (0.0, 0.0)
    # no candidates: rank 1
    assert recall_ndcg_at_k(0.0, np.array([])) == (1.0, 1.0)
    # other k
    assert recall_ndcg_at_k(17.5, negs, k=2) == (0.0, 0.0)
    assert recall_ndcg_at_k(17.5, negs, k=3) == (1.0, 0.5)
    with pytest.raises(ValueError):
        recall_ndcg_at_k(0.0, negs, k=0)


def test_recall_ndcg_ties_average_rank():
    # one above, two tied: rank 1 + 1 + 2/2 = 3 -> ndcg 0.5
    assert target_rank(0.5, [0.9, 0.5, 0.5, 0.1]) == 3.0
    assert recall_ndcg_at_k(0.5, [0.9, 0.5, 0.5, 0.1]) == (1.0, 0.5)
    # all tied with the target: rank 1 + n/2
    assert target_rank(1.0, np.ones(4)) == 3.0
    # one tie: half a place -> rank 1.5
    rec, nd = recall_ndcg_at_k(1.0, [1.0, 0.0])
    assert rec == 1.0 and nd == pytest.approx(1 / np.log2(2.5), rel=1e-15)
    # nine above and two tied: rank 11 -> out; nine above and one tied: rank 10.5 -> out;
    # eight above and two tied: rank 10 -> in
    assert recall_ndcg_at_k(0.0, np.r_[np.ones(9), 0.0, 0.0]) == (0.0, 0.0)
    assert recall_ndcg_at_k(0.0, np.r_[np.ones(9), 0.0]) == (0.0, 0.0)
    rec, nd = recall_ndcg_at_k(0.0, np.r_[np.ones(8), 0.0, 0.0])
    assert rec == 1.0 and nd == pytest.approx(1 / np.log2(11), rel=1e-15)
    # a NaN target ranks last, as pos_vs_many_auc gives it 0
    assert target_rank(np.nan, [0.1, 0.2]) == 3.0
    assert pos_vs_many_auc(np.nan, [0.1, 0.2]) == 0.0


def _brute_rank_by_sorting(pos: float, negs: np.ndarray) -> float:
    """Independent reference: sort target + negatives descending, and average the positions
    (1-based) the target could take within its block of equal scores."""
    scores = np.r_[negs, pos]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    places = [p + 1 for p, i in enumerate(order) if scores[i] == pos]
    return sum(places) / len(places)


def test_recall_ndcg_random_against_sorting():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(0, 60))
        # few distinct values so that ties are common; sometimes continuous scores
        if trial % 3:
            negs = rng.integers(0, 8, n).astype(float)
            pos = float(rng.integers(0, 8))
        else:
            negs = rng.normal(size=n)
            pos = float(rng.normal() + 1.5)
        k = int(rng.integers(1, 15))
        r = _brute_rank_by_sorting(pos, negs)
        assert target_rank(pos, negs) == r
        want_rec = 1.0 if r <= k else 0.0
        want_ndcg = 1.0 / np.log2(r + 1) if r <= k else 0.0
        rec, nd = recall_ndcg_at_k(pos, negs, k)
        assert rec == want_rec
        assert nd == pytest.approx(want_ndcg, rel=1e-15, abs=0)
        # the rank agrees with all-items AUC: auc = 1 - (r - 1) / n
        if n:
            assert pos_vs_many_auc(pos, negs) == pytest.approx(1 - (r - 1) / n, rel=1e-14)
