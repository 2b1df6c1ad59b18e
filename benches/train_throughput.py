"""ATRank training throughput (samples/s of forward + backward + optimizer step) on CPU.

Run from the repository root (no data download: synthetic index tensors)::

    .venv/bin/python benches/train_throughput.py --out /tmp/train_throughput.json [--ddp]

Model: ``amazon_preset`` at ML-100k-like sizes (1682 items, 19 categories, 2 actions;
embedding 32, hidden 64, 4 heads, FFN 32, 13 time buckets), history width 50 (lengths uniform
in 1..50, padded to 50), N = 2 candidates (target + negative) per sample. The step is the one
``train.train`` takes: ``train.batch_objective`` (BCE + the L2 term, l2 = 1e-5, on the
embedding rows the batch touches), ``train.clip_grad_norm`` at 5 (sparse gradients included)
and ``train.Optimizer`` (SparseAdam on the sparse embedding tables + Adam on the rest); only
the batch comes pre-built (a pool of 8, cycled) instead of from ``Split.training_batch``. For
each global batch (128, 256) and torch thread count (1, 2): ``--warmup`` untimed steps, then
``--repeats`` blocks of ``--steps`` timed steps; the table reports the median block.
``--ddp`` adds 2 processes x 1 thread (gloo on 127.0.0.1, DistributedDataParallel via
``atrank_export.distributed.Parallel``), each on its shard of every global batch (as
``train.train`` with ``parallel``); its samples/s counts global samples. Figures on a
shared/noisy machine: compare ratios within one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from atrank_export.model import ATRank, amazon_preset
from atrank_export.train import Optimizer, batch_objective, clip_grad_norm

HISTORY = 50
SIZES = {"n_items": 1682, "n_categories": 19, "n_actions": 2, "max_history": HISTORY,
         "embedding_dim": 32, "heads": 4, "ffn": 32}     # amazon_preset: hidden = 2 x 32
N_CANDS = 2
L2 = 1e-5
POOL = 8          # distinct pre-built batches, cycled


def make_batches(batch: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``POOL`` batches with ``Split.training_batch``'s inputs (group ``item``)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(POOL):
        lens = rng.integers(1, HISTORY + 1, size=batch)
        valid = np.arange(HISTORY)[None, :] < lens[:, None]
        hist = {
            "item_id": rng.integers(1, SIZES["n_items"] + 1, (batch, HISTORY)),
            "item_category": rng.integers(1, SIZES["n_categories"] + 1, (batch, HISTORY)),
            "item_action": rng.integers(1, SIZES["n_actions"] + 1, (batch, HISTORY)),
            "item_time": rng.integers(0, 13, (batch, HISTORY)),
        }
        b = {k: np.where(valid, v, 0) for k, v in hist.items()}
        b["item_len"] = lens
        b["cand_id"] = rng.integers(1, SIZES["n_items"] + 1, (batch, N_CANDS))
        b["cand_category"] = rng.integers(1, SIZES["n_categories"] + 1, (batch, N_CANDS))
        out.append({k: np.ascontiguousarray(v, dtype=np.int64) for k, v in b.items()})
    return out


class Prebuilt:
    """Stands in for ``Split`` in ``train.batch_objective``: training row ``[k, i, 0]`` is
    sample i of pooled batch k. The rows of one call (a global batch or a rank's contiguous
    shard of one) are a contiguous run of one pooled batch, returned as views (no copy)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self._rows = []
        for k, b in enumerate(batches):
            n = len(b["item_len"])
            self._rows.append(np.stack([np.full(n, k), np.arange(n), np.zeros(n, np.int64)], 1))

    def rows(self, k: int) -> np.ndarray:
        """The training rows of pooled batch k (all of it: one global batch)."""
        return self._rows[k]

    def training_batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        k, lo, hi = int(rows[0, 0]), int(rows[0, 1]), int(rows[-1, 1]) + 1
        return {name: v[lo:hi] for name, v in self.batches[k].items()}


