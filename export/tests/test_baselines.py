"""Baselines run through the ATRank harness (compare.py has its own tests: test_compare.py)."""

import numpy as np
import pytest
import torch

from atrank_export.baselines import (
    BPRMF,
    DIN,
    GRU,
    MODELS,
    BaselineConfig,
    MeanPool,
    SASRec,
    UserSplit,
)
from atrank_export.numerics import U, baseline_logit_atol
from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items
from atrank_export.train import evaluate, to_tensors, train


@pytest.fixture(scope="module")
def split():
    return build_split(synthetic_items(n_users=40, seed=7), max_history=10, seed=7,
                       embedding_dim=8)


def config(split, **options):
    return BaselineConfig.of(split.config, **options)


def max_len(sp, cfg):
    return sp.config.group(cfg.target).max_history


FACTORIES = {
    "BPR": lambda cfg, sp: BPRMF(cfg, n_users=len(sp.users), dim=cfg.hidden),
    "mean-pool": lambda cfg, sp: MeanPool(cfg),
    "DIN": lambda cfg, sp: DIN(cfg, chunk=7),            # small chunk: exercise chunking
    "DIN-none": lambda cfg, sp: DIN(cfg, normalize="none"),
    "GRU": lambda cfg, sp: GRU(cfg),
    "SASRec": lambda cfg, sp: SASRec(cfg, max_len(sp, cfg)),          # paper: dropout 0.2
    "SASRec-2heads": lambda cfg, sp: SASRec(cfg, max_len(sp, cfg), blocks=1, heads=2),
}
HISTORY = ["mean-pool", "DIN", "GRU", "SASRec"]       # the baselines that read the history


def make(name, split, **options):
    torch.manual_seed(0)
    model = FACTORIES[name](config(split, **options), split)
    sp = UserSplit.of(split) if name == "BPR" else split
    return model.eval(), sp


def sasrec_roundings(model, length):
    """D for a SASRec logit at history length L (counted as numerics.py does: every reduction
    of length n as n roundings, every element-wise operation as one), W = 2E, d = W / heads:

    * input: + action, + time, + position, * mask: 4;
    * per block: LayerNorm (2W + 5), q/k/v (W + 1), q.k and scale (d + 1), + mask (1),
      softmax (2L + 3), * mask (1), weights @ v (L), residual (1); LayerNorm (2W + 5), ff1
      (W + 1), ReLU (1), ff2 (W + 1), residual (1), * mask (1): 7W + d + 3L + 23;
    * final LayerNorm (2W + 5), * mask, * (len > 0), u . c (W), + item bias: 3W + 8."""
    w = 2 * model.config.embedding_dim
    d = w // model.blocks[0].heads if len(model.blocks) else w
    return 4 + len(model.blocks) * (7 * w + d + 3 * length + 23) + 3 * w + 8


def sasrec_magnitudes(model, x):
    """M per logit (float64): |item_bias| + sum_i |u_i| |c_i| (docs/tolerances.md §1, as
    ATRank's ranking "dot")."""
    unpacked = model.config.unpack(x)
    with torch.no_grad():
        u = model.user_vector(*unpacked[:5]).double().abs()
        c = model.vectors(*unpacked[5:]).double().abs()
        bias = model.item_bias[unpacked[5]].double().abs()
    return bias + (c * u[:, None, :]).sum(-1)


def logit_atol(model, *inputs):
    """numerics.baseline_logit_atol, and for SASRec (which it does not know) the same bound
    2 D U max M, D = ``sasrec_roundings`` at each input's length, M = ``sasrec_magnitudes``.

    With use_action/use_time the history vectors get two more element-wise additions than
    the counts in baseline_logit_atol; they are computed from the same operands in the same
    order in both compared evaluations (an element-wise op does not depend on the padding or
    the batch), so they give bit-identical results and add nothing to the difference."""
    if not isinstance(model, SASRec):
        return baseline_logit_atol(model, *inputs)
    return max(2 * sasrec_roundings(model, int(x[f"{model.config.target}_id"].shape[1])) * U
               * float(sasrec_magnitudes(model, x).max()) for x in inputs)


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
    tol = logit_atol(model, to_tensors(batch), to_tensors(padded(batch, 13)))
    torch.testing.assert_close(out, longer, atol=tol, rtol=0)
    # one user alone gives the same logits as inside a batch of differently long histories
    with torch.no_grad():
        alone = model(**to_tensors(sp.batch(rows[2:3], cands[2:3])))
    torch.testing.assert_close(alone[0], out[2], atol=tol, rtol=0)


