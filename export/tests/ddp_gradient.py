"""torchrun worker for test_scale.py: one DDP backward pass through the trainer's objective.

Each process rebuilds the test's split (same seeds), loads the same initial parameters,
wraps the model the way training does (``Parallel.wrap``: DistributedDataParallel, gloo), takes
its shard of the global batch with ``train.batch_objective`` and calls ``backward()``, which
all-reduces the gradients. Rank 0 saves the averaged gradients; no optimizer step is taken.

    torchrun --nproc_per_node 2 export/tests/ddp_gradient.py --inputs IN.pt --out OUT.pt
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse

import torch
import torch.distributed as dist

from atrank_export.distributed import Parallel
from atrank_export.model import ATRank, ModelConfig
from atrank_export.split import build_split
from atrank_export.synthetic import synthetic_items
from atrank_export.train import batch_objective


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", required=True, help="torch.save'd dict written by the test")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    inp = torch.load(a.inputs, map_location="cpu", weights_only=True)
    split = build_split(synthetic_items(n_users=inp["n_users"], seed=inp["seed"]),
                        max_history=inp["max_history"], seed=inp["seed"], embedding_dim=8,
                        heads=2, ffn=16)
    model = ATRank(ModelConfig.from_dict(inp["config"]))
    model.load_state_dict(inp["state"])
    dist.init_process_group("gloo")
    try:
        par = Parallel(dist.get_rank(), dist.get_world_size())
        net = par.wrap(model)
        _, scaled, _ = batch_objective(net, model, split, inp["rows"].numpy(), "bce", 0.0, par)
        scaled.backward()
        par.reduce_sparse()
        if par.is_main:
            # sparse embedding gradients (averaged by Parallel.reduce_sparse) saved densified
            torch.save({k: (p.grad.to_dense() if p.grad.is_sparse else p.grad)
                        for k, p in model.named_parameters()}, a.out)
        par.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    from atrank_export.distributed import exit_now
    exit_now(main())
