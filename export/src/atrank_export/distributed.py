"""Data-parallel training on CPU: torch.distributed (gloo) + DistributedDataParallel.

Launch with torchrun; the arguments are those of ``python -m atrank_export train``::

    torchrun --nproc_per_node 2 -m atrank_export.distributed --data synthetic --out DIR \\
        --epochs N [--batch-size 128] [--checkpoint-dir DIR/state [--resume]] ...

(for loopback only add ``--master_addr 127.0.0.1 --master_port PORT``; run without torchrun
it trains in one process.)

Semantics. ``--batch-size`` is the GLOBAL batch. Every process seeds identically, so every
epoch's permutation and the initial parameters are the same on all ranks (DDP also
broadcasts rank 0's parameters). Rank r takes the r-th contiguous slice of each global batch
(``np.array_split``, sizes differ by at most one); its loss is the mean over its local rows
times ``local_rows * world / global_rows`` (exactly 1 when the batch divides evenly), and
DDP's all-reduce averages gradients, so each update is the gradient of the mean loss over the
global batch: the same update as one process with the same batch size, up to floating-point
reduction order (per-rank partial sums are added in a different order, and each shard is
padded to its own longest history), so not bit-identical: the averaged gradient equals the
single-process gradient to float32 rounding (test_scale.py checks it element-wise against a
bound derived from the magnitudes summed). The trained parameters are not that close: a
parameter whose true gradient is ~0 (e.g. the attention key bias: softmax ignores a shift
shared by all keys) gets rounding-noise gradients that Adam normalises into steps of up to
~lr, so two runs can drift apart by up to ~lr x steps in such a parameter (4.5e-5 was seen
after 3 epochs of 14 steps at lr 3e-3).
Gradient clipping and Adam then run on identical averaged gradients on every rank. Two
deliberate differences: with ``l2 > 0`` the embedding penalty covers the rows each shard
touches, scaled by its local row count (the single-process penalty de-duplicates over the
global batch), and a rank whose slice is empty (a final batch smaller than the world size)
does a zero-weighted step on a placeholder row so that the all-reduce still happens.

Evaluation: rank 0 alone evaluates on validation after every epoch, selects the best epoch,
writes ``last.pt`` (``--checkpoint-dir``) and, at the end, evaluates on test and writes
``checkpoint.pt`` + ``metrics.json``; the other ranks wait at a barrier after each epoch (so
none starts the next epoch before the checkpoint is on disk) and write nothing. Per-process
torch threads: ``ATRANK_NUM_THREADS`` (default: CPU count // world size).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import contextlib
import sys

import numpy as np


class Parallel:
    """What ``train.train`` needs from the process group (see the module docstring)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        """DDP over the model's dense parameters. The sparse embeddings are left out of DDP
        (its gloo sparse all-reduce corrupted the heap now and then: a SIGSEGV in malloc on
        gloo's worker thread, 1 run in 24 of the torchrun test on torch 2.15) and reduced
        synchronously by ``reduce_sparse`` after ``backward()``."""
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        from .train import sparse_parameters

        sparse = {id(p) for p in sparse_parameters(model)}
        self.sparse = [p for p in model.parameters() if id(p) in sparse]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, p in model.named_parameters() if id(p) in sparse])
        # the model's buffers are constants (one-hot tables): no per-step broadcast needed
        # (newer torch renamed broadcast_buffers to forward_sync_buffers)
        new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        kw = {"forward_sync_buffers" if new else "broadcast_buffers": False}
        return DistributedDataParallel(model, **kw)

    def reduce_sparse(self) -> None:
        """Average the sparse embedding gradients over the ranks, as DDP averages the dense
        ones: every rank's (row ids, rows) are gathered with dense all_gathers (padded to the
        longest), concatenated in rank order and coalesced, so every rank ends with the same
        gradient, whose size is O(rows touched by the global batch), never O(vocabulary)."""
        import torch
        import torch.distributed as dist

        for p in self.sparse:
            g = p.grad
            if g is None:            # not looked up on this rank: contributes nothing
                g = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.int64),
                                            torch.zeros((0, *p.shape[1:]), dtype=p.dtype),
                                            p.shape)
            g = g.coalesce()
            ids, rows = g.indices()[0], g.values()
            n = torch.tensor([ids.numel()], dtype=torch.int64)
            counts = [torch.zeros_like(n) for _ in range(self.world)]
            dist.all_gather(counts, n)
            counts = [int(c) for c in counts]
            m = max(counts)
            pad_ids = torch.zeros(m, dtype=torch.int64)
            pad_ids[:len(ids)] = ids
            pad_rows = torch.zeros((m, *rows.shape[1:]), dtype=rows.dtype)
            pad_rows[:len(rows)] = rows
            all_ids = [torch.empty_like(pad_ids) for _ in range(self.world)]
            all_rows = [torch.empty_like(pad_rows) for _ in range(self.world)]
            dist.all_gather(all_ids, pad_ids)
            dist.all_gather(all_rows, pad_rows)
            ids = torch.cat([t[:c] for t, c in zip(all_ids, counts)])
            rows = torch.cat([t[:c] for t, c in zip(all_rows, counts)]) / self.world
            p.grad = torch.sparse_coo_tensor(ids[None], rows, p.shape).coalesce()

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, float, int]:
        """-> (this rank's rows, loss scale, rows it counts) of one global batch."""
        bounds = np.cumsum([0] + [len(p) for p in np.array_split(rows, self.world)])
        local = rows[bounds[self.rank]:bounds[self.rank + 1]]
        if len(local) == 0:
            return rows[:1], 0.0, 0
        return local, len(local) * self.world / len(rows), len(local)

    def all_sum(self, x: float) -> float:
        import torch
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "WORLD_SIZE" not in os.environ:
        print("distributed: not launched by torchrun; training in one process")
        from .cli import main as cli_main

        return cli_main(["train", *argv])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    os.environ.setdefault("ATRANK_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    import torch.distributed as dist

    dist.init_process_group("gloo")
    par = Parallel(rank, world)
    try:
        from .cli import main as cli_main

        if par.is_main:
            print(f"distributed: {world} processes (gloo), "
                  f"{os.environ['ATRANK_NUM_THREADS']} torch thread(s) each")
            rc = cli_main(["train", *argv], parallel=par)
        else:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                rc = cli_main(["train", *argv, "--no-progress"], parallel=par)
        dist.barrier()
        return rc
    finally:
        dist.destroy_process_group()


def exit_now(code: int) -> None:
    """Ends a torchrun worker without the interpreter's teardown. The DDP reducer's gloo work
    objects outlive ``destroy_process_group`` (the parameters' gradient hooks keep them), and
    destroying them while the interpreter finalizes aborted the process now and then
    ("terminate called without an active exception", exit -6: 1 run in 8 of the DDP tests on
    torch 2.x), after every output was written. Output streams are flushed first; files are
    closed by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    rc = main()
    if "WORLD_SIZE" in os.environ:
        exit_now(rc)
    raise SystemExit(rc)
