"""MovieLens as a BehaviorLog: the CSV releases (ml-latest-small, ml-25m, ...) and ML-100k.

CSV files (UTF-8, header line, read with the :mod:`csv` module in chunks; gzip accepted):

* ``ratings.csv``: ``userId,movieId,rating,timestamp`` (rating may be fractional, e.g. 3.5;
  timestamp = unix seconds).
* ``movies.csv``: ``movieId,title,genres``; titles with commas are quoted, genres are
  ``|``-separated.

ML-100k ships inside the PyPI wheel ``recbole==1.2.1``; it is downloaded with pip (no install)
into ``$ATRANK_CACHE/wheels`` (default ``./.cache``) and read straight out of the zip
(``ml-100k.inter``/``ml-100k.item``, tab-separated, parsed by pyarrow). MovieLens data may not
be redistributed: it is never written into the repository.

Mapping (both sources): one event per rating, group ``"item"``, object = movie id, action =
``"like"`` if rating >= 4 else ``"other"``, timestamp = rating time; category = the movie's
FIRST genre, in the item catalog. A movie without genres (``(no genres listed)``, an empty
field) gets the category ``"unknown"``, the name ML-100k itself uses for its genre-less films.
Rated movies missing from the movie file get no category (index 0 in training).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..behaviors import BehaviorLog, LogBuilder, RowBuffer
from ._io import open_text

RATING_RULES = {"like": "rating >= 4", "other": "rating < 4"}
FEATURE_SOURCES = {"category": "the movie's first genre (a movie without one: 'unknown'), "
                               "from the item catalog"}
NO_GENRE = "(no genres listed)"
UNKNOWN_GENRE = "unknown"
RECBOLE_VERSION = "1.2.1"
ML_PREFIX = "recbole/dataset_example/ml-100k/"


def cache_dir() -> Path:
    return Path(os.environ.get("ATRANK_CACHE", "./.cache"))


def _rows(path: Path, required: list[str]):
    """(line number, row dict) of a headed CSV file, after checking its columns."""
    path = Path(path)
    with open_text(path, encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = [c for c in required if c not in fields]
        if missing:
            raise ValueError(f"{path} line 1: missing column(s) {', '.join(missing)} "
                             f"(header: {fields})")
        for row in reader:
            yield reader.line_num, row


def _cell(path: Path, lineno: int, row: dict, col: str) -> str:
    v = (row.get(col) or "").strip()
    if not v:
        raise ValueError(f"{path} line {lineno}: column {col}: empty value")
    return v


def first_genre(genres: str) -> str:
    first = (genres or "").split("|")[0].strip()
    return UNKNOWN_GENRE if not first or first == NO_GENRE else first


def read_movies(path: Path) -> dict[str, dict[str, str]]:
    """movieId -> {"category": first genre}."""
    catalog = {}
    for lineno, row in _rows(path, ["movieId", "genres"]):
        catalog[_cell(path, lineno, row, "movieId")] = {"category": first_genre(row["genres"])}
    return catalog


def read_ratings(path: Path, builder: LogBuilder) -> None:
    buf = RowBuffer(builder)
    for lineno, row in _rows(path, ["userId", "movieId", "rating", "timestamp"]):
        user = _cell(path, lineno, row, "userId")
        movie = _cell(path, lineno, row, "movieId")
        rating_s = _cell(path, lineno, row, "rating")
        try:
            rating = float(rating_s)
        except ValueError:
            raise ValueError(f"{path} line {lineno}: column rating: not a number: "
                             f"{rating_s!r}") from None
        ts = _cell(path, lineno, row, "timestamp")
        if not ts.lstrip("+-").isdigit():
            raise ValueError(f"{path} line {lineno}: column timestamp: "
                             f"not an integer timestamp: {ts!r}")
        buf.add(user, "item", "like" if rating >= 4 else "other", movie, int(ts))
    buf.flush()


def _add_catalog(builder: LogBuilder, catalog: dict[str, dict[str, str]]) -> None:
    builder.add_catalog("item", list(catalog),
                        {"category": [c.get("category") for c in catalog.values()]})


def read_movielens_csv(ratings: Path, movies: Path | None = None,
                       name: str = "movielens") -> BehaviorLog:
    """ratings.csv (+ movies.csv for categories) -> BehaviorLog (group "item")."""
    builder = LogBuilder(name, "item", RATING_RULES, FEATURE_SOURCES)
    read_ratings(ratings, builder)
    if movies is not None:
        _add_catalog(builder, read_movies(movies))
    return builder.build()


# ---------------------------------------------------------------------------------------------
# MovieLens-100k (recbole's atomic files)


def fetch_recbole_wheel(cache: Path | None = None) -> Path:
    """Download (once) the recbole wheel with pip and return its path."""
    wheels = (cache or cache_dir()) / "wheels"
    found = sorted(wheels.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    f"recbole=={RECBOLE_VERSION}", "-d", str(wheels)], check=True)
    found = sorted(wheels.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if not found:
        raise RuntimeError(f"pip did not leave a recbole {RECBOLE_VERSION} wheel in {wheels}")
    return found[0]


def _atomic(data: bytes, wanted: list[str], what: str) -> dict[str, pa.Array]:
    """A recbole atomic file (tab-separated, header ``name:type``) -> the wanted columns as
    strings."""
    table = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter="\t"),
                           read_options=pacsv.ReadOptions(autogenerate_column_names=False),
                           convert_options=pacsv.ConvertOptions(
                               column_types={}, strings_can_be_null=False))
    names = [n.split(":")[0] for n in table.column_names]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{what}: header {table.column_names} lacks {missing}")
    return {w: table.column(names.index(w)).combine_chunks().cast(pa.string())
            for w in wanted}


def parse_ml100k(inter: bytes, item: bytes, name: str = "ml100k") -> BehaviorLog:
    """recbole-format ``ml-100k.inter`` / ``ml-100k.item`` bytes -> BehaviorLog."""
    items = _atomic(item, ["item_id", "class"], "ml-100k.item")
    genres = pc.utf8_trim_whitespace(items["class"]).to_pylist()
    first = [(g.split() or [UNKNOWN_GENRE])[0] if g else UNKNOWN_GENRE for g in genres]
    cols = _atomic(inter, ["user_id", "item_id", "rating", "timestamp"], "ml-100k.inter")
    rating = cols["rating"].cast(pa.float64()).to_numpy()
    ts = cols["timestamp"].cast(pa.float64()).to_numpy().astype(np.int64)
    action = np.where(rating >= 4, "like", "other")
    builder = LogBuilder(name, "item", RATING_RULES, FEATURE_SOURCES)
    builder.add_events(cols["user_id"], ["item"] * len(ts), action.tolist(), cols["item_id"],
                       ts)
    builder.add_catalog("item", items["item_id"], {"category": first})
    return builder.build()


def read_ml100k(inter_path: Path, item_path: Path) -> BehaviorLog:
    return parse_ml100k(Path(inter_path).read_bytes(), Path(item_path).read_bytes())


def ml100k_log(cache: Path | None = None) -> BehaviorLog:
    """MovieLens-100k, fetched from the recbole wheel."""
    with zipfile.ZipFile(fetch_recbole_wheel(cache)) as z:
        return parse_ml100k(z.read(ML_PREFIX + "ml-100k.inter"),
                            z.read(ML_PREFIX + "ml-100k.item"))
