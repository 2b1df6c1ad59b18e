"""The Taobao user-behavior sample through the generic log reader, when its path is given.

The file is not part of this repository (its terms: research use). Set ``ATRANK_TAOBAO`` to
``.../user_behavior_sample.csv`` to run these tests (scripts/test.sh does when the file is
present beside the checkout); without it they are skipped. The expected figures are the ones its
README states, counted independently of this code.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from atrank_export.readers import read_behavior_log
from atrank_export.split import build_split

PATH = os.environ.get("ATRANK_TAOBAO")
pytestmark = pytest.mark.skipif(not PATH, reason="ATRANK_TAOBAO is not set")
COLUMNS = ["user", "object_id", "category", "action", "timestamp"]


@pytest.fixture(scope="module")
def log():
    return read_behavior_log(Path(PATH), columns=COLUMNS, header=False, default_group="item",
                             catalog_from_events=True)


def test_counts_match_the_readme(log):
    assert len(log) == 84_440
    assert len(log.users) == 815
    assert len(log.objects["item"]) == 55_344
    assert len(log.values["category"]) == 2_913
    counts = {a: int((log.action == k).sum()) for k, a in enumerate(log.actions)}
    assert counts == {"pv": 75_837, "cart": 4_497, "fav": 2_356, "buy": 1_750}
    buyers = np.unique(log.user[log.action == log.actions.index("buy")])
    assert len(buyers) == 559
    # 2017-11-24 16:00 UTC .. 2017-12-03 16:00 UTC
    assert log.timestamp.min() >= 1_511_539_200 and log.timestamp.max() < 1_512_316_800
    # every item has its category in the catalog built from the events
    cat = log.catalog_column("item", "category")
    assert (cat >= 0).all()


def test_both_tasks_split(log):
    kw = {"vocabulary": "train", "universe": "objects", "min_count": 2, "max_history": 50}
    nxt = build_split(log, first_touch=True, seed=1, **kw)
    buy = build_split(log, target_actions=["buy", "cart"], seed=1, **kw)
    for sp in (nxt, buy):
        assert int(sp.universe_count.sum()) == 55_344
        for u, _, neg in sp.test:                      # the negative is an untouched object
            left = sp.universe_count[neg] - dict(zip(sp.interacted[u].tolist(),
                                                     sp.interacted_count[u].tolist())).get(neg, 0)
            assert left >= 1
    assert len(nxt.users) == 815
    # users with at least 3 buy/cart behaviors: fewer than all, more than none
    assert 0 < len(buy.users) < 815 and len(buy.test) == len(buy.users)


def test_compare_runs_on_the_sample(tmp_path):
    from atrank_export.cli import main

    runs = tmp_path / "runs"
    assert main(["compare", "--data", "log", "--log", PATH, "--columns", ",".join(COLUMNS),
                 "--no-header", "--catalog-from-events", "--min-count", "2",
                 "--target-actions", "buy,cart", "--max-users", "40", "--seeds", "1",
                 "--max-epochs", "1", "--embedding-dim", "4", "--models", "ATRank,BPR",
                 "--variants", "ATRank -action", "--no-eta", "--no-progress",
                 "--runs", str(runs)]) == 0
    s = json.loads((runs / "summary.json").read_text())
    assert s["facts"]["users"] == 40 and "user_behavior_sample" in s["facts"]["describe"]
    assert set(s["models"]) == {"ATRank", "BPR", "ATRank -action"}
