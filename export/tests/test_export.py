import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from atrank_export.cli import main
from atrank_export.export import (
    ExportValidationError,
    golden_requests,
    model_from_checkpoint,
    ort_session,
    request_tolerances,
    validate,
)
from atrank_export.numerics import U, logit_magnitudes, logit_roundings, magnitude_bound
from atrank_export.preprocess import Preprocessor
from atrank_export.train import load_checkpoint

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def ort_golden_check(pkg):
    """Scores from the raw golden requests, through preprocess.py reading the package files
    and onnxruntime (external data from tables.bin), match golden.json, on the full graph
    and on encoder -> scorer."""
    spec = json.loads((pkg / "spec.json").read_text())
    golden = json.loads((pkg / spec["golden"]).read_text())
    assert golden["version"] == 3
    pre = Preprocessor.from_package(pkg)
    full = ort_session(pkg / spec["graph"]["file"])
    enc = ort_session(pkg / spec["graph"]["encoder"]["file"])
    sc = ort_session(pkg / spec["graph"]["scorer"]["file"])
    cand = [n for n in spec["graph"]["scorer"]["inputs"] if n.startswith("cand_")]
    for r in golden["requests"]:
        x = pre.batch([r])
        got = full.run(["logits"], x)[0][0]
        e, m = enc.run(["encoded", "mask"], {k: v for k, v in x.items() if k not in cand})
        split = sc.run(["logits"], {"encoded": e, "mask": m, **{k: x[k] for k in cand}})[0][0]
        assert len(got) == len(r["scores"]) == len(r["candidates"])
        for g in (got, split):
            diff = float(np.max(np.abs(g - np.array(r["scores"]))))
            # each request's derived tolerance 2 D U M (docs/tolerances.md)
            assert diff <= r["tolerance"], (r["name"], diff, r["tolerance"])
        # M >= |exact logit|, and the float32 score is within D U M of it, so the tolerance is
        # at least 2 D U max |score| / (1 + D U) (independent of how M was measured; equality
        # is reached when every term of the last dot product has one sign)
        d = golden["roundings"]
        assert r["tolerance"] * (1 + d * U) >= 2 * d * U * float(np.max(np.abs(r["scores"])))
    assert golden["tolerance"] == max(r["tolerance"] for r in golden["requests"])
    assert golden["bound_any_request"] >= golden["tolerance"]
    return golden, spec


def test_package_layout_and_golden(trained):
    pkg = trained / "pkg"
    golden, spec = ort_golden_check(pkg)
    assert spec["format"] == "atrank-model-package" and spec["spec_version"] == 3
    assert spec["graph"]["opset"] == 20 and spec["groups"][0]["max_history"] == 10
    assert spec["graph"]["external_data"] == ["tables.bin"]
    assert spec["hash"] == {"function": "xxh3_64", "seed": 0}
    assert spec["tables"]["item_id"] == {"vocab": "vocab/item_id.atv", "size": 120,
                                         "hash_buckets": 0}
    # the catalog holds the vocabulary's 120 keys: it names the vocabulary's file, and no
    # second copy (nor its index) is written
    assert spec["groups"][0]["catalog"] == {
        "keys": "vocab/item_id.atv", "rows": 120,
        "columns": {"category": "catalog/item.category.u32"}}
    assert not (pkg / "catalog" / "item.atv").exists()
    assert sorted(spec["atv_index"]) == ["vocab/category.atv", "vocab/item_id.atv"]
    names = [r["name"] for r in golden["requests"]]
    for want in ["empty-history", "only-item", "unknown-ids-item",
                 "longer-than-every-max-history", "ties-at-truncation-boundary",
                 "caller-features-override-catalog", "behaviors-after-request-time"]:
        assert want in names
    ties = golden["requests"][names.index("ties-at-truncation-boundary")]
    pre = Preprocessor.from_package(pkg)
    kept = pre.batch([ties])["item_id"]
    flipped = pre.batch([{**ties, "behaviors": ties["behaviors"][::-1]}])["item_id"]
    assert sorted(kept.ravel()) != sorted(flipped.ravel())   # caller order decides ties
    # every graph keeps its tables outside the protobuf, and the three share them
    refs = {}
    for f in ("model.onnx", "encoder.onnx", "scorer.onnx"):
        m = onnx.load(str(pkg / f), load_external_data=False)
        assert len(m.graph.value_info) == 0
        for init in m.graph.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                ext = {e.key: e.value for e in init.external_data}
                assert ext["location"] == "tables.bin" and int(ext["offset"]) % 65536 == 0
                refs.setdefault((ext["offset"], ext["length"]), set()).add(f)
    assert any(len(fs) == 3 for fs in refs.values())
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert {"one_neg_auc", "all_items_auc", "global_auc"} <= set(metrics["test"])


