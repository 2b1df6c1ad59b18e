"""Command line: ``python -m atrank_export {train,export,fixture,manifest} ...``."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import tempfile
import time
from pathlib import Path

from .data import DEFAULT_SEED, build_split, describe, load_ml100k, synthetic_dataset
from .model import ModelConfig
from .preprocess import DEFAULT_UNIT_SECONDS, TimeBuckets

FIXTURE_MODEL = {"embedding_dim": 8, "hidden": 16, "heads": 2, "ffn": 16}
FIXTURE_MAX_HISTORY = 10


def run_train(dataset, out: Path, epochs: int, max_history: int, model_kw: dict, name: str,
              seed: int, max_users: int | None = None, batch_size: int = 128,
              lr: float = 1e-3, progress: bool = True, checkpoint_dir: Path | None = None,
              resume: bool = False, parallel=None, l2: float = 1e-5,
              time_unit: int = DEFAULT_UNIT_SECONDS) -> dict:
    from .train import save_checkpoint, train

    t0 = time.perf_counter()
    print(describe(dataset))
    split = build_split(dataset, max_history=max_history, seed=seed, max_users=max_users,
                        time_buckets=TimeBuckets(unit_seconds=time_unit))
    pre = split.preprocessor
    print(f"split: {len(split.users)} users, {len(split.train)} training samples, "
          f"{len(split.valid)} validation, {len(split.test)} test; max_history {max_history}")
    config = ModelConfig(n_items=len(pre.item_vocab), n_categories=len(pre.category_vocab),
                         n_actions=len(pre.actions), **model_kw)
    model, metrics = train(split, config, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed, progress=progress, l2=l2, checkpoint_dir=checkpoint_dir,
                           resume=resume, parallel=parallel)
    metrics["wall_seconds"] = time.perf_counter() - t0
    if parallel is not None and not parallel.is_main:
        return metrics                # DDP: only the main process writes
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_checkpoint(out / "checkpoint.pt", model, split, dataset, metrics, name)
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'} "
          f"(wall {metrics['wall_seconds']:.1f}s, {metrics['samples_per_s']:.0f} samples/s)")
    return metrics


_DATA_PATHS = {"amazon": ["reviews", "meta"], "movielens-csv": ["ratings", "movies"],
               "log": ["log"]}


def _log_dataset(parser: argparse.ArgumentParser, a: argparse.Namespace):
    """The item-group Dataset (and checkpoint name) of a reader-backed ``--data`` choice."""
    from .behaviors import to_item_dataset
    from .readers import read_amazon, read_behavior_log, read_movielens_csv

    missing = [f"--{k}" for k in _DATA_PATHS[a.data] if getattr(a, k) is None]
    if missing:
        parser.error(f"--data {a.data} needs {' and '.join(missing)}")
    if a.data == "amazon":
        log = read_amazon(a.reviews, a.meta)
    elif a.data == "movielens-csv":
        log = read_movielens_csv(a.ratings, a.movies)
    else:
        log = read_behavior_log(a.log, catalogs=a.catalog, target_group=a.group)
    group = a.group if a.data == "log" else log.target_group
    actions = sorted({e.action for e in log.events if e.group == group})
    if not actions:
        parser.error(f"--data {a.data}: no behaviors of group {group!r} (groups: {log.groups})")
    dataset = to_item_dataset(log, group=group, actions=actions, seed=a.seed)
    return dataset, f"atrank-{log.name}"


def main(argv: list[str] | None = None, parallel=None) -> int:
    """``parallel``: a ``distributed.Parallel`` for ``train`` (see distributed.py)."""
    p = argparse.ArgumentParser(prog="atrank_export", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on a data set, write checkpoint.pt + metrics.json")
    t.add_argument("--data", default="ml100k",
                   choices=["ml100k", "synthetic", "amazon", "movielens-csv", "log"],
                   help="amazon: --reviews/--meta (SNAP files); movielens-csv: --ratings/--movies;"
                        " log: --log [--catalog ...] [--group]")
    t.add_argument("--reviews", type=Path, help="amazon: reviews_<Category>_5.json[.gz]")
    t.add_argument("--meta", type=Path, help="amazon: meta_<Category>.json[.gz]")
    t.add_argument("--ratings", type=Path, help="movielens-csv: ratings.csv")
    t.add_argument("--movies", type=Path, help="movielens-csv: movies.csv")
    t.add_argument("--log", type=Path, help="log: behavior log (.csv, .jsonl/.json, .parquet)")
    t.add_argument("--catalog", type=Path, action="append", default=None,
                   help="log: catalog file (repeatable; same formats)")
    t.add_argument("--group", default="item",
                   help="log: the group to train on and the default catalog group")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--max-users", type=int, default=None)
    t.add_argument("--seed", type=int, default=DEFAULT_SEED)
    t.add_argument("--max-history", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--l2", type=float, default=1e-5, help="embedding L2 weight (0: off)")
    t.add_argument("--time-unit", type=int, default=DEFAULT_UNIT_SECONDS,
                   help="seconds per time-bucket unit (86400: days, as the paper; the "
                   "boundaries 2, 4, ..., 4096 count units)")
    t.add_argument("--embedding-dim", type=int, default=32)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--ffn", type=int, default=32)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="write the resumable training state DIR/last.pt after every epoch")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint-dir/last.pt (--epochs is the total)")
    e = sub.add_parser("export", help="write a model package from a checkpoint")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    f = sub.add_parser("fixture", help="tiny synthetic model package (tests/fixtures/tiny)")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--seed", type=int, default=DEFAULT_SEED)
    m = sub.add_parser("manifest", help="(re)write spec.json's \"files\" (sha256 and size "
                       "of every file the spec names) from the files in a package")
    m.add_argument("--package", type=Path, required=True)
    a = p.parse_args(argv)

    if a.cmd == "manifest":              # no torch needed
        from .manifest import write_manifest

        files = write_manifest(a.package)
        print(f"wrote {a.package / 'spec.json'}: files ({len(files)}: {', '.join(files)})")
        return 0
    from .train import setup_threads

    setup_threads()
    if a.cmd == "train":
        if a.resume and a.checkpoint_dir is None:
            t.error("--resume needs --checkpoint-dir")
        if a.data == "ml100k":
            dataset, name = load_ml100k(seed=a.seed), "atrank-ml100k"
        elif a.data == "synthetic":
            dataset, name = synthetic_dataset(seed=a.seed), "atrank-synthetic"
        else:
            dataset, name = _log_dataset(t, a)
        kw = {"embedding_dim": a.embedding_dim, "hidden": 2 * a.embedding_dim,
              "heads": a.heads, "ffn": a.ffn}
        run_train(dataset, a.out, a.epochs, a.max_history, kw, name, a.seed, a.max_users,
                  a.batch_size, a.lr, progress=not a.no_progress,
                  checkpoint_dir=a.checkpoint_dir, resume=a.resume, parallel=parallel,
                  l2=a.l2, time_unit=a.time_unit)
    elif a.cmd == "export":
        from .export import write_package

        s = write_package(a.checkpoint, a.out)
        print(f"wrote package {s['package']} ({s['requests']} golden requests; "
              f"max |onnxruntime - torch| = {s['max_abs_diff']:.3g} <= {s['atol']:g})")
    elif a.cmd == "fixture":
        from .export import write_package

        with tempfile.TemporaryDirectory() as tmp:
            run_train(synthetic_dataset(seed=a.seed), Path(tmp), a.epochs, FIXTURE_MAX_HISTORY,
                      FIXTURE_MODEL, "atrank-tiny", a.seed, batch_size=64, lr=3e-3,
                      progress=False)
            s = write_package(Path(tmp) / "checkpoint.pt", a.out)
        print(f"wrote fixture {s['package']} ({s['requests']} golden requests; "
              f"max |onnxruntime - torch| = {s['max_abs_diff']:.3g})")
    return 0
