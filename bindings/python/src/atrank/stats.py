"""A model's counters (:meth:`atrank.Model.stats`) and identity (:meth:`atrank.Model.info`), read
through ``atrank_model_stats`` and ``atrank_model_info``."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from ._native import LATENCY_BUCKETS, CCallStats, CInfo, CStats, Library
from .errors import Code, LibraryError


@dataclass(frozen=True)
class CallStats:
    """Counters of one scoring entry point since the model was loaded."""

    #: Calls made, successful and failed.
    calls: int
    #: Failed calls by error code: ``failures[Code.INVALID_ARGUMENT]``; index 0 (OK) stays 0.
    failures: tuple[int, ...]
    #: Successful calls per latency bucket (:func:`latency_bounds`); not cumulative.
    latency_counts: tuple[int, ...]
    #: Total latency of the successful calls, in nanoseconds.
    latency_sum_ns: int

    @property
    def failed(self) -> int:
        """Failed calls, all codes."""
        return sum(self.failures)

    @property
    def succeeded(self) -> int:
        """Successful calls (the histogram's count)."""
        return sum(self.latency_counts)

    @property
    def failures_by_code(self) -> dict[str, int]:
        """The non-zero failure counts by code name, e.g. ``{"INVALID_ARGUMENT": 2}``."""
        out = {}
        for code, n in enumerate(self.failures):
            if n:
                out[Code(code).name if code in Code._value2member_map_ else str(code)] = n
        return out


@dataclass(frozen=True)
class Stats:
    """A snapshot of a model's counters. They start at 0 when the model is loaded (a reloaded
    model starts again) and are read one by one while other threads may be scoring."""

    #: ``score`` (and ``Handle.score``), ``score_cached``, ``score_batch`` (one per C batch).
    score: CallStats
    score_cached: CallStats
    score_batch: CallStats
    #: The user-encoding cache (``score_cached`` on packages with the split graphs).
    cache_hits: int
    cache_misses: int
    cache_entries: int
    cache_capacity: int
    #: tract's shape-specialised plans; all 0 on ONNX Runtime.
    tract_plans_built: int
    tract_plans: int
    tract_plan_build_failures: int
    tract_symbolic_runs: int
    tract_concrete_runs: int
    #: ONNX Runtime sessions running a call now, and held; 0 on tract.
    ort_sessions_busy: int
    ort_sessions: int
    #: Attention cores and layer normalisations tract runs as atrank's fused kernels (0 on
    #: ONNX Runtime; ``tract_fusion=`` of :class:`Model`).
    tract_fused_attention: int
    tract_fused_layer_norm: int


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a loaded model."""

    name: str
    spec_version: int
    #: The package's ``created_by`` ("" when absent).
    created_by: str
    #: The package's ``input_mapping`` as JSON: what its actions and features mean and how equal
    #: timestamps are ordered ("" when the package has none).
    input_mapping: str
    #: SHA-256 of the graph file as loaded (64 lower-case hex digits).
    graph_sha256: str
    #: ``"tract"``, ``"ort-cpu"`` or ``"ort-cuda"``.
    serving: str
    max_candidates: int
    max_behaviors: int
    #: Ids per vocabulary (embedding table), in the spec's order.
    vocab_sizes: dict[str, int]
    #: ``max_history`` per behavior group, in the spec's order.
    max_history: dict[str, int]


def _need(lib: Library, name: str) -> None:
    if not hasattr(lib, name):
        raise LibraryError(f"{lib.path} (atrank {lib.version}) has no {name}: it predates the "
                           "metrics API")


def _call(c: CCallStats) -> CallStats:
    return CallStats(int(c.calls), tuple(int(v) for v in c.failures),
                     tuple(int(v) for v in c.latency_counts), int(c.latency_sum_ns))


def read_stats(lib: Library, handle) -> Stats:
    _need(lib, "atrank_model_stats")
    s = CStats()
    lib.check(lib.atrank_model_stats(handle, ctypes.byref(s), ctypes.sizeof(s)))
    return Stats(
        score=_call(s.score), score_cached=_call(s.score_cached), score_batch=_call(s.score_batch),
        cache_hits=s.cache_hits, cache_misses=s.cache_misses, cache_entries=s.cache_entries,
        cache_capacity=s.cache_capacity, tract_plans_built=s.tract_plans_built,
        tract_plans=s.tract_plans, tract_plan_build_failures=s.tract_plan_build_failures,
        tract_symbolic_runs=s.tract_symbolic_runs, tract_concrete_runs=s.tract_concrete_runs,
        ort_sessions_busy=s.ort_sessions_busy, ort_sessions=s.ort_sessions,
        tract_fused_attention=s.tract_fused_attention,
        tract_fused_layer_norm=s.tract_fused_layer_norm,
    )


def read_info(lib: Library, handle) -> ModelInfo:
    _need(lib, "atrank_model_info")
    info = ctypes.POINTER(CInfo)()
    lib.check(lib.atrank_model_info(handle, ctypes.byref(info)))
    try:
        def text(b: bytes | None) -> str:
            return (b or b"").decode("utf-8", "replace")

        return ModelInfo(
            name=text(lib.atrank_info_name(info)),
            spec_version=int(lib.atrank_info_spec_version(info)),
            created_by=text(lib.atrank_info_created_by(info)),
            input_mapping=text(lib.atrank_info_input_mapping(info)),
            graph_sha256=text(lib.atrank_info_graph_sha256(info)),
            serving=text(lib.atrank_info_serving(info)),
            max_candidates=int(lib.atrank_info_max_candidates(info)),
            max_behaviors=int(lib.atrank_info_max_behaviors(info)),
            vocab_sizes={text(lib.atrank_info_table_name(info, i)):
                         int(lib.atrank_info_table_vocab_size(info, i))
                         for i in range(lib.atrank_info_table_count(info))},
            max_history={text(lib.atrank_info_group_name(info, i)):
                         int(lib.atrank_info_group_max_history(info, i))
                         for i in range(lib.atrank_info_group_count(info))},
        )
    finally:
        lib.atrank_info_free(info)


def latency_bounds(lib: Library) -> tuple[int, ...]:
    """The latency buckets' inclusive upper bounds in nanoseconds (the last, 2**64 - 1, is +Inf)."""
    _need(lib, "atrank_latency_bounds")
    out = (ctypes.c_uint64 * LATENCY_BUCKETS)()
    lib.check(lib.atrank_latency_bounds(out, LATENCY_BUCKETS))
    return tuple(int(v) for v in out)
