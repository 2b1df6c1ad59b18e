import numpy as np
import pytest
import torch

from atrank_export.model import ATRank, GroupConfig, ModelConfig, amazon_preset
from atrank_export.numerics import logit_atol

N_ITEMS, N_CATES = 50, 7
NAMES = ["item_id", "item_category", "item_action", "item_time", "item_len", "cand_id",
         "cand_category"]


def inputs(x) -> dict:
    return dict(zip(NAMES, x, strict=True))


def atol(model, *xs) -> float:
    """Two float32 evaluations of the same logits (padding, batch, candidate grouping):
    2 D U max M (numerics.logit_atol; derivation in docs/tolerances.md)."""
    return logit_atol(model, *(inputs(x) for x in xs))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ATRank(amazon_preset(N_ITEMS, N_CATES, 2, embedding_dim=8, heads=2, ffn=16))
    # make biases and layer norms non-trivial so the checks are not vacuous
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def rand_inputs(b, length, n, lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = (lambda hi, *s: torch.randint(1, hi, s, generator=g))
    x = [r(N_ITEMS + 1, b, length), r(N_CATES + 1, b, length), r(3, b, length),
         r(13, b, length), torch.tensor(lens), r(N_ITEMS + 1, b, n), r(N_CATES + 1, b, n)]
    mask = torch.arange(length)[None, :] < x[4][:, None]
    for k in range(4):
        x[k] = torch.where(mask, x[k], 0)
    return x


@torch.no_grad()
def test_padding_invariance(model):
    x = rand_inputs(3, 6, 5, [6, 3, 1])
    ref = model(**inputs(x))
    padded = [torch.cat([t, torch.zeros(t.shape[0], 7, dtype=torch.long)], 1) for t in x[:4]]
    out = model(**inputs([*padded, *x[4:]]))
    tol = atol(model, x, [*padded, *x[4:]])
    assert torch.allclose(out, ref, atol=tol, rtol=0)
    # garbage (non-zero) values in padded positions are ignored as well
    garbage = [torch.cat([t, torch.full((t.shape[0], 7), 2, dtype=torch.long)], 1)
               for t in x[:4]]
    assert torch.allclose(model(**inputs([*garbage, *x[4:]])), ref, atol=tol, rtol=0)


@torch.no_grad()
def test_empty_history_finite_and_length_free(model):
    x = rand_inputs(2, 1, 4, [0, 0])
    out = model(**inputs(x))
    assert out.dtype == torch.float32 and out.shape == (2, 4)
    assert torch.isfinite(out).all()
    x5 = rand_inputs(2, 5, 4, [0, 0])
    x5[5], x5[6] = x[5], x[6]
    x5 = [torch.full_like(t, 2) if k < 4 else t for k, t in enumerate(x5)]   # garbage
    assert torch.allclose(model(**inputs(x5)), out, atol=atol(model, x, x5), rtol=0)


@torch.no_grad()
def test_encode_once_equals_one_candidate_at_a_time(model):
    x = rand_inputs(3, 6, 5, [6, 2, 0])
    all_at_once = model(**inputs(x))
    tol = atol(model, x)
    for j in range(5):
        single = model(**inputs([*x[:5], x[5][:, j:j + 1], x[6][:, j:j + 1]]))
        assert torch.allclose(single[:, 0], all_at_once[:, j], atol=tol, rtol=0)


@torch.no_grad()
def test_batch_invariance(model):
    x = rand_inputs(3, 6, 5, [6, 2, 4])
    together = model(**inputs(x))
    tol = atol(model, x)
    for b in range(3):
        length = int(x[4][b])
        alone = model(**inputs([*[t[b:b + 1, :max(1, length)] for t in x[:4]], x[4][b:b + 1],
                                x[5][b:b + 1], x[6][b:b + 1]]))
        assert np.allclose(alone.numpy()[0], together.numpy()[b], atol=tol, rtol=0)


def test_config_checks():
    with pytest.raises(ValueError, match="candidate width"):
        ATRank(ModelConfig([GroupConfig("item", ["id", "category"])],
                           {"item_id": 5, "category": 2}, 2, embedding_dim=8, hidden=32))
    with pytest.raises(ValueError, match="ranking"):
        ATRank(amazon_preset(5, 2, 2, embedding_dim=8).__class__(
            **{**amazon_preset(5, 2, 2, embedding_dim=8).__dict__, "ranking": "cosine"}))


def test_tables_are_sparse_with_hashed_rows_and_the_step_gradient_is_o_batch():
    """Every table is nn.Embedding(sparse=True) with size + 1 + hash_buckets rows; a backward
    pass (loss + the touched-rows L2) leaves sparse gradients holding only touched rows."""
    cfg = amazon_preset(100_000, 7, 2, embedding_dim=8, heads=2, ffn=16)
    cfg.hash_buckets = {"item_id": 16}
    m = ATRank(cfg)
    assert m.tables["item_id"].weight.shape == (100_000 + 1 + 16, 8)
    assert m.item_bias.weight.shape == (100_000 + 1 + 16, 1)
    x = inputs(rand_inputs(4, 6, 3, [6, 3, 1, 0]))
    x["cand_id"][0, 0] = 100_000 + 1 + 15                     # the last hashed row
    (m(**x).sum() + m.l2_penalty(x)).backward()
    touched = torch.unique(torch.cat([x["item_id"].ravel(), x["cand_id"].ravel()]))
    for p in (m.tables["item_id"].weight, m.item_bias.weight):
        g = p.grad.coalesce()
        assert g.is_sparse
        rows = g.indices()[0]
        assert set(rows.tolist()) <= set(touched.tolist())
        assert len(rows) <= len(touched)          # O(batch) rows, never the whole table


def test_fused_evaluation_attention_matches_the_explicit_one():
    """train.evaluate's fused kernel computes the attention of the exported graph: same
    logits, empty histories included, within the float32 bound of docs/tolerances.md."""
    from atrank_export.model import ATRank, amazon_preset, fused_attention
    from atrank_export.numerics import logit_atol

    torch.manual_seed(3)
    model = ATRank(amazon_preset(40, 5, 2, max_history=9, embedding_dim=8)).eval()
    b, n, length = 5, 30, 9
    g = torch.Generator().manual_seed(4)
    x = {"item_id": torch.randint(1, 41, (b, length), generator=g),
         "item_category": torch.randint(1, 6, (b, length), generator=g),
         "item_action": torch.randint(1, 3, (b, length), generator=g),
         "item_time": torch.randint(0, 13, (b, length), generator=g),
         "item_len": torch.tensor([0, 1, 4, 9, 7]),
         "cand_id": torch.randint(1, 41, (b, n), generator=g),
         "cand_category": torch.randint(1, 6, (b, n), generator=g)}
    with torch.no_grad():
        plain = model(**x)
        with fused_attention(model):
            assert all(m.fused for m in (model.self_att, model.vanilla_att))
            fused = model(**x)
        assert not model.self_att.fused                  # reset on exit
    assert torch.isfinite(fused).all()
    # Same math, another summation order (the kernel's online softmax rescales once per
    # block of keys; L = 9 is one block): logit_atol's count of roundings covers it. Row 0
    # (empty history) must agree too: its attention output is 0 on both paths.
    torch.testing.assert_close(fused, plain, rtol=0, atol=logit_atol(model, x))


def test_serving_form_attention_matches_the_training_one():
    """The exported graphs' attention (mask bias as a score column, zeroed values) gives the
    training form's logits, empty and partial histories included, within the float32 bound of
    docs/tolerances.md; the context restores the training form."""
    from atrank_export.model import ATRank, amazon_preset, serving_form
    from atrank_export.numerics import logit_atol

    torch.manual_seed(5)
    model = ATRank(amazon_preset(40, 5, 2, max_history=9, embedding_dim=8)).eval()
    b, n, length = 5, 30, 9
    g = torch.Generator().manual_seed(6)
    x = {"item_id": torch.randint(1, 41, (b, length), generator=g),
         "item_category": torch.randint(1, 6, (b, length), generator=g),
         "item_action": torch.randint(1, 3, (b, length), generator=g),
         "item_time": torch.randint(0, 13, (b, length), generator=g),
         "item_len": torch.tensor([0, 1, 4, 9, 7]),
         "cand_id": torch.randint(1, 41, (b, n), generator=g),
         "cand_category": torch.randint(1, 6, (b, n), generator=g)}
    with torch.no_grad():
        plain = model(**x)
        with serving_form(model):
            assert all(m.serving for m in (model.self_att, model.vanilla_att))
            served = model(**x)
            # a padded behavior's content cannot leak in through the extra column
            y = dict(x, item_id=x["item_id"].clone())
            y["item_id"][2, 4:] = 7
            assert torch.equal(model(**y)[2], served[2])
        assert not model.self_att.serving and model.self_att._serving is None
    assert torch.isfinite(served).all()
    # Real keys: the extra score term is 1 * 0 (exact); padded keys weigh exp(MASK_FILL) = 0
    # on both paths, and row 0 (no behaviors) is 0 on both: the same roundings, so
    # logit_atol's count covers any difference in summation order.
    torch.testing.assert_close(served, plain, rtol=0, atol=logit_atol(model, x))
    # with weights where the ReLU'd scores are large, so that the masked columns matter
    with torch.no_grad():
        for m in (model.self_att, model.vanilla_att):
            m.q.weight.mul_(30.0)
            m.k.weight.mul_(30.0)
        plain = model(**x)
        with serving_form(model):
            served = model(**x)
    torch.testing.assert_close(served, plain, rtol=0, atol=logit_atol(model, x))