@pytest.mark.parametrize("name", ["tiny", "tiny-multigroup"])
def test_committed_fixture_is_consistent(name):
    _, spec = ort_golden_check(FIXTURES / name)
    assert spec["name"] == f"atrank-{name}"
    size = sum(p.stat().st_size for p in (FIXTURES / name).rglob("*") if p.is_file())
    assert size < 400_000
    if name == "tiny-multigroup":
        assert all(t["hash_buckets"] == 3 for t in spec["tables"].values())


def test_tampered_table_is_rejected(trained, tmp_path):
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, _ = model_from_checkpoint(ckpt)
    pkg = tmp_path / "pkg"
    shutil.copytree(trained / "pkg", pkg)
    pre = Preprocessor.from_package(pkg)
    requests = golden_requests(ckpt, model.config)
    tols = request_tolerances(model, pre, requests)
    assert validate(model, pkg, pre, requests, tols, log=lambda s: None) <= max(tols)
    # shift the shared item table inside tables.bin: every graph reads the damaged copy
    m = onnx.load(str(pkg / "model.onnx"), load_external_data=False)
    init = next(i for i in m.graph.initializer if i.name == "model.tables.item_id.weight")
    ext = {e.key: int(e.value) for e in init.external_data if e.key != "location"}
    data = bytearray((pkg / "tables.bin").read_bytes())
    w = np.frombuffer(bytes(data[ext["offset"]:ext["offset"] + ext["length"]]), "<f4") + 1e-3
    data[ext["offset"]:ext["offset"] + ext["length"]] = w.astype("<f4").tobytes()
    (pkg / "tables.bin").write_bytes(bytes(data))
    with pytest.raises(ExportValidationError, match="tolerance"):
        validate(model, pkg, pre, requests, tols, log=lambda s: None)
    assert main(["verify", "--package", str(pkg)]) == 1
    assert main(["verify", "--package", str(trained / "pkg")]) == 0


def test_onnx_padding_invariance(trained):
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, _ = model_from_checkpoint(ckpt)
    pre = Preprocessor.from_package(trained / "pkg")
    sess = ort_session(trained / "pkg" / "model.onnx")
    u = ckpt["golden_users"][1]
    b = pre.batch([{"request_time": u["target_time"], "behaviors": u["behaviors"],
                    "candidates": [u["target"], u["negative"]]}])
    length = b["item_id"].shape[1]
    padded = {k: (np.pad(v, ((0, 0), (0, 7))) if v.ndim == 2 and v.shape[1] == length
                  and k.startswith("item_") else v) for k, v in b.items()}
    a = sess.run(["logits"], b)[0]
    p = sess.run(["logits"], padded)[0]
    from atrank_export.numerics import logit_atol

    # two float32 evaluations of the same logits: 2 D U max M (docs/tolerances.md)
    tol = logit_atol(model, *({k: torch.from_numpy(v) for k, v in x.items()} for x in (b, padded)))
    assert np.allclose(a, p, atol=tol, rtol=0)
    with torch.no_grad():
        t = model(**{k: torch.from_numpy(v) for k, v in padded.items()}).numpy()
    assert np.allclose(a, t, atol=tol, rtol=0)


