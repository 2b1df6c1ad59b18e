"""atrank at catalogue scale, end to end, in one run (issue: ten million items).

    bash benches/scale.sh [--items 10000000] [--users 1000000] [--behaviors 20000000] ...

(`benches/scale.sh` sets up the environment and builds the Rust serving probe in release;
this file is the driver.) Stages, each timed:

1. **generate** a synthetic multi-group behavior log, columnar (Parquet): ``--items`` items
   (category, shop) with a skewed popularity and users with a favourite category,
   ``--queries`` queries, ``--users`` users, about ``--behaviors`` behaviors (click, cart,
   buy on items; search on queries), plus the item catalog;
2. **read** it through the generic log reader (``read_behavior_log``, the columnar Parquet
   path) and **split** it (``build_split``);
3. **train** ``--steps`` steps of sampled-softmax ATRank with sparse embedding updates
   (SparseAdam on the touched rows), and the same steps on a table of ``--small-items`` rows
   (the ML-100k catalogue's size) for the samples/s ratio;
4. **export** the package (``python -m atrank_export export``, a process of its own);
5. **serve** it from Rust (``benches/scale_serve.rs``), one process per measurement: load
   time with a cold and a warm page cache, resident memory after load, with 16 threads on 1
   and on 4 ONNX Runtime sessions, the PSS of two processes serving it at once, latency at
   N = 100 / 1000; on ONNX Runtime and on tract; and the same latency for a small package of
   the same width trained the same way.

Prints one markdown table (and writes it, with the raw figures, under ``--work``). Memory:
the 10M-item run peaks at about 12 GB (the training process: table, SparseAdam's two moments
and the log); the package is written to ``--work`` (default ``build/scale``, about 3 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400


def generate(out: Path, items: int, users: int, behaviors: int, queries: int,
             categories: int, shops: int, seed: int = 1) -> dict:
    """Writes ``events.parquet`` (user, group, action, object_id, timestamp, category, shop)
    and ``catalog.parquet`` (object_id, category, shop: every item). Vectorised: a few
    hundred bytes of work per behavior, no Python loop over rows."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    per_cat = -(-items // categories)
    item_cat = np.arange(items, dtype=np.int64) % categories
    item_shop = (item_cat * (shops // categories) + rng.integers(0, max(1, shops // categories),
                                                                 items)) % shops
    counts = 3 + rng.poisson(max(0.0, behaviors / users - 3), users)
    n = int(counts.sum())
    user = np.repeat(np.arange(users, dtype=np.int64), counts)
    fav = rng.integers(0, categories, users)[user]
    is_query = rng.random(n) < 0.15
    on_taste = rng.random(n) < 0.7
    # skewed popularity inside a category: rank = per_cat * u^3 (small ranks common)
    rank = np.minimum((per_cat * rng.random(n) ** 3).astype(np.int64), per_cat - 1)
    cat = np.where(on_taste, fav, rng.integers(0, categories, n))
    item = np.minimum(cat + categories * rank, items - 1)
    query = (fav * (queries // categories) + rng.integers(0, max(1, queries // categories), n)
             ) % queries
    obj = np.where(is_query, query, item)
    r = rng.random(n)
    action = np.where(is_query, 3, np.where(r < 0.8, 0, np.where(r < 0.92, 1, 2))).astype(np.int8)
    start = rng.integers(1_600_000_000, 1_600_000_000 + 60 * DAY, users)
    gaps = rng.exponential(DAY / 2, n).astype(np.int64) + 1
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    t = np.cumsum(gaps)
    t = t - np.repeat(t[first] - gaps[first], counts) + np.repeat(start, counts)
    group = pa.DictionaryArray.from_arrays(pa.array(is_query.astype(np.int8)),
                                           pa.array(["item", "query"]))
    act = pa.DictionaryArray.from_arrays(pa.array(action),
                                         pa.array(["click", "cart", "buy", "search"]))
    mask = is_query
    table = pa.table({
        "user": pa.array(user), "group": group, "action": act, "object_id": pa.array(obj),
        "timestamp": pa.array(t),
        "category": pa.array(item_cat[item], mask=mask),
        "shop": pa.array(item_shop[item], mask=mask),
    })
    pq.write_table(table, out / "events.parquet", row_group_size=1 << 20)
    pq.write_table(pa.table({"object_id": pa.array(np.arange(items, dtype=np.int64)),
                             "category": pa.array(item_cat), "shop": pa.array(item_shop)}),
                   out / "catalog.parquet", row_group_size=1 << 20)
    return {"behaviors": n, "users": users, "items": items, "queries": queries}


def rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_stage(work: Path, steps: int, batch: int, dim: int, heads: int, negatives: int,
                name: str) -> dict:
    """Read, split, train ``steps`` steps; write the checkpoint. Runs in its own process."""
    import torch
    from atrank_export.model import ATRank
    from atrank_export.readers import read_behavior_log
    from atrank_export.split import build_split
    from atrank_export.train import (
        Optimizer,
        batch_objective,
        clip_grad_norm,
        sample_negatives,
        save_checkpoint,
        setup_threads,
    )
    setup_threads()
    t = time.perf_counter()
    log = read_behavior_log(work / "events.parquet", catalogs=work / "catalog.parquet",
                            name=name)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    split = build_split(log, max_history=50, embedding_dim=dim, heads=heads, ffn=32)
    split_s = time.perf_counter() - t
    del log
    torch.manual_seed(1)
    model = ATRank(split.config)
    opt = Optimizer(model, 1e-3)
    rng = np.random.default_rng(1)

    def step() -> None:
        rows = split.train[rng.integers(0, len(split.train), batch)]
        neg = sample_negatives(split, rng, negatives)
        _, loss, _ = batch_objective(model, model, split, rows, "softmax", 1e-5, None, neg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), 5.0)
        opt.step()

    for _ in range(min(20, steps)):               # warm-up, not timed
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    save_checkpoint(work / "ckpt.pt", model, split, {"steps": steps}, name)
    ckpt_s = time.perf_counter() - t
    return {"read_s": read_s, "split_s": split_s, "train_s": train_s,
            "samples_per_s": steps * batch / train_s, "checkpoint_s": ckpt_s,
            "train_rows": len(split.train),
            "item_rows": int(model.config.table_rows("item_id")),
            "peak_rss_mib": rss_mib()}


