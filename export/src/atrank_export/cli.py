"""Command line: ``python -m atrank_export {train,export,fixture,manifest,index,verify} ...``."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import tempfile
import time
from pathlib import Path

from .preprocess import DEFAULT_UNIT_SECONDS, TimeBuckets
from .split import DEFAULT_SEED

FIXTURE_MODEL = {"embedding_dim": 4, "heads": 2, "ffn": 8}   # small: tables.bin stays KiB
FIXTURE_MAX_HISTORY = 10
FIXTURE_MULTIGROUP_HISTORY = {"item": 10, "coupon": 4, "query": 5}
DATA_CHOICES = ["ml100k", "synthetic", "synthetic-multigroup", "amazon", "movielens-csv", "log"]
_DATA_PATHS = {"amazon": ["reviews", "meta"], "movielens-csv": ["ratings", "movies"],
               "log": ["log"]}


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data`` and the readers' file options (train, compare)."""
    p.add_argument("--data", default="ml100k", choices=DATA_CHOICES,
                   help="amazon: --reviews/--meta (SNAP files); movielens-csv: --ratings/"
                        "--movies; log: --log [--catalog ...] [--group]")
    p.add_argument("--reviews", type=Path, help="amazon: reviews_<Category>_5.json[.gz]")
    p.add_argument("--meta", type=Path, help="amazon: meta_<Category>.json[.gz]")
    p.add_argument("--ratings", type=Path, help="movielens-csv: ratings.csv")
    p.add_argument("--movies", type=Path, help="movielens-csv: movies.csv")
    p.add_argument("--log", type=Path, help="log: behavior log (.csv, .jsonl/.json, .parquet)")
    p.add_argument("--catalog", type=Path, action="append", default=None,
                   help="log: catalog file (repeatable; same formats)")
    p.add_argument("--group", default="item",
                   help="log: the target group, the default catalog group, and the group of "
                   "behaviors that have none (a log without a group column)")
    p.add_argument("--columns", default=None,
                   help="log (CSV): comma-separated column names in file order, e.g. "
                   "user,object_id,category,action,timestamp (for a file without a header "
                   "line, with --no-header)")
    p.add_argument("--no-header", dest="header", action="store_false",
                   help="log (CSV): the first line is data (needs --columns)")
    p.add_argument("--catalog-from-events", action="store_true",
                   help="log: features given on behaviors (e.g. category) also form catalog "
                   "rows, so candidates carry them; an explicit --catalog wins")
    p.add_argument("--users", type=int, default=None, help="synthetic data: users")


def read_data(parser: argparse.ArgumentParser, a: argparse.Namespace, seed: int):
    """The columnar BehaviorLog of ``--data`` (and the package name)."""
    from .readers import ml100k_log, read_amazon, read_behavior_log, read_movielens_csv
    from .synthetic import synthetic_items, synthetic_multigroup

    missing = [f"--{k}" for k in _DATA_PATHS.get(a.data, []) if getattr(a, k) is None]
    if missing:
        parser.error(f"--data {a.data} needs {' and '.join(missing)}")
    if a.data == "ml100k":
        log = ml100k_log()
    elif a.data == "synthetic":
        log = synthetic_items(**({"n_users": a.users} if a.users else {}), seed=seed)
    elif a.data == "synthetic-multigroup":
        log = synthetic_multigroup(**({"n_users": a.users} if a.users else {}), seed=seed)
    elif a.data == "amazon":
        log = read_amazon(a.reviews, a.meta)
    elif a.data == "movielens-csv":
        log = read_movielens_csv(a.ratings, a.movies)
    else:
        log = read_behavior_log(
            a.log, catalogs=a.catalog, target_group=a.group, default_group=a.group,
            columns=a.columns.split(",") if a.columns else None, header=a.header,
            catalog_from_events=a.catalog_from_events)
    if log.target_group not in log.groups or not (
            log.group == log.group_code(log.target_group)).any():
        parser.error(f"--data {a.data}: no behaviors of group {log.target_group!r} "
                     f"(groups: {log.groups})")
    return log, f"atrank-{log.name}"


