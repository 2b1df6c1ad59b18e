"""The one trainer (single process and DDP), evaluation and the checkpoint the exporter reads.

Sparse training: embedding tables (``nn.Embedding(sparse=True)``, model.py) are updated by
``torch.optim.SparseAdam`` (lazy Adam: only the rows a batch touches get their moments and
values updated), every other parameter by Adam; the embedding L2 penalty covers only the rows
a batch touches (as the original code's L2 on the looked-up embeddings), and the gradient-norm
clip reads the sparse gradients' values. So a step costs O(batch), not O(vocabulary).

Each training sample is one (user history, target) position; the target and its fixed
negative are scored as the N = 2 candidates of one encode-once forward pass (labels 1, 0),
which is the same loss as two separate rows sharing a history, at half the encoding cost.
Model selection uses the validation split only; test is reported once, at the end.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import __version__
from .metrics import one_negative_auc, pos_vs_many_auc, recall_ndcg_at_k, roc_auc
from .model import ATRank, ModelConfig, fused_attention
from .split import DEFAULT_SEED, Split
from .train_state import LAST, check_resumable, load_train_state, save_train_state

CHECKPOINT_FORMAT = "atrank-checkpoint"
LABELS = torch.tensor([[1.0, 0.0]])    # (target, negative) of every training row


def setup_threads() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    n = int(os.environ.get("ATRANK_NUM_THREADS") or 0)   # e.g. set per process by DDP
    torch.set_num_threads(n if n > 0 else min(2, os.cpu_count() or 1))


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, rows: np.ndarray,
             batch_users: int = 32) -> dict:
    """Metrics on a validation/test array ([U,3]: user row, target position, negative).

    one_neg_auc: the paper's per-user AUC against the one fixed negative (ties lose);
    all_items_auc: per-user AUC of the target against every candidate the user never touched
    (``split.universe``: the vocabulary's rows, or every object of the target group, each
    universe row weighted by the number of untouched objects behind it), averaged over users; global_auc: ROC AUC over all (target, negative) scores
    pooled. recall_at_10 / ndcg_at_10: full-ranking Recall@10 (= HitRate@10, one target per
    user) and NDCG@10 of the target among the same candidates as all_items_auc (every item
    the user never touched, no sampling), averaged over users; the target's rank is
    1 + #(candidates scoring higher) + half the #(candidates scoring the same), i.e. ties
    get the average rank, as all_items_auc counts a tie one half (``metrics.target_rank``).
    Each user's history is encoded once; the candidates are every universe row and, last,
    the target itself with its catalog features (so a target out of the vocabulary is
    scored as the runtime would score it).
    """
    model.eval()
    cands = split.universe[1:]                         # [K, F]: candidate rows 1..K
    n_c = len(cands)
    counts = split.universe_count[1:].astype(np.float64)
    feats = split.config.group(split.config.target_group).features
    # the [B, heads, K, L] attention of one chunk stays around 2^18 * heads * L floats
    step = max(1, min(batch_users, (1 << 18) // max(1, n_c)))
    pos_s, neg_s, per_user, recall, ndcg = [], [], [], [], []
    for s in range(0, len(rows), step):
        chunk = rows[s:s + step]
        # batch() with no candidates: the history (and whatever a Split subclass adds)
        batch = split.batch(chunk[:, :2], np.zeros((len(chunk), 0), dtype=np.int64))
        tgt = split.target_candidates(chunk[:, :2])
        for k, f in enumerate(feats):
            batch[f"cand_{f}"] = np.ascontiguousarray(np.concatenate(
                [np.broadcast_to(cands[:, k], (len(chunk), n_c)), tgt[f"cand_{f}"]], axis=1),
                dtype=np.int64)
        batch = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in batch.items()}
        with fused_attention(model):
            scores = model(**to_tensors(batch)).numpy()
        for r, (user_row, _, neg) in enumerate(chunk):
            sc = scores[r]
            pos = sc[-1]
            pos_s.append(pos)
            neg_s.append(sc[neg - 1])
            w = counts.copy()
            w[split.interacted[user_row] - 1] -= split.interacted_count[user_row]
            negs = sc[:n_c]
            per_user.append(pos_vs_many_auc(pos, negs, w))
            rec, nd = recall_ndcg_at_k(pos, negs, 10, w)
            recall.append(rec)
            ndcg.append(nd)
    pos_s, neg_s = np.array(pos_s), np.array(neg_s)
    return {
        "users": len(rows),
        "one_neg_auc": one_negative_auc(pos_s, neg_s),
        "all_items_auc": float(np.mean(per_user)),
        "global_auc": roc_auc(np.r_[pos_s, neg_s],
                              np.r_[np.ones(len(pos_s)), np.zeros(len(neg_s))]),
        "recall_at_10": float(np.mean(recall)),
        "ndcg_at_10": float(np.mean(ndcg)),
    }


def fmt_metrics(m: dict) -> str:
    """One line of ``evaluate``'s metrics (Recall@10 / NDCG@10 only where present: a
    checkpoint saved before they existed has validation metrics without them)."""
    full = "".join(f" | {label} {m[key]:.4f}" for key, label in
                   (("recall_at_10", "Recall@10"), ("ndcg_at_10", "NDCG@10")) if key in m)
    return (f"one-neg AUC {m['one_neg_auc']:.4f} | all-items AUC {m['all_items_auc']:.4f} | "
            f"global ROC AUC {m['global_auc']:.4f}{full} ({m['users']} users)")


def l2_penalty(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Sum of squares of the embedding rows a batch touches: ``model.l2_penalty(batch)``, or
    None for a model without one."""
    if hasattr(model, "l2_penalty"):
        return model.l2_penalty(batch)
    return None


