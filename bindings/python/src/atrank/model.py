"""The :class:`Model`: one loaded model package, scored through the C ABI."""

from __future__ import annotations

import ctypes
import operator
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Self

import numpy as np

from . import _native
from ._native import CBehavior, CFeature, CRequest
from .errors import Error, InvalidArgumentError, LibraryError
from .stats import ModelInfo, Stats, read_info, read_stats

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_BACKENDS = {"ort": _native.BACKEND_ORT, "tract": _native.BACKEND_TRACT}
_BACKEND_NAMES = {v: k for k, v in _BACKENDS.items()}
_GPU_POLICIES = {
    "off": _native.GPU_OFF,
    "strict": _native.GPU_STRICT,
    "permissive": _native.GPU_PERMISSIVE,
}
_VERIFY_HASHES = {
    "small": _native.VERIFY_HASHES_SMALL,
    "all": _native.VERIFY_HASHES_ALL,
}
_SERVING_NAMES = {
    _native.SERVING_ORT_CPU: "ort-cpu",
    _native.SERVING_ORT_CUDA: "ort-cuda",
    _native.SERVING_TRACT: "tract",
}


class Behavior(NamedTuple):
    """One raw behavior, in the field order of the C struct ``atrank_behavior``.

    A plain tuple in this order, or a mapping with these keys (``id`` is accepted for
    ``item``), is accepted wherever a behavior is.
    """

    item: str
    category: str | None
    action: str | None
    timestamp: int
    group: str | None = None
    features: Mapping[str, str] | Iterable[tuple[str, str]] | None = None


class Request(NamedTuple):
    """One user's request for :meth:`Model.score_batch` (a mapping with these keys works too)."""

    behaviors: Sequence[Any] | None
    candidates: Sequence[str]
    request_time: int


_BEHAVIOR_KEYS = frozenset(Behavior._fields) | {"id"}
_REQUEST_KEYS = frozenset(Request._fields)


def _encode(value: Any, where: str) -> bytes | None:
    """A NUL-terminated-string argument: ``None`` stays NULL (the C side reports it)."""
    if value is None:
        return None
    if isinstance(value, str):
        # surrogatepass: a lone surrogate reaches C as invalid UTF-8, which C reports.
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise InvalidArgumentError(f"{where}: expected a string, got {type(value).__name__}")
    if b"\0" in data:
        raise InvalidArgumentError(f"{where}: contains a NUL character")
    return data


def _int64(value: Any, where: str) -> int:
    if value is None:
        raise InvalidArgumentError(f"{where}: is missing (null)")
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{where}: expected an integer (unix seconds), got bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{where}: expected an integer (unix seconds), got {type(value).__name__}"
        ) from None
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise InvalidArgumentError(f"{where}: {n} does not fit in int64")
    return n


def _features(value: Any, where: str, keep: list) -> tuple[Any, int]:
    if value is None:
        return None, 0
    pairs = list(value.items()) if isinstance(value, Mapping) else list(value)
    if not pairs:
        return None, 0
    array = (CFeature * len(pairs))()
    for j, pair in enumerate(pairs):
        try:
            name, val = pair
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"{where}[{j}]: expected a (name, value) pair, got {type(pair).__name__}"
            ) from None
        array[j].name = _encode(name, f"{where}[{j}].name")
        array[j].value = _encode(val, f"{where}[{j}].value")
    keep.append(array)
    return ctypes.cast(array, ctypes.POINTER(CFeature)), len(pairs)