def step_fn(net, model, opt, data: Prebuilt, parallel=None):
    """One step of ``train.train``'s loop on pooled batch k."""
    def step(k: int):
        _, scaled, _ = batch_objective(net, model, data, data.rows(k), "bce", L2, parallel)
        opt.zero_grad(set_to_none=True)
        scaled.backward()
        clip_grad_norm(model.parameters(), 5.0)
        opt.step()
    return step


def timed(step, warmup: int, steps: int, repeats: int, sync=lambda: None) -> list:
    """Seconds per block of ``steps`` steps, ``repeats`` blocks after ``warmup`` steps."""
    k = 0
    for _ in range(warmup):
        step(k % POOL)
        k += 1
    blocks = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(k % POOL)
            k += 1
        sync()
        blocks.append(time.perf_counter() - t0)
    return blocks


def bench_single(batch: int, threads: int, a) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ATRank(amazon_preset(**SIZES))
    opt = Optimizer(model, 1e-3)
    data = Prebuilt(make_batches(batch))
    blocks = timed(step_fn(model, model, opt, data), a.warmup, a.steps, a.repeats)
    return result("single", batch, threads, 1, blocks, a.steps)


def result(mode, batch, threads, world, blocks, steps) -> dict:
    med = statistics.median(blocks)
    return {"mode": mode, "batch": batch, "threads_per_process": threads, "processes": world,
            "samples_per_s": batch * steps / med, "ms_per_step": 1000 * med / steps,
            "blocks_s": blocks}


def _ddp_worker(rank: int, world: int, port: int, batch: int, a, out: str) -> None:
    import torch.distributed as dist
    from atrank_export.distributed import Parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = ATRank(amazon_preset(**SIZES))
        opt = Optimizer(model, 1e-3)
        par = Parallel(rank, world)
        net = par.wrap(model)
        data = Prebuilt(make_batches(batch))     # global batches; batch_objective shards them
        blocks = timed(step_fn(net, model, opt, data, par), a.warmup, a.steps, a.repeats,
                       sync=dist.barrier)
        if rank == 0:
            Path(out).write_text(json.dumps(result("ddp", batch, 1, world, blocks, a.steps)))
    finally:
        dist.destroy_process_group()


def bench_ddp(batch: int, a, world: int = 2) -> dict:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        mp.spawn(_ddp_worker, args=(world, port, batch, a, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON results")
    p.add_argument("--batches", type=int, nargs="+", default=[128, 256])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ddp", action="store_true", help="also 2 processes x 1 thread (gloo)")
    a = p.parse_args()
    rows = []
    for batch in a.batches:
        for threads in a.threads:
            rows.append(bench_single(batch, threads, a))
        if a.ddp:
            rows.append(bench_ddp(batch, a))
    print(f"{'mode':<8}{'batch':>6}{'procs x threads':>17}{'samples/s':>11}{'ms/step':>9}"
          f"{'vs 1 thread':>13}")
    for r in rows:
        base = next(x for x in rows if x["batch"] == r["batch"] and x["mode"] == "single"
                    and x["threads_per_process"] == min(a.threads))
        print(f"{r['mode']:<8}{r['batch']:>6}"
              f"{str(r['processes']) + ' x ' + str(r['threads_per_process']):>17}"
              f"{r['samples_per_s']:>11.0f}{r['ms_per_step']:>9.1f}"
              f"{r['samples_per_s'] / base['samples_per_s']:>12.2f}x")
    meta = {"sizes": SIZES, "config": amazon_preset(**SIZES).to_dict(), "history": HISTORY,
            "candidates": N_CANDS, "l2": L2,
            "optimizer": "SparseAdam (embedding tables) + Adam (rest), lr 1e-3", "clip": 5.0,
            "warmup": a.warmup, "steps": a.steps, "repeats": a.repeats,
            "torch": torch.__version__, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
