"""The comparison's task rules in split.py (target actions, first touches, the training
vocabulary, the object universe, ablation flags), the reader options that read a headerless
log such as Taobao's, weighted ranking metrics, the sampled softmax and early stopping."""

import numpy as np
import pytest
import torch

from atrank_export.metrics import pos_vs_many_auc, recall_ndcg_at_k, target_rank
from atrank_export.readers import read_behavior_log
from atrank_export.split import build_split
from atrank_export.train import evaluate, sample_negatives, softmax_batch, train

# user, object, category, action, timestamp: headerless, no group column (Taobao's layout)
ROWS = """\
1,a,x,pv,100
1,a,x,pv,101
1,b,x,cart,102
1,c,y,pv,103
1,b,x,buy,104
1,d,y,pv,105
1,e,y,buy,106
1,f,y,cart,107
2,a,x,pv,100
2,g,z,pv,101
2,g,z,buy,102
2,h,z,pv,103
2,h,z,cart,104
2,a,x,buy,105
2,i,x,pv,106
2,j,y,buy,107
"""
COLUMNS = ["user", "object_id", "category", "action", "timestamp"]


@pytest.fixture()
def log(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(ROWS)
    return read_behavior_log(path, columns=COLUMNS, header=False, default_group="item",
                             catalog_from_events=True)


def test_headerless_log_reads_with_columns_and_default_group(tmp_path, log):
    assert len(log) == 16 and log.groups == ["item"]
    assert log.sequence("1") == ["a", "a", "b", "c", "b", "d", "e", "f"]
    assert sorted(log.actions) == ["buy", "cart", "pv"]
    # candidates take features from the catalog: built from the events here
    assert log.catalog_dict("item")["g"] == {"category": "z"}
    plain = read_behavior_log(tmp_path / "events.csv", columns=COLUMNS, header=False,
                              default_group="item")
    assert plain.catalogs == {}
    with pytest.raises(ValueError, match="without a header line needs columns"):
        read_behavior_log(tmp_path / "events.csv", header=False)
    with pytest.raises(ValueError, match="missing required column"):   # no default group
        read_behavior_log(tmp_path / "events.csv", columns=COLUMNS, header=False)
    # a header line that is skipped: columns rename it
    (tmp_path / "h.csv").write_text("u,o,c,b,t\n" + ROWS)
    renamed = read_behavior_log(tmp_path / "h.csv", columns=COLUMNS, default_group="item")
    assert len(renamed) == 16


def test_explicit_catalog_wins_over_event_features(tmp_path):
    (tmp_path / "e.csv").write_text(ROWS)
    (tmp_path / "cat.csv").write_text("object_id,category\ng,w\n")
    log = read_behavior_log(tmp_path / "e.csv", columns=COLUMNS, header=False,
                            default_group="item", catalogs=tmp_path / "cat.csv",
                            catalog_from_events=True)
    assert log.catalog_dict("item")["g"] == {"category": "w"}
    assert log.catalog_dict("item")["a"] == {"category": "x"}


def targets(split):
    """(user, target object) of every train/valid/test row, as raw strings."""
    out = []
    for rows in (split.train, split.valid, split.test):
        for u, p, _ in rows:
            out.append((split.users[u], split.raw_target(u, p)[0]))
    return sorted(out)


def test_target_actions_and_first_touch(log):
    # worked out by hand from ROWS. buy/cart targets: user 1: b(102) b(104) e f; user 2:
    # g h a j. Training targets need an earlier behavior (all have one here).
    sp = build_split(log, max_history=10, target_actions=["buy", "cart"], seed=3)
    assert targets(sp) == sorted([("1", "b"), ("1", "b"), ("1", "e"), ("1", "f"),
                                  ("2", "g"), ("2", "h"), ("2", "a"), ("2", "j")])
    # the history of user 1's test target (f at 107) holds every earlier behavior, pv too
    u = sp.users.index("1")
    row = sp.test[sp.test[:, 0] == u]
    assert int(sp.history(row[:, :2])["item_len"][0]) == 7
    # first touches: user 1 a b c d e f, user 2 a g h i j (user 2's buy of a is a repeat)
    ft = build_split(log, max_history=10, first_touch=True, seed=3)
    assert [t for t in targets(ft) if t[0] == "2"] == sorted(
        [("2", "g"), ("2", "h"), ("2", "i"), ("2", "j")])          # a (first) has no history
    assert len(ft.valid) == 2 and len(ft.test) == 2
    with pytest.raises(ValueError, match="not among the log's actions"):
        build_split(log, target_actions=["click"])


def test_training_vocabulary_and_object_universe(log):
    sp = build_split(log, max_history=10, vocabulary="train", universe="objects", seed=3)
    # training events: user 1 before its validation target e(106), user 2 before i(106)
    assert sp.vocabs["item_id"] == ["a", "b", "c", "d", "g", "h"]
    # 10 objects; e, f, i, j are unknown: id 0, alike in id, told apart by category
    assert int(sp.universe_count.sum()) == 10 and sp.universe_count[0] == 0
    rows = {tuple(r): int(c) for r, c in zip(sp.universe[1:].tolist(), sp.universe_count[1:])}
    cat = {c: sp.vocabs["category"].index(c) + 1 for c in "xyz"}
    assert rows[(0, cat["y"])] == 3                      # e, f, j
    assert rows[(0, cat["x"])] == 1                      # i
    assert sum(1 for r in rows if r[0] > 0) == 6         # the known ids, one row each
    # user 2 touched a, g, h, i, j: interacted rows with counts
    u2 = sp.users.index("2")
    got = {tuple(sp.universe[r]): int(c) for r, c in
           zip(sp.interacted[u2], sp.interacted_count[u2])}
    assert got[(0, cat["y"])] == 1 and got[(0, cat["x"])] == 1
    # negatives are untouched objects' rows: a row whose objects the user all touched is
    # never drawn
    for u, _, neg in np.concatenate([sp.train, sp.valid, sp.test]):
        left = sp.universe_count[neg] - dict(zip(sp.interacted[u].tolist(),
                                                 sp.interacted_count[u].tolist())).get(neg, 0)
        assert left >= 1
    # the default rules are unchanged: every key in the vocabulary, one row per id
    full = build_split(log, max_history=10, seed=3)
    assert full.n_candidates == full.n_items == 10
    assert (full.universe_count[1:] == 1).all()


def test_ablation_flags(log):
    sp = build_split(log, max_history=10, seed=3, use_actions=False, use_time=False)
    batch = sp.training_batch(sp.train)
    assert sp.config.n_actions == 1 and sp.actions == ["any"]
    real = batch["item_action"][batch["item_action"] > 0]
    assert (real == 1).all() and (batch["item_time"] == 0).all()
    on = build_split(log, max_history=10, seed=3).training_batch(sp.train)
    assert set(np.unique(on["item_action"])) > {0, 1}


def test_weighted_metrics_equal_repeated_negatives():
    rng = np.random.default_rng(0)
    negs = rng.integers(0, 5, size=12).astype(float)       # many ties
    w = rng.integers(0, 4, size=12)
    rep = np.repeat(negs, w)
    for pos in (-1.0, 0.0, 2.0, 2.5, 9.0):
        assert pos_vs_many_auc(pos, negs, w) == pytest.approx(pos_vs_many_auc(pos, rep))
        assert target_rank(pos, negs, w) == target_rank(pos, rep)
        assert recall_ndcg_at_k(pos, negs, 3, w) == recall_ndcg_at_k(pos, rep, 3)
    with pytest.raises(ValueError):
        pos_vs_many_auc(1.0, negs, np.zeros(12))


def test_evaluate_counts_unknown_objects_with_their_multiplicity(log):
    """All-items AUC with the object universe equals a brute-force AUC over every untouched
    object, each scored through its own features."""
    sp = build_split(log, max_history=10, vocabulary="train", universe="objects", seed=3,
                     embedding_dim=4, heads=2, ffn=4)
    torch.manual_seed(0)
    from atrank_export.model import ATRank

    model = ATRank(sp.config).eval()
    got = evaluate(model, sp, sp.test)
    aucs = []
    objs = sp.log.objects["item"]
    for u, p, _ in sp.test:
        hist = sp.history(np.array([[u, p]]))
        touched = {sp.log.objects["item"][o] for o in
                   sp.log.object[sp.event[sp.offsets[u]:sp.offsets[u + 1]]]}
        feats = []
        for o in objs:
            idx = sp.vocabs["item_id"].index(o) + 1 if o in sp.vocabs["item_id"] else 0
            c = sp.log.catalog_dict("item")[o]["category"]
            feats.append((idx, sp.vocabs["category"].index(c) + 1
                          if c in sp.vocabs["category"] else 0, o))
        cand = {"cand_id": torch.tensor([[f[0] for f in feats]]),
                "cand_category": torch.tensor([[f[1] for f in feats]])}
        with torch.no_grad():
            sc = model(**{k: torch.from_numpy(v) for k, v in hist.items()}, **cand)[0].numpy()
        tgt = sp.raw_target(int(u), int(p))[0]
        pos = sc[objs.index(tgt)]
        negs = np.array([s for s, f in zip(sc, feats) if f[2] not in touched])
        aucs.append(pos_vs_many_auc(pos, negs))
    # Both sides score the same inputs with the same float32 model, one user at a time here
    # and in chunks there; encode-once batching can move a logit by a few ulps, which moves
    # an AUC only if it flips an order between candidates within that distance. The model's
    # logits here are spread far wider than that (random init; distinct inputs), so the
    # comparisons, and the AUCs, are the same up to float64 summation order.
    assert got["all_items_auc"] == pytest.approx(float(np.mean(aucs)), abs=1e-12)


def test_sampled_softmax_batch_and_loss(log):
    sp = build_split(log, max_history=10, vocabulary="train", universe="objects", seed=3,
                     embedding_dim=4, heads=2, ffn=4)
    rng = np.random.default_rng(0)
    allrows = sample_negatives(sp, rng, 1000)          # K <= m: every row, in order
    assert allrows.tolist() == list(range(1, sp.n_candidates + 1))
    drawn = sample_negatives(sp, rng, 3)
    assert len(drawn) == 3 and drawn.min() >= 1 and drawn.max() <= sp.n_candidates
    batch, offset, hit = softmax_batch(sp, sp.train, allrows)
    assert batch["cand_id"].shape == (len(sp.train), 1 + sp.n_candidates)
    # all rows: the offset is log(objects per row); each target is an accidental hit once
    np.testing.assert_allclose(np.exp(offset), sp.universe_count[1:])
    assert (hit.sum(1) == 1).all()
    _, m = train(sp, sp.config, epochs=3, seed=3, progress=False, log=lambda s: None,
                 loss="softmax", patience=1, lr=1e-2)
    assert np.isfinite([e["loss"] for e in m["epochs"]]).all()
    assert m["patience"] == 1 and m["max_epochs"] == 3


def test_early_stopping_stops_after_patience(log):
    sp = build_split(log, max_history=10, seed=3, embedding_dim=4, heads=2, ffn=4)
    # lr 1e-30 (SparseAdam refuses 0): an Adam step moves a weight by about lr, far below
    # half an ulp of any nonzero float32 weight of this model, and a weight that starts at
    # 0 (biases, LayerNorm shifts) becomes about 1e-30, which vanishes when added to the
    # model's activations; so the scores and validation AUC cannot improve after epoch 1
    _, m = train(sp, sp.config, epochs=10, seed=3, progress=False, log=lambda s: None,
                 lr=1e-30, patience=2, evaluate_test=False)
    assert [e["epoch"] for e in m["epochs"]] == [1, 2, 3]
    assert m["best_epoch"] == 1 and not m["best_at_cap"] and m["test"] is None
    _, capped = train(sp, sp.config, epochs=1, seed=3, progress=False, log=lambda s: None)
    assert capped["best_at_cap"] and capped["test"] is not None


def test_group_by_action_shares_tables_and_keeps_every_behavior(log):
    from atrank_export.model import ATRank

    one = build_split(log, max_history=10, seed=3, embedding_dim=4, heads=2, ffn=4)
    by = build_split(log, max_history=10, seed=3, embedding_dim=4, heads=2, ffn=4,
                     group_by_action=True)
    names = [g.name for g in by.config.groups]
    assert names == ["item", "item@buy", "item@cart", "item@pv"]
    np.testing.assert_array_equal(one.test, by.test)            # same targets, negatives
    h1, h2 = one.history(one.test[:, :2]), by.history(by.test[:, :2])
    assert (h2["item_len"] == 0).all()                          # the candidates' group
    total = sum(h2[f"{g}_len"] for g in names[1:])
    np.testing.assert_array_equal(total, h1["item_len"])        # budget 10 each, none cut
    # a user's buy behaviors, in order, are the item@buy group's history
    u = by.test[:1]
    seq = [by.log.objects["item"][o] for o in by.log.object[by.event[by.offsets[u[0, 0]]:
                                                                   by.offsets[u[0, 0]]
                                                                   + u[0, 1]]]]
    acts = [by.log.actions[a] for a in by.log.action[by.event[by.offsets[u[0, 0]]:
                                                               by.offsets[u[0, 0]] + u[0, 1]]]]
    buys = [by.vocabs["item_id"].index(o) + 1 for o, a in zip(seq, acts) if a == "buy"]
    hb = by.history(u[:, :2])
    assert hb["item@buy_id"][0, :len(buys)].tolist() == buys
    model = ATRank(by.config)
    assert set(model.tables) == set(one.config.table_sizes)     # no per-group id tables
    assert set(model.f_m) == set(names)
    _, m = train(by, by.config, epochs=1, seed=3, progress=False, log=lambda s: None)
    assert np.isfinite(m["test"]["all_items_auc"])


def test_sasrec_shared_negatives_are_the_broadcast_forward(log):
    """The sampled-softmax step's fast path for SASRec (shared negatives scored once) gives
    the logits and the loss of the generic path (negatives repeated per row)."""
    from atrank_export.baselines import MODELS, BaselineConfig
    from atrank_export.train import batch_objective

    sp = build_split(log, max_history=10, vocabulary="train", universe="objects", seed=3,
                     embedding_dim=4)
    cfg = BaselineConfig.of(sp.config, use_action=True, use_time=True)
    torch.manual_seed(0)
    model = MODELS["SASRec"](cfg, sp).eval()
    negatives = sample_negatives(sp, np.random.default_rng(1), 5)
    raw, _, _ = softmax_batch(sp, sp.train, negatives)
    x = {k: torch.from_numpy(v) for k, v in raw.items()}
    with torch.no_grad():
        full = model(**x)
        own = {k: (v[:, :1] if k.startswith("cand_") else v) for k, v in x.items()}
        shared = model.shared_logits(own, torch.from_numpy(sp.universe[negatives, 0]),
                                     torch.from_numpy(sp.universe[negatives, 1]))
        u = model.user_vector(*model.config.unpack(x)[:5]).double().abs()
        c = model.vectors(x["cand_id"], x["cand_category"]).double().abs()
    # one dot product of width W per logit, summed in another order: |diff| <= 2 W u_max
    # sum|u_i||c_i| (first order, u = 2^-24), plus the bias addition's half ulp
    w = c.shape[-1]
    bound = 2 * w * 2.0**-24 * (c * u[:, None, :]).sum(-1) + 2.0**-24 * full.abs().double()
    assert shared.shape == full.shape
    assert ((shared.double() - full.double()).abs() <= bound).all()

    class Generic(torch.nn.Module):        # the same model without the fast path
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, **inputs):
            return self.m(**inputs)

    fast, _, _ = batch_objective(model, model, sp, sp.train, "softmax", 0.0, None, negatives)
    slow, _, _ = batch_objective(Generic(model), Generic(model), sp, sp.train, "softmax", 0.0,
                                 None, negatives)
    # the mean cross-entropy of logits that agree within `bound`: log-softmax moves by at most
    # 2 max(bound) under such a perturbation; each side's own float32 log-sum-exp over M + 1
    # logits and mean over B rows adds at most (M + 1 + B) roundings of the loss's magnitude
    roundings = (len(negatives) + 1 + len(sp.train)) * 2.0**-24 * (1 + float(full.abs().max()))
    assert abs(float(fast.detach()) - float(slow.detach())) <= 2 * float(bound.max()) + 2 * roundings
