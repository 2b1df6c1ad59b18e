import numpy as np
import torch

from atrank_export.model import ATRank, ModelConfig
from atrank_export.multigroup import (
    MultiGroupATRank,
    amazon_preset,
    build_multigroup_split,
    table_name,
)
from atrank_export.numerics import (
    U,
    logit_atol,
    multigroup_logit_atol,
    multigroup_logit_magnitudes,
    multigroup_logit_roundings,
    multigroup_magnitude_bound,
)
from atrank_export.synthetic import synthetic_multigroup


def _amazon_pair():
    torch.manual_seed(0)
    ref = ATRank(ModelConfig(n_items=30, n_categories=5, n_actions=2, embedding_dim=8,
                             hidden=16, heads=2, ffn=8))
    # The Amazon preset has ffn 32 and 4 heads; use the reference's sizes.
    cfg = amazon_preset(30, 5, 2, embedding_dim=8)
    cfg.heads, cfg.ffn = 2, 8
    mg = MultiGroupATRank(cfg)
    sd = ref.state_dict()
    mapped = {}
    for k, v in sd.items():
        k2 = (k.replace("item_emb.", "tables.item_id.").replace("cate_emb.", "tables.category.")
              .replace("f_m.", "f_m.item."))
        mapped[k2] = v
    mg.load_state_dict(mapped)
    return ref.eval(), mg.eval()


def test_amazon_preset_computes_exactly_what_the_single_group_model_computes():
    ref, mg = _amazon_pair()
    g = torch.Generator().manual_seed(1)
    b, length, n = 3, 7, 5
    hist_len = torch.tensor([7, 0, 3])
    inputs = {"hist_item": torch.randint(0, 31, (b, length), generator=g),
                  "hist_category": torch.randint(0, 6, (b, length), generator=g),
                  "hist_action": torch.randint(0, 3, (b, length), generator=g),
                  "hist_time": torch.randint(0, 13, (b, length), generator=g),
                  "hist_len": hist_len,
                  "cand_item": torch.randint(0, 31, (b, n), generator=g),
                  "cand_category": torch.randint(0, 6, (b, n), generator=g)}
    want = ref(**inputs)
    got = mg(item_id=inputs["hist_item"], item_category=inputs["hist_category"],
             item_action=inputs["hist_action"], item_time=inputs["hist_time"],
             item_len=hist_len, cand_id=inputs["cand_item"],
             cand_category=inputs["cand_category"])
    # the same function evaluated twice in float32: 2 D U max M (docs/tolerances.md); here
    # the two modules run the same operations on the same shapes, so they agree far closer
    torch.testing.assert_close(got, want, rtol=0, atol=logit_atol(ref, inputs))


def test_split_targets_are_target_group_events_and_history_precedes_them():
    log = synthetic_multigroup(n_users=20, seed=3)
    split = build_multigroup_split(log, embedding_dim=8, heads=2, ffn=8)
    assert [g.name for g in split.config.groups] == ["item", "coupon", "query"]
    assert split.config.group("item").features == ["id", "category", "shop"]
    # Every target is an item event; valid/test are each user's last two item events.
    item_g = 0
    for rows in (split.train, split.valid, split.test):
        ev = split.offsets[rows[:, 0]] + rows[:, 1]
        assert (split.group[ev] == item_g).all()
    batch = split.batch(split.test[:4, :2], np.stack([split.target_items(split.test[:4]),
                                                      split.test[:4, 2]], axis=1))
    for g in ("item", "coupon", "query"):
        assert batch[f"{g}_id"].shape[0] == 4
        assert (batch[f"{g}_len"] <= split.config.group(g).max_history).all()
    # The history is exactly the events before the target (time order), per group truncated
    # to the most recent max_history: the target itself never leaks into it.
    for r in range(4):
        u, p, _ = split.test[r]
        before = split.group[split.offsets[u]:split.offsets[u] + p]
        for gi, g in enumerate(split.config.groups):
            want = min(g.max_history, int((before == gi).sum()))
            assert batch[f"{g.name}_len"][r] == want
    # Negatives were never interacted with.
    for r, _, neg in split.test:
        assert neg not in set(split.interacted[r].tolist())


def test_padding_and_batching_do_not_change_scores():
    log = synthetic_multigroup(n_users=12, seed=4)
    split = build_multigroup_split(log, embedding_dim=8, heads=2, ffn=8)
    torch.manual_seed(0)
    model = MultiGroupATRank(split.config).eval()
    rows = split.test[:5]
    cands = np.stack([split.target_items(rows), rows[:, 2]], axis=1)
    batch = {k: torch.from_numpy(v) for k, v in split.batch(rows, cands).items()}
    together = model(**batch)
    tol = multigroup_logit_atol(model, batch)        # 2 D U max M (docs/tolerances.md)
    for i in range(len(rows)):
        alone = model(**{k: torch.from_numpy(v)
                         for k, v in split.batch(rows[i:i + 1], cands[i:i + 1]).items()})
        torch.testing.assert_close(alone[0], together[i], rtol=0, atol=tol)


def test_item_only_ablation_shares_targets_and_negatives():
    log = synthetic_multigroup(n_users=15, seed=5)
    full = build_multigroup_split(log, embedding_dim=8)
    item_only = build_multigroup_split(log, groups=["item"], embedding_dim=8)
    assert [g.name for g in item_only.config.groups] == ["item"]
    np.testing.assert_array_equal(full.target_items(full.test),
                                  item_only.target_items(item_only.test))
    np.testing.assert_array_equal(full.test[:, 2], item_only.test[:, 2])