@pytest.mark.parametrize("name", ["BPR", "mean-pool", "DIN", "GRU", "SASRec"])
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


ROWS = np.array([[0, 0], [1, 3], [2, 6], [3, 9], [4, 10]], dtype=np.int64)  # empty .. max


def some_batch(sp, n_cands=20):
    cands = np.tile(np.arange(1, n_cands + 1, dtype=np.int64), (len(ROWS), 1))
    batch = sp.batch(ROWS, cands)
    assert batch["item_len"].tolist() == [0, 3, 6, 9, 10]          # 10: max_history
    return batch


def real(batch):
    """[B,L] bool: the real (non-padding) positions."""
    return np.arange(batch["item_id"].shape[1])[None, :] < batch["item_len"][:, None]


def perturbed(batch, split, key):
    """The batch with ``key`` (item_action or item_time) changed at every real position."""
    out = dict(batch)
    v = batch[key]
    if key == "item_action":
        new = v % split.config.n_actions + 1                    # 1 <-> 2, ... (never 0)
    else:
        new = (v + 1) % split.config.n_time_buckets
    out[key] = np.where(real(batch), new, v)
    assert (out[key] != v).sum() == real(batch).sum()
    return out


def logits(model, batch):
    with torch.no_grad():
        return model(**to_tensors(batch))


@pytest.mark.parametrize("name", HISTORY)
@pytest.mark.parametrize("which", ["action", "time"])
def test_action_and_time_options(name, which, split):
    on, sp = make(name, split, **{f"use_{which}": True})
    other = "time" if which == "action" else "action"
    batch = some_batch(sp)
    out = logits(on, batch)
    changed = logits(on, perturbed(batch, split, f"item_{which}"))
    # flag on: the input matters, by more than two float32 evaluations could differ by
    tol = logit_atol(on, to_tensors(batch), to_tensors(perturbed(batch, split, f"item_{which}")))
    has_history = torch.from_numpy(batch["item_len"] > 0)
    assert ((out - changed).abs().amax(1)[has_history] > tol).all()
    # ... and an empty history has nothing to change
    assert torch.equal(out[~has_history], changed[~has_history])
    # the other input is not read at all
    assert torch.equal(out, logits(on, perturbed(batch, split, f"item_{other}")))
    # candidates have no action or time: their vectors are [item_emb, cate_emb] only
    cid, ccat = (torch.from_numpy(batch[k]) for k in ("cand_id", "cand_category"))
    assert torch.equal(on.vectors(cid, ccat),
                       torch.cat([on.item_emb.weight[cid], on.cate_emb.weight[ccat]], -1))


@pytest.mark.parametrize("name", HISTORY)
def test_options_off_do_not_read_action_or_time(name, split):
    off, sp = make(name, split)
    batch = some_batch(sp)
    both = perturbed(perturbed(batch, split, "item_action"), split, "item_time")
    assert torch.equal(logits(off, batch), logits(off, both))
    assert not hasattr(off, "action_emb") and not hasattr(off, "time_emb")


