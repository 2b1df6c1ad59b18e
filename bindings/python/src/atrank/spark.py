"""Scoring a Spark DataFrame of requests with ``mapInPandas``.

Input columns: ``request_id`` (any type, passed through), ``behaviors``
(``array<struct<item: string, category: string, action: string, timestamp: bigint,
group: string, features: map<string, string>>>``; every struct field but ``item`` and
``timestamp`` optional, ``id`` accepted for ``item``), ``candidates`` (``array<string>``) and
``request_time`` (``bigint``, unix seconds). Output: ``request_id``, ``scores``
(``array<float>``, one logit per candidate in order; null on error) and ``error`` (string,
null when the row scored). A bad row gets its error and never fails the job; a model that
cannot load does fail it.

Each Python worker loads the model once (kept in this module for the life of the worker
process, which Spark reuses across tasks) and scores its Arrow batches in chunks of
``batch_size`` requests through ``atrank_model_score_batch``. When a chunk holds a bad
request, that chunk is scored request by request, so only the bad row carries the error.

The package directory and ``libatrank.so`` must be readable on every executor: either a path
on a shared file system, or a name shipped with ``spark-submit --files/--archives`` (or
``SparkContext.addFile``), which is looked up with :func:`pyspark.SparkFiles.get` when it is
not a path that exists. See ``docs/spark.md``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from typing import Any

from .errors import Error, InvalidArgumentError
from .model import Model

_MODELS: dict[tuple, Model] = {}
_MODELS_LOCK = threading.Lock()

#: The input columns :func:`score_dataframe` reads besides the id column.
REQUEST_COLUMNS = ("behaviors", "candidates", "request_time")


def request_schema(id_type: Any = None) -> Any:
    """The Arrow schema of a requests dataset, as :func:`score_dataframe` reads it (for writing
    Parquet with pyarrow). ``id_type`` is the ``request_id`` column's Arrow type (default
    string)."""
    import pyarrow as pa

    behavior = pa.struct(
        [
            ("item", pa.string()),
            ("category", pa.string()),
            ("action", pa.string()),
            ("timestamp", pa.int64()),
            ("group", pa.string()),
            ("features", pa.map_(pa.string(), pa.string())),
        ]
    )
    return pa.schema(
        [
            ("request_id", id_type if id_type is not None else pa.string()),
            ("behaviors", pa.list_(behavior)),
            ("candidates", pa.list_(pa.string())),
            ("request_time", pa.int64()),
        ]
    )


def resolve_path(path: str | None) -> str | None:
    """``path`` if it exists here, else the file or directory Spark shipped under that name
    (``--files``, ``--archives``, ``addFile``), else ``path`` unchanged (the load then fails
    with the library's message)."""
    if path is None or os.path.exists(path):
        return path
    try:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(path)
    except Exception:  # noqa: BLE001 - no Spark context here: nothing shipped
        return path
    return shipped if os.path.exists(shipped) else path


def worker_model(
    package_dir: str,
    backend: str = "tract",
    lib_path: str | None = None,
    ort_library: str | None = None,
    intra_threads: int | None = 1,
) -> Model:
    """The model for these settings, loaded once per Python process and then reused."""
    key = (package_dir, backend, lib_path, ort_library, intra_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = Model(
                resolve_path(package_dir),
                backend,
                lib_path=resolve_path(lib_path),
                ort_library=resolve_path(ort_library),
                intra_threads=intra_threads,
            )
            _MODELS[key] = model
        return model


def _request_time(value: Any) -> Any:
    # A bigint column with nulls reaches pandas as nullable Int64 (pd.NA) or, with older
    # converters, as float64 (NaN).
    if value is None or value is _pandas_na() or (isinstance(value, float) and math.isnan(value)):
        raise InvalidArgumentError("request_time: is missing (null)")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidArgumentError(f"request_time: {value} is not a whole number of seconds")
        return int(value)
    return value


def _pandas_na() -> Any:
    import pandas as pd

    return pd.NA


def _error_text(e: Error) -> str:
    return f"{e.code_name}: {e.message}"


def score_pandas(model: Model, pdf, id_column: str = "request_id", batch_size: int = 256):
    """Scores one pandas DataFrame of requests; returns ``id_column``, ``scores``, ``error``."""
    import pandas as pd

    n = len(pdf)
    scores: list[Any] = [None] * n
    errors: list[str | None] = [None] * n
    requests: list[tuple[int, tuple]] = []
    for row, (behaviors, candidates, time) in enumerate(
        zip(pdf["behaviors"], pdf["candidates"], pdf["request_time"])
    ):
        try:
            requests.append((row, (behaviors, candidates, _request_time(time))))
        except Error as e:
            errors[row] = _error_text(e)
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        results = model.score_batch([r for _, r in chunk], errors="return")
        for (row, _), result in zip(chunk, results):
            if isinstance(result, Error):
                errors[row] = _error_text(result)
            else:
                scores[row] = result.tolist()
    return pd.DataFrame(
        {
            id_column: pdf[id_column].to_numpy(),
            "scores": pd.Series(scores, dtype=object),
            "error": pd.Series(errors, dtype=object),
        }
    )


def score_dataframe(
    df,
    package_dir: str,
    *,
    backend: str = "tract",
    lib_path: str | None = None,
    ort_library: str | None = None,
    intra_threads: int | None = 1,
    id_column: str = "request_id",
    batch_size: int = 256,
):
    """Scores a Spark DataFrame of requests (see the module doc for the columns).

    Returns a DataFrame of ``id_column``, ``scores`` (``array<float>``) and ``error``
    (``string``), one row per input row, with the same partitioning. ``package_dir``,
    ``lib_path`` (default: ``$ATRANK_LIB`` on the executors, then the loader's path) and
    ``ort_library`` are resolved on the executors: an existing path, or a name shipped with
    ``--files``/``--archives``. ``intra_threads=1`` by default because Spark already runs one
    Python worker per task slot.
    """
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    missing = [c for c in (id_column, *REQUEST_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame lacks the column(s) {missing}; it has {df.columns}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    schema = StructType(
        [
            df.schema[id_column],
            StructField("scores", ArrayType(FloatType(), containsNull=False), nullable=True),
            StructField("error", StringType(), nullable=True),
        ]
    )
    settings = (os.fspath(package_dir), backend, lib_path, ort_library, intra_threads)

    def score_batches(batches: Iterator) -> Iterator:
        model = worker_model(*settings)
        for pdf in batches:
            yield score_pandas(model, pdf, id_column, batch_size)

    return df.select(id_column, *REQUEST_COLUMNS).mapInPandas(score_batches, schema)
