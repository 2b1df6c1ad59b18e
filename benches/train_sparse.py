"""Training throughput with a large item table vs a small one (same width, same data).

    .venv/bin/python benches/train_sparse.py [--big 1000000] [--small 2000] [--steps 30] \\
        [--batch 128]

(run from the repository root; torch threads: ``ATRANK_NUM_THREADS``, default min(2, CPUs),
as ``train.train``.)

Both runs train the same synthetic users (``synthetic_items``: 2,000 items actually used);
the big run adds catalog rows up to ``--big`` items, so its item table (and item bias) has
``--big + 1`` rows while every batch touches the same few hundred. With sparse embeddings
(SparseAdam on the touched rows) a step costs O(batch), so the ratio big/small should be near
1 (target >= 0.8). Prints one table: rows, samples/s (median of 3 timed windows) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from atrank_export.behaviors import LogBuilder
from atrank_export.model import ATRank
from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items
from atrank_export.train import (
    Optimizer,
    batch_objective,
    clip_grad_norm,
    setup_threads,
)


def with_catalog(n_items: int, seed: int):
    base = synthetic_items(n_users=300, n_items=2000, n_categories=20, min_len=20, max_len=40,
                           seed=seed)
    b = LogBuilder(base.name, "item")
    rows = np.arange(len(base))
    b.add_events([base.users[u] for u in base.user[rows]], ["item"] * len(rows),
                 [base.actions[a] for a in base.action[rows]],
                 [base.objects["item"][o] for o in base.object[rows]], base.timestamp[rows])
    b.add_catalog("item", [f"i{i}" for i in range(n_items)],
                  {"category": [f"c{i % 20}" for i in range(n_items)]})
    return b.build()


def samples_per_s(n_items: int, steps: int, batch: int, seed: int = 1) -> tuple[int, float]:
    split = build_split(with_catalog(n_items, seed), max_history=50, embedding_dim=32)
    torch.manual_seed(seed)
    model = ATRank(split.config)
    opt = Optimizer(model, 1e-3)
    rng = np.random.default_rng(seed)
    rates = []
    for window in range(4):                 # window 0 warms up
        t0 = time.perf_counter()
        for _ in range(steps):
            rows = split.train[rng.integers(0, len(split.train), batch)]
            _, loss, _ = batch_objective(model, model, split, rows, "bce", 1e-5)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm(model.parameters(), 5.0)
            opt.step()
        if window:
            rates.append(steps * batch / (time.perf_counter() - t0))
    return model.config.table_rows("item_id"), statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--big", type=int, default=1_000_000)
    p.add_argument("--small", type=int, default=2000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    setup_threads()
    small = samples_per_s(a.small, a.steps, a.batch)
    big = samples_per_s(a.big, a.steps, a.batch)
    print(f"{'item table rows':>16} {'samples/s':>10}")
    for rows, rate in (small, big):
        print(f"{rows:>16,} {rate:>10.0f}")
    print(f"ratio big/small: {big[1] / small[1]:.2f} (target >= 0.8; "
          f"{torch.get_num_threads()} torch threads, batch {a.batch}, width 32)")


if __name__ == "__main__":
    main()
