import pytest

from atrank_export.readers import ml100k_log, read_movielens_csv
from atrank_export.readers import movielens as ml

# ml-latest-small format: header, fractional ratings, quoted titles with commas and quotes
RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,3,4.0,964981247
1,6,3.5,964982224
1,47,5.0,964983815
2,318,3.0,1445714835
2,1,0.5,1445714836
2,182749,4.5,1445714900
"""
MOVIES = '''movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
3,Grumpier Old Men (1995),Comedy|Romance
6,Heat (1995),Action|Crime|Thriller
47,"Seven (a.k.a. Se7en) (1995)",Mystery|Thriller
318,"Shawshank Redemption, The (1994)",Crime|Drama
182749,"""Great"" Escape, The (2018)",(no genres listed)
999,Unrated (2000),Drama
'''


def write(tmp_path, ratings=RATINGS, movies=MOVIES):
    (tmp_path / "ratings.csv").write_text(ratings, encoding="utf-8")
    (tmp_path / "movies.csv").write_text(movies, encoding="utf-8")
    return tmp_path / "ratings.csv", tmp_path / "movies.csv"


def test_read_movielens_csv(tmp_path):
    log = read_movielens_csv(*write(tmp_path))
    assert len(log) == 7
    e = log.event(2)
    assert (e["user"], e["group"], e["id"], e["action"], e["timestamp"]) == \
        ("1", "item", "6", "other", 964982224)
    assert [log.event(k)["action"] for k in range(7)] == ["like", "like", "other", "like",
                                                          "other", "other", "like"]
    cat = log.catalog_dict("item")
    assert cat["1"] == {"category": "Adventure"}
    assert cat["318"] == {"category": "Crime"}
    assert cat["182749"] == {"category": "unknown"}       # (no genres listed)
    assert cat["999"] == {"category": "Drama"}            # catalog keeps unrated movies
    assert log.sequence("2") == ["318", "1", "182749"]
    assert cat["47"] == {"category": "Mystery"} and log.actions == ["like", "other"]
    assert log.action_rules == {"like": "rating >= 4", "other": "rating < 4"}


def test_movielens_csv_errors(tmp_path):
    r, m = write(tmp_path, ratings="userId,movieId,score,timestamp\n1,1,4,5\n")
    with pytest.raises(ValueError, match=r"ratings\.csv line 1: missing column\(s\) rating"):
        read_movielens_csv(r, m)
    r, m = write(tmp_path, ratings="userId,movieId,rating,timestamp\n1,1,4,5\n1,2,4,5.5\n")
    with pytest.raises(ValueError, match="line 3: column timestamp: not an integer"):
        read_movielens_csv(r, m)
    r, m = write(tmp_path, ratings="userId,movieId,rating,timestamp\n1,,4,5\n")
    with pytest.raises(ValueError, match="line 2: column movieId: empty"):
        read_movielens_csv(r, m)
    r, m = write(tmp_path, ratings="userId,movieId,rating,timestamp\n1,2,good,5\n")
    with pytest.raises(ValueError, match="line 2: column rating: not a number"):
        read_movielens_csv(r, m)


INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "1\t1\t5\t100\n1\t2\t3\t200\n1\t3\t4\t300\n2\t2\t2\t50\n2\t3\t4\t60\n2\t1\t1\t70\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction\n"
        "3\tFour Rooms\t1995\t\n")


def test_ml100k_from_the_wheel(monkeypatch, tmp_path):
    import zipfile

    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(ml.ML_PREFIX + "ml-100k.inter", INTER)
        z.writestr(ml.ML_PREFIX + "ml-100k.item", ITEM)
    monkeypatch.setattr(ml, "fetch_recbole_wheel", lambda cache=None: wheel)
    log = ml100k_log()
    assert log.name == "ml100k" and len(log) == 6
    assert log.catalog_dict("item") == {"1": {"category": "Animation"},
                                        "2": {"category": "Action"},
                                        "3": {"category": "unknown"}}
    assert log.sequence("1") == ["1", "2", "3"] and log.sequence("2") == ["2", "3", "1"]
    assert [log.event(k)["action"] for k in range(6)] == ["like", "other", "like", "other",
                                                          "like", "other"]
    assert log == ml.parse_ml100k(INTER.encode(), ITEM.encode())
