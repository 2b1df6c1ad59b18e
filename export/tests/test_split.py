import numpy as np
import pytest
import torch

from atrank_export.export import golden_requests
from atrank_export.model import ATRank
from atrank_export.numerics import logit_atol
from atrank_export.preprocess import Preprocessor
from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items, synthetic_multigroup
from atrank_export.train import golden_users

HISTORY = {"item": 10, "coupon": 4, "query": 5}


def multigroup_split(n_users=30, seed=7, **kw):
    return build_split(synthetic_multigroup(n_users=n_users, seed=seed), embedding_dim=8,
                       heads=2, ffn=8, max_history=HISTORY, **kw)


def test_targets_are_target_group_events_and_history_precedes_them():
    split = multigroup_split(20, 3)
    assert [g.name for g in split.config.groups] == ["item", "coupon", "query"]
    assert split.config.group("item").features == ["id", "category", "shop"]
    for rows in (split.train, split.valid, split.test):
        ev = split.offsets[rows[:, 0]] + rows[:, 1]
        assert (split.group[ev] == 0).all()
    # time order within each user; ties keep the log's row order
    for u in range(len(split.users)):
        s, e = split.offsets[u], split.offsets[u + 1]
        key = np.stack([split.time[s:e], split.event[s:e]])
        assert (np.diff(key[0]) >= 0).all()
        same = np.diff(key[0]) == 0
        assert (np.diff(key[1])[same] > 0).all()
    batch = split.training_batch(split.test[:4])
    for r in range(4):
        u, p, _ = split.test[r]
        before = split.group[split.offsets[u]:split.offsets[u] + p]
        for gi, g in enumerate(split.config.groups):
            assert batch[f"{g.name}_len"][r] == min(g.max_history, int((before == gi).sum()))
    for r, _, neg in split.test:
        assert neg not in set(split.interacted[r].tolist())
        assert 1 <= neg <= split.n_items


def test_item_only_ablation_shares_targets_and_negatives():
    log = synthetic_multigroup(n_users=15, seed=5)
    full = build_split(log, embedding_dim=8)
    item_only = build_split(log, groups=["item"], embedding_dim=8)
    assert [g.name for g in item_only.config.groups] == ["item"]
    np.testing.assert_array_equal(full.target_items(full.test),
                                  item_only.target_items(item_only.test))
    np.testing.assert_array_equal(full.test[:, 2], item_only.test[:, 2])


@pytest.mark.parametrize("hashed", [False, True])
def test_reference_preprocessing_of_raw_requests_equals_the_training_batches(hashed):
    """The vectorised training batches (split.py) and the reference preprocessing of the same
    behaviors as raw requests (preprocess.py, the package contract) give the same tensors,
    hashed buckets and catalog columns included."""
    kw = {"hash_buckets": 3, "min_count": 2} if hashed else {}
    split = multigroup_split(**kw)
    if hashed:
        assert split.config.hash_buckets == {t: 3 for t in split.config.table_sizes}
        # some training ids and features really are in buckets
        assert (split.feats[:, 0] > split.n_items).any()
    pre = Preprocessor.from_split(split)
    users = {u["user"]: u for u in golden_users(split, n=12)}
    rows = [r for r in split.test if split.users[r[0]] in users]
    assert len(rows) >= 5
    for u, p, neg in rows:
        g = users[split.users[u]]
        want = split.training_batch(np.array([[u, p, neg]]))
        got = pre.batch([{"request_time": g["target_time"], "behaviors": g["behaviors"],
                          "candidates": [g["target"], g["negative"]]}])
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"user {u} {k}")


def test_min_count_and_hash_buckets_rule():
    log = synthetic_items(n_users=20, n_items=200, seed=2)
    plain = build_split(log, max_history=10)
    hashed = build_split(log, max_history=10, hash_buckets=5, min_count=3)
    assert plain.config.table_sizes["item_id"] == 200          # every key the log mentions
    assert 0 < hashed.config.table_sizes["item_id"] < 200
    from atrank_export.vocabfile import TableIndex

    idx = TableIndex(hashed.vocabs["item_id"], 5, 0)
    ids = [log.event(int(e))["id"] for e in hashed.event[:50]]
    np.testing.assert_array_equal(hashed.feats[:50, 0], idx.indices(ids))
    size = hashed.config.table_sizes["item_id"]
    assert ((hashed.feats[:, 0] > size) & (hashed.feats[:, 0] <= size + 5)).any()


def test_padding_and_batching_do_not_change_scores():
    split = multigroup_split(12, 4)
    torch.manual_seed(0)
    model = ATRank(split.config).eval()
    rows = split.test[:5]
    cands = np.stack([split.target_items(rows), rows[:, 2]], axis=1)
    with torch.no_grad():
        batch = {k: torch.from_numpy(v) for k, v in split.batch(rows, cands).items()}
        together = model(**batch)
        tol = logit_atol(model, batch)        # 2 D U max M (docs/tolerances.md)
        for i in range(len(rows)):
            alone = model(**{k: torch.from_numpy(v)
                             for k, v in split.batch(rows[i:i + 1], cands[i:i + 1]).items()})
            torch.testing.assert_close(alone[0], together[i], rtol=0, atol=tol)


def test_errors_name_the_behavior():
    split = multigroup_split(12, 4)
    pre = Preprocessor.from_split(split)
    with pytest.raises(ValueError, match=r"behaviors\[1\].group 'nope'"):
        pre.batch([{"request_time": 10, "candidates": ["i1"], "behaviors": [
            {"group": "item", "id": "i1", "action": "click", "timestamp": 1},
            {"group": "nope", "id": "x", "action": "click", "timestamp": 2}]}])
    with pytest.raises(ValueError, match=r"behaviors\[0\].features: 'colour'"):
        pre.batch([{"request_time": 10, "candidates": ["i1"], "behaviors": [
            {"group": "item", "id": "i1", "action": "click", "timestamp": 1,
             "features": {"colour": "red"}}]}])


def test_golden_requests_cover_every_group():
    split = multigroup_split(20, 3)
    ckpt = {"golden_users": golden_users(split), "vocabs": split.vocabs,
            "actions": split.actions}
    names = [r["name"] for r in golden_requests(ckpt, split.config)]
    for g in ("item", "coupon", "query"):
        assert f"only-{g}" in names and f"unknown-ids-{g}" in names
    for n in ("empty-history", "longer-than-every-max-history",
              "caller-features-override-catalog", "behaviors-after-request-time"):
        assert n in names
