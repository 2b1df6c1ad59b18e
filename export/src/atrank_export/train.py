"""Training loop, evaluation and the checkpoint the exporter reads.

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
from .data import DEFAULT_SEED, Dataset, Split
from .metrics import one_negative_auc, pos_vs_many_auc, roc_auc
from .model import ATRank, ModelConfig

CHECKPOINT_FORMAT = "atrank-checkpoint"


def setup_threads() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: ATRank, split: Split, rows: np.ndarray, batch_users: int = 32) -> dict:
    """Metrics on a validation/test array ([U,3]: user row, target position, negative).

    one_neg_auc: the paper's per-user AUC against the one fixed negative (ties lose);
    all_items_auc: per-user AUC of the target against every item the user never touched,
    averaged over users; global_auc: ROC AUC over all (target, negative) scores pooled.
    Each user's history is encoded once and all items are scored as candidates.
    """
    model.eval()
    n_items = split.n_items
    all_items = np.arange(1, n_items + 1, dtype=np.int64)
    pos_s, neg_s, per_user = [], [], []
    for s in range(0, len(rows), batch_users):
        chunk = rows[s:s + batch_users]
        cands = np.broadcast_to(all_items, (len(chunk), n_items))
        scores = model(**to_tensors(split.batch(chunk[:, :2], cands))).numpy()
        targets = split.target_items(chunk[:, :2])
        for r, (user_row, _, neg) in enumerate(chunk):
            sc = scores[r]
            pos = sc[targets[r] - 1]
            pos_s.append(pos)
            neg_s.append(sc[neg - 1])
            keep = np.ones(n_items, dtype=bool)
            keep[split.interacted[user_row] - 1] = False
            per_user.append(pos_vs_many_auc(pos, sc[keep]))
    pos_s, neg_s = np.array(pos_s), np.array(neg_s)
    return {
        "users": len(rows),
        "one_neg_auc": one_negative_auc(pos_s, neg_s),
        "all_items_auc": float(np.mean(per_user)),
        "global_auc": roc_auc(np.r_[pos_s, neg_s],
                              np.r_[np.ones(len(pos_s)), np.zeros(len(neg_s))]),
    }


def fmt_metrics(m: dict) -> str:
    return (f"one-neg AUC {m['one_neg_auc']:.4f} | all-items AUC {m['all_items_auc']:.4f} | "
            f"global ROC AUC {m['global_auc']:.4f} ({m['users']} users)")


def train(split: Split, config: ModelConfig, epochs: int = 2, batch_size: int = 128,
          lr: float = 1e-3, l2: float = 1e-5, seed: int = DEFAULT_SEED,
          progress: bool = True, log: Callable[[str], None] = print) -> tuple[ATRank, dict]:
    """Train with Adam + BCE; keep the best state by validation all-items AUC."""
    setup_threads()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ATRank(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    labels = torch.tensor([[1.0, 0.0]])
    best: dict[str, Any] = {"score": -1.0, "state": copy.deepcopy(model.state_dict()),
                            "epoch": 0, "valid": None}
    history = []
    t_train = 0.0
    n_seen = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(split.train))
        t0 = time.perf_counter()
        total = 0.0
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}",
                   unit="batch", disable=not progress, mininterval=1.0)
        for s in bar:
            rows = split.train[order[s:s + batch_size]]
            pos = split.target_items(rows[:, :2])
            cands = np.stack([pos, rows[:, 2]], axis=1)
            batch = to_tensors(split.batch(rows[:, :2], cands))
            logits = model(**batch)
            loss = F.binary_cross_entropy_with_logits(logits, labels.expand_as(logits))
            if l2 > 0:
                items = torch.unique(torch.cat([batch["hist_item"].ravel(),
                                                batch["cand_item"].ravel()]))
                cates = torch.unique(torch.cat([batch["hist_category"].ravel(),
                                                batch["cand_category"].ravel()]))
                reg = (model.item_emb.weight[items].pow(2).sum()
                       + model.cate_emb.weight[cates].pow(2).sum()) / len(rows)
                loss = loss + l2 * reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * len(rows)
            if progress:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        dt = time.perf_counter() - t0
        t_train += dt
        n_seen += len(order)
        valid = evaluate(model, split, split.valid)
        history.append({"epoch": epoch, "loss": total / max(1, len(order)), "seconds": dt,
                        "samples_per_s": len(order) / dt, "valid": valid})
        log(f"epoch {epoch}: loss {total / max(1, len(order)):.4f}, {dt:.1f}s, "
            f"{len(order) / dt:.0f} samples/s ({2 * len(order) / dt:.0f} scored pairs/s)")
        log(f"  validation: {fmt_metrics(valid)}")
        if valid["all_items_auc"] > best["score"]:
            best = {"score": valid["all_items_auc"], "state": copy.deepcopy(model.state_dict()),
                    "epoch": epoch, "valid": valid}
    model.load_state_dict(best["state"])
    test = evaluate(model, split, split.test)
    log(f"best epoch {best['epoch']} (selected on validation all-items AUC)")
    log(f"  validation: {fmt_metrics(best['valid'])}" if best["valid"] else "  (no epochs)")
    log(f"  test:       {fmt_metrics(test)}")
    metrics = {
        "best_epoch": best["epoch"], "selection": "validation all_items_auc",
        "valid": best["valid"], "test": test, "epochs": history,
        "train_samples": len(split.train),
        "train_seconds": t_train,
        "samples_per_s": n_seen / t_train if t_train else None,
        "config": config.to_dict(), "batch_size": batch_size, "lr": lr, "l2": l2, "seed": seed,
    }
    return model, metrics


def golden_users(dataset: Dataset, split: Split, n: int = 20, seed: int = DEFAULT_SEED) -> list:
    """Raw test-time requests of some test users (for golden.json): the history before the
    test target, the target and its fixed negative. Always includes the longest history."""
    rng = np.random.default_rng(seed + 1)
    rows = list(split.test)
    if not rows:
        return []
    lengths = [r[1] for r in rows]
    chosen = [int(np.argmax(lengths))]
    for k in rng.permutation(len(rows)):
        if len(chosen) >= n:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    out = []
    tokens = split.preprocessor.item_vocab.tokens
    for k in chosen:
        user_row, t, neg = (int(x) for x in rows[k])
        seq = dataset.sequences[split.users[user_row]]
        out.append({
            "user": split.users[user_row],
            "behaviors": [{"item": b.item, "category": b.category, "action": b.action,
                           "timestamp": int(b.timestamp)} for b in seq[:t]],
            "target": seq[t].item, "target_time": int(seq[t].timestamp),
            "negative": tokens[neg - 1],
        })
    return out


def save_checkpoint(path: Path, model: ATRank, split: Split, dataset: Dataset, metrics: dict,
                    name: str) -> None:
    pre = split.preprocessor
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": 1, "created_by": f"atrank-export {__version__}",
        "name": name, "dataset": dataset.name,
        "state_dict": model.state_dict(), "model_config": model.config.to_dict(),
        "item_vocab": pre.item_vocab.tokens, "category_vocab": pre.category_vocab.tokens,
        "catalog": pre.catalog, "actions": pre.actions, "max_history": pre.max_history,
        "time_buckets": pre.time_buckets.to_json(),
        "golden_users": golden_users(dataset, split),
        "metrics": json.loads(json.dumps(metrics)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def load_checkpoint(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an atrank checkpoint")
    return ckpt