def describe(log) -> str:
    return (f"{log.name}: {len(log)} behaviors of {len(log.users)} users, groups "
            + ", ".join(f"{g} ({len(log.objects.get(g, []))} objects)" for g in log.groups))


def run_train(log, out: Path, epochs: int, max_history, model_kw: dict, name: str,
              seed: int, max_users: int | None = None, batch_size: int = 128,
              lr: float = 1e-3, progress: bool = True, checkpoint_dir: Path | None = None,
              resume: bool = False, parallel=None, l2: float = 1e-5,
              time_unit: int = DEFAULT_UNIT_SECONDS, hash_buckets: int = 0,
              min_count: int = 1) -> dict:
    from .split import build_split
    from .train import save_checkpoint, train

    t0 = time.perf_counter()
    print(describe(log))
    split = build_split(log, max_history=max_history, seed=seed, max_users=max_users,
                        time_buckets=TimeBuckets(unit_seconds=time_unit),
                        hash_buckets=hash_buckets, min_count=min_count, **model_kw)
    print(f"split: {len(split.users)} users, {len(split.train)} training samples, "
          f"{len(split.valid)} validation, {len(split.test)} test; tables "
          + ", ".join(f"{t} {n}" for t, n in split.config.table_sizes.items())
          + (f"; {hash_buckets} hashed buckets each (min count {min_count})"
             if hash_buckets else ""))
    model, metrics = train(split, split.config, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed, progress=progress, l2=l2, checkpoint_dir=checkpoint_dir,
                           resume=resume, parallel=parallel)
    metrics["wall_seconds"] = time.perf_counter() - t0
    if parallel is not None and not parallel.is_main:
        return metrics                # DDP: only the main process writes
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_checkpoint(out / "checkpoint.pt", model, split, metrics, name)
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'} "
          f"(wall {metrics['wall_seconds']:.1f}s, {metrics['samples_per_s']:.0f} samples/s)")
    return metrics


def make_fixture(out: Path, multigroup: bool, epochs: int, seed: int) -> dict:
    """A tiny trained package: single-group synthetic (``tests/fixtures/tiny``) or multi-group
    synthetic with hashed buckets (``tests/fixtures/tiny-multigroup``)."""
    from .export import write_package
    from .synthetic import synthetic_items, synthetic_multigroup

    with tempfile.TemporaryDirectory() as tmp:
        if multigroup:
            log = synthetic_multigroup(n_users=60, n_categories=4, items_per_category=8,
                                       seed=seed)
            run_train(log, Path(tmp), epochs, FIXTURE_MULTIGROUP_HISTORY, FIXTURE_MODEL,
                      "atrank-tiny-multigroup", seed, batch_size=64, lr=3e-3, progress=False,
                      hash_buckets=3, min_count=2)
        else:
            run_train(synthetic_items(n_users=60, n_items=80, seed=seed), Path(tmp), epochs,
                      FIXTURE_MAX_HISTORY, FIXTURE_MODEL, "atrank-tiny", seed, batch_size=64,
                      lr=3e-3, progress=False)
        return write_package(Path(tmp) / "checkpoint.pt", out)