@pytest.mark.parametrize("name", HISTORY + ["SASRec-2heads"])
def test_padding_invariance_with_the_options_on(name, split):
    model, sp = make(name, split, use_action=True, use_time=True, dropout=0.3)
    batch = some_batch(sp)
    out = logits(model, batch)
    assert torch.isfinite(out).all()
    # zero padding, and garbage in every padded input (ids, categories, actions, time buckets)
    rng = np.random.default_rng(0)
    longer = padded(batch, 13)
    garbage = dict(longer)
    pad = ~real(longer)
    highs = {"item_id": split.n_items + 1, "item_category": int(batch["item_category"].max()) + 1,
             "item_action": split.config.n_actions + 1, "item_time": split.config.n_time_buckets}
    for k, high in highs.items():
        garbage[k] = np.where(pad, rng.integers(0, high, size=pad.shape), longer[k])
    assert (garbage["item_time"][pad] > 0).any() and (garbage["item_action"][pad] > 0).any()
    tol = logit_atol(model, to_tensors(batch), to_tensors(longer), to_tensors(garbage))
    torch.testing.assert_close(logits(model, longer), out, atol=tol, rtol=0)
    torch.testing.assert_close(logits(model, garbage), out, atol=tol, rtol=0)


@pytest.mark.parametrize("name", HISTORY)
def test_dropout(name, split):
    def build(**options):                  # through MODELS: SASRec's dropout = cfg.dropout
        torch.manual_seed(0)
        return MODELS[name](config(split, use_action=True, use_time=True, **options),
                            split).eval()

    model, plain, sp = build(dropout=0.3), build(), split
    batch = to_tensors(some_batch(sp))
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    assert {m.p for m in plain.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    with torch.no_grad():
        first, second = model(**batch), model(**batch)
        reference = plain(**batch)                 # same seed, same weights, no dropout
        model.train()
        third, fourth = model(**batch), model(**batch)
    # eval mode: deterministic, and exactly the model without dropout
    assert torch.equal(first, second) and torch.equal(first, reference)
    # train mode: two calls draw different masks, and differ from eval mode
    assert not torch.equal(third, fourth) and not torch.equal(third, first)
    assert torch.isfinite(third).all()


@pytest.mark.parametrize("name", HISTORY)
def test_dropout_is_on_the_history_vectors_and_the_head(name, split):
    """In training mode the history vectors themselves (SASRec: its embedding input) are
    dropped out, padding stays exactly zero, and the MLP head drops out its hidden layer."""
    torch.manual_seed(0)
    model = MODELS[name](config(split, use_action=True, use_time=True, dropout=0.5), split)
    batch = to_tensors(some_batch(split))
    hist = model.config.unpack(batch)[:4]
    mask = torch.from_numpy(real(some_batch(split))).float()
    seen = []
    if isinstance(model, SASRec):          # the input of the first block
        hook = model.blocks[0].register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        for mode in (False, True):
            model.train(mode)
            if isinstance(model, SASRec):
                model.sequence_outputs(**batch), model.sequence_outputs(**batch)
            else:
                seen += [model.history(*hist, mask), model.history(*hist, mask)]
    if isinstance(model, SASRec):
        hook.remove()
    evals, trains = seen[:2], seen[2:]
    assert torch.equal(*evals) and not torch.equal(*trains)
    for h in trains:
        assert (h[mask == 0] == 0).all()                           # padding stays zero
        assert (h[mask == 1] == 0).any()                           # some entries zeroed
    if isinstance(model, SASRec):
        return                                                     # no MLP head
    u = torch.randn(3, 4, 2 * model.config.embedding_dim)
    c = torch.randn(3, 4, 2 * model.config.embedding_dim)
    with torch.no_grad():
        model.train(False)
        assert torch.equal(model.head_logits(u, c), model.head_logits(u, c))
        model.train(True)
        assert not torch.equal(model.head_logits(u, c), model.head_logits(u, c))


def test_sasrec_positions_count_from_the_newest_behavior(split):
    """Without blocks the output at a position is LayerNorm(behavior + position), so the same
    behavior as the newest of a 1-long and of a 2-long history must give the same output
    (position 0 both times), and as the older of two a different one (position 1).

    Both rows are in one batch and go through the same per-vector operations on the same
    values; two float32 evaluations of one LayerNorm output element u_i = g_i xhat_i + b_i
    differ by at most 2 (2W + 6) U M, M = max |g_i xhat_i| + |b_i| (2W + 5 roundings for
    LayerNorm, 1 for the position sum; docs/tolerances.md §1), bounded here from the output:
    |g_i xhat_i| <= |u_i| + |b_i|."""
    torch.manual_seed(0)
    cfg = config(split)
    model = SASRec(cfg, max_len(split, cfg), blocks=0).eval()
    a, b = 5, 17                                          # two item rows
    cat = split.item_feats[:, 1]
    x = {"item_id": torch.tensor([[a, 0], [b, a], [a, b]]),
         "item_category": torch.tensor([[cat[a], 0], [cat[b], cat[a]], [cat[a], cat[b]]]),
         "item_action": torch.ones(3, 2, dtype=torch.int64),
         "item_time": torch.zeros(3, 2, dtype=torch.int64),
         "item_len": torch.tensor([1, 2, 2]),
         "cand_id": torch.tensor([[a]] * 3), "cand_category": torch.tensor([[cat[a]]] * 3)}
    with torch.no_grad():
        out = model.sequence_outputs(**x)
    w = 2 * cfg.embedding_dim
    beta = float(model.ln.bias.detach().abs().max())
    m = float(out.abs().max()) + 2 * beta          # >= max |g_i xhat_i| + |b_i|
    tol = 2 * (2 * w + 6) * U * m
    newest_alone, newest_of_two, oldest_of_two = out[0, 0], out[1, 1], out[2, 0]
    torch.testing.assert_close(newest_of_two, newest_alone, atol=tol, rtol=0)
    assert (oldest_of_two - newest_alone).abs().max() > 100 * tol


def test_bpr_ignores_the_history_options(split):
    plain, sp = make("BPR", split)
    options, _ = make("BPR", split, use_action=True, use_time=True, dropout=0.5)
    batch = to_tensors(sp.batch(ROWS, np.tile(np.arange(1, 21), (len(ROWS), 1))))
    options.train()
    with torch.no_grad():
        assert torch.equal(plain(**batch), options(**batch))


def test_config_options_and_models(split):
    cfg = config(split)
    assert (cfg.use_action, cfg.use_time, cfg.dropout) == (False, False, 0.0)
    assert cfg.n_time_buckets == split.config.n_time_buckets == 13
    cfg = config(split, use_action=True, use_time=True, dropout=0.25)
    assert (cfg.use_action, cfg.use_time, cfg.dropout) == (True, True, 0.25)
    assert BaselineConfig.of(split.config, 4).embedding_dim == 4        # positional arg kept
    assert set(MODELS) == {"BPR", "mean-pool", "DIN", "GRU", "SASRec"}
    types = {"BPR": BPRMF, "mean-pool": MeanPool, "DIN": DIN, "GRU": GRU, "SASRec": SASRec}
    for name, factory in MODELS.items():
        sp = UserSplit.of(split) if name == "BPR" else split
        torch.manual_seed(0)
        model = factory(cfg, sp).eval()
        assert type(model) is types[name]
        out = logits(model, sp.batch(ROWS, np.tile(np.arange(1, 8), (len(ROWS), 1))))
        assert out.shape == (len(ROWS), 7) and torch.isfinite(out).all()
    sasrec = MODELS["SASRec"](cfg, split)
    assert sasrec.max_len == split.config.group("item").max_history == 10
    assert sasrec.pos_emb.num_embeddings == 10 and len(sasrec.blocks) == 2
    assert sasrec.blocks[0].heads == 1 and sasrec.blocks[0].drop.p == 0.25


@pytest.mark.parametrize("name", ["SASRec", "SASRec-2heads"])
def test_sasrec_is_causal(name, split):
    """The output at positions 0..i does not depend on the behaviors at j > i.

    Exact equality is right here: for a query i < j the key j (and every key after it) is
    masked, so its softmax term is exp(-1e9 + ...) = 0 exactly in float32 and is then
    multiplied by 0; a weight of exactly 0 adds exactly 0 to weights @ v (x + 0 = x, in any
    summation order), and every other operand of positions 0..i is bit-identical (same
    shapes, so the same kernels and summation order). The positions themselves depend on
    the history's length only, which does not change here."""
    model, sp = make(name, split, use_action=True, use_time=True)
    batch = some_batch(sp)
    row = int(np.argmax(batch["item_len"]))
    n = int(batch["item_len"][row])
    with torch.no_grad():
        out = model.sequence_outputs(**to_tensors(batch))
    assert out.shape == (*batch["item_id"].shape, 2 * model.config.embedding_dim)
    assert (out[~torch.from_numpy(real(batch))] == 0).all()             # padding: zero
    for j in (1, n // 2, n - 1):
        other = {k: v.copy() for k, v in batch.items()}
        other["item_id"][row, j] = other["item_id"][row, j] % split.n_items + 1
        other["item_category"][row, j] = other["item_category"][row, j] % 6 + 1
        other["item_action"][row, j] = other["item_action"][row, j] % 2 + 1
        other["item_time"][row, j] = (other["item_time"][row, j] + 1) % 13
        with torch.no_grad():
            changed = model.sequence_outputs(**to_tensors(other))
        assert torch.equal(changed[row, :j], out[row, :j])
        # not vacuous: position j itself (and every later real one) does change
        assert (changed[row, j:n] != out[row, j:n]).any(-1).all()
        keep = torch.arange(len(ROWS)) != row
        assert torch.equal(changed[keep], out[keep])        # other users untouched


def test_sasrec_scores_by_dot_product_with_many_candidates(split):
    """logit = item_bias[c] + <u, [item_emb(c), cate_emb(c)]>, u the encoder's output at the
    last real position (0 for an empty history), for N = 1200 candidates at once.

    The two sides share u bit for bit (the same encoder call on the same tensors); they
    differ only in the length-W dot product and the bias (W + 1 roundings each side), so
    they agree within 2 (W + 1) U M, M = |b| + sum |u| |c| (docs/tolerances.md §1)."""
    model, sp = make("SASRec", split, use_action=True, use_time=True)
    cands = np.tile(np.arange(1200, dtype=np.int64) % split.n_items + 1, (len(ROWS), 1))
    x = to_tensors(sp.batch(ROWS, cands))
    with torch.no_grad():
        out = model(**x)
        seq = model.sequence_outputs(**x)
        c = model.vectors(x["cand_id"], x["cand_category"])
        u = model.user_vector(*model.config.unpack(x)[:5])
    assert out.shape == (len(ROWS), 1200) and torch.isfinite(out).all()
    lens = x["item_len"]
    assert torch.equal(u[lens > 0], seq[torch.arange(len(ROWS)), lens - 1][lens > 0])
    assert torch.equal(u[0], torch.zeros_like(u[0])) and lens[0] == 0
    assert torch.equal(out[0], model.item_bias[x["cand_id"][0]].detach())  # empty: the bias
    by_hand = model.item_bias[x["cand_id"]].detach() + (c * u[:, None, :]).sum(-1)
    w = 2 * model.config.embedding_dim
    tol = 2 * (w + 1) * U * float(sasrec_magnitudes(model, x).max())
    torch.testing.assert_close(out, by_hand, atol=tol, rtol=0)
    # the same candidate scores the same alone in a small call (encode once per row)
    with torch.no_grad():
        few = model(**to_tensors(sp.batch(ROWS, cands[:, :5])))
    torch.testing.assert_close(few, out[:, :5], atol=tol, rtol=0)
    assert (out[1:].std(1) > 0).all()                    # the candidates are told apart


def test_bpr_without_user_falls_back_to_history(split):
    model, _ = make("BPR", split)
    rows = np.array([[1, 4]], dtype=np.int64)
    cands = np.arange(1, 6, dtype=np.int64)[None]
    with torch.no_grad():
        out = model(**to_tensors(split.batch(rows, cands)))       # plain Split: no user
    assert out.shape == (1, 5) and torch.isfinite(out).all()
