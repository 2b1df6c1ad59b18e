import gzip
import shutil
from pathlib import Path

import pytest

from atrank_export.behaviors import to_item_dataset
from atrank_export.data import build_vocabs
from atrank_export.readers import read_amazon
from atrank_export.readers.amazon import dataset_name, last_category, parse_record

DATA = Path(__file__).parent / "data" / "amazon"
REVIEWS = DATA / "reviews_Electronics_5.json"
META = DATA / "meta_Electronics.json"
REVIEWED = ["0528881469", "0594451647", "0972683275", "1400501466", "B00000J1EQ",
            "B00000JBHP", "B00001P4ZH", "B00004SB92"]


def test_read_amazon_fixture():
    log = read_amazon(REVIEWS, META)
    assert log.name == "amazon-electronics" and log.target_group == "item"
    assert len(log.events) == 24
    assert {(e.group, e.action) for e in log.events} == {("item", "review")}
    assert all(isinstance(e.timestamp, int) and e.features == {} for e in log.events)
    e0 = log.events[0]
    assert (e0.user, e0.object_id, e0.timestamp) == ("A1H8PY3QHMQQA0", "0528881469", 1370131200)
    assert sorted({e.object_id for e in log.events}) == REVIEWED
    cat = log.catalogs["item"]
    # meta restricted to reviewed asins (0132793040, B00002EQCW dropped); B00004SB92 has no meta
    assert sorted(cat) == REVIEWED[:-1]
    assert cat["0528881469"] == {"category": "Trucking GPS"}
    assert cat["0594451647"] == {"category": "TV Accessories & Parts"}     # last of last path
    assert cat["B00000JBHP"] == {"category": "Photographer's Vests"}       # asin not first key
    assert cat["B00000J1EQ"] == {}                                          # no categories key


def test_amazon_to_dataset_and_vocab():
    ds = to_item_dataset(read_amazon(REVIEWS, META))
    assert len(ds.sequences) == 6
    u = ds.sequences["A1H8PY3QHMQQA0"]
    assert [b.timestamp for b in u] == sorted(b.timestamp for b in u)
    assert ds.catalog["B00000J1EQ"] is None and ds.catalog["B00004SB92"] is None
    items, cates = build_vocabs(ds)
    # atrank index = 1 + the original's 0-based rank of the sorted asin
    assert items.tokens == sorted(REVIEWED)
    assert [items.index(a) for a in sorted(REVIEWED)] == list(range(1, 9))
    assert cates.tokens == sorted({"Trucking GPS", "TV Accessories & Parts", "Mounts",
                                   "eBook Readers", "Photographer's Vests", "Headphones"})


def test_amazon_gzip_and_without_meta(tmp_path):
    for src in (REVIEWS, META):
        with open(src, "rb") as f, gzip.open(tmp_path / (src.name + ".gz"), "wb") as g:
            shutil.copyfileobj(f, g)
    plain = read_amazon(REVIEWS, META)
    gz = read_amazon(tmp_path / (REVIEWS.name + ".gz"), tmp_path / (META.name + ".gz"))
    assert gz == plain
    assert read_amazon(REVIEWS).catalogs == {"item": {}}


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
