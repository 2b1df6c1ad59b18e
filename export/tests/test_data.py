import numpy as np

from atrank_export.data import build_split, read_ml100k, synthetic_dataset
from atrank_export.preprocess import pad_batch

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def write_ml(tmp_path):
    items = ["1\tToy Story\t1995\tAnimation Children's Comedy",
             "2\tGoldenEye\t1995\tAction Adventure Thriller",
             "3\tFour Rooms\t1995\tThriller",
             "10\tRichard III\t1995\tDrama War",
             "11\tSeven\t1995\tCrime Thriller",
             "12\tNothing\t1995\t"]
    rows = [("1", "1", "5", "100"), ("1", "2", "3", "100"), ("1", "3", "4", "100"),
            ("1", "10", "1", "200"), ("1", "11", "4.0", "50"),
            ("2", "2", "2", "881250949"), ("2", "3", "4", "881250950"),
            ("2", "1", "3.5", "881250951"), ("2", "10", "5", "881250952"),
            ("3", "1", "5", "1")]
    (tmp_path / "ml-100k.item").write_text(ITEM_HEADER + "\n".join(items) + "\n")
    (tmp_path / "ml-100k.inter").write_text(INTER_HEADER + "\n".join("\t".join(r)
                                                                     for r in rows) + "\n")
    return tmp_path / "ml-100k.inter", tmp_path / "ml-100k.item"


def test_ml100k_reader(tmp_path):
    ds = read_ml100k(*write_ml(tmp_path))
    assert ds.catalog["1"] == "Animation" and ds.catalog["10"] == "Drama"
    assert ds.catalog["12"] == "unknown"
    assert ds.actions == ["like", "other"]
    s2 = ds.sequences["2"]
    assert [b.item for b in s2] == ["2", "3", "1", "10"]
    assert [b.action for b in s2] == ["other", "like", "other", "like"]
    assert [b.category for b in s2] == ["Action", "Thriller", "Animation", "Drama"]
    s1 = ds.sequences["1"]
    assert s1[0].item == "11" and s1[-1].item == "10"
    assert sorted(b.item for b in s1[1:4]) == ["1", "2", "3"]     # the tied batch at t=100
    # the tie-break is seeded: same seed same order
    again = read_ml100k(tmp_path / "ml-100k.inter", tmp_path / "ml-100k.item")
    assert [b.item for b in again.sequences["1"]] == [b.item for b in s1]
    orders = {tuple(b.item for b in read_ml100k(tmp_path / "ml-100k.inter",
                                                tmp_path / "ml-100k.item",
                                                seed=s).sequences["1"][1:4]) for s in range(12)}
    assert len(orders) > 1      # not an id tie-break


def test_split_rules(tmp_path):
    ds = read_ml100k(*write_ml(tmp_path))
    sp = build_split(ds, max_history=2)
    assert sp.preprocessor.item_vocab.tokens == ["1", "2", "3", "10", "11", "12"]
    assert sp.users == ["1", "2"]                      # user 3 has < 3 behaviors
    # user "1": 5 behaviors -> train targets at positions 1, 2; valid 3; test 4
    u1 = [tuple(r) for r in sp.train if r[0] == 0]
    assert [r[1] for r in u1] == [1, 2]
    assert sp.valid[0][1] == 3 and sp.test[0][1] == 4
    for row, _, neg in np.concatenate([sp.train, sp.valid, sp.test]):
        assert neg not in sp.interacted[row] and neg > 0


def test_training_batch_equals_raw_preprocessing():
    ds = synthetic_dataset(n_users=12, seed=3)
    sp = build_split(ds, max_history=5)
    pre = sp.preprocessor
    rows = np.concatenate([sp.train[:20], sp.valid[:3], sp.test[:3]])
    cands = np.stack([sp.target_items(rows[:, :2]), rows[:, 2]], 1)
    batch = sp.batch(rows[:, :2], cands)
    tokens = pre.item_vocab.tokens
    for k, (row, t, neg) in enumerate(rows):
        seq = ds.sequences[sp.users[row]]
        req = {"behaviors": [{"item": b.item, "category": b.category, "action": b.action,
                              "timestamp": b.timestamp} for b in seq[:t]],
               "candidates": [seq[t].item, tokens[neg - 1]], "request_time": seq[t].timestamp}
        ref = pad_batch([pre.encode_request(req)])
        n = int(ref["hist_len"][0])
        assert batch["hist_len"][k] == n
        for name in ("hist_item", "hist_category", "hist_action", "hist_time"):
            assert batch[name][k, :n].tolist() == ref[name][0, :n].tolist(), name
            assert not batch[name][k, n:].any()
        assert batch["cand_item"][k].tolist() == ref["cand_item"][0].tolist()
        assert batch["cand_category"][k].tolist() == ref["cand_category"][0].tolist()


def test_synthetic_is_seeded():
    a, b = synthetic_dataset(seed=5), synthetic_dataset(seed=5)
    assert a.sequences == b.sequences
    assert a.sequences != synthetic_dataset(seed=6).sequences