def _tiny_split(n_users=30, seed=7):
    log = synthetic_multigroup(n_users=n_users, seed=seed)
    return build_multigroup_split(log, embedding_dim=8, heads=2, ffn=8,
                                  max_history={"item": 10, "coupon": 4, "query": 5})


def test_reference_preprocessing_of_raw_requests_equals_the_training_batches():
    from atrank_export.export_multigroup import MultiGroupPreprocessor, golden_requests

    split = _tiny_split()
    pre = MultiGroupPreprocessor.from_split(split)
    reqs = [r for r in golden_requests(split) if r["name"].startswith("test-user-")]
    assert len(reqs) >= 5
    by_user = {f"test-user-{split.users[u]}": (u, p, neg) for u, p, neg in split.test}
    for req in reqs:
        u, p, neg = by_user[req["name"]]
        want = split.batch(np.array([[u, p]]), np.array([[split.target_items(
            np.array([[u, p]]))[0], neg]]))
        got = pre.batch([{**req, "candidates": req["candidates"][:2]}])
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{req['name']} {k}")


def test_unknown_group_is_an_error_that_names_the_behavior():
    import pytest

    from atrank_export.export_multigroup import MultiGroupPreprocessor

    pre = MultiGroupPreprocessor.from_split(_tiny_split(n_users=8))
    with pytest.raises(ValueError, match=r"behaviors\[1\]\.group 'shop'"):
        pre.encode({"request_time": 0, "candidates": ["i1"], "behaviors": [
            {"group": "item", "id": "i1", "action": "click", "timestamp": 0},
            {"group": "shop", "id": "s1", "action": "click", "timestamp": 0}]})


def test_unknown_feature_name_is_an_error_like_the_runtime():
    import pytest

    from atrank_export.export_multigroup import MultiGroupPreprocessor

    pre = MultiGroupPreprocessor.from_split(_tiny_split(n_users=8))
    with pytest.raises(ValueError, match=r"behaviors\[0\]\.features: 'categroy'"):
        pre.encode({"request_time": 0, "candidates": ["i1"], "behaviors": [
            {"group": "item", "id": "i1", "action": "click", "timestamp": 0,
             "features": {"categroy": "c1"}}]})


def test_export_writes_validated_split_graphs_and_catches_a_wrong_graph(tmp_path):
    import json

    import pytest

    from atrank_export.export import ExportValidationError
    from atrank_export.export_multigroup import (
        MultiGroupPreprocessor,
        golden_requests,
        validate,
        write_package,
    )

    split = _tiny_split()
    torch.manual_seed(0)
    model = MultiGroupATRank(split.config).eval()
    out = write_package(model, split, tmp_path / "pkg", log=lambda _m: None)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["spec_version"] == 2
    assert [g["name"] for g in spec["groups"]] == ["item", "coupon", "query"]
    for f in ("model.onnx", "encoder.onnx", "scorer.onnx", "golden.json", "catalog/item.tsv",
              "vocab/item_id.txt", "vocab/category.txt", "vocab/shop.txt"):
        assert (out / f).is_file(), f
    # spec.json's manifest: every file the spec names, hashed (test_manifest.py checks hashes)
    named = {spec["graph"]["file"], spec["graph"]["encoder"]["file"],
             spec["graph"]["scorer"]["file"], *spec["tables"].values(),
             *(g["catalog"] for g in spec["groups"])}
    assert set(spec["files"]) == named
    for f, entry in spec["files"].items():
        assert entry["bytes"] == (out / f).stat().st_size, f
    golden = json.loads((out / "golden.json").read_text())
    names = {r["name"] for r in golden["requests"]}
    assert {"empty-history", "only-coupon", "only-query", "unknown-ids-item",
            "longer-than-every-max-history"} <= names
    for r in golden["requests"]:
        assert len(r["scores"]) == len(r["candidates"])
        assert np.isfinite(r["scores"]).all(), r["name"]
        # 2 D U M per request; M >= |logit| (independent of how M was measured)
        assert r["tolerance"] >= 2 * golden["roundings"] * U * float(np.max(np.abs(r["scores"])))
    assert golden["roundings"] == multigroup_logit_roundings(model.config)
    assert golden["tolerance"] == max(r["tolerance"] for r in golden["requests"])
    # bound_any_request: M bounded from the weights for any request, checked on random ones
    bound = multigroup_magnitude_bound(model)
    assert golden["bound_any_request"] == 2 * golden["roundings"] * U * bound
    g = torch.Generator().manual_seed(3)
    c, b, n = model.config, 32, 40
    x = {}
    for grp in c.groups:
        length = grp.max_history
        for f in grp.features:
            x[f"{grp.name}_{f}"] = torch.randint(
                0, c.table_sizes[table_name(grp.name, f)] + 1, (b, length), generator=g)
        x[f"{grp.name}_action"] = torch.randint(0, c.n_actions + 1, (b, length), generator=g)
        x[f"{grp.name}_time"] = torch.randint(0, c.n_time_buckets, (b, length), generator=g)
        x[f"{grp.name}_len"] = torch.randint(0, length + 1, (b,), generator=g)
    for f in c.group(c.target_group).features:
        x[f"cand_{f}"] = torch.randint(
            0, c.table_sizes[table_name(c.target_group, f)] + 1, (b, n), generator=g)
    assert float(multigroup_logit_magnitudes(model, x).max()) <= bound
    # A model that is not the exported one must fail validation loudly.
    other = MultiGroupATRank(split.config).eval()
    with torch.no_grad():
        other.f_m["coupon"].weight.add_(0.5)
    pre = MultiGroupPreprocessor.from_split(split)
    with pytest.raises(ExportValidationError):
        validate(other, out, pre, golden_requests(split), log=lambda _m: None)
