"""MovieLens as a BehaviorLog: the CSV releases (ml-latest-small, ml-25m, ...) and ML-100k.

CSV files (UTF-8, header line, read with the :mod:`csv` module; gzip accepted):

* ``ratings.csv``: ``userId,movieId,rating,timestamp`` (rating may be fractional, e.g. 3.5;
  timestamp = unix seconds).
* ``movies.csv``: ``movieId,title,genres``; titles with commas are quoted, genres are
  ``|``-separated.

Mapping (the same as the ML-100k loader in :mod:`atrank_export.data`): one event per rating,
group ``"item"``, object = movie id, action = ``"like"`` if rating >= 4 else ``"other"``,
timestamp = rating time; category = the movie's FIRST genre, in the item catalog. A movie
with ``(no genres listed)`` (or an empty genres field) gets the category ``"unknown"``, the
name ML-100k itself uses for its genre-less films, so both sources share one spelling. Rated
movies missing from movies.csv get no category (index 0 in training).

:func:`ml100k_log` wraps the existing recbole ML-100k loader (:func:`~atrank_export.data.
load_ml100k`) instead of parsing anything itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..behaviors import BehaviorLog, Event
from ..data import DEFAULT_SEED, Dataset, load_ml100k
from ._io import open_text

NO_GENRE = "(no genres listed)"
UNKNOWN_GENRE = "unknown"


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


def read_ratings(path: Path) -> list[Event]:
    events = []
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
        events.append(Event(user, "item", "like" if rating >= 4 else "other", movie, int(ts)))
    return events


def read_movielens_csv(ratings: Path, movies: Path | None = None,
                       name: str = "movielens") -> BehaviorLog:
    """ratings.csv (+ movies.csv for categories) -> BehaviorLog (group "item")."""
    events = read_ratings(ratings)
    catalog = read_movies(movies) if movies is not None else {}
    return BehaviorLog(name, events, {"item": catalog}, "item")


def log_from_dataset(dataset: Dataset, group: str = "item") -> BehaviorLog:
    """A single-group Dataset as a BehaviorLog (events in the dataset's per-user order).

    Note: :func:`~atrank_export.behaviors.to_item_dataset` re-applies the order rule with tie
    keys drawn per event in log order, so behaviors sharing a timestamp may come back in a
    different order than in ``dataset`` (same behaviors, same timestamps).
    """
    events = [Event(user, group, b.action, b.item, int(b.timestamp))
              for user in dataset.users for b in dataset.sequences[user]]
    catalog = {item: ({} if cate is None else {"category": cate})
               for item, cate in dataset.catalog.items()}
    return BehaviorLog(dataset.name, events, {group: catalog}, group)


def ml100k_log(cache: Path | None = None, seed: int = DEFAULT_SEED) -> BehaviorLog:
    """MovieLens-100k (fetched from the recbole wheel by :func:`load_ml100k`) as a log.

    For training on ML-100k itself prefer ``--data ml100k`` / :func:`load_ml100k`: going
    through the log re-draws the tie-break of equal timestamps (see :func:`log_from_dataset`).
    """
    return log_from_dataset(load_ml100k(cache, seed))