def test_golden_tolerances_are_derived_and_the_package_bound_holds(trained):
    """golden.json's tolerances are 2 D U M with D at max_history; bound_any_request bounds M
    for requests the golden file does not hold: random histories of random items, actions and
    time buckets, every item as a candidate, with random categories (not only the catalog's)."""
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    model, _ = model_from_checkpoint(ckpt)
    pre = Preprocessor.from_package(trained / "pkg")
    golden = json.loads((trained / "pkg" / "golden.json").read_text())
    d = logit_roundings(model.config)
    assert golden["roundings"] == d
    for r in golden["requests"]:
        m = logit_magnitudes(model, {k: torch.from_numpy(v) for k, v in pre.batch([r]).items()})
        assert r["tolerance"] == pytest.approx(2 * d * U * float(m.max()), rel=1e-12)
    bound = magnitude_bound(model)
    assert golden["bound_any_request"] == pytest.approx(2 * d * U * bound, rel=1e-12)
    c = model.config
    g = torch.Generator().manual_seed(7)
    n_items, n_cat = c.table_rows("item_id"), c.table_rows("category")
    b, length = 64, c.groups[0].max_history
    x = {"item_id": torch.randint(0, n_items, (b, length), generator=g),
         "item_category": torch.randint(0, n_cat, (b, length), generator=g),
         "item_action": torch.randint(0, c.n_actions + 1, (b, length), generator=g),
         "item_time": torch.randint(0, c.n_time_buckets, (b, length), generator=g),
         "item_len": torch.randint(0, length + 1, (b,), generator=g),
         "cand_id": torch.arange(n_items).repeat(b, 1),
         "cand_category": torch.randint(0, n_cat, (b, n_items), generator=g)}
    m = logit_magnitudes(model, x)
    assert float(m.max()) <= bound
    # not a tolerance: a guard that the bound stays useful (Cauchy-Schwarz over H = 16 terms
    # and the sum of the tables' largest rows lose far less than a factor 10 on this model)
    assert bound <= 10 * float(m.max())


def test_spec_and_readme_describe_the_inputs(trained, tmp_path):
    """spec.json's input_mapping says what each input means, from the reader; the package's
    README.md repeats it."""
    pkg = trained / "pkg"
    spec = json.loads((pkg / "spec.json").read_text())
    m = spec["input_mapping"]
    assert set(m["actions"]) == set(spec["actions"])
    assert set(m["features"]) == {"item.id", "item.category"}
    assert "equal timestamps keep the order the request lists them" in m["order"]
    readme = (pkg / "README.md").read_text()
    for text in [*m["features"].values(), m["order"], m["time"], m["candidates"]]:
        assert text in readme
    # a reader that records its rules: MovieLens's like/other and first genre, through the
    # same exporter function
    from atrank_export.export import input_mapping
    from atrank_export.model import amazon_preset
    from atrank_export.readers.movielens import FEATURE_SOURCES, RATING_RULES

    c = amazon_preset(10, 3, 2)
    got = input_mapping(c, {"actions": ["like", "other"], "action_rules": RATING_RULES,
                            "feature_sources": FEATURE_SOURCES})
    assert got["actions"] == {"like": "rating >= 4", "other": "rating < 4"}
    assert got["features"]["item.category"].startswith("the movie's first genre")
    assert "unknown (row 0)" in got["features"]["item.id"]
    c.hash_buckets = {"item_id": 5}
    hashed = input_mapping(c, {"actions": ["like"]})
    assert "one of 5 buckets" in hashed["features"]["item.id"]
    assert hashed["actions"] == {"like": "no rule recorded by the reader"}


def test_placeholder_tracing_writes_the_same_package(trained, tmp_path, monkeypatch):
    """Tables traced as small placeholders and written from the model's tensors
    (``_placeholder_tables``; the fixture's item table and bias have 121 rows > 64) give the
    same bytes as tracing the real tables, the plain path (placeholders off)."""
    import atrank_export.export as ex
    monkeypatch.setattr(ex, "PLACEHOLDER_ROWS", 10**9)
    assert main(["export", "--checkpoint", str(trained / "run" / "checkpoint.pt"),
                 "--out", str(tmp_path / "plain")]) == 0
    ckpt = load_checkpoint(trained / "run" / "checkpoint.pt")
    rows = ckpt["model_config"]["table_sizes"]["item_id"] + 1
    assert rows > 64
    for f in ("tables.bin", "model.onnx", "encoder.onnx", "scorer.onnx", "spec.json"):
        assert (tmp_path / "plain" / f).read_bytes() == (trained / "pkg" / f).read_bytes(), f


def test_catalog_keys_file_is_the_vocabulary_only_when_the_keys_are_equal():
    from types import SimpleNamespace

    from atrank_export.export import catalog_keys_file
    config = SimpleNamespace(table=lambda g, f: f"{g}_{f}")
    ckpt = {"vocabs": {"item_id": ["a", "b", "c"]}}
    assert catalog_keys_file("item", ["a", "b", "c"], config, ckpt) == "vocab/item_id.atv"
    for other in (["a", "b"], ["a", "b", "d"], ["a", "b", "c", "d"]):
        assert catalog_keys_file("item", other, config, ckpt) == "catalog/item.atv"
    assert catalog_keys_file("shop", ["a", "b", "c"], config, ckpt) == "catalog/shop.atv"
