"""Shared fixtures: the library under test, the backends, and the committed packages with their
golden requests (scores from the trainer, PyTorch: an independent reference)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SRC = REPO / "bindings" / "python" / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

PACKAGES = {
    "tiny": REPO / "tests" / "fixtures" / "tiny",
    "tiny-multigroup": REPO / "tests" / "fixtures" / "tiny-multigroup",
}


def library_path() -> str:
    path = os.environ.get("ATRANK_LIB") or str(REPO / "target" / "debug" / "libatrank.so")
    if not os.path.exists(path):
        pytest.exit(f"libatrank.so not found at {path}: run `cargo build` or set ATRANK_LIB", 2)
    return path


@pytest.fixture(scope="session", autouse=True)
def _atrank_lib():
    # Every Model in the tests (and in Spark's local workers, which inherit the environment)
    # opens this library.
    os.environ["ATRANK_LIB"] = library_path()
    return os.environ["ATRANK_LIB"]


def ort_library() -> str | None:
    path = os.environ.get("ATRANK_ORT_LIB")
    return path if path and os.path.exists(path) else None


def _backend_params():
    params = [pytest.param("tract", id="tract")]
    marks = []
    if ort_library() is None:
        if os.environ.get("ATRANK_REQUIRE_ORT") == "1":
            raise RuntimeError("ATRANK_REQUIRE_ORT=1 but ATRANK_ORT_LIB is not an existing file")
        marks = [pytest.mark.skip(reason="ATRANK_ORT_LIB not set: ONNX Runtime tests skipped")]
    params.append(pytest.param("ort", id="ort", marks=marks))
    return params


BACKENDS = _backend_params()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(params=sorted(PACKAGES))
def package(request) -> Path:
    return PACKAGES[request.param]


def golden(package: Path) -> dict:
    with open(package / "golden.json", encoding="utf-8") as f:
        return json.load(f)


def tolerance(gold: dict, request: dict | None = None) -> float:
    """The bound on two float32 evaluations of a golden request's logits (runtime vs trainer):
    its derived 2 D U M (docs/tolerances.md), else golden.json's top-level tolerance (the
    largest per-request one; all that older files have); $ATRANK_TOLERANCE overrides."""
    own = (request or {}).get("tolerance", gold["tolerance"])
    return float(os.environ.get("ATRANK_TOLERANCE", own))
