"""atrank: score an ATRank model package from Python through the C ABI (``libatrank.so``).

A thin ``ctypes`` binding: no compiler, no extension module. Point ``ATRANK_LIB`` at
``libatrank.so`` (or pass ``lib_path=``), then::

    import atrank

    with atrank.Model("build/ml100k/package", backend="tract") as model:
        scores = model.score(
            [{"item": "242", "action": "like", "timestamp": 881250949}],
            ["302", "377", "51"],
            request_time=881251000,
        )

:mod:`atrank.spark` scores a Spark DataFrame of requests with ``mapInPandas``.
"""

from ._native import ABI_VERSION, MAX_BATCH_REQUESTS, load_library
from .errors import (
    BackendError,
    BackendUnavailableError,
    BufferSizeError,
    Code,
    Error,
    InvalidArgumentError,
    InvalidPackageError,
    InvalidUtf8Error,
    LibraryError,
    NullArgumentError,
    PackageIOError,
    PanicError,
)
from .model import Behavior, Handle, Model, Request
from .stats import CallStats, ModelInfo, Stats
from .stats import latency_bounds as _latency_bounds

__version__ = "0.1.0"


def library_version(lib_path=None) -> str:
    """``atrank_version()`` of the library that ``lib_path`` / ``$ATRANK_LIB`` names."""
    return load_library(lib_path).version


def latency_bounds(lib_path=None) -> tuple[int, ...]:
    """Upper bounds (inclusive, nanoseconds) of the latency buckets of
    :attr:`CallStats.latency_counts`; the last, ``2**64 - 1``, stands for +Inf."""
    return _latency_bounds(load_library(lib_path))


__all__ = [
    "ABI_VERSION",
    "MAX_BATCH_REQUESTS",
    "BackendError",
    "BackendUnavailableError",
    "Behavior",
    "BufferSizeError",
    "CallStats",
    "Code",
    "Error",
    "Handle",
    "InvalidArgumentError",
    "InvalidPackageError",
    "InvalidUtf8Error",
    "LibraryError",
    "Model",
    "ModelInfo",
    "NullArgumentError",
    "PackageIOError",
    "PanicError",
    "Request",
    "Stats",
    "latency_bounds",
    "library_version",
    "load_library",
]
