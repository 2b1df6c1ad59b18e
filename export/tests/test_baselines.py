"""Baselines run through the ATRank harness; compare.py end to end on synthetic data."""

import numpy as np
import pytest
import torch

from atrank_export.baselines import BPRMF, DIN, GRU, BaselineConfig, MeanPool, UserSplit
from atrank_export.numerics import baseline_logit_atol
from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items
from atrank_export.train import evaluate, to_tensors, train


@pytest.fixture(scope="module")
def split():
    return build_split(synthetic_items(n_users=40, seed=7), max_history=10, seed=7,
                       embedding_dim=8)


def config(split):
    return BaselineConfig.of(split.config)


FACTORIES = {
    "BPR": lambda cfg, sp: BPRMF(cfg, n_users=len(sp.users), dim=cfg.hidden),
    "mean-pool": lambda cfg, sp: MeanPool(cfg),
    "DIN": lambda cfg, sp: DIN(cfg, chunk=7),            # small chunk: exercise chunking
    "DIN-none": lambda cfg, sp: DIN(cfg, normalize="none"),
    "GRU": lambda cfg, sp: GRU(cfg),
}


def make(name, split):
    torch.manual_seed(0)
    model = FACTORIES[name](config(split), split)
    sp = UserSplit.of(split) if name == "BPR" else split
    return model.eval(), sp


def padded(batch, extra):
    out = dict(batch)
    for k in ("item_id", "item_category", "item_action", "item_time"):
        out[k] = np.pad(batch[k], ((0, 0), (0, extra)))
    return out


@pytest.mark.parametrize("name", list(FACTORIES))
def test_shape_finite_empty_and_padding_invariance(name, split):
    model, sp = make(name, split)
    rows = np.array([[0, 0], [1, 3], [2, 6], [3, 9]], dtype=np.int64)   # incl. empty history
    cands = np.tile(np.arange(1, 21, dtype=np.int64), (4, 1))
    batch = sp.batch(rows, cands)
    assert batch["item_len"][0] == 0
    with torch.no_grad():
        out = model(**to_tensors(batch))
        longer = model(**to_tensors(padded(batch, 13)))
    assert out.shape == (4, 20) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # two float32 evaluations of the same logits: 2 D U max M (docs/tolerances.md)
    tol = baseline_logit_atol(model, to_tensors(batch), to_tensors(padded(batch, 13)))
    torch.testing.assert_close(out, longer, atol=tol, rtol=0)
    # one user alone gives the same logits as inside a batch of differently long histories
    with torch.no_grad():
        alone = model(**to_tensors(sp.batch(rows[2:3], cands[2:3])))
    torch.testing.assert_close(alone[0], out[2], atol=tol, rtol=0)


@pytest.mark.parametrize("name", ["BPR", "mean-pool", "DIN", "GRU"])
def test_learns_on_synthetic(name, split):
    sp = UserSplit.of(split) if name == "BPR" else split
    before_model, _ = make(name, split)
    before = evaluate(before_model, sp, sp.train[::3])["all_items_auc"]
    model, m = train(sp, config(split), epochs=3, batch_size=32, lr=1e-2, seed=3,
                     progress=False, log=lambda s: None,
                     model_factory=lambda cfg: FACTORIES[name](cfg, split),
                     loss="bpr" if name == "BPR" else "bce")
    losses = [e["loss"] for e in m["epochs"]]
    assert losses[-1] < losses[0]
    after = evaluate(model, sp, sp.train[::3])["all_items_auc"]
    assert after > max(0.55, before)
    assert m["model"] == type(model).__name__ and np.isfinite(m["test"]["all_items_auc"])


def test_bpr_without_user_falls_back_to_history(split):
    model, _ = make("BPR", split)
    rows = np.array([[1, 4]], dtype=np.int64)
    cands = np.arange(1, 6, dtype=np.int64)[None]
    with torch.no_grad():
        out = model(**to_tensors(split.batch(rows, cands)))       # plain Split: no user
    assert out.shape == (1, 5) and torch.isfinite(out).all()


def test_compare_end_to_end(tmp_path):
    from atrank_export.compare import main

    out = tmp_path / "results.md"
    assert main(["--data", "synthetic", "--max-users", "30", "--seeds", "2", "--epochs", "1",
                 "--embedding-dim", "8", "--max-history", "10", "--out", str(out),
                 "--json", str(tmp_path / "runs.json"), "--multigroup-seeds", "2",
                 "--multigroup-users", "25", "--multigroup-epochs", "1"]) == 0
    text = out.read_text()
    for name in ["ATRank", "BPR", "mean-pool", "DIN", "GRU", "multi-group", "item-only"]:
        assert f"| {name} |" in text
    assert "Paired difference multi-group − item-only" in text
    assert "all-items AUC" in text and "±" in text
    png = tmp_path / "training-curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reading = tmp_path / "reading.md"
    reading.write_text("Nothing to read on 30 synthetic users.\n")
    again = tmp_path / "again.md"
    assert main(["--from-json", str(tmp_path / "runs.json"), "--out", str(again),
                 "--reading", str(reading)]) == 0
    assert again.read_text().startswith(text.rstrip()) and "## Reading" in again.read_text()
    # Rerunning one model reuses the others' runs from the dump.
    merged = tmp_path / "merged.md"
    assert main(["--data", "synthetic", "--max-users", "30", "--seeds", "2", "--epochs", "1",
                 "--embedding-dim", "8", "--max-history", "10", "--models", "ATRank",
                 "--reuse", str(tmp_path / "runs.json"), "--multigroup-seeds", "0",
                 "--out", str(merged)]) == 0
    for name in ["ATRank", "BPR", "mean-pool", "DIN", "GRU"]:
        assert f"| {name} |" in merged.read_text()
