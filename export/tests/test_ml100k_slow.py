"""Full-data check (needs the recbole wheel from PyPI or $ATRANK_CACHE): run with -m slow."""

import pytest

from atrank_export.readers import ml100k_log
from atrank_export.split import build_split


@pytest.mark.slow
def test_ml100k_facts_and_short_training(tmp_path):
    ds = ml100k_log()
    assert len(ds.users) == 943 and len(ds.catalog_objects("item")) == 1682
    assert len(ds) == 100_000
    assert len({c["category"] for c in ds.catalog_dict("item").values()}) == 19
    from atrank_export.cli import main

    assert main(["train", "--data", "ml100k", "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--max-users", "60", "--no-progress"]) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                 "--out", str(tmp_path / "pkg")]) == 0
    sp = build_split(ds, max_users=60)
    assert len(sp.users) == 60
