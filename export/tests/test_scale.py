"""Training at scale: resumable checkpoints (last.pt) and DDP (torchrun, gloo, CPU)."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from atrank_export.cli import main
from atrank_export.data import build_split, synthetic_dataset
from atrank_export.distributed import Parallel
from atrank_export.model import ModelConfig
from atrank_export.train import load_checkpoint, train
from atrank_export.train_state import load_train_state

TIMING = ("seconds", "samples_per_s")
TINY = ["--data", "synthetic", "--embedding-dim", "8", "--heads", "2", "--ffn", "16",
        "--max-history", "10", "--no-progress"]


@pytest.fixture
def one_thread(monkeypatch):
    """train() calls setup_threads(), which honours ATRANK_NUM_THREADS."""
    n = torch.get_num_threads()
    monkeypatch.setenv("ATRANK_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def split():
    return build_split(synthetic_dataset(n_users=30, seed=3), max_history=10, seed=3)


def tiny_config(split):
    pre = split.preprocessor
    return ModelConfig(n_items=len(pre.item_vocab), n_categories=len(pre.category_vocab),
                       n_actions=len(pre.actions), embedding_dim=8, hidden=16, heads=2, ffn=16)


def untimed(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bit_identical(split, tmp_path, one_thread):
    kw = {"batch_size": 32, "lr": 3e-3, "seed": 5, "progress": False, "log": lambda s: None}
    cfg = tiny_config(split)
    straight, m_straight = train(split, cfg, epochs=3, checkpoint_dir=tmp_path / "a", **kw)
    train(split, cfg, epochs=1, checkpoint_dir=tmp_path / "b", **kw)
    assert load_train_state(tmp_path / "b")["epoch"] == 1
    resumed, m_resumed = train(split, cfg, epochs=3, checkpoint_dir=tmp_path / "b",
                               resume=True, **kw)
    assert m_resumed["resumed_after_epoch"] == 1
    # returned model = best epoch's state; last.pt = the final epoch's full training state
    assert_same_state(straight.state_dict(), resumed.state_dict())
    last_a, last_b = load_train_state(tmp_path / "a"), load_train_state(tmp_path / "b")
    assert last_a["epoch"] == last_b["epoch"] == 3
    assert_same_state(last_a["model"], last_b["model"])
    assert str(last_a["optimizer"]) == str(last_b["optimizer"])
    assert last_a["numpy_rng"] == last_b["numpy_rng"]
    assert untimed(m_straight["epochs"]) == untimed(m_resumed["epochs"])
    for k in ("best_epoch", "valid", "test"):
        assert m_straight[k] == m_resumed[k], k
    assert not list(tmp_path.glob("*/*.tmp"))     # atomic write left no temporary behind


def test_resume_refuses_other_hyperparameters(split, tmp_path, one_thread):
    kw = {"seed": 5, "progress": False, "log": lambda s: None, "checkpoint_dir": tmp_path}
    train(split, tiny_config(split), epochs=1, batch_size=32, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        train(split, tiny_config(split), epochs=2, batch_size=16, resume=True, **kw)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(split, tiny_config(split), epochs=2, resume=True, progress=False)


def test_cli_checkpoint_dir_and_resume(tmp_path, one_thread):
    out, state = tmp_path / "run", tmp_path / "state"
    args = ["train", *TINY, "--out", str(out), "--checkpoint-dir", str(state)]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_after_epoch"] == 1
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert load_checkpoint(out / "checkpoint.pt")["metrics"]["best_epoch"] in (1, 2)
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--out", str(out), "--resume"])


@pytest.mark.parametrize("n", [8, 7, 1])
def test_shard_weights_give_the_global_mean(n):
    rows = np.arange(3 * n).reshape(n, 3)
    parts = [Parallel(r, 2).shard(rows) for r in range(2)]
    counted = np.concatenate([p[0] for p in parts if p[2]])
    np.testing.assert_array_equal(counted, rows)                 # contiguous, in order
    assert sum(p[2] for p in parts) == n
    # DDP averages over ranks: sum_r scale_r * mean_r / world = global mean (any per-row loss)
    loss = np.random.default_rng(0).random(n)
    got = sum(s * loss[r[:, 0] // 3].mean() for r, s, _ in parts) / 2
    assert got == pytest.approx(loss.mean())
    if n % 2 == 0:
        assert [p[1] for p in parts] == [1.0, 1.0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_matches_single_process(tmp_path, one_thread):
    """2-process DDP with global batch 2b == one process with batch 2b (l2 = 0), within 1e-5.

    Not bit-identical: each rank sums its own rows' gradients and gloo then adds the two
    partial sums, so float additions happen in another order than in one process (and each
    half batch is padded to its own longest history, which changes reduction shapes)."""
    common = [*TINY, "--epochs", "3", "--batch-size", "64", "--lr", "3e-3", "--l2", "0"]
    env = {**os.environ, "ATRANK_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "atrank_export.distributed", *common,
           "--out", str(tmp_path / "ddp"), "--checkpoint-dir", str(tmp_path / "ddp" / "state")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"torchrun wall {time.perf_counter() - t0:.1f}s")
    assert main(["train", *common, "--out", str(tmp_path / "one"),
                 "--checkpoint-dir", str(tmp_path / "one" / "state")]) == 0
    ddp, one = (load_train_state(tmp_path / d / "state") for d in ("ddp", "one"))
    assert ddp["epoch"] == one["epoch"] == 3
    worst = max(float((ddp["model"][k] - one["model"][k]).abs().max()) for k in one["model"])
    print(f"max |DDP - single| over final parameters: {worst:.3g}")
    assert worst <= 1e-5, worst
    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m_ddp["world_size"] == 2 and "world_size" not in m_one
    for a, b in zip(m_ddp["epochs"], m_one["epochs"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    # the exporter's checkpoint from rank 0 is a normal one
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["metrics"]["world_size"] == 2