def _fill_behavior(c: CBehavior, b: Any, where: str, keep: list) -> None:
    if isinstance(b, Mapping):
        unknown = set(b) - _BEHAVIOR_KEYS
        if unknown:
            raise InvalidArgumentError(
                f"{where}: unknown field(s) {sorted(map(str, unknown))}; expected "
                f"{list(Behavior._fields)}"
            )
        if "item" in b and "id" in b:
            raise InvalidArgumentError(f"{where}: give 'item' or 'id', not both")
        item = b["item"] if "item" in b else b.get("id")
        if "timestamp" not in b:
            raise InvalidArgumentError(f"{where}.timestamp: is missing")
        category, action, timestamp = b.get("category"), b.get("action"), b["timestamp"]
        group, features = b.get("group"), b.get("features")
    elif isinstance(b, (tuple, list)):
        if not 4 <= len(b) <= 6:
            raise InvalidArgumentError(
                f"{where}: a behavior tuple has 4 to 6 fields {list(Behavior._fields)}, "
                f"got {len(b)}"
            )
        item, category, action, timestamp, group, features = (*b, None, None)[:6]
    else:
        raise InvalidArgumentError(
            f"{where}: expected a mapping or a tuple, got {type(b).__name__}"
        )
    c.item = _encode(item, f"{where}.item")
    c.category = _encode(category, f"{where}.category")
    c.action = _encode(action, f"{where}.action")
    c.timestamp = _int64(timestamp, f"{where}.timestamp")
    c.group = _encode(group, f"{where}.group")
    c.features, c.features_len = _features(features, f"{where}.features", keep)


def _behaviors(behaviors: Any, keep: list, prefix: str = "") -> tuple[Any, int]:
    if behaviors is None:
        return None, 0
    if isinstance(behaviors, (str, bytes, Mapping)):
        raise InvalidArgumentError(
            f"{prefix}behaviors: expected a sequence of behaviors, got {type(behaviors).__name__}"
        )
    items = list(behaviors)
    if not items:
        return None, 0
    array = (CBehavior * len(items))()
    for i, b in enumerate(items):
        _fill_behavior(array[i], b, f"{prefix}behaviors[{i}]", keep)
    keep.append(array)
    return ctypes.cast(array, ctypes.POINTER(CBehavior)), len(items)


def _candidates(candidates: Any, keep: list, prefix: str = "") -> tuple[Any, int]:
    if candidates is None:
        return None, 0
    if isinstance(candidates, (str, bytes, Mapping)):
        raise InvalidArgumentError(
            f"{prefix}candidates: expected a sequence of ids, got {type(candidates).__name__}"
        )
    encoded = [_encode(c, f"{prefix}candidates[{i}]") for i, c in enumerate(candidates)]
    array = (ctypes.c_char_p * len(encoded))(*encoded)
    keep.append(array)
    return ctypes.cast(array, ctypes.POINTER(ctypes.c_char_p)), len(encoded)


def _request_fields(request: Any, where: str) -> tuple[Any, Any, Any]:
    if isinstance(request, Mapping):
        unknown = set(request) - _REQUEST_KEYS
        if unknown:
            raise InvalidArgumentError(
                f"{where}: unknown field(s) {sorted(map(str, unknown))}; expected "
                f"{list(Request._fields)}"
            )
        if "request_time" not in request:
            raise InvalidArgumentError(f"{where}.request_time: is missing")
        return request.get("behaviors"), request.get("candidates"), request["request_time"]
    if isinstance(request, (tuple, list)) and len(request) == 3:
        return request[0], request[1], request[2]
    raise InvalidArgumentError(
        f"{where}: expected a mapping or a (behaviors, candidates, request_time) tuple"
    )


# atrank_model_builder_set_tract_fusion's flags, by name.
_TRACT_FUSION = {"attention": 1, "layer_norm": 2}


