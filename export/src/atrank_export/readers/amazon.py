"""The SNAP Amazon review data (e.g. Electronics) read as the original ATRank preprocessing did.

Files (plain or gzip, detected by content):

* reviews, e.g. ``reviews_Electronics_5.json``: one record per line with keys ``reviewerID``,
  ``asin``, ``reviewerName``, ``helpful``, ``reviewText``, ``overall``, ``summary``,
  ``unixReviewTime``, ``reviewTime``. Only ``reviewerID``, ``asin`` and ``unixReviewTime`` are
  kept (the original kept exactly these three columns).
* meta, e.g. ``meta_Electronics.json``: one *Python literal* dict per line (single quotes,
  not strict JSON) with keys ``asin``, ``imUrl``, ``related``, ``salesRank``, ``categories``
  (a list of category paths, each a list of strings), ``title``, ``price``, ``brand``, ...
  Restricted to the asins that occur in the reviews; category = the LAST element of the LAST
  category path (``categories[-1][-1]``).

Parsing: the original ran ``eval()`` on every line of both files. Here each line is parsed
with :func:`ast.literal_eval` (literals only, nothing executed); a line that is strict JSON is
first tried with :func:`json.loads`, which yields the same dict for such lines and is several
times faster (it also accepts ``true``/``false``/``null``, which later SNAP dumps contain).
Meta lines whose first key is ``asin`` with an asin that no review mentions are skipped
without being parsed (most of ``meta_Electronics`` is not in the 5-core reviews).

Output: a columnar :class:`~atrank_export.behaviors.BehaviorLog` with one event per review: group
``"item"``, action ``"review"``, ``object_id`` = asin, ``user`` = reviewerID, ``timestamp`` =
unixReviewTime; categories live in the item catalog (``catalogs["item"][asin] =
{"category": ...}``), not on the events.

Decisions where the original is silent or would crash:

* a meta line without ``categories`` (or with an empty list, or an empty last path): the item
  gets no category (the original's ``x[-1][-1]`` would raise); in training it maps to
  category index 0 (unknown). Items reviewed but absent from meta likewise (the original's
  remap would have produced NaN ids for them).
* an asin listed twice in meta: the later line wins.
* a review missing one of the three kept keys, a non-integer ``unixReviewTime`` or an empty
  id raises ValueError naming the file, line and key.

Index remapping -- the original vs atrank. The original mapped users, items and categories to
the 0-based ranks of their sorted keys (``build_map``: item 0 is a real item, no padding id;
Electronics: 192,403 users, 63,001 items, 801 categories, 1,689,188 reviews). atrank instead
keeps raw ids and reserves index 0 for unknown/padding: key k (0-based) of a vocabulary has
index k + 1, and vocabularies are sorted in byte order (package format 3), as pandas sorts
Python strings, so for asins atrank index = original index + 1. Users are not embedded.
Within a user, reviews are ordered by time, equal times in file order (the log's tie rule,
:mod:`atrank_export.behaviors`; the original used pandas' unstable sort, i.e. arbitrary ties).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from ..behaviors import BehaviorLog, LogBuilder, RowBuffer
from ._io import numbered_lines, strip_gz

REVIEW_KEYS = ("reviewerID", "asin", "unixReviewTime")
_INT = re.compile(r"[+-]?\d+")
_ASIN_FIRST = re.compile(r"""\s*\{\s*(['"])asin\1\s*:\s*(['"])([^'"\\]*)\2""")


def parse_record(line: str, path: Path, lineno: int) -> dict:
    """One line of a SNAP file: strict JSON or a Python literal dict."""
    try:
        rec = json.loads(line)
    except ValueError:
        try:
            rec = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            raise ValueError(f"{path} line {lineno}: not a JSON or Python-literal record "
                             f"({type(err).__name__}: {err})") from None
    if isinstance(rec, dict):
        return rec
    raise ValueError(f"{path} line {lineno}: expected a dict, got {type(rec).__name__}")


def _timestamp(value, path: Path, lineno: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and _INT.fullmatch(value.strip())):
        return int(value)
    raise ValueError(f"{path} line {lineno}: column unixReviewTime: "
                     f"not an integer timestamp: {value!r}")


def read_reviews(path: Path, builder: LogBuilder) -> set[str]:
    """Every review into ``builder`` (group "item", action "review"); -> the asins seen."""
    path = Path(path)
    buf = RowBuffer(builder)
    asins: set[str] = set()
    intern: dict[str, str] = {}
    for lineno, line in numbered_lines(path):
        rec = parse_record(line, path, lineno)
        for key in REVIEW_KEYS:
            if key not in rec:
                raise ValueError(f"{path} line {lineno}: missing column {key}")
        ids = []
        for key in ("reviewerID", "asin"):
            v = rec[key]
            v = "" if v is None else str(v)
            if not v:
                raise ValueError(f"{path} line {lineno}: column {key}: empty id")
            ids.append(intern.setdefault(v, v))
        ts = _timestamp(rec["unixReviewTime"], path, lineno)
        buf.add(ids[0], "item", "review", ids[1], ts)
        asins.add(ids[1])
    buf.flush()
    return asins


def last_category(categories) -> str | None:
    """``categories[-1][-1]`` as a string, or None when there is none."""
    if not isinstance(categories, (list, tuple)) or not categories:
        return None
    last = categories[-1]
    if isinstance(last, str):          # tolerate a single flat path
        return last or None
    if not isinstance(last, (list, tuple)) or not last or last[-1] is None:
        return None
    return str(last[-1]) or None


def read_meta(path: Path, asins: set[str] | None = None) -> dict[str, dict[str, str]]:
    """asin -> {"category": ...} (empty dict when the record has no category)."""
    path = Path(path)
    catalog: dict[str, dict[str, str]] = {}
    for lineno, line in numbered_lines(path):
        if asins is not None:
            m = _ASIN_FIRST.match(line)
            if m and m.group(3) not in asins:
                continue
        rec = parse_record(line, path, lineno)
        asin = rec.get("asin")
        if asin is None or str(asin) == "":
            raise ValueError(f"{path} line {lineno}: column asin: empty id")
        asin = str(asin)
        if asins is not None and asin not in asins:
            continue
        cate = last_category(rec.get("categories"))
        catalog[asin] = {} if cate is None else {"category": cate}
    return catalog


def dataset_name(reviews: Path) -> str:
    """``reviews_Electronics_5.json.gz`` -> ``amazon-electronics``; else ``amazon``."""
    m = re.match(r"reviews_(.+?)(_5)?\.json$", strip_gz(reviews))
    return f"amazon-{m.group(1).lower().replace('_', '-')}" if m else "amazon"


def read_amazon(reviews: Path, meta: Path | None = None, name: str | None = None) -> BehaviorLog:
    """Read a SNAP reviews file and (optionally) its meta file into a BehaviorLog."""
    builder = LogBuilder(name or dataset_name(reviews), "item", {"review": "every review"},
                         {"category": "the last element of the item's last category path "
                                      "(meta 'categories'), from the item catalog"})
    asins = read_reviews(reviews, builder)
    if meta is not None:
        catalog = read_meta(meta, asins)
        builder.add_catalog("item", list(catalog),
                            {"category": [c.get("category") for c in catalog.values()]})
    return builder.build()


__all__ = ["last_category", "parse_record", "read_amazon", "read_meta", "read_reviews"]
