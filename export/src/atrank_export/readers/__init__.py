"""Data readers: files -> columnar :class:`~atrank_export.behaviors.BehaviorLog`.

* :func:`read_amazon` -- SNAP Amazon reviews + meta files (as the original ATRank read them).
* :func:`read_movielens_csv` -- MovieLens CSV releases (ratings.csv + movies.csv).
* :func:`ml100k_log` -- MovieLens-100k from the recbole wheel.
* :func:`read_behavior_log` -- the generic multi-group log (CSV, JSON Lines, Parquet) with
  optional catalogs.
"""

from .amazon import read_amazon
from .behavior_log import read_behavior_log
from .movielens import ml100k_log, read_ml100k, read_movielens_csv

__all__ = ["ml100k_log", "read_amazon", "read_behavior_log", "read_ml100k",
           "read_movielens_csv"]
