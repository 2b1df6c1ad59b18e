"""Resumable training state: ``<checkpoint_dir>/last.pt``, rewritten at the end of every epoch.

This is not the exporter's checkpoint (``checkpoint.pt``, see ``train.save_checkpoint``): it
holds what ``train(..., resume=True)`` needs to continue bit-identically with the next epoch:
model and optimizer state, the numpy generator (epoch permutations) and torch RNG states,
the last finished epoch, the best-so-far (state, epoch, validation metrics), the per-epoch
history and the accumulated training time. It is written atomically (``last.pt.tmp``, fsync,
``os.replace``), so a job killed mid-write leaves the previous epoch's file intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

TRAIN_STATE_FORMAT = "atrank-train-state"
TRAIN_STATE_VERSION = 1
LAST = "last.pt"
# hyper-parameters that must match for a resumed run to be the same run
RESUME_KEYS = ("config", "model", "loss", "batch_size", "lr", "l2", "seed", "train_samples",
               "valid_users")


def _plain(x: Any) -> Any:
    """JSON round trip (exact for floats): numpy scalars -> Python, loadable with weights_only."""
    return json.loads(json.dumps(x))


def save_train_state(checkpoint_dir: Path | str, *, epoch: int, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, numpy_rng_state: dict, best: dict,
                     history: list, train_seconds: float, samples_seen: int,
                     hparams: dict) -> Path:
    d = Path(checkpoint_dir)
    d.mkdir(parents=True, exist_ok=True)
    state = {
        "format": TRAIN_STATE_FORMAT, "version": TRAIN_STATE_VERSION, "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "numpy_rng": numpy_rng_state, "torch_rng": torch.get_rng_state(),
        "best": {"score": float(best["score"]), "state": best["state"],
                 "epoch": best["epoch"], "valid": _plain(best["valid"])},
        "history": _plain(history), "train_seconds": float(train_seconds),
        "samples_seen": int(samples_seen), "hparams": _plain(hparams),
    }
    path, tmp = d / LAST, d / f"{LAST}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_train_state(checkpoint_dir: Path | str) -> dict | None:
    """The state in ``checkpoint_dir/last.pt``, or None when there is none yet."""
    path = Path(checkpoint_dir) / LAST
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != TRAIN_STATE_FORMAT:
        raise ValueError(f"{path} is not an atrank training state")
    return state


def check_resumable(state: dict, hparams: dict, path: Path | str = LAST) -> None:
    """Refuse to resume a run with different data sizes or hyper-parameters."""
    saved, now = state.get("hparams", {}), _plain(hparams)
    diff = [k for k in RESUME_KEYS if saved.get(k) != now.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume from {path}: {detail}")
