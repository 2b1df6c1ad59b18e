"""evaluate's full-ranking Recall@10 / NDCG@10 against a brute force over the same scores."""

import numpy as np
import pytest
import torch

from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items
from atrank_export.train import evaluate, fmt_metrics


class FixedScores(torch.nn.Module):
    """Scores a candidate by its id and the user's history length only, with many ties."""

    def forward(self, cand_id, item_len, **_):
        return ((cand_id * 37 + 5 * item_len[:, None]) % 31).float()


def score(cand_id: int, item_len: int) -> float:
    return float((cand_id * 37 + 5 * item_len) % 31)


def test_evaluate_recall_ndcg_match_brute_force():
    split = build_split(synthetic_items(n_users=30, seed=3), max_history=10, seed=3,
                        embedding_dim=8)
    rows = split.test
    m = evaluate(FixedScores(), split, rows, batch_users=7)
    lens = split.history(rows[:, :2])["item_len"]
    targets = split.target_candidates(rows[:, :2])["cand_id"][:, 0]
    recall, ndcg, tied = [], [], 0
    for (user_row, _, _), n, t in zip(rows, lens, targets):
        pos = score(int(t), int(n))
        touched = set(split.interacted[user_row].tolist())
        negs = [score(i, int(n)) for i in range(1, split.n_items + 1) if i not in touched]
        # average position of the target within its block of equal scores, sorted descending
        ranked = sorted(negs + [pos], reverse=True)
        places = [p + 1 for p, s in enumerate(ranked) if s == pos]
        r = sum(places) / len(places)
        tied += len(places) > 1
        recall.append(1.0 if r <= 10 else 0.0)
        ndcg.append(1.0 / np.log2(r + 1) if r <= 10 else 0.0)
    assert 0 < np.mean(recall) < 1 and tied > 0        # the case is not degenerate
    assert m["recall_at_10"] == pytest.approx(np.mean(recall), rel=1e-12)
    assert m["ndcg_at_10"] == pytest.approx(np.mean(ndcg), rel=1e-12)
    assert {"users", "one_neg_auc", "all_items_auc", "global_auc"} <= set(m)
    line = fmt_metrics(m)
    assert f"Recall@10 {m['recall_at_10']:.4f}" in line and "NDCG@10" in line
    # metrics saved before Recall/NDCG existed still format
    old = {k: v for k, v in m.items() if k not in ("recall_at_10", "ndcg_at_10")}
    assert "Recall@10" not in fmt_metrics(old)


def test_compare_tables_have_recall_ndcg_columns():
    from atrank_export.compare import mean_std_of, section

    row = {"all_items_auc": 0.9, "one_neg_auc": 0.8, "global_auc": 0.85,
           "recall_at_10": 0.25, "ndcg_at_10": 0.125}
    old = {k: v for k, v in row.items() if k not in ("recall_at_10", "ndcg_at_10")}
    assert mean_std_of([row, {**row, "recall_at_10": 0.75}], "recall_at_10") == \
        "0.5000 ± 0.3536"
    assert mean_std_of([row, old], "recall_at_10") == "n/a"        # a run without them
    run = {"test": row, "valid": {"all_items_auc": 0.9}, "best_epoch": 1, "epochs": [{}],
           "best_at_cap": True, "wall_seconds": 1.0}
    leak = {"negative_in_history": 0, "negative_interacted": 0, "target_in_history": 0,
            "target_unknown_id": 0, "rows": 1}
    facts = {"title": "t", "describe": "d", "task": "next", "users": 1, "train": 1, "valid": 1,
             "test": 1, "n_items": 1, "min_count": 1, "objects": 2, "n_candidates": 2,
             "leakage": {"test": leak, "valid": leak}, "time_unit": 60, "max_history": 5,
             "max_epochs": 1, "patience": 1, "seeds": [1]}
    lines = section({"facts": facts, "command": "c", "tuning": {},
                     "models": {"ATRank": [run], "GRU": [{**run, "test": old}]}}, None, ".")
    header = next(s for s in lines if s.startswith("| model | all-items"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[1:4] == ["all-items AUC", "Recall@10", "NDCG@10"]
    at = next(s for s in lines if s.startswith("| ATRank |"))
    assert [c.strip() for c in at.strip("|").split("|")][2:4] == ["0.2500 ± 0.0000",
                                                                 "0.1250 ± 0.0000"]
    assert "1 (1, at cap)" in at
    assert "| n/a | n/a |" in next(s for s in lines if s.startswith("| GRU |"))