def main(argv: list[str] | None = None, parallel=None) -> int:
    """``parallel``: a ``distributed.Parallel`` for ``train`` (see distributed.py)."""
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["compare"]:                     # its own parser (compare.py)
        from .compare import main as compare_main

        return compare_main(args[1:])
    if args[:1] == ["compare-report"]:
        from .compare import report

        return report(args[1:])
    p = argparse.ArgumentParser(prog="atrank_export", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("compare", help="compare ATRank with baselines under one protocol "
                   "(compare --help)", add_help=False)
    sub.add_parser("compare-report", help="one Markdown report from compare runs",
                   add_help=False)
    t = sub.add_parser("train", help="train on a data set, write checkpoint.pt + metrics.json")
    add_data_arguments(t)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--max-users", type=int, default=None)
    t.add_argument("--seed", type=int, default=DEFAULT_SEED)
    t.add_argument("--max-history", type=int, default=50, help="per group")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--l2", type=float, default=1e-5, help="embedding L2 weight (0: off)")
    t.add_argument("--time-unit", type=int, default=DEFAULT_UNIT_SECONDS,
                   help="seconds per time-bucket unit (86400: days, as the paper; the "
                   "boundaries 2, 4, ..., 4096 count units)")
    t.add_argument("--embedding-dim", type=int, default=32)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--ffn", type=int, default=32)
    t.add_argument("--hash-buckets", type=int, default=0,
                   help="hashed rows per embedding table for ids outside the vocabulary")
    t.add_argument("--min-count", type=int, default=1,
                   help="keys seen fewer times in the training split are left out of the "
                   "vocabulary (hashed with --hash-buckets, else unknown)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="write the resumable training state DIR/last.pt after every epoch")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint-dir/last.pt (--epochs is the total)")
    e = sub.add_parser("export", help="write a model package (format 3) from a checkpoint")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--precision", choices=["float32", "int8"], default="float32",
                   help="int8: the dense projections quantized dynamically (int8 weights, "
                   "activations per call), for ONNX Runtime only; about 1.1x faster at the "
                   "paper's size for an all-items AUC cost of 0.00014 on MovieLens-100k "
                   "(docs/benchmarks.md)")
    f = sub.add_parser("fixture", help="tiny synthetic model package (tests/fixtures/tiny; "
                       "--multigroup: tests/fixtures/tiny-multigroup)")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--multigroup", action="store_true")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--seed", type=int, default=DEFAULT_SEED)
    m = sub.add_parser("manifest", help="(re)write spec.json's \"files\" (sha256 and size "
                       "of every file the spec names) from the files in a package")
    m.add_argument("--package", type=Path, required=True)
    x = sub.add_parser("index", help="write a hashed index for every atv file of a package "
                       "(spec.json's atv_index; packages written before indexes existed)")
    x.add_argument("--package", type=Path, required=True)
    v = sub.add_parser("verify", help="recompute every file's sha256 and size against "
                       "spec.json's \"files\"")
    v.add_argument("--package", type=Path, required=True)
    a = p.parse_args(argv)

    if a.cmd == "manifest":              # no torch needed
        from .manifest import write_manifest

        files = write_manifest(a.package)
        print(f"wrote {a.package / 'spec.json'}: files ({len(files)}: {', '.join(files)})")
        return 0
    if a.cmd == "index":
        from .manifest import add_atv_indexes

        index = add_atv_indexes(a.package)
        print(f"wrote {len(index)} atv indexes: {', '.join(index.values())}")
        return 0
    if a.cmd == "verify":
        from .manifest import verify

        problems = verify(a.package)
        for msg in problems:
            print(f"{a.package}: {msg}")
        if not problems:
            print(f"{a.package}: every file matches its sha256 and size")
        return 1 if problems else 0
    from .train import setup_threads

    setup_threads()
    if a.cmd == "train":
        if a.resume and a.checkpoint_dir is None:
            t.error("--resume needs --checkpoint-dir")
        log, name = read_data(t, a, a.seed)
        kw = {"embedding_dim": a.embedding_dim, "heads": a.heads, "ffn": a.ffn}
        run_train(log, a.out, a.epochs, a.max_history, kw, name, a.seed, a.max_users,
                  a.batch_size, a.lr, progress=not a.no_progress,
                  checkpoint_dir=a.checkpoint_dir, resume=a.resume, parallel=parallel,
                  l2=a.l2, time_unit=a.time_unit, hash_buckets=a.hash_buckets,
                  min_count=a.min_count)
    elif a.cmd == "export":
        from .export import write_package

        s = write_package(a.checkpoint, a.out, precision=a.precision)
        if a.precision == "int8":
            print(f"wrote int8 package {s['package']} ({s['requests']} golden requests from "
                  f"onnxruntime; largest drift from float32 "
                  f"{s['max_abs_drift_from_float32']:.3g})")
        else:
            print(f"wrote package {s['package']} ({s['requests']} golden requests; "
                  f"max |onnxruntime - torch| = {s['max_abs_diff']:.3g} <= {s['atol']:g})")
    elif a.cmd == "fixture":
        s = make_fixture(a.out, a.multigroup, a.epochs, a.seed)
        print(f"wrote fixture {s['package']} ({s['requests']} golden requests; "
              f"max |onnxruntime - torch| = {s['max_abs_diff']:.3g})")
    return 0