def _new_builder(lib, package_dir: str, backend: str, *, intra_threads=None, gpu=None,
                 ort_library=None, cache_capacity=None, sessions=None, verify_hashes=None,
                 exclude_seen=None, batch_rows=None, tract_fusion=None):
    """A C builder for ``package_dir`` with the options applied (``None`` keeps a default).
    The caller passes it to a consuming call (build, reload); freed here on error."""
    if backend not in _BACKENDS:
        raise InvalidArgumentError(f"backend: {backend!r} is not one of {sorted(_BACKENDS)}")
    if gpu is not None and gpu not in _GPU_POLICIES:
        raise InvalidArgumentError(f"gpu: {gpu!r} is not one of {sorted(_GPU_POLICIES)}")
    if verify_hashes is not None and verify_hashes not in _VERIFY_HASHES:
        raise InvalidArgumentError(
            f"verify_hashes: {verify_hashes!r} is not one of {sorted(_VERIFY_HASHES)}")
    builder = ctypes.POINTER(_native.CModelBuilder)()
    lib.check(lib.atrank_model_builder_new(
        _encode(os.fspath(package_dir), "package_dir"), ctypes.byref(builder)))
    try:
        lib.check(lib.atrank_model_builder_set_backend(builder, _BACKENDS[backend]))
        if intra_threads is not None:
            lib.check(lib.atrank_model_builder_set_intra_threads(
                builder, _size(intra_threads, "intra_threads")))
        if gpu is not None:
            lib.check(lib.atrank_model_builder_set_gpu_policy(builder, _GPU_POLICIES[gpu]))
        if ort_library is not None:
            lib.check(lib.atrank_model_builder_set_ort_library(
                builder, _encode(os.fspath(ort_library), "ort_library")))
        if cache_capacity is not None:
            lib.check(lib.atrank_model_builder_set_cache_capacity(
                builder, _size(cache_capacity, "cache_capacity")))
        if sessions is not None:
            lib.check(lib.atrank_model_builder_set_sessions(
                builder, _size(sessions, "sessions")))
        if verify_hashes is not None:
            lib.check(lib.atrank_model_builder_set_verify_hashes(
                builder, _VERIFY_HASHES[verify_hashes]))
        if exclude_seen is not None:
            if not isinstance(exclude_seen, bool):
                raise InvalidArgumentError(
                    f"exclude_seen: expected True or False, got {exclude_seen!r}")
            lib.check(lib.atrank_model_builder_set_exclude_seen(builder, int(exclude_seen)))
        if tract_fusion is not None:
            if not isinstance(tract_fusion, (set, frozenset, list, tuple)) or \
                    not set(tract_fusion) <= set(_TRACT_FUSION):
                raise InvalidArgumentError(
                    f"tract_fusion: expected a set of {sorted(_TRACT_FUSION)}, got "
                    f"{tract_fusion!r}")
            lib.check(lib.atrank_model_builder_set_tract_fusion(
                builder, sum(_TRACT_FUSION[k] for k in set(tract_fusion))))
        if batch_rows is not None:
            lib.check(lib.atrank_model_builder_set_batch_rows(
                builder, _size(batch_rows, "batch_rows")))
    except BaseException:
        lib.atrank_model_builder_free(builder)
        raise
    return builder


