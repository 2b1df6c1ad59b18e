"""``python -m atrank_export compare`` on a small headerless behavior log through the generic
log reader: the protocol's bookkeeping (tuning grid, test once for the winner, seeds,
variants), resuming, and the report."""

import json

import numpy as np
import pytest

from atrank_export.cli import main
from atrank_export.compare import remaining_seconds

COLUMNS = "user,object_id,category,action,timestamp"


def write_log(path, users=24, items=30, categories=3, per_user=14, seed=5):
    """Each user favours one category (3 of 4 behaviors), Taobao's layout: no header, no
    group column, actions pv/cart/buy."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(users):
        fav = u % categories
        t = 1_500_000_000 + 1000 * u
        for _ in range(per_user):
            c = fav if rng.random() < 0.75 else int(rng.integers(categories))
            i = int(rng.integers(items // categories)) * categories + c
            a = rng.choice(["pv", "pv", "pv", "cart", "buy"])
            t += int(rng.integers(1, 5000))
            lines.append(f"u{u},i{i},c{c},{a},{t}")
    path.write_text("\n".join(lines) + "\n")


ARGS = ["--data", "log", "--columns", COLUMNS, "--no-header", "--catalog-from-events",
        "--seeds", "2", "--max-epochs", "2", "--patience", "1", "--embedding-dim", "4",
        "--max-history", "8", "--models", "ATRank,SASRec,BPR",
        "--variants", "ATRank -action,SASRec -ta", "--no-progress"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    write_log(root / "events.csv")
    runs = root / "runs"
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(runs),
                 *ARGS]) == 0
    return root, runs


def test_protocol_bookkeeping(compared):
    _, runs = compared
    s = json.loads((runs / "summary.json").read_text())
    assert list(s["models"]) == ["ATRank", "SASRec", "BPR", "ATRank -action", "SASRec -ta"]
    # 3 models x (4 configurations + 1 more seed) + 2 variants x 2 seeds + ATRank's 6
    # one-knob validation runs
    files = sorted(runs.glob("*.json"))
    assert len(files) == 3 * 5 + 2 * 2 + 6 + 1              # + summary.json
    assert not list(runs.glob("*.pt"))                      # tuning weights are gone
    for name in ("ATRank", "SASRec", "BPR"):
        tried = s["tuning"][name]
        assert len(tried) == 4
        assert len({(t["lr"], t["value"]) for t in tried}) == 4
        best = max(tried, key=lambda t: t["valid_all_items_auc"])
        seeds = s["models"][name]
        assert [m["seed"] for m in seeds] == [1, 2]
        assert all(m["lr"] == best["lr"] and m["knob_value"] == best["value"] for m in seeds)
        # test was evaluated for the chosen configuration only
        first = [json.loads(f.read_text()) for f in files if f.name != "summary.json"]
        grid_runs = [m for m in first if m["name"] == name and m["seed"] == 1]
        assert len(grid_runs) == 4
        with_test = [m for m in grid_runs if m["test"] is not None]
        assert len(with_test) == 1
        assert with_test[0]["valid"]["all_items_auc"] == best["valid_all_items_auc"]
        for m in seeds:
            assert 1 <= m["best_epoch"] <= len(m["epochs"]) <= 2
            assert {"all_items_auc", "recall_at_10", "ndcg_at_10"} <= set(m["test"])
    assert s["models"]["SASRec"][0]["loss"] == "softmax"
    assert s["models"]["SASRec"][0]["negatives"] == 1024
    assert s["models"]["ATRank"][0]["loss"] == "softmax"
    assert s["models"]["ATRank"][0]["negatives"] == 64
    assert s["models"]["BPR"][0]["loss"] == "bpr"
    sens = s["sensitivity"]
    assert set(sens) == {"chosen", "ATRank @width 64", "ATRank @heads 8", "ATRank @L2 1e-4",
                         "ATRank @day buckets", "ATRank @256 negatives",
                         "ATRank @MLP ranking"}
    assert all(0 <= r["valid_recall_at_10"] <= 1 for r in sens.values())
    every = [json.loads(f.read_text()) for f in files if f.name != "summary.json"]
    runs_by_name = {m["name"]: m for m in every if m["name"].startswith("ATRank @")}
    assert len(runs_by_name) == 6
    assert all(m["test"] is None for m in runs_by_name.values())     # validation only
    assert runs_by_name["ATRank @width 64"]["lr"] == s["models"]["ATRank"][0]["lr"]
    assert runs_by_name["ATRank @L2 1e-4"]["l2"] == 1e-4
    f = s["facts"]
    assert f["objects"] == 30 and f["users"] == 24
    assert f["leakage"]["test"]["negative_interacted"] == 0
    assert f["leakage"]["test"]["negative_in_history"] == 0
    assert (runs / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_reuses_finished_runs(compared):
    root, runs = compared
    before = {f.name: f.stat().st_mtime_ns for f in runs.glob("*.json")
              if f.name != "summary.json"}
    victim = next(n for n in sorted(before) if n.startswith("ATRank__") and "seed2" in n)
    (runs / victim).unlink()                       # as if stopped before this run finished
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(runs),
                 "--no-eta", *ARGS]) == 0
    after = {f.name: f.stat().st_mtime_ns for f in runs.glob("*.json")
             if f.name != "summary.json"}
    assert after.keys() == before.keys()
    changed = [n for n in after if n == victim or after[n] != before[n]]
    assert changed == [victim]


def test_report(compared, tmp_path):
    _, runs = compared
    proto = tmp_path / "protocol.md"
    proto.write_text("## Protocol\n\nThe words of the protocol.\n")
    out = tmp_path / "results.md"
    assert main(["compare-report", "--out", str(out), "--protocol", str(proto),
                 "--task", str(runs)]) == 0
    text = out.read_text()
    assert "The words of the protocol." in text
    for name in ("ATRank", "SASRec", "BPR", "ATRank -action", "SASRec -ta"):
        assert f"| {name} |" in text
    assert "### Tuning" in text and "Paired differences ATRank − model" in text
    assert "ATRank's other knobs" in text and "| day buckets |" in text
    row = next(x for x in text.splitlines() if x.startswith("| SASRec |") and "±" in x)
    assert len(row.strip("|").split("|")) == 8
    assert "events" in text                        # the data actually used, by name


def test_report_only_summarises_finished_runs_and_trains_nothing(compared, tmp_path):
    root, runs = compared
    partial = tmp_path / "partial"
    partial.mkdir()
    # keep BPR's whole protocol and SASRec's grid only (its second seed "was not run")
    for f in runs.glob("*.json"):
        if f.name.startswith("BPR__") or (f.name.startswith("SASRec__") and "seed1" in f.name):
            (partial / f.name).write_text(f.read_text())
    before = sorted(p.name for p in partial.iterdir())
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(partial),
                 "--report-only", *ARGS]) == 0
    s = json.loads((partial / "summary.json").read_text())
    assert sorted(p.name for p in partial.glob("*__seed*.json")) == before   # nothing new
    assert set(s["models"]) == {"SASRec", "BPR"}
    assert len(s["models"]["SASRec"]) == 1 and len(s["models"]["BPR"]) == 2
    assert "ATRank" in s["not_run"] and "SASRec -ta" in s["not_run"]
    out = tmp_path / "partial.md"
    proto = tmp_path / "p.md"
    proto.write_text("protocol\n")
    assert main(["compare-report", "--out", str(out), "--protocol", str(proto),
                 "--task", str(partial)]) == 0
    assert "**Not run yet**" in out.read_text()


def test_a_higher_epoch_cap_retrains_only_the_runs_that_hit_the_old_one(compared, tmp_path):
    root, runs = compared
    again = tmp_path / "again"
    again.mkdir()
    for f in runs.glob("BPR__*.json"):
        (again / f.name).write_text(f.read_text())
    old = {f.name: json.loads(f.read_text()) for f in again.glob("*.json")}
    hit = {n for n, m in old.items() if len(m["epochs"]) == m["max_epochs"] == 2}
    args = [a if a != "2" or ARGS[i - 1] != "--max-epochs" else "3" for i, a in enumerate(ARGS)]
    args[args.index("--models") + 1] = "BPR"
    args[args.index("--variants") + 1] = "none"
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(again),
                 "--no-eta", *args]) == 0
    new = {f.name: json.loads(f.read_text()) for f in again.glob("BPR__*.json")}
    grid = [n for n in old if n.endswith("__seed1.json")]         # always requested
    assert len(grid) == 4 and any(n in hit for n in grid)
    for name in grid:
        if name in hit:
            assert new[name]["max_epochs"] == 3, name          # trained again
        else:
            assert new[name]["epochs"] == old[name]["epochs"], name   # kept as it was


def test_a_winner_without_its_weights_is_trained_again_with_test(compared, tmp_path):
    """A fresh clone has the tuning runs' files but not their weights (not committed): the
    winner is trained again and evaluated on test then; the losers stay as they were."""
    root, runs = compared
    grid = tmp_path / "grid"
    grid.mkdir()
    for f in runs.glob("BPR__*__seed1.json"):
        m = json.loads(f.read_text())
        m["test"] = None                        # as before the winner was tested
        (grid / f.name).write_text(json.dumps(m))
    args = list(ARGS)
    args[args.index("--models") + 1] = "BPR"
    args[args.index("--variants") + 1] = "none"
    args[args.index("--seeds") + 1] = "1"
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(grid),
                 "--no-eta", *args]) == 0
    s = json.loads((grid / "summary.json").read_text())
    assert s["models"]["BPR"][0]["test"] is not None
    tested = [f for f in grid.glob("BPR__*.json") if json.loads(f.read_text())["test"]]
    assert len(tested) == 1 and not list(grid.glob("*.pt"))


def test_two_processes_share_one_runs_directory(compared, tmp_path):
    """Two ``compare`` processes on one runs directory, the second with ``--reverse-order``: each
    run is trained by exactly one of them (the other waits on its ``.claim``), a claim left by
    a dead process is taken over, and ``--report-only`` then summarises both models."""
    import subprocess
    import sys

    root, _ = compared
    shared = tmp_path / "shared"
    shared.mkdir()
    args = list(ARGS)
    args[args.index("--variants") + 1] = "none"
    args[args.index("--models") + 1] = "ATRank,BPR"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                          # its pid is no longer alive
    stale = "ATRank__lr0.001__dropout0__sm64__seed1"
    (shared / f"{stale}.claim").write_text(f"{__import__('socket').gethostname()} {dead.pid}")

    def start(*extra):
        return subprocess.Popen(
            [sys.executable, "-m", "atrank_export", "compare", "--log",
             str(root / "events.csv"), "--runs", str(shared), "--no-eta", "--no-sensitivity",
             *args, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [start(), start("--reverse-order")]                # ATRank first, BPR first
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [line for out in outs for line in out.splitlines() if "best epoch" in line]
    # 2 models x (4 configurations + 1 more seed), each trained once across both processes
    assert len(trained) == 10, outs
    assert len(set(trained)) == 10
    assert all(o.count("best epoch") > 0 for o in outs)   # both did part of the work
    assert not list(shared.glob("*.claim")) and not list(shared.glob("*.pt"))
    assert not list(shared.glob(".*.json.*"))             # no temporary run file left
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(shared),
                 "--report-only", "--no-sensitivity", *args]) == 0
    s = json.loads((shared / "summary.json").read_text())
    assert set(s["models"]) == {"ATRank", "BPR"} and not s["not_run"]
    for name in ("ATRank", "BPR"):
        assert [m["seed"] for m in s["models"][name]] == [1, 2]
        assert all(m["test"] is not None for m in s["models"][name])


def test_the_estimate_counts_unfinished_runs_and_is_shared_among_processes():
    # 10 runs planned, 600 s on one process; 4 finished: 6 tenths are left
    assert remaining_seconds(600.0, 10, 4) == pytest.approx(360.0)
    assert remaining_seconds(600.0, 10, 4, processes=2) == pytest.approx(180.0)
    assert remaining_seconds(600.0, 10, 10, processes=2) == 0.0
    assert remaining_seconds(600.0, 10, 12) == 0.0          # leftover files of another plan


def test_the_estimate_is_printed_for_the_processes_sharing_the_runs(compared, tmp_path, capsys):
    root, runs = compared
    done = tmp_path / "done"
    done.mkdir()
    for f in runs.glob("BPR__*.json"):
        (done / f.name).write_text(f.read_text())
    args = list(ARGS)
    args[args.index("--models") + 1] = "BPR"
    args[args.index("--variants") + 1] = "none"
    capsys.readouterr()
    assert main(["compare", "--log", str(root / "events.csv"), "--runs", str(done),
                 "--processes", "2", *args]) == 0
    out = capsys.readouterr().out
    # every run of the plan is finished: nothing is left to estimate
    assert "estimated time: about 0 min (from the probe; finished runs are skipped, " \
           "2 processes)" in out
    with pytest.raises(SystemExit):
        main(["compare", "--log", str(root / "events.csv"), "--runs", str(done),
              "--processes", "0", *args])


def test_the_mlp_ranking_check_gives_atrank_the_baselines_head(tmp_path):
    """The one-knob check "ATRank @MLP ranking" reaches the model: its split's config, and so
    the ATRank it trains, scores with b_i + MLP([u, c, u*c]); the chosen ATRank keeps the dot."""
    from types import SimpleNamespace

    from atrank_export.compare import SENSITIVITY, Comparison, RunSpec, make_model
    from atrank_export.readers import read_behavior_log

    write_log(tmp_path / "events.csv")
    log = read_behavior_log(tmp_path / "events.csv", target_group="item", default_group="item",
                            columns=COLUMNS.split(","), header=False, catalog_from_events=True)
    a = SimpleNamespace(seed=1, seeds=1, max_history=8, max_users=None, time_unit=86400,
                        embedding_dim=4, min_count=1, target_actions=None, first_touch=False)
    comp = Comparison(log, a, tmp_path / "runs", echo=lambda s: None)
    assert SENSITIVITY["ATRank @MLP ranking"] == ("ATRank", {"ranking": "mlp"})
    heads = {}
    for name in ("ATRank", "ATRank @MLP ranking"):
        factory, _, cfg = make_model(RunSpec(name, 1e-3, "dropout", 0.0, 1),
                                         comp.split(1, name))
        heads[name] = (cfg.ranking, hasattr(factory(cfg), "rank"))
    assert heads == {"ATRank": ("dot", False), "ATRank @MLP ranking": ("mlp", True)}
