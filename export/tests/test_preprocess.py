import numpy as np
import pytest

from atrank_export.preprocess import Preprocessor, TimeBuckets, Vocab, pad_batch

DAY = 86400


def make_pre(max_history=3):
    return Preprocessor(Vocab(["a", "b", "c"]), Vocab(["X", "Y"]), {"a": "X", "b": "Y"},
                        ["like", "other"], max_history)


def test_vocab_indices_and_unknowns(tmp_path):
    v = Vocab(["10", "2", "x y"])
    assert v.indices(["10", "2", "x y", "3", "", None, "10 "]) == [1, 2, 3, 0, 0, 0, 0]
    v.write(tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_text() == "10\n2\nx y\n"
    assert Vocab.read(tmp_path / "v.txt").tokens == v.tokens
    with pytest.raises(ValueError):
        Vocab(["a\tb"])
    with pytest.raises(ValueError):
        Vocab(["a", "a"])


def test_time_buckets_boundaries():
    tb = TimeBuckets()
    req = 1000 * DAY + 5
    gaps_days = [0, 1, 2, 3, 6, 7, 4094, 4095, 5000]   # d = gap + 1
    times = [req - g * DAY for g in gaps_days]
    assert tb.buckets(req, times).tolist() == [0, 1, 1, 2, 2, 3, 11, 12, 12]
    # same day but earlier seconds -> d = 1 -> 0; later than the request -> 0 even next day
    assert tb.buckets(req, [req - 3, req + 1, req + 10 * DAY]).tolist() == [0, 0, 0]
    assert tb.n_buckets == 13


def test_time_buckets_floor_division_on_negatives():
    tb = TimeBuckets()
    # day(-1) = -1 and day(-86400) = -1 (floor); truncation would give 0 and -1 (d = 2)
    assert tb.day(-1) == -1 and tb.day(-86400) == -1 and tb.day(-86401) == -2
    assert tb.buckets(-1, [-86400]).tolist() == [0]
    assert tb.buckets(-1, [-86401]).tolist() == [1]
    assert tb.buckets(-1.5, [-86400.5]).tolist() == [1]
    # the vectorised training version agrees
    rt = np.array([-1, -1, 1000 * DAY])
    ts = np.array([-86400, -86401, 1000 * DAY - 7 * DAY])
    assert tb.buckets_int(rt, ts).tolist() == [0, 1, 3]
    assert tb.buckets_int(np.array([5]), np.array([6])).tolist() == [0]


def test_categories_actions_and_candidates():
    pre = make_pre()
    beh = [{"item": "a", "category": None, "action": "like", "timestamp": 1},
           {"item": "b", "category": "X", "action": "other", "timestamp": 2},
           {"item": "zz", "category": None, "action": "LIKE", "timestamp": 3}]
    e = pre.encode(beh, ["c", "a", "nope"], request_time=3)
    assert e.hist_item == [1, 2, 0]
    assert e.hist_category == [1, 1, 0]          # catalog, caller's, unknown item
    assert e.hist_action == [1, 2, 0]
    assert e.cand_item == [3, 1, 0]
    assert e.cand_category == [0, 1, 0]          # "c" is not in the catalog


def test_stable_sort_and_truncation():
    pre = make_pre(max_history=3)
    beh = [{"item": "c", "category": None, "action": "like", "timestamp": 5},
           {"item": "a", "category": None, "action": "like", "timestamp": 1},
           {"item": "b", "category": None, "action": "like", "timestamp": 5},
           {"item": "a", "category": None, "action": "other", "timestamp": 3},
           {"item": "zz", "category": None, "action": "other", "timestamp": 5}]
    e = pre.encode(beh, ["a"], 10)
    # sorted: a@1, a@3, c@5, b@5, zz@5 (ties keep caller order) -> keep last 3
    assert e.hist_item == [3, 2, 0]
    pre0 = make_pre(max_history=0)
    assert pre0.encode(beh, ["a"], 10).hist_item == []


def test_empty_history_is_l1_with_len0():
    pre = make_pre()
    b = pad_batch([pre.encode([], ["a", "b"], 100)])
    assert b["hist_item"].shape == (1, 1) and b["hist_len"].tolist() == [0]
    assert all(v.dtype == np.int64 for v in b.values())
    assert b["hist_item"].tolist() == [[0]] and b["cand_item"].tolist() == [[1, 2]]


def test_pad_batch_mixed():
    pre = make_pre()
    e1 = pre.encode([{"item": "a", "category": None, "action": "like", "timestamp": 1}],
                    ["a"], 1)
    e2 = pre.encode([], ["a", "b", "c"], 1)
    b = pad_batch([e1, e2])
    assert b["hist_item"].tolist() == [[1], [0]]
    assert b["hist_len"].tolist() == [1, 0]
    assert b["cand_item"].tolist() == [[1, 0, 0], [1, 2, 3]]