class Model:
    """A model package loaded on one backend, through ``libatrank.so``.

    ``Model(package_dir, backend="tract")`` loads ``package_dir``; ``backend="ort"`` uses ONNX
    Runtime, whose shared library comes from ``ort_library=`` or ``$ATRANK_ORT_LIB``. The
    options map to the C builder (``atrank_model_builder_*``); ``None`` keeps the library's
    default. ``sessions`` sizes ONNX Runtime's session pool (1..64): threads scoring one ORT
    model at once need more than one. ``verify_hashes`` is ``"small"`` (the default: the
    SHA-256 of every package file of at most 64 MiB is checked at load) or ``"all"`` (every
    file's); sizes are always checked. ``exclude_seen=True`` gives candidates the user already
    touched (a target-group behavior with their id) the score ``-inf``, so they sort last
    (default ``False``: every candidate gets the model's score). ``batch_rows`` caps the
    candidate rows of one graph run of :meth:`score_batch` (default 1024; 0: no row limit): a
    batch with more runs in several, each request whole. ``tract_fusion`` is the set of
    atrank's own tract kernels to use, of ``{"attention", "layer_norm"}`` (default: both in a
    release build of ``libatrank.so``, none in a debug build); :meth:`stats` counts what was
    fused. ``lib_path`` picks ``libatrank.so``
    (else ``$ATRANK_LIB``, else the loader's path).

    Thread safety: one ``Model`` may be used from any number of Python threads at once. ctypes
    releases the GIL for the duration of every C call, so scoring runs in parallel; only the
    conversion of the Python arguments holds the GIL. :meth:`close` waits for calls in flight
    and refuses new ones (``ValueError``).

    Lifetime: call :meth:`close` or use ``with Model(...) as model:``; the garbage collector
    frees a forgotten one too. All C memory an argument needs lives for one call only.
    """

    def __init__(
        self,
        package_dir: str | os.PathLike,
        backend: str = "tract",
        *,
        intra_threads: int | None = None,
        gpu: str | None = None,
        ort_library: str | os.PathLike | None = None,
        cache_capacity: int | None = None,
        sessions: int | None = None,
        verify_hashes: str | None = None,
        exclude_seen: bool | None = None,
        batch_rows: int | None = None,
        tract_fusion: set[str] | None = None,
        lib_path: str | os.PathLike | None = None,
    ) -> None:
        self._handle = None
        self._active = 0
        self._cv = threading.Condition()
        if backend not in _BACKENDS:
            raise InvalidArgumentError(
                f"backend: {backend!r} is not one of {sorted(_BACKENDS)}"
            )
        if gpu is not None and gpu not in _GPU_POLICIES:
            raise InvalidArgumentError(f"gpu: {gpu!r} is not one of {sorted(_GPU_POLICIES)}")
        self._lib = lib = _native.load_library(lib_path)
        self.package_dir = os.fspath(package_dir)

        builder = _new_builder(lib, self.package_dir, backend, intra_threads=intra_threads,
                               gpu=gpu, ort_library=ort_library,
                               cache_capacity=cache_capacity, sessions=sessions,
                               verify_hashes=verify_hashes, exclude_seen=exclude_seen,
                               batch_rows=batch_rows, tract_fusion=tract_fusion)
        model = ctypes.POINTER(_native.CModel)()
        # build always consumes the builder, also on error.
        lib.check(lib.atrank_model_builder_build(builder, ctypes.byref(model)))
        self._handle = model

    @classmethod
    def _from_raw(cls, lib, handle, package_dir: str) -> Model:
        """A Model owning ``handle`` (a model reference from the C API)."""
        self = cls.__new__(cls)
        self._handle = handle
        self._active = 0
        self._cv = threading.Condition()
        self._lib = lib
        self.package_dir = package_dir
        return self

    # ----- lifetime -----

    @contextmanager
    def _use(self):
        with self._cv:
            if self._handle is None:
                raise ValueError(f"this atrank.{type(self).__name__} is closed")
            self._active += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._cv:
                self._active -= 1
                if self._active == 0:
                    self._cv.notify_all()

    def close(self) -> None:
        """Frees the C object after the calls in flight return. Idempotent."""
        with self._cv:
            handle = self._handle
            if handle is None:
                return
            self._handle = None
            while self._active:
                self._cv.wait()
        self._free(handle)

    def _free(self, handle) -> None:
        self._lib.atrank_model_free(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A backstop only: no call can be in flight, since each one holds a reference to self.
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._handle = None
            # atrank_model_free never fails; no lock here, as no call can be in flight.
            self._lib.atrank_model_free(handle)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.serving
        return f"atrank.Model({self.package_dir!r}, {state})"

    # ----- information -----

    @property
    def backend(self) -> str:
        """``"tract"`` or ``"ort"``."""
        out = ctypes.c_uint32()
        with self._use() as handle:
            self._lib.check(self._lib.atrank_model_backend(handle, ctypes.byref(out)))
        return _BACKEND_NAMES.get(out.value, str(out.value))

    @property
    def serving(self) -> str:
        """What runs the graph: ``"tract"``, ``"ort-cpu"`` or ``"ort-cuda"``."""
        out = ctypes.c_uint32()
        with self._use() as handle:
            self._lib.check(self._lib.atrank_model_serving(handle, ctypes.byref(out)))
        return _SERVING_NAMES.get(out.value, str(out.value))

    @property
    def max_candidates(self) -> int:
        """The most candidates one request may carry (the package's ``limits.max_candidates``)."""
        out = ctypes.c_size_t()
        with self._use() as handle:
            self._lib.check(self._lib.atrank_model_max_candidates(handle, ctypes.byref(out)))
        return out.value

    @property
    def library_version(self) -> str:
        return self._lib.version

    def stats(self) -> Stats:
        """A snapshot of the model's counters: per entry point the calls, failures by code and
        a latency histogram of the successful calls; the encoding cache; tract plans; busy ONNX
        Runtime sessions. Cheap: fine on every metrics scrape."""
        with self._use() as handle:
            return read_stats(self._lib, handle)

    def info(self) -> ModelInfo:
        """What identifies the model: package name, spec version, creator, the graph's SHA-256,
        vocabulary sizes, limits and what serves it."""
        with self._use() as handle:
            return read_info(self._lib, handle)

    # ----- scoring -----

    def score(
        self,
        behaviors: Sequence[Any] | None,
        candidates: Sequence[str],
        request_time: int,
        *,
        user_key: str | None = None,
    ) -> np.ndarray:
        """Scores ``candidates`` for one user with ``behaviors`` at ``request_time`` (unix s).

        Returns one float32 logit per candidate, in the candidates' order (higher ranks first).
        ``behaviors`` holds :class:`Behavior` tuples or mappings; ``None`` or empty is an empty
        history. With ``user_key`` the user's encoding is cached (``atrank_model_score_cached``;
        same scores). Raises an :class:`~atrank.Error` subclass on bad input.
        """
        keep: list = []
        c_behaviors, n_behaviors = _behaviors(behaviors, keep)
        c_candidates, n_candidates = _candidates(candidates, keep)
        time = _int64(request_time, "request_time")
        key = None if user_key is None else _encode(user_key, "user_key")
        scores = np.zeros(n_candidates, dtype=np.float32)
        out = scores.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        with self._use() as handle:
            if user_key is None:
                err = self._lib.atrank_model_score(
                    handle, c_behaviors, n_behaviors, c_candidates, n_candidates, time, out,
                    n_candidates)
            else:
                err = self._lib.atrank_model_score_cached(
                    handle, key, c_behaviors, n_behaviors, c_candidates, n_candidates, time, out,
                    n_candidates)
        self._lib.check(err)
        return scores

    def score_batch(
        self, requests: Iterable[Any], *, errors: str = "raise"
    ) -> list[np.ndarray | Error]:
        """Scores many users; returns one float32 array per request, in order.

        Each request is a :class:`Request` tuple or a mapping with ``behaviors``,
        ``candidates`` and ``request_time``. When the library has ``atrank_model_score_batch``
        the requests run as batches of up to ``MAX_BATCH_REQUESTS`` (similar-sized requests
        share a graph run); otherwise one ``atrank_model_score`` call each. Scores equal
        :meth:`score`'s up to float rounding.

        ``errors="raise"`` (default): the first bad request raises its error, its message
        naming ``requests[i]``. ``errors="return"``: a bad request's slot holds its
        :class:`~atrank.Error` instead, and the other requests are scored all the same.
        """
        if errors not in ("raise", "return"):
            raise InvalidArgumentError(f"errors: {errors!r} is not 'raise' or 'return'")
        requests = list(requests)
        results: list[np.ndarray | Error] = []
        step = _native.MAX_BATCH_REQUESTS
        for start in range(0, len(requests), step):
            chunk = requests[start:start + step]
            if self._lib.has_score_batch:
                results.extend(self._score_chunk(chunk, start, errors))
            else:
                results.extend(self._score_one_by_one(chunk, start, errors))
        return results

    def _score_one_by_one(self, chunk: list, start: int, errors: str) -> list:
        out: list[np.ndarray | Error] = []
        for i, request in enumerate(chunk, start):
            where = f"requests[{i}]"
            try:
                behaviors, candidates, time = _request_fields(request, where)
                out.append(self.score(behaviors, candidates, time))
            except Error as e:
                if errors == "return":  # the slot says which request it was
                    out.append(e)
                    continue
                if not e.message.startswith(where):
                    raise type(e)(f"{where}: {e.message}", e.code) from None
                raise
        return out

    def _score_chunk(self, chunk: list, start: int, errors: str) -> list:
        keep: list = []
        c_requests = (CRequest * len(chunk))()
        sizes = []
        try:
            for i, request in enumerate(chunk):
                where = f"requests[{start + i}]"
                behaviors, candidates, time = _request_fields(request, where)
                r = c_requests[i]
                r.behaviors, r.behaviors_len = _behaviors(behaviors, keep, where + ".")
                r.candidates, r.candidates_len = _candidates(candidates, keep, where + ".")
                r.request_time = _int64(time, f"{where}.request_time")
                sizes.append(r.candidates_len)
        except Error:
            if errors == "raise":
                raise
            return self._score_one_by_one(chunk, start, errors)
        total = sum(sizes)
        scores = np.zeros(total, dtype=np.float32)
        out = scores.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        with self._use() as handle:
            err = self._lib.atrank_model_score_batch(handle, c_requests, len(chunk), out, total)
        try:
            self._lib.check(err)
        except Error as e:
            if errors == "raise":
                if start:  # C numbers requests within this call
                    e = type(e)(_renumber(e.message, start), e.code)
                raise e from None
            return self._score_one_by_one(chunk, start, errors)
        bounds = np.cumsum([0, *sizes])
        return [scores[bounds[i]:bounds[i + 1]] for i in range(len(chunk))]


class Handle:
    """A hot-swappable model (``atrank_handle``): scoring uses the model current when the call
    starts; :meth:`reload` swaps a new one in atomically, and a failed reload raises and leaves
    the old model serving.

    ``Handle(model)`` serves ``model`` (generation 1); the handle takes its own reference, so
    ``model`` stays usable and is closed by its owner as usual. Thread safety: every method may
    be called from any number of threads at once, reloads included; :meth:`close` waits for
    calls in flight.
    """

    def __init__(self, model: Model) -> None:
        self._handle = None
        self._active = 0
        self._cv = threading.Condition()
        self._lib = lib = model._lib
        if not hasattr(lib, "atrank_handle_new"):
            raise LibraryError("this libatrank has no atrank_handle_* functions")
        out = ctypes.POINTER(_native.CHandle)()
        with model._use() as m:
            lib.check(lib.atrank_handle_new(m, ctypes.byref(out)))
        self._handle = out

    _use = Model._use
    close = Model.close
    __enter__ = Model.__enter__
    __exit__ = Model.__exit__

    def _free(self, handle) -> None:
        self._lib.atrank_handle_free(handle)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._handle = None
            self._lib.atrank_handle_free(handle)

    def reload(self, package_dir: str | os.PathLike, backend: str = "tract", **options: Any) -> int:
        """Loads ``package_dir`` (options as for :class:`Model`) and swaps it in; returns the
        new generation."""
        builder = _new_builder(self._lib, package_dir, backend, **options)
        generation = ctypes.c_uint64()
        with self._use() as h:
            # reload always consumes the builder, also on error.
            err = self._lib.atrank_handle_reload(h, builder, ctypes.byref(generation))
        self._lib.check(err)
        return generation.value

    @property
    def generation(self) -> int:
        """1 + the number of successful reloads."""
        out = ctypes.c_uint64()
        with self._use() as h:
            self._lib.check(self._lib.atrank_handle_generation(h, ctypes.byref(out)))
        return out.value

    def snapshot(self) -> tuple[Model, int]:
        """The model serving now (a :class:`Model` of its own: close it) and its generation,
        read together."""
        model = ctypes.POINTER(_native.CModel)()
        generation = ctypes.c_uint64()
        with self._use() as h:
            self._lib.check(self._lib.atrank_handle_snapshot(
                h, ctypes.byref(model), ctypes.byref(generation)))
        return Model._from_raw(self._lib, model, "(handle snapshot)"), generation.value

    def score(self, behaviors: Sequence[Any] | None, candidates: Sequence[str],
              request_time: int) -> np.ndarray:
        """:meth:`Model.score` on the current model."""
        keep: list = []
        c_behaviors, n_behaviors = _behaviors(behaviors, keep)
        c_candidates, n_candidates = _candidates(candidates, keep)
        time = _int64(request_time, "request_time")
        scores = np.zeros(n_candidates, dtype=np.float32)
        out = scores.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        with self._use() as h:
            err = self._lib.atrank_handle_score(
                h, c_behaviors, n_behaviors, c_candidates, n_candidates, time, out, n_candidates)
        self._lib.check(err)
        return scores


def _renumber(message: str, start: int) -> str:
    prefix = "requests["
    if message.startswith(prefix):
        index, _, rest = message[len(prefix):].partition("]")
        if index.isdigit():
            return f"{prefix}{int(index) + start}]{rest}"
    return message


def _size(value: Any, where: str) -> int:
    n = _int64(value, where)
    if n < 0:
        raise InvalidArgumentError(f"{where}: {n} is negative")
    return n
