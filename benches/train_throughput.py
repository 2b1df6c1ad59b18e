"""ATRank training throughput (samples/s of forward + backward + Adam step) on CPU.

Run from the repository root (no data download: synthetic index tensors)::

    .venv/bin/python benches/train_throughput.py --out /tmp/train_throughput.json [--ddp]

Model: ML-100k-like sizes (1682 items, 19 categories, 2 actions; embedding 32, hidden 64,
4 heads, FFN 32, 13 time buckets), history width 50 (lengths uniform in 1..50, padded to 50),
N = 2 candidates (target + negative) per sample, BCE + the embedding L2 term (l2 = 1e-5),
gradient clipping at 5, Adam; i.e. exactly the step of ``train.train``. For each global batch
(128, 256) and torch thread count (1, 2): ``--warmup`` untimed steps, then ``--repeats``
blocks of ``--steps`` timed steps; the table reports the median block. ``--ddp`` adds 2
processes x 1 thread (gloo on 127.0.0.1, DistributedDataParallel via
``atrank_export.distributed.Parallel``), each on half of every global batch; its samples/s
counts global samples. Figures on a shared/noisy machine: compare ratios within one run.
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
import torch.nn.functional as F
from atrank_export.model import ATRank, ModelConfig
from atrank_export.train import l2_penalty

SIZES = {"n_items": 1682, "n_categories": 19, "n_actions": 2, "embedding_dim": 32,
         "hidden": 64, "heads": 4, "ffn": 32}
HISTORY = 50
N_CANDS = 2
L2 = 1e-5
POOL = 8          # distinct pre-built batches, cycled


def make_batches(batch: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(POOL):
        lens = rng.integers(1, HISTORY + 1, size=batch)
        valid = np.arange(HISTORY)[None, :] < lens[:, None]
        hist = {
            "hist_item": rng.integers(1, SIZES["n_items"] + 1, (batch, HISTORY)),
            "hist_category": rng.integers(1, SIZES["n_categories"] + 1, (batch, HISTORY)),
            "hist_action": rng.integers(1, SIZES["n_actions"] + 1, (batch, HISTORY)),
            "hist_time": rng.integers(0, 13, (batch, HISTORY)),
        }
        b = {k: np.where(valid, v, 0) for k, v in hist.items()}
        b["hist_len"] = lens
        b["cand_item"] = rng.integers(1, SIZES["n_items"] + 1, (batch, N_CANDS))
        b["cand_category"] = rng.integers(1, SIZES["n_categories"] + 1, (batch, N_CANDS))
        out.append({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64))
                    for k, v in b.items()})
    return out


def step_fn(net, model, opt):
    def step(batch):
        logits = net(**batch)
        labels = torch.tensor([[1.0, 0.0]]).expand_as(logits)
        value = F.binary_cross_entropy_with_logits(logits, labels)
        value = value + L2 * l2_penalty(model, batch) / len(batch["hist_len"])
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return step


def timed(step, batches, warmup: int, steps: int, repeats: int, sync=lambda: None) -> list:
    """Seconds per block of ``steps`` steps, ``repeats`` blocks after ``warmup`` steps."""
    k = 0
    for _ in range(warmup):
        step(batches[k % POOL])
        k += 1
    blocks = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(batches[k % POOL])
            k += 1
        sync()
        blocks.append(time.perf_counter() - t0)
    return blocks


def bench_single(batch: int, threads: int, a) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ATRank(ModelConfig(**SIZES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    blocks = timed(step_fn(model, model, opt), make_batches(batch), a.warmup, a.steps, a.repeats)
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
        model = ATRank(ModelConfig(**SIZES))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        net = Parallel(rank, world).wrap(model)
        local = [{k: v[rank * batch // world:(rank + 1) * batch // world] for k, v in b.items()}
                 for b in make_batches(batch)]
        blocks = timed(step_fn(net, model, opt), local, a.warmup, a.steps, a.repeats,
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
    meta = {"sizes": SIZES, "history": HISTORY, "candidates": N_CANDS, "l2": L2,
            "warmup": a.warmup, "steps": a.steps, "repeats": a.repeats,
            "torch": torch.__version__, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