def sparse_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the model's sparse embeddings (their gradients are sparse)."""
    return [m.weight for m in model.modules()
            if isinstance(m, torch.nn.Embedding) and m.sparse]


class Optimizer:
    """SparseAdam on the sparse embeddings + Adam on the rest, as one optimizer (state_dict,
    load_state_dict, zero_grad, step)."""

    def __init__(self, model: torch.nn.Module, lr: float):
        sparse = sparse_parameters(model)
        ids = {id(p) for p in sparse}
        dense = [p for p in model.parameters() if id(p) not in ids]
        self.opts = []
        if dense:
            self.opts.append(torch.optim.Adam(dense, lr=lr))
        if sparse:
            self.opts.append(torch.optim.SparseAdam(sparse, lr=lr))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict) -> None:
        for o, st in zip(self.opts, state["optimizers"], strict=True):
            o.load_state_dict(st)


def clip_grad_norm(parameters, max_norm: float) -> float:
    """``clip_grad_norm_`` for dense and sparse gradients: the global 2-norm over every
    gradient (a sparse one's values, coalesced, so rows looked up twice count once)."""
    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return float(total)


def sample_negatives(split: Split, rng: np.random.Generator, m: int) -> np.ndarray:
    """Universe rows for one step of the sampled softmax: all K rows when K <= m, else m rows
    drawn with replacement, uniformly over the target group's objects (a row with c objects
    c times as often)."""
    k = split.n_candidates
    if k <= m:
        return np.arange(1, k + 1, dtype=np.int64)
    cum = np.cumsum(split.universe_count[1:])
    return np.searchsorted(cum, rng.integers(0, cum[-1], size=m), side="right") + 1


def softmax_batch(split: Split, rows: np.ndarray, negatives: np.ndarray):
    """The training batch of ``rows`` with candidates [target, *negatives] (shared by every
    row), the logit offsets (log of each candidate's object count when all K rows are the
    negatives, so the softmax runs over objects, not rows; 0 when sampled) and the mask of
    negatives that are the row's own target (accidental hits, left out)."""
    batch = split.training_batch(rows)
    feats = split.config.group(split.config.target_group).features
    hit = np.ones((len(rows), len(negatives)), dtype=bool)
    for k, f in enumerate(feats):
        tgt = batch[f"cand_{f}"][:, :1]
        neg = split.universe[negatives, k]
        hit &= tgt == neg[None, :]
        batch[f"cand_{f}"] = np.ascontiguousarray(
            np.concatenate([tgt, np.broadcast_to(neg, (len(rows), len(negatives)))], axis=1))
    full = len(negatives) == split.n_candidates
    offset = (np.log(split.universe_count[negatives].astype(np.float32)) if full
              else np.zeros(len(negatives), np.float32))
    return batch, offset, hit


