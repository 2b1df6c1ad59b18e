"""ctypes declarations mirroring ``capi/include/atrank.h`` and loading of ``libatrank.so``.

Everything here follows the header exactly: the structs' field order and C types, and the
argument and result types of every function the binding calls. ``tests/test_abi.py`` compiles
a C file against the header and compares sizes, offsets and constants with these.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import POINTER, c_char_p, c_float, c_int64, c_size_t, c_uint32, c_uint64

from .errors import LibraryError, error_for_code

#: ``ATRANK_ABI_VERSION`` of the header this binding mirrors.
ABI_VERSION = 1
#: ``ATRANK_VERSION_MAJOR`` of that header: a library with another major version is refused.
VERSION_MAJOR = 0
#: ``ATRANK_MAX_BATCH_REQUESTS``: the most requests one ``atrank_model_score_batch`` call takes.
MAX_BATCH_REQUESTS = 4096
#: ``ATRANK_STATS_CODES``: slots of ``atrank_call_stats.failures`` (indexed by error code).
STATS_CODES = 16
#: ``ATRANK_LATENCY_BUCKETS``: buckets of ``atrank_call_stats.latency_counts`` (last: +Inf).
LATENCY_BUCKETS = 14

# atrank_backend
BACKEND_ORT = 0
BACKEND_TRACT = 1
# atrank_gpu_policy
GPU_OFF = 0
GPU_STRICT = 1
GPU_PERMISSIVE = 2
# atrank_verify_hashes
VERIFY_HASHES_SMALL = 0
VERIFY_HASHES_ALL = 1
# atrank_serving
SERVING_ORT_CPU = 0
SERVING_ORT_CUDA = 1
SERVING_TRACT = 2


class CModel(ctypes.Structure):
    """Opaque ``atrank_model``."""


class CModelBuilder(ctypes.Structure):
    """Opaque ``atrank_model_builder``."""


class CError(ctypes.Structure):
    """Opaque ``atrank_error``."""


class CHandle(ctypes.Structure):
    """Opaque ``atrank_handle``."""


class CFeature(ctypes.Structure):
    """``atrank_feature``."""

    _fields_ = [("name", c_char_p), ("value", c_char_p)]


class CBehavior(ctypes.Structure):
    """``atrank_behavior``."""

    _fields_ = [
        ("item", c_char_p),
        ("category", c_char_p),
        ("action", c_char_p),
        ("timestamp", c_int64),
        ("group", c_char_p),
        ("features", POINTER(CFeature)),
        ("features_len", c_size_t),
    ]


class CRequest(ctypes.Structure):
    """``atrank_request`` (only used when the library has ``atrank_model_score_batch``)."""

    _fields_ = [
        ("behaviors", POINTER(CBehavior)),
        ("behaviors_len", c_size_t),
        ("candidates", POINTER(c_char_p)),
        ("candidates_len", c_size_t),
        ("request_time", c_int64),
    ]


class CInfo(ctypes.Structure):
    """Opaque ``atrank_info``."""


class CCallStats(ctypes.Structure):
    """``atrank_call_stats``."""

    _fields_ = [
        ("calls", c_uint64),
        ("failures", c_uint64 * STATS_CODES),
        ("latency_counts", c_uint64 * LATENCY_BUCKETS),
        ("latency_sum_ns", c_uint64),
    ]


class CStats(ctypes.Structure):
    """``atrank_stats``."""

    _fields_ = [
        ("size", c_size_t),
        ("score", CCallStats),
        ("score_cached", CCallStats),
        ("score_batch", CCallStats),
        ("cache_hits", c_uint64),
        ("cache_misses", c_uint64),
        ("cache_entries", c_uint64),
        ("cache_capacity", c_uint64),
        ("tract_plans_built", c_uint64),
        ("tract_plans", c_uint64),
        ("tract_plan_build_failures", c_uint64),
        ("tract_symbolic_runs", c_uint64),
        ("tract_concrete_runs", c_uint64),
        ("ort_sessions_busy", c_uint64),
        ("ort_sessions", c_uint64),
        ("tract_fused_attention", c_uint64),
        ("tract_fused_layer_norm", c_uint64),
    ]


_ErrorP = POINTER(CError)
_ModelP = POINTER(CModel)
_BuilderP = POINTER(CModelBuilder)
_HandleP = POINTER(CHandle)
_FloatP = POINTER(c_float)

# name -> (restype, argtypes). Every function the binding calls is declared here.
_FUNCTIONS = {
    "atrank_version": (c_char_p, []),
    "atrank_abi_version": (c_uint32, []),
    "atrank_error_code": (c_uint32, [_ErrorP]),
    "atrank_error_message": (c_char_p, [_ErrorP]),
    "atrank_error_free": (None, [_ErrorP]),
    "atrank_model_builder_new": (_ErrorP, [c_char_p, POINTER(_BuilderP)]),
    "atrank_model_builder_set_backend": (_ErrorP, [_BuilderP, c_uint32]),
    "atrank_model_builder_set_intra_threads": (_ErrorP, [_BuilderP, c_size_t]),
    "atrank_model_builder_set_gpu_policy": (_ErrorP, [_BuilderP, c_uint32]),
    "atrank_model_builder_set_ort_library": (_ErrorP, [_BuilderP, c_char_p]),
    "atrank_model_builder_set_cache_capacity": (_ErrorP, [_BuilderP, c_size_t]),
    "atrank_model_builder_set_sessions": (_ErrorP, [_BuilderP, c_size_t]),
    "atrank_model_builder_set_verify_hashes": (_ErrorP, [_BuilderP, c_uint32]),
    "atrank_model_builder_set_exclude_seen": (_ErrorP, [_BuilderP, c_uint32]),
    "atrank_model_builder_set_batch_rows": (_ErrorP, [_BuilderP, c_size_t]),
    "atrank_model_builder_set_tract_fusion": (_ErrorP, [_BuilderP, c_uint32]),
    "atrank_model_builder_build": (_ErrorP, [_BuilderP, POINTER(_ModelP)]),
    "atrank_model_builder_free": (None, [_BuilderP]),
    "atrank_model_backend": (_ErrorP, [_ModelP, POINTER(c_uint32)]),
    "atrank_model_serving": (_ErrorP, [_ModelP, POINTER(c_uint32)]),
    "atrank_model_max_candidates": (_ErrorP, [_ModelP, POINTER(c_size_t)]),
    "atrank_model_free": (None, [_ModelP]),
    "atrank_model_score": (
        _ErrorP,
        [_ModelP, POINTER(CBehavior), c_size_t, POINTER(c_char_p), c_size_t, c_int64, _FloatP,
         c_size_t],
    ),
    "atrank_model_score_cached": (
        _ErrorP,
        [_ModelP, c_char_p, POINTER(CBehavior), c_size_t, POINTER(c_char_p), c_size_t, c_int64,
         _FloatP, c_size_t],
    ),
}
# Declared when the library exports them (newer entry points); the binding falls back otherwise.
_OPTIONAL_FUNCTIONS = {
    "atrank_model_score_batch": (
        _ErrorP, [_ModelP, POINTER(CRequest), c_size_t, _FloatP, c_size_t]
    ),
    "atrank_handle_new": (_ErrorP, [_ModelP, POINTER(_HandleP)]),
    "atrank_handle_reload": (_ErrorP, [_HandleP, _BuilderP, POINTER(c_uint64)]),
    "atrank_handle_snapshot": (_ErrorP, [_HandleP, POINTER(_ModelP), POINTER(c_uint64)]),
    "atrank_handle_generation": (_ErrorP, [_HandleP, POINTER(c_uint64)]),
    "atrank_handle_score": (
        _ErrorP,
        [_HandleP, POINTER(CBehavior), c_size_t, POINTER(c_char_p), c_size_t, c_int64, _FloatP,
         c_size_t],
    ),
    "atrank_handle_free": (None, [_HandleP]),
    "atrank_model_stats": (_ErrorP, [_ModelP, POINTER(CStats), c_size_t]),
    "atrank_latency_bounds": (_ErrorP, [POINTER(c_uint64), c_size_t]),
    "atrank_model_info": (_ErrorP, [_ModelP, POINTER(POINTER(CInfo))]),
    "atrank_info_free": (None, [POINTER(CInfo)]),
    "atrank_info_name": (c_char_p, [POINTER(CInfo)]),
    "atrank_info_created_by": (c_char_p, [POINTER(CInfo)]),
    "atrank_info_input_mapping": (c_char_p, [POINTER(CInfo)]),
    "atrank_info_graph_sha256": (c_char_p, [POINTER(CInfo)]),
    "atrank_info_serving": (c_char_p, [POINTER(CInfo)]),
    "atrank_info_spec_version": (c_uint32, [POINTER(CInfo)]),
    "atrank_info_max_candidates": (c_size_t, [POINTER(CInfo)]),
    "atrank_info_max_behaviors": (c_size_t, [POINTER(CInfo)]),
    "atrank_info_table_count": (c_size_t, [POINTER(CInfo)]),
    "atrank_info_table_name": (c_char_p, [POINTER(CInfo), c_size_t]),
    "atrank_info_table_vocab_size": (c_size_t, [POINTER(CInfo), c_size_t]),
    "atrank_info_group_count": (c_size_t, [POINTER(CInfo)]),
    "atrank_info_group_name": (c_char_p, [POINTER(CInfo), c_size_t]),
    "atrank_info_group_max_history": (c_size_t, [POINTER(CInfo), c_size_t]),
}


class Library:
    """A loaded ``libatrank.so`` with every function declared."""

    def __init__(self, path: str) -> None:
        try:
            self.cdll = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryError(f"cannot load the atrank library {path!r}: {e}") from e
        self.path = path
        for name, (restype, argtypes) in _FUNCTIONS.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError as e:
                raise LibraryError(f"{path}: missing symbol {name}: not an atrank library of "
                                   f"ABI {ABI_VERSION}") from e
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        for name, (restype, argtypes) in _OPTIONAL_FUNCTIONS.items():
            fn = getattr(self.cdll, name, None)
            if fn is not None:
                fn.restype = restype
                fn.argtypes = argtypes
                setattr(self, name, fn)
        self.has_score_batch = hasattr(self, "atrank_model_score_batch")

        abi = self.atrank_abi_version()
        version = self.atrank_version().decode("utf-8", "replace")
        if abi != ABI_VERSION:
            raise LibraryError(f"{path}: C ABI version {abi}, but this binding was written for "
                               f"ABI {ABI_VERSION} (library version {version})")
        major = version.split(".", 1)[0]
        if major != str(VERSION_MAJOR):
            raise LibraryError(f"{path}: library version {version}, but this binding was written "
                               f"for {VERSION_MAJOR}.x")
        self.version = version
        self.abi_version = abi

    def check(self, err) -> None:
        """Raises the :class:`~atrank.Error` for a non-NULL ``atrank_error *``, after freeing
        it."""
        if not err:
            return
        try:
            code = int(self.atrank_error_code(err))
            raw = self.atrank_error_message(err) or b""
            message = raw.decode("utf-8", "replace")
        finally:
            self.atrank_error_free(err)
        raise error_for_code(code, message)


_LOCK = threading.Lock()
_LOADED: dict[str, Library] = {}


def resolve_library_path(lib_path: str | os.PathLike | None = None) -> str:
    """The library to open: ``lib_path``, else ``$ATRANK_LIB``, else what
    ``ctypes.util.find_library("atrank")`` finds on the loader's path."""
    if lib_path is not None:
        return os.fspath(lib_path)
    env = os.environ.get("ATRANK_LIB")
    if env:
        return env
    found = ctypes.util.find_library("atrank")
    if found:
        return found
    raise LibraryError("cannot find libatrank.so: pass lib_path=, set ATRANK_LIB to the full path "
                       "of libatrank.so, or install it on the loader's path (scripts/install.sh)")


def load_library(lib_path: str | os.PathLike | None = None) -> Library:
    """Opens (once per path and process) and checks the atrank shared library."""
    path = resolve_library_path(lib_path)
    if os.sep in path:
        path = os.path.abspath(path)
    with _LOCK:
        lib = _LOADED.get(path)
        if lib is None:
            lib = Library(path)
            _LOADED[path] = lib
        return lib