def run_json(cmd: list[str], **kw) -> dict:
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--behaviors", type=int, default=20_000_000)
    p.add_argument("--queries", type=int, default=1_000_000)
    p.add_argument("--categories", type=int, default=10_000)
    p.add_argument("--shops", type=int, default=100_000)
    p.add_argument("--small-items", type=int, default=1682)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=128)
    # 64 shared negatives, as compare.py gives ATRank: its readout attends once per candidate,
    # so a step costs O(batch x negatives x history)
    p.add_argument("--negatives", type=int, default=64)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--work", type=Path, default=ROOT / "build" / "scale")
    p.add_argument("--probe", type=Path, help="the scale_serve binary (benches/scale.sh)")
    p.add_argument("--serve-only", action="store_true",
                   help="measure the serving of the packages an earlier run left in --work "
                        "again (after a runtime change); its other figures are kept")
    p.add_argument("--latency-rounds", type=int, default=5,
                   help="latency rounds per backend, big and small package alternated process "
                        "by process (the first is the warm probe's); the table gives medians")
    p.add_argument("--stage", choices=["train"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stage == "train":                    # the child process of stage 3
        res = train_stage(a.work, a.steps, a.batch, a.embedding_dim, a.heads, a.negatives,
                          a.work.name)
        print(json.dumps(res))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    big, small = a.work / "big", a.work / "small"
    figures: dict = {"args": {k: str(v) for k, v in vars(a).items()}}
    if a.serve_only:                    # the packages and figures of an earlier run
        figures = json.loads((a.work / "scale.json").read_text())
    n_small_users = max(1000, a.users // 50)
    for tag, out, items, users, behaviors, queries, cats, shops in () if a.serve_only else (
            ("big", big, a.items, a.users, a.behaviors, a.queries, a.categories, a.shops),
            ("small", small, a.small_items, n_small_users,
             n_small_users * a.behaviors // a.users, max(100, a.queries // 1000),
             min(a.categories, max(1, a.small_items // 50)), min(a.shops, a.small_items // 5))):
        step(f"{tag}: generate {items:,} items, {users:,} users")
        t = time.perf_counter()
        figures[f"{tag}_data"] = generate(out, items, users, behaviors, queries, cats, shops)
        figures[f"{tag}_data"]["seconds"] = time.perf_counter() - t
        figures[f"{tag}_data"]["parquet_bytes"] = (out / "events.parquet").stat().st_size
        step(f"{tag}: read, split, train {a.steps} steps (a process of its own)")
        figures[f"{tag}_train"] = run_json(
            [sys.executable, __file__, "--stage", "train", "--work", str(out),
             "--steps", str(a.steps), "--batch", str(a.batch), "--negatives", str(a.negatives),
             "--embedding-dim", str(a.embedding_dim), "--heads", str(a.heads)])
        step(f"{tag}: export")
        t = time.perf_counter()
        pkg = out / "package"
        proc = subprocess.Popen([sys.executable, "-m", "atrank_export", "export",
                                 "--checkpoint", str(out / "ckpt.pt"), "--out", str(pkg)],
                                stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)          # this child's own peak memory
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"export failed ({os.waitstatus_to_exitcode(status)})")
        figures[f"{tag}_export"] = {
            "seconds": time.perf_counter() - t, "peak_rss_mib": usage.ru_maxrss / 1024,
            "package_bytes": sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file()),
            "tables_bin_bytes": (pkg / "tables.bin").stat().st_size,
        }
        (out / "ckpt.pt").unlink()
    if a.probe is None:
        raise SystemExit("--probe: the scale_serve binary (benches/scale.sh builds it)")
    figures["serve"] = serve(a.probe, big / "package", small / "package", a.latency_rounds)
    (a.work / "scale.json").write_text(json.dumps(figures, indent=1))
    table = report(figures)
    (a.work / "scale.md").write_text(table)
    print(table)


def step(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)


def drop_cache(pkg: Path) -> None:
    """Evicts the package's files from the page cache (POSIX_FADV_DONTNEED on each: a cold
    load without root or a whole-machine drop_caches)."""
    for f in pkg.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def probe(binary: Path, pkg: Path, backend: str, *extra: str) -> dict:
    return run_json([str(binary), "--package", str(pkg), "--backend", backend, *extra])


def smaps(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        out[k.strip()] = int(v.split()[0])
    return out


def two_processes(binary: Path, pkg: Path, backend: str) -> dict:
    """Two processes serving the package at once (each loaded and scored, then holding):
    each one's PSS, against the RSS of the first while it was alone."""
    procs = []
    alone = None
    try:
        for _ in range(2):
            p = subprocess.Popen([str(binary), "--package", str(pkg), "--backend", backend,
                                  "--hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            procs.append(p)
            first = json.loads(p.stdout.readline())
            assert p.stdout.readline().strip() == "ready"
            if alone is None:
                alone = smaps(p.pid)["Rss"]
                alone_report = first
        pss = [smaps(p.pid)["Pss"] for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    return {"rss_alone_kib": alone, "pss_kib": pss, "first": alone_report}


def serve(binary: Path, big: Path, small: Path, rounds: int) -> dict:
    out: dict = {}
    for backend in ("ort", "tract"):
        step(f"serve: {backend}, cold page cache")
        drop_cache(big)
        out[f"{backend}_cold"] = probe(binary, big, backend, "--threads", "16")
        step(f"serve: {backend}, warm page cache")
        out[f"{backend}_warm"] = probe(binary, big, backend, "--threads", "16")
        out[f"{backend}_small"] = probe(binary, small, backend, "--threads", "16")
        # More latency rounds, big and small alternated process by process: on a shared VM one
        # process's medians move by tens of per cent from minute to minute (docs/benchmarks.md),
        # so the ratio is read from all rounds, each pair measured side by side.
        pairs = [(out[f"{backend}_warm"], out[f"{backend}_small"])]
        for r in range(1, rounds):
            step(f"serve: {backend}, latency round {r + 1} of {rounds}")
            pairs.append((probe(binary, big, backend, "--threads", "0"),
                          probe(binary, small, backend, "--threads", "0")))
        out[f"{backend}_rounds"] = [
            {"big": {"latency_ms": b["latency_ms"], "prepare_ms": b["prepare_ms"]},
             "small": {"latency_ms": sm["latency_ms"], "prepare_ms": sm["prepare_ms"]}}
            for b, sm in pairs]
        step(f"serve: {backend}, two processes")
        out[f"{backend}_two"] = two_processes(binary, big, backend)
    step("serve: ort, 4 sessions, 16 threads")
    out["ort_4_sessions"] = probe(binary, big, "ort", "--threads", "16", "--sessions", "4")
    return out


def report(f: dict) -> str:
    mib = 1 / 1024
    s = f["serve"]
    tables = f["big_export"]["tables_bin_bytes"] / 2**20
    rows = [
        ("generate (big)", (f"{f['big_data']['behaviors']:,} behaviors, "
                           f"{f['big_data']['items']:,} items, {f['big_data']['users']:,} users"),
         f"{f['big_data']['seconds']:.0f} s"),
        ("read (columnar Parquet)", "", f"{f['big_train']['read_s']:.0f} s"),
        ("split", f"{f['big_train']['train_rows']:,} training rows",
         f"{f['big_train']['split_s']:.0f} s"),
        ("train, big table", f"{f['big_train']['item_rows']:,} item rows",
         f"{f['big_train']['samples_per_s']:.0f} samples/s"),
        ("train, small table", f"{f['small_train']['item_rows']:,} item rows",
         f"{f['small_train']['samples_per_s']:.0f} samples/s"),
        ("**train ratio big / small**", "target ≥ 0.7",
         f"**{f['big_train']['samples_per_s'] / f['small_train']['samples_per_s']:.2f}**"),
        ("training process peak RSS", "", f"{f['big_train']['peak_rss_mib']:,.0f} MiB"),
        ("export", f"peak RSS {f['big_export']['peak_rss_mib']:,.0f} MiB"
         if "peak_rss_mib" in f["big_export"] else "",
         f"{f['big_export']['seconds']:.0f} s"),
        ("package", f"tables.bin {tables:,.0f} MiB",
         f"{f['big_export']['package_bytes'] / 2**30:.2f} GiB"),
    ]
    for b in ("ort", "tract"):
        cold, warm, small, two = s[f"{b}_cold"], s[f"{b}_warm"], s[f"{b}_small"], s[f"{b}_two"]
        lim = 1.15 * tables + 300
        rows += [
            (f"{b}: load, cold / warm page cache", "target (ORT, warm) ≤ 3 s",
             f"{cold['load_ms'] / 1e3:.2f} s / {warm['load_ms'] / 1e3:.2f} s"),
            (f"{b}: RSS after load", f"target ≤ 1.15 × tables + 300 MiB = {lim:,.0f} MiB",
             f"{warm['after_load']['rss_kib'] * mib:,.0f} MiB"),
            (f"{b}: RSS after 16 threads × 1 session",
             f"(anonymous {warm['after_threads']['anon_kib'] * mib:,.0f} MiB)",
             f"{warm['after_threads']['rss_kib'] * mib:,.0f} MiB"),
            (f"{b}: PSS of each of 2 processes", (f"target ≤ 0.6 × RSS alone "
             f"({two['rss_alone_kib'] * mib:,.0f} MiB)"),
             " / ".join(f"{p * mib:,.0f} MiB ({p / two['rss_alone_kib']:.2f}×)"
                        for p in two["pss_kib"])),
        ]
        # runs written before the rounds existed hold only the warm and small probes
        rounds = s.get(f"{b}_rounds") or [{"big": warm, "small": small}]
        for n in ("100", "1000"):
            big_ms = [r["big"]["latency_ms"][n] for r in rounds]
            small_ms = [r["small"]["latency_ms"][n] for r in rounds]
            ratios = [x / y for x, y in zip(big_ms, small_ms)]
            spread = (f"; per round {statistics.median(ratios):.2f}× "
                      f"[{min(ratios):.2f}–{max(ratios):.2f}]" if len(rounds) > 1 else "")
            mb, ms = statistics.median(big_ms), statistics.median(small_ms)
            rows.append((f"{b}: latency N = {n}, big / small package",
                         ("target (N = 1000) ≤ 1.1×; " if n == "1000" else "")
                         + f"medians of {len(rounds)} alternated round(s)",
                         f"{mb:.3f} / {ms:.3f} ms ({mb / ms:.2f}×{spread})"))
        prep_big = statistics.median(r["big"]["prepare_ms"]["1000"] for r in rounds)
        prep_small = statistics.median(r["small"]["prepare_ms"]["1000"] for r in rounds)
        rows.append((f"{b}: preprocessing N = 1000, big / small package",
                     f"medians of {len(rounds)} round(s)",
                     f"{prep_big:.3f} / {prep_small:.3f} ms"))
    four = s["ort_4_sessions"]
    one = s["ort_warm"]
    rows.append(("ort: RSS after 16 threads × 4 sessions", "vs × 1 session; target ≤ 1.05×",
                 (f"{four['after_threads']['rss_kib'] * mib:,.0f} MiB "
                 f"({four['after_threads']['rss_kib'] / one['after_threads']['rss_kib']:.3f}×)")))
    lines = ["| measurement | note | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
