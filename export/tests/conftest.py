import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "tiny"


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train on synthetic data and export a package through the CLI (a few seconds)."""
    from atrank_export.cli import main

    root = tmp_path_factory.mktemp("e2e")
    assert main(["train", "--data", "synthetic", "--out", str(root / "run"), "--epochs", "2",
                 "--embedding-dim", "8", "--heads", "2", "--ffn", "16", "--max-history", "10",
                 "--no-progress"]) == 0
    assert main(["export", "--checkpoint", str(root / "run" / "checkpoint.pt"),
                 "--out", str(root / "pkg")]) == 0
    return root
