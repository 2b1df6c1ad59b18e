from pathlib import Path

import pytest
import torch

from atrank_export import cli
from atrank_export.cli import main

DATA = Path(__file__).parent / "data" / "amazon"
TINY = ["--epochs", "1", "--embedding-dim", "8", "--heads", "2", "--ffn", "8",
        "--max-history", "5", "--batch-size", "16", "--no-progress"]


def test_train_on_amazon_fixture(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "amazon", "--reviews", str(DATA / "reviews_Electronics_5.json"),
                 "--meta", str(DATA / "meta_Electronics.json"), "--out", str(out), *TINY]) == 0
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["name"] == "atrank-amazon-electronics"
    assert ckpt["actions"] == ["review"]
    assert len(ckpt["vocabs"]["item_id"]) == 8 and "Headphones" in ckpt["vocabs"]["category"]
    assert (out / "metrics.json").exists()


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_run_train(log, out, epochs, max_history, kw, name, *args, **kwargs):
        seen.update(log=log, name=name)
        return {}

    monkeypatch.setattr(cli, "run_train", fake_run_train)
    return seen


def test_log_and_movielens_csv_choices(tmp_path, captured):
    log = tmp_path / "clicks.csv"
    log.write_text("user,group,action,object_id,timestamp\n"
                   "u,item,click,a,1\nu,query,search,q,2\nu,item,buy,b,3\nu,item,click,c,4\n")
    cat = tmp_path / "cat.jsonl"
    cat.write_text('{"object_id": "a", "category": "x"}\n{"object_id": "q", "group": "query",'
                   ' "category": "y"}\n')
    assert main(["train", "--data", "log", "--log", str(log), "--catalog", str(cat),
                 "--out", str(tmp_path / "o")]) == 0
    log = captured["log"]
    assert captured["name"] == "atrank-clicks"
    assert log.sequence("u") == ["a", "b", "c"]
    assert sorted(log.actions) == ["buy", "click", "search"]
    assert log.catalog_dict("item") == {"a": {"category": "x"}}
    assert log.catalog_dict("query") == {"q": {"category": "y"}}
    (tmp_path / "r.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,2.0,20\n")
    (tmp_path / "m.csv").write_text('movieId,title,genres\n1,"A, The (1990)",Drama|War\n')
    assert main(["train", "--data", "movielens-csv", "--ratings", str(tmp_path / "r.csv"),
                 "--movies", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")]) == 0
    assert captured["log"].catalog_dict("item")["1"] == {"category": "Drama"}


def test_missing_paths_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "amazon", "--reviews", "r.json", "--out", str(tmp_path)])
    assert "--data amazon needs --meta" in capsys.readouterr().err
