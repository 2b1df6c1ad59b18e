import numpy as np

from atrank_export.model import GroupConfig, ModelConfig
from atrank_export.preprocess import Preprocessor, TimeBuckets
from atrank_export.vocabfile import TableIndex, bucket

DAY = 86400


def make_pre(max_history=3, hash_buckets=0):
    """Hand-made tables: items a, b, c; categories X, Y; catalog a -> X, b -> Y."""
    config = ModelConfig([GroupConfig("item", ["id", "category"], max_history),
                          GroupConfig("query", ["id"], 2)],
                         {"item_id": 3, "category": 2, "query_id": 1}, 2)
    tables = {"item_id": TableIndex(["a", "b", "c"], hash_buckets),
              "category": TableIndex(["X", "Y"], hash_buckets),
              "query_id": TableIndex(["q"], 0)}
    catalogs = {"item": (["a", "b", "d"], {"category": np.array([1, 2, 0], dtype=np.uint32)})}
    return Preprocessor(config, tables, catalogs, ["like", "other"], TimeBuckets())


def beh(oid, ts, action="like", category=None, group="item"):
    b = {"group": group, "id": oid, "action": action, "timestamp": ts}
    if category is not None:
        b["features"] = {"category": category}
    return b


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


def test_ids_catalog_columns_caller_features_and_actions():
    pre = make_pre(max_history=10)
    t = 100 * DAY
    x = pre.batch([{"request_time": t, "candidates": ["a", "b", "c", "zz", "d"], "behaviors": [
        beh("a", t - 1), beh("b", t - 2, "other", category="X"), beh("zz", t - 3, "nope"),
        beh("c", t - 4, category="W")]}])
    # sorted by time: c, zz, b, a
    assert x["item_id"].tolist() == [[3, 0, 2, 1]]
    # c: caller "W" unknown -> 0; zz: not in the catalog -> 0; b: caller X over catalog Y; a: X
    assert x["item_category"].tolist() == [[0, 0, 1, 1]]
    assert x["item_action"].tolist() == [[1, 0, 2, 1]]
    assert x["item_len"].tolist() == [4]
    assert x["cand_id"].tolist() == [[1, 2, 3, 0, 0]]
    # candidates: catalog only; c has no catalog row, d has a row with no value
    assert x["cand_category"].tolist() == [[1, 2, 0, 0, 0]]
    # the query group has no behaviors: L = 1, length 0
    assert x["query_id"].tolist() == [[0]] and x["query_len"].tolist() == [0]


def test_hashed_buckets():
    pre = make_pre(max_history=10, hash_buckets=4)
    t = 100 * DAY
    x = pre.batch([{"request_time": t, "candidates": ["zz", "a"],
                    "behaviors": [beh("zz", t - 1, category="W"), beh("d", t - 2)]}])
    assert x["item_id"].tolist() == [[bucket("d", 3, 4), bucket("zz", 3, 4)]]
    assert 4 <= bucket("zz", 3, 4) <= 7
    # caller values are hashed; a missing value (d's catalog row has none) is 0, never hashed
    assert x["item_category"].tolist() == [[0, bucket("W", 2, 4)]]
    assert x["cand_id"].tolist() == [[bucket("zz", 3, 4), 1]]
    assert x["cand_category"].tolist() == [[0, 1]]


def test_stable_sort_and_truncation():
    pre = make_pre(max_history=3)
    t = 100 * DAY
    bs = [beh("a", t - 10), beh("b", t - 5), beh("c", t - 5), beh("a", t - 5), beh("b", t - 20)]
    x = pre.batch([{"request_time": t, "candidates": ["a"], "behaviors": bs}])
    # time order b(-20), a(-10), then the three at -5 in caller order b, c, a; keep last 3
    assert x["item_id"].tolist() == [[2, 3, 1]]
    assert x["item_len"].tolist() == [3]


def test_pad_mixed_batch():
    pre = make_pre(max_history=5)
    t = 100 * DAY
    x = pre.batch([{"request_time": t, "candidates": ["a"], "behaviors": []},
                   {"request_time": t, "candidates": ["a", "b", "c"],
                    "behaviors": [beh("a", t - 1), beh("b", t - 2), beh("q", t, group="query")]}])
    assert x["item_id"].tolist() == [[0, 0], [2, 1]]
    assert x["item_len"].tolist() == [0, 2]
    assert x["cand_id"].tolist() == [[1, 0, 0], [1, 2, 3]]
    assert x["query_id"].tolist() == [[0], [1]] and x["query_len"].tolist() == [0, 1]
