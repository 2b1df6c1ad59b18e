import gzip
import shutil
from pathlib import Path

import pytest

from atrank_export.readers import read_amazon
from atrank_export.readers.amazon import dataset_name, last_category, parse_record
from atrank_export.split import build_split

DATA = Path(__file__).parent / "data" / "amazon"
REVIEWS = DATA / "reviews_Electronics_5.json"
META = DATA / "meta_Electronics.json"
REVIEWED = ["0528881469", "0594451647", "0972683275", "1400501466", "B00000J1EQ",
            "B00000JBHP", "B00001P4ZH", "B00004SB92"]


def test_read_amazon_fixture():
    log = read_amazon(REVIEWS, META)
    assert log.name == "amazon-electronics" and log.target_group == "item"
    assert len(log) == 24
    assert log.groups == ["item"] and log.actions == ["review"] and log.features == {}
    assert log.timestamp.dtype.name == "int64"
    e0 = log.event(0)
    assert (e0["user"], e0["id"], e0["timestamp"]) == ("A1H8PY3QHMQQA0", "0528881469",
                                                       1370131200)
    assert sorted(log.objects["item"]) == REVIEWED
    cat = log.catalog_dict("item")
    # meta restricted to reviewed asins (0132793040, B00002EQCW dropped); B00004SB92 has no meta
    assert sorted(cat) == REVIEWED[:-1]
    assert cat["0528881469"] == {"category": "Trucking GPS"}
    assert cat["0594451647"] == {"category": "TV Accessories & Parts"}     # last of last path
    assert cat["B00000JBHP"] == {"category": "Photographer's Vests"}       # asin not first key
    assert cat["B00000J1EQ"] == {}                                          # no categories key


def test_amazon_split_and_vocab():
    log = read_amazon(REVIEWS, META)
    split = build_split(log, max_history=5, embedding_dim=8, heads=2, ffn=8)
    assert len(log.users) == 6
    for u in range(len(split.users)):
        t = split.time[split.offsets[u]:split.offsets[u + 1]]
        assert (t[1:] >= t[:-1]).all()
    # atrank index = 1 + the original's 0-based rank of the sorted asin
    assert split.vocabs["item_id"] == sorted(REVIEWED)
    assert split.vocabs["category"] == sorted({"Trucking GPS", "TV Accessories & Parts",
                                               "Mounts", "eBook Readers",
                                               "Photographer's Vests", "Headphones"})
    # no category: B00000J1EQ (meta without categories), B00004SB92 (no meta) -> 0
    for asin in ("B00000J1EQ", "B00004SB92"):
        assert split.item_feats[split.vocabs["item_id"].index(asin) + 1, 1] == 0


def test_amazon_gzip_and_without_meta(tmp_path):
    for src in (REVIEWS, META):
        with open(src, "rb") as f, gzip.open(tmp_path / (src.name + ".gz"), "wb") as g:
            shutil.copyfileobj(f, g)
    plain = read_amazon(REVIEWS, META)
    gz = read_amazon(tmp_path / (REVIEWS.name + ".gz"), tmp_path / (META.name + ".gz"))
    assert gz == plain
    assert read_amazon(REVIEWS).catalogs == {}


def test_parse_record_is_safe_and_accepts_both_syntaxes(tmp_path):
    assert parse_record("{'a': [['x', \"y's\"]], 'b': 1.5}", tmp_path, 1) == \
        {"a": [["x", "y's"]], "b": 1.5}
    assert parse_record('{"verified": true, "vote": null}', tmp_path, 1) == \
        {"verified": True, "vote": None}
    with pytest.raises(ValueError, match="line 7"):
        parse_record("__import__('os').system('echo hi')", tmp_path, 7)
    with pytest.raises(ValueError, match="expected a dict"):
        parse_record("[1, 2]", tmp_path, 1)


def test_last_category_edge_cases():
    assert last_category([["a", "b"], ["c", "d"]]) == "d"
    assert last_category(None) is None and last_category([]) is None
    assert last_category([[]]) is None


def test_amazon_errors(tmp_path):
    bad = tmp_path / "reviews_X_5.json"
    bad.write_text('{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}\n\n'
                   '{"reviewerID": "A", "asin": "C"}\n')
    with pytest.raises(ValueError, match=r"reviews_X_5\.json line 3: missing column "
                                         r"unixReviewTime"):
        read_amazon(bad)
    bad.write_text('{"reviewerID": "", "asin": "B", "unixReviewTime": 1}\n')
    with pytest.raises(ValueError, match="line 1: column reviewerID: empty id"):
        read_amazon(bad)
    bad.write_text('{"reviewerID": "A", "asin": "B", "unixReviewTime": 1.5}\n')
    with pytest.raises(ValueError, match="column unixReviewTime: not an integer"):
        read_amazon(bad)


def test_dataset_name():
    assert dataset_name(Path("reviews_Clothing_Shoes_and_Jewelry_5.json.gz")) == \
        "amazon-clothing-shoes-and-jewelry"
    assert dataset_name(Path("reviews.json")) == "amazon"