def batch_objective(net: torch.nn.Module, model: torch.nn.Module, split: Split,
                    rows: np.ndarray, loss: str = "bce", l2: float = 0.0,
                    parallel: Any = None, negatives: np.ndarray | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One training step's objective on a global batch of ``rows`` (training rows [B,3]).

    -> (the loss over this process's rows, the tensor to call ``backward()`` on, the number
    of rows it counts). ``net`` is ``model`` or its DDP wrapper. Without ``parallel`` the
    rows are all this process's and the tensor to backpropagate is the loss itself; with
    ``parallel`` this process keeps its shard and scales its loss so that DDP's averaged
    gradient is the gradient of the mean loss over the global batch (distributed.py)."""
    scale, n_rows = 1.0, len(rows)
    if parallel is not None:          # this process's rows; scale makes the DDP mean exact
        rows, scale, n_rows = parallel.shard(rows)
    if loss == "softmax":       # target vs shared negatives, accidental hits left out
        shared = getattr(model, "shared_logits", None) if parallel is None else None
        raw, offset, hit = softmax_batch(split, rows, negatives)
        if shared is not None:    # the model scores the shared negatives once (SASRec)
            cols = split.universe[negatives]
            own = {k: (np.ascontiguousarray(v[:, :1]) if k.startswith("cand_") else v)
                   for k, v in raw.items()}
            batch = to_tensors(own)
            neg_cat = cols[:, 1] if cols.shape[1] > 1 else np.zeros(len(negatives), np.int64)
            logits = shared(batch, torch.from_numpy(np.ascontiguousarray(cols[:, 0])),
                            torch.from_numpy(np.ascontiguousarray(neg_cat)))
        else:
            batch = to_tensors(raw)
            logits = net(**batch)
        neg = (logits[:, 1:] + torch.from_numpy(offset)).masked_fill(
            torch.from_numpy(hit), float("-inf"))
        value = -F.log_softmax(torch.cat([logits[:, :1], neg], dim=1), dim=1)[:, 0].mean()
    else:
        batch = to_tensors(split.training_batch(rows))
        logits = net(**batch)
        if loss == "bpr":
            value = -F.logsigmoid(logits[:, 0] - logits[:, 1]).mean()
        else:
            value = F.binary_cross_entropy_with_logits(logits, LABELS.expand_as(logits))
    if l2 > 0:
        reg = l2_penalty(model, batch)
        if reg is not None:
            value = value + l2 * reg / len(rows)
    return value, (value if scale == 1.0 else value * scale), n_rows


def train(split: Split, config: ModelConfig, epochs: int = 2, batch_size: int = 128,
          lr: float = 1e-3, l2: float = 1e-5, seed: int = DEFAULT_SEED,
          progress: bool = True, log: Callable[[str], None] = print,
          model_factory: Callable[[ModelConfig], torch.nn.Module] | None = None,
          loss: str = "bce", checkpoint_dir: Path | str | None = None, resume: bool = False,
          parallel: Any = None, patience: int | None = None,
          softmax_negatives: int = 1024, evaluate_test: bool = True) -> tuple[ATRank, dict]:
    """Train with (Sparse)Adam + BCE; keep the best state by validation all-items AUC.

    ``patience``: stop after that many epochs without a better validation all-items AUC
    (early stopping; ``epochs`` is the cap). ``loss="softmax"``: cross-entropy of the target
    against ``softmax_negatives`` negatives shared by the batch (every candidate row when
    there are no more than that, else sampled uniformly over objects; ``sample_negatives``).
    ``evaluate_test=False``: return the best state without touching test (tuning runs).

    ``model_factory(config)`` builds another model with ATRank's inputs (default ATRank); ``loss="bpr"`` uses the pairwise BPR loss -log sigmoid(s_pos - s_neg) instead
    of BCE on (target, negative).

    ``checkpoint_dir``: write ``last.pt`` (see train_state.py) at the end of every epoch;
    ``resume``: continue from it with the next epoch (``epochs`` is the total; starts fresh
    when there is no ``last.pt`` yet). ``parallel``: a ``distributed.Parallel`` (DDP): each
    process trains on its shard of every global batch of ``batch_size`` rows; only its main
    process evaluates, selects the epoch and writes ``last.pt``."""
    if loss not in ("bce", "bpr", "softmax"):
        raise ValueError(f"loss must be 'bce', 'bpr' or 'softmax', not {loss!r}")
    setup_threads()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = (model_factory or ATRank)(config)
    opt = Optimizer(model, lr)
    best: dict[str, Any] = {"score": -1.0, "state": copy.deepcopy(model.state_dict()),
                            "epoch": 0, "valid": None}
    history = []
    t_train = 0.0
    n_seen = 0
    start = 1
    hparams = {"config": config.to_dict(), "model": type(model).__name__, "loss": loss,
               "batch_size": batch_size, "lr": lr, "l2": l2, "seed": seed,
               "train_samples": len(split.train), "valid_users": len(split.valid)}
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        st = load_train_state(checkpoint_dir)
        if st is None:
            log(f"no {Path(checkpoint_dir) / LAST} yet: starting from epoch 1")
        else:
            check_resumable(st, hparams, Path(checkpoint_dir) / LAST)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            rng.bit_generator.state = st["numpy_rng"]
            torch.set_rng_state(st["torch_rng"])
            best, history = st["best"], st["history"]
            t_train, n_seen, start = st["train_seconds"], st["samples_seen"], st["epoch"] + 1
            log(f"resumed from {Path(checkpoint_dir) / LAST} after epoch {st['epoch']}")
    main = parallel is None or parallel.is_main
    net = model if parallel is None else parallel.wrap(model)
    for epoch in range(start, epochs + 1):
        net.train()
        order = rng.permutation(len(split.train))
        t0 = time.perf_counter()
        total = 0.0
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}",
                   unit="batch", disable=not progress, mininterval=1.0)
        for s in bar:
            negatives = (sample_negatives(split, rng, softmax_negatives)
                         if loss == "softmax" else None)
            value, scaled, n_rows = batch_objective(net, model, split,
                                                    split.train[order[s:s + batch_size]],
                                                    loss, l2, parallel, negatives)
            opt.zero_grad(set_to_none=True)
            scaled.backward()
            if parallel is not None:
                parallel.reduce_sparse()
            clip_grad_norm(model.parameters(), 5.0)
            opt.step()
            total += float(value.detach()) * n_rows
            if progress:
                bar.set_postfix(loss=f"{float(value.detach()):.4f}", refresh=False)
        dt = time.perf_counter() - t0
        t_train += dt
        n_seen += len(order)
        if parallel is not None:
            total = parallel.all_sum(total)
        if not main:                  # the main process evaluates and checkpoints
            history.append({"epoch": epoch, "loss": total / max(1, len(order)),
                            "seconds": dt, "samples_per_s": len(order) / dt, "valid": None})
            parallel.barrier()
            continue
        valid = evaluate(model, split, split.valid)
        history.append({"epoch": epoch, "loss": total / max(1, len(order)), "seconds": dt,
                        "samples_per_s": len(order) / dt, "valid": valid})
        log(f"epoch {epoch}: loss {total / max(1, len(order)):.4f}, {dt:.1f}s, "
            f"{len(order) / dt:.0f} samples/s ({2 * len(order) / dt:.0f} scored pairs/s)")
        log(f"  validation: {fmt_metrics(valid)}")
        if valid["all_items_auc"] > best["score"]:
            best = {"score": valid["all_items_auc"], "state": copy.deepcopy(model.state_dict()),
                    "epoch": epoch, "valid": valid}
        if checkpoint_dir is not None:
            save_train_state(checkpoint_dir, epoch=epoch, model=model, optimizer=opt,
                             numpy_rng_state=rng.bit_generator.state, best=best,
                             history=history, train_seconds=t_train, samples_seen=n_seen,
                             hparams=hparams)
        if parallel is not None:
            parallel.barrier()
        if patience is not None and epoch - best["epoch"] >= patience:
            log(f"early stop after epoch {epoch}: no better validation all-items AUC for "
                f"{patience} epochs")
            break
    test = None
    if main:
        model.load_state_dict(best["state"])
        log(f"best epoch {best['epoch']} (selected on validation all-items AUC)")
        log(f"  validation: {fmt_metrics(best['valid'])}" if best["valid"] else "  (no epochs)")
        if evaluate_test:
            test = evaluate(model, split, split.test)
            log(f"  test:       {fmt_metrics(test)}")
    metrics = {
        "best_epoch": best["epoch"], "selection": "validation all_items_auc",
        "valid": best["valid"], "test": test, "epochs": history,
        "train_samples": len(split.train),
        "train_seconds": t_train,
        "samples_per_s": n_seen / t_train if t_train else None,
        "config": config.to_dict(), "batch_size": batch_size, "lr": lr, "l2": l2, "seed": seed,
        "max_epochs": epochs, "patience": patience,
        # the best epoch is the last one allowed: more epochs might still have helped
        "best_at_cap": bool(history) and best["epoch"] == epochs,
    }
    if model_factory is not None or loss != "bce":
        metrics["model"] = type(model).__name__
        metrics["loss"] = loss
    if parallel is not None:
        metrics["world_size"] = parallel.world
    if resume and start > 1:
        metrics["resumed_after_epoch"] = start - 1
    return model, metrics


def golden_users(split: Split, n: int = 12, seed: int = DEFAULT_SEED) -> list:
    """Raw test-time requests of some test users (for golden.json): the history before the
    test target, the target and its fixed negative. The longest history comes first."""
    rng = np.random.default_rng(seed + 1)
    rows = split.test
    if not len(rows):
        return []
    chosen = [int(np.argmax(rows[:, 1]))]
    for k in rng.permutation(len(rows)):
        if len(chosen) >= n:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    out = []
    for k in chosen:
        user_row, p, neg = (int(x) for x in rows[k])
        target, t = split.raw_target(user_row, p)
        out.append({"user": split.users[user_row], "behaviors": split.raw_behaviors(user_row, p),
                    "target": target, "target_time": t,
                    "negative": split.universe_key(neg)})
    return out


def save_checkpoint(path: Path, model: torch.nn.Module, split: Split, metrics: dict,
                    name: str) -> None:
    """Everything the exporter needs: weights, config, vocabularies, hash settings, raw
    catalogs, actions, time buckets and golden users (plain types: weights_only loads it)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": 3, "created_by": f"atrank-export {__version__}",
        "name": name, "dataset": split.log.name if split.log is not None else name,
        "state_dict": model.state_dict(), "model_config": model.config.to_dict(),
        "vocabs": split.vocabs, "hash_seed": split.hash_seed, "catalogs": split.catalogs,
        "actions": split.actions,
        "action_rules": split.log.action_rules if split.log is not None else {},
        "feature_sources": split.log.feature_sources if split.log is not None else {},
        "time_buckets": split.time_buckets.to_json(),
        "golden_users": golden_users(split),
        "metrics": json.loads(json.dumps(metrics)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's contents; its tensors are memory-mapped from the file (read on use,
    never copied into the heap: an export of a 10^7-row table holds it once, as page cache)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("version") != 3:
        raise ValueError(f"{path} is not an atrank checkpoint of version 3")
    return ckpt
