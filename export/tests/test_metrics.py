import numpy as np
import pytest

from atrank_export.metrics import average_ranks, one_negative_auc, pos_vs_many_auc, roc_auc


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
