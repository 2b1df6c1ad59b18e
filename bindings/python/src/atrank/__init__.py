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

__version__ = "0.1.0"


def library_version(lib_path=None) -> str:
    """``atrank_version()`` of the library that ``lib_path`` / ``$ATRANK_LIB`` names."""
    return load_library(lib_path).version


__all__ = [
    "ABI_VERSION",
    "MAX_BATCH_REQUESTS",
    "BackendError",
    "BackendUnavailableError",
    "Behavior",
    "BufferSizeError",
    "Code",
    "Error",
    "Handle",
    "InvalidArgumentError",
    "InvalidPackageError",
    "InvalidUtf8Error",
    "LibraryError",
    "Model",
    "NullArgumentError",
    "PackageIOError",
    "PanicError",
    "Request",
    "library_version",
    "load_library",
]
