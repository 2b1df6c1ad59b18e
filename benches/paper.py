"""atrank at the paper's size: one user's request, L = 50, N candidates, 1 thread (issue 14).

    bash benches/paper.sh [--package PKG] [--sizes 100,250,1000,10000] [--profile]
        [--ab-fuse ROUNDS] [--quick]

(`benches/paper.sh` sets up the environment and builds the Rust probe
`benches/paper_serve.rs` in release; this file is the driver.) In one run:

1. **package**: unless ``--package`` is given, trains ATRank on MovieLens-100k at the paper's
   widths (``train --epochs 1 --embedding-dim 64 --heads 8 --ffn 32``; hidden 128) and
   exports it to ``WORK/package`` (``--work``, default ``build/paper``);
2. **matmul rate**: float32 2048^3 ``numpy.matmul`` on one thread (OMP/MKL/OPENBLAS threads = 1
   set before numpy is imported, in a process of its own), before and after the latency runs;
3. **Python ONNX Runtime** on the package's ``model.onnx`` with prepared int64 tensors (1
   intra-op and 1 inter-op thread, CPU EP, default optimisation), median at each N;
4. **the C ABI** (``atrank_model_score`` from raw behaviors): the probe, once per backend, ORT
   then tract, each in a process of its own (tract evicts ORT's caches when both run in one);
   it also times the preprocessing alone (``Model::prepare``);
5. **FLOPs** of one request from the spec's widths (:func:`request_flops`), and the share of
   the matmul rate each backend reaches.

Prints a markdown table and writes it (``paper.md``) with the raw figures (``paper.json``)
under ``WORK``. ``--profile`` adds ONNX Runtime's per-op profile (Python onnxruntime's
``enable_profiling``) and tract's (the probe's ``--profile``), both at N = 1000. ``--against
OTHER``: this package's graph and OTHER's (the same checkpoint from another exporter) on Python
onnxruntime, alternated call by call in one process (:func:`graph_ab`). ``--ab-fuse ROUNDS``:
tract with atrank's fused attention kernel (``LoadOptions::tract_fused_attention``, the
default in optimised builds) against tract's own nodes for the same graph, both in the probe's
process, ROUNDS alternated rounds per N, with the largest score difference. ``--quick``:
N = 100 and 1000, few calls (a smoke run for CI).

Times on a shared 2-core box are noisy: compare ratios from one run, not absolute times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
HISTORY = 50

MATMUL = r"""
import json, sys, time
import numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
np.matmul(a, b)
times = []
for _ in range(reps):
    t = time.perf_counter()
    np.matmul(a, b)
    times.append(time.perf_counter() - t)
try:
    blas = [v.get("name") for v in np.show_config(mode="dicts")["Build Dependencies"].values()]
except Exception:
    blas = []
print(json.dumps({"n": n, "times_s": times, "blas": blas}))
"""


def matmul_rate(n: int = 2048, reps: int = 5) -> dict:
    """One thread's float32 matmul rate: ``n``^3 numpy.matmul, ``reps`` timed runs after one
    warm-up, in a process with OMP/MKL/OPENBLAS threads = 1 set before numpy is imported.
    GFLOP/s = 2 n^3 / time; best and median."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               BLIS_NUM_THREADS="1", VECLIB_MAXIMUM_THREADS="1", NUMEXPR_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MATMUL, str(n), str(reps)], check=True,
                         stdout=subprocess.PIPE, text=True, env=env).stdout
    r = json.loads(out)
    rates = [2 * n ** 3 / t / 1e9 for t in r["times_s"]]
    return {"n": n, "reps": reps, "gflops_best": max(rates),
            "gflops_median": statistics.median(rates), "gflops_all": rates, "blas": r["blas"]}


def request_flops(model: dict, n: int, history: int = HISTORY) -> dict:
    """Floating-point operations (a multiply-add = 2) of one user's request with ``history``
    behaviors and ``n`` candidates in atrank's encode-once graph, from the widths in
    ``spec.json``'s ``model`` section (``embedding_dim`` E, ``hidden`` H, ``heads``, ``ffn``,
    ``n_time_buckets``, ``n_actions``, the target group's features; L = ``history``).

    Per user (the history, encoded once):
      - embedding projection F_M of each behavior, input width
        D = features * E + n_time_buckets + n_actions + 1: ``2 L D H``;
      - self-attention Q/K/V projections ``3 * 2 L H H``, QK^T and AV ``2 * 2 L L H``, FFN over
        the L positions ``L * 2 (2 H ffn)``;
      - the vanilla attention's K/V projections of the encoded history ``2 * 2 L H H``.
    Per candidate:
      - the candidate projection F_C ``2 (features * E) H`` when ``candidate_projection``
        (identity otherwise: 0);
      - the vanilla attention's Q projection ``2 H H``, QK^T ``2 L H``, AV ``2 L H``, FFN
        ``2 (2 H ffn)``;
      - the ranking: the dot product ``2 H`` (``ranking="dot"``), or the MLP on [u, h, u*h]
        ``2 (3H) H + 2 H`` (``ranking="mlp"``).
    Heads split H into slices and do not change the count. Element-wise work (biases, ReLU,
    LayerNorm, softmax, masks) and look-ups are left out: matmul-class work only, what the
    matmul rate measures. One group of ``history`` behaviors (the paper's single-group
    configuration). At the paper's widths (E 64, H 128, ffn 32, 13 time buckets, 2 actions),
    N = 1000 gives 87.1 MFLOP (12.13 per user + 75.0 for the candidates).
    """
    e, h, f, L = model["embedding_dim"], model["hidden"], model["ffn"], history
    target = next(g for g in model["groups"] if g["name"] == model["target_group"])
    feats = len(target["features"])
    d = feats * e + model["n_time_buckets"] + model["n_actions"] + 1
    user = (2 * L * d * h                # F_M
            + 3 * 2 * L * h * h          # self-attention Q/K/V
            + 2 * 2 * L * L * h          # QK^T and AV over the history
            + L * 2 * (2 * h * f)        # FFN at every position
            + 2 * 2 * L * h * h)         # vanilla attention K/V of the encoded history
    per_cand = (2 * h * h                # vanilla attention Q
                + 2 * L * h + 2 * L * h  # QK^T, AV
                + 2 * (2 * h * f))       # FFN
    if model.get("candidate_projection"):
        per_cand += 2 * feats * e * h
    per_cand += 2 * h if model.get("ranking", "dot") == "dot" else 2 * 3 * h * h + 2 * h
    return {"user": user, "per_candidate": per_cand, "total": user + n * per_cand}


def percentiles(times: list[float]) -> dict:
    t = sorted(times)
    k = len(t)
    return {"calls": k, "median_ms": t[k // 2] * 1e3, "p10_ms": t[(k - 1) * 10 // 100] * 1e3,
            "p90_ms": t[(k - 1) * 90 // 100] * 1e3}


def sample(f, min_calls: int, min_seconds: float) -> list[float]:
    """Warm-up (3 calls, 0.1 s at least), then at least ``min_calls`` calls and
    ``min_seconds`` seconds; returns each call's seconds."""
    start = time.perf_counter()
    warm = 0
    while warm < 3 or time.perf_counter() - start < min(0.1, min_seconds):
        f()
        warm += 1
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return times


def input_ranges(spec: dict) -> dict[str, tuple[str, int, int]]:
    """Graph input name -> (kind, low, high inclusive) of valid values, from spec.json:
    kind is "history" [1, L], "length" [1] or "candidates" [1, N]."""
    tables = spec["tables"]
    m = spec["model"]
    out: dict[str, tuple[str, int, int]] = {}
    target = None
    for g in spec["groups"]:
        for feat in g["features"]:
            out[feat["input"]] = ("history", 1, tables[feat["table"]]["size"])
        out[g["inputs"]["action"]] = ("history", 1, m["n_actions"])
        out[g["inputs"]["time_bucket"]] = ("history", 0, len(spec["time_buckets"]["boundaries"]))
        out[g["inputs"]["length"]] = ("length", HISTORY, HISTORY)
        if g["name"] == spec["target_group"]:
            target = g
    for feat, name in spec["candidate_inputs"].items():
        table = next(f["table"] for f in target["features"] if f["name"] == feat)
        out[name] = ("candidates", 1, tables[table]["size"])
    return out


def python_ort(pkg: Path, spec: dict, sizes: list[int], min_calls: int, min_seconds: float,
               profile_n: int | None, work: Path) -> dict:
    """Python onnxruntime on ``model.onnx`` with prepared int64 tensors: 1 intra-op thread,
    1 inter-op thread, CPU EP, default graph optimisation (as atrank's ORT sessions). Median
    latency at each N; with ``profile_n``, a second, profiled session at that N."""
    import numpy as np
    import onnxruntime as ort

    def session(profile: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(work / "ort_profile")
        return ort.InferenceSession(str(pkg / spec["graph"]["file"]), so,
                                    providers=["CPUExecutionProvider"])

    ranges = input_ranges(spec)
    sess = session(False)
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in ranges]
    if missing:
        raise SystemExit(f"model inputs {missing} are not described by spec.json")
    rng = np.random.default_rng(14)

    def feeds(n: int) -> dict:
        out = {}
        for name in names:
            kind, lo, hi = ranges[name]
            shape = {"history": (1, HISTORY), "length": (1,), "candidates": (1, n)}[kind]
            out[name] = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
        return out

    results = {}
    for n in sizes:
        cycle = itertools.cycle([feeds(n) for _ in range(8)])
        results[str(n)] = percentiles(sample(lambda c=cycle: sess.run(None, next(c)),
                                             min_calls, min_seconds))
    out = {"version": ort.__version__, "results": results}
    if profile_n:
        for old in work.glob("ort_profile_*.json"):  # the previous run's trace
            old.unlink()
        out["profile"] = ort_profile(session(True), [feeds(profile_n) for _ in range(8)],
                                     max(min_calls, 20), profile_n)
    return out


def random_requests(names: list[str], ranges: dict, n: int, rng, count: int = 8) -> list[dict]:
    """``count`` prepared one-user requests (L = HISTORY, ``n`` candidates): every graph input
    in ``names`` drawn uniformly from its range (:func:`input_ranges`)."""
    import numpy as np

    reqs = []
    for _ in range(count):
        r = {}
        for name in names:
            kind, lo, hi = ranges[name]
            shape = {"history": (1, HISTORY), "length": (1,), "candidates": (1, n)}[kind]
            r[name] = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
        reqs.append(r)
    return reqs


def graph_ab(pkg: Path, other: Path, spec: dict, sizes: list[int], rounds: int) -> dict:
    """Python onnxruntime on this package's ``model.onnx`` and on ``other``'s (e.g. the same
    checkpoint exported by an older exporter), 1 thread each, alternated call by call in one
    process on the same 8 requests: at each N the median time of each and their ratio
    (other / this), and the largest |difference| of their logits (the graphs must agree)."""
    import numpy as np
    import onnxruntime as ort

    def session(p: Path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        return ort.InferenceSession(str(p / spec["graph"]["file"]), so,
                                    providers=["CPUExecutionProvider"])

    this, that = session(pkg), session(other)
    names = [i.name for i in this.get_inputs()]
    if names != [i.name for i in that.get_inputs()]:
        raise SystemExit(f"--against {other}: the graphs' inputs differ")
    ranges = input_ranges(spec)
    rng = np.random.default_rng(15)
    out = {"against": str(other), "results": {}}
    for n in sizes:
        reqs = random_requests(names, ranges, n, rng)
        diff = max(float(np.abs(this.run(None, r)[0] - that.run(None, r)[0]).max())
                   for r in reqs)
        times: dict[str, list[float]] = {"this": [], "other": []}
        for i in range(rounds * 8):
            for key, sess in (("this", this), ("other", that)):
                t = time.perf_counter()
                sess.run(None, reqs[i % 8])
                times[key].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        out["results"][str(n)] = {"this_ms": med["this"], "other_ms": med["other"],
                                  "speedup": med["other"] / med["this"], "max_abs_diff": diff}
    return out


def ort_profile(sess, reqs: list[dict], runs: int, n: int, warm: int = 3) -> dict:
    """Runs ``warm`` + ``runs`` calls on a profiling session and sums the kernel times of the
    timed runs by op type and by node (top 15 of each; ms per call)."""
    for i in range(warm + runs):
        sess.run(None, reqs[i % len(reqs)])
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    cutoff = model_runs[warm]["ts"] if len(model_runs) > warm else 0
    timed = [e for e in model_runs if e["ts"] >= cutoff]
    by_type: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    by_node: dict[str, list] = defaultdict(lambda: [0.0, ""])
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if e["ts"] < cutoff:
            continue
        op = e.get("args", {}).get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        by_type[op][0] += e["dur"]
        by_node[node][0] += e["dur"]
        by_node[node][1] = op
    count = max(1, len(timed))
    kernels = sum(v[0] for v in by_type.values())
    nodes_per_type: dict[str, int] = defaultdict(int)
    for _, op in by_node.values():
        nodes_per_type[op] += 1
    return {
        "n": n, "runs": len(timed), "file": str(path),
        "model_run_ms": statistics.median(e["dur"] for e in timed) / 1e3 if timed else None,
        "kernels_ms_per_call": kernels / count / 1e3,
        "by_type": [{"op": op, "nodes": nodes_per_type[op], "ms": us / count / 1e3,
                     "share": us / kernels if kernels else 0.0}
                    for op, (us, _) in sorted(by_type.items(), key=lambda x: -x[1][0])[:15]],
        "by_node": [{"node": node, "op": op, "ms": us / count / 1e3,
                     "share": us / kernels if kernels else 0.0}
                    for node, (us, op) in sorted(by_node.items(), key=lambda x: -x[1][0])[:15]],
    }


def probe(binary: Path, pkg: Path, backend: str, sizes: list[int], min_calls: int,
          min_seconds: float, profile: bool) -> dict:
    cmd = [str(binary), "--package", str(pkg), "--backend", backend,
           "--sizes", ",".join(map(str, sizes)), "--min-calls", str(min_calls),
           "--min-seconds", str(min_seconds)]
    if profile:
        cmd += ["--profile", "--profile-n", "1000"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def step(what: str) -> None:
    print(f"==> {what}  [{time.strftime('%H:%M:%S')}]", file=sys.stderr, flush=True)


def train(work: Path, epochs: int) -> Path:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "export" / "src"))
    step("train (ml100k, E 64, 8 heads, ffn 32)")
    subprocess.run([sys.executable, "-m", "atrank_export", "train", "--data", "ml100k",
                    "--out", str(work), "--epochs", str(epochs), "--embedding-dim", "64",
                    "--heads", "8", "--ffn", "32", "--no-progress"], check=True, env=env)
    step("export")
    subprocess.run([sys.executable, "-m", "atrank_export", "export", "--checkpoint",
                    str(work / "checkpoint.pt"), "--out", str(work / "package")],
                   check=True, env=env)
    return work / "package"


def fmt(x, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def report(f: dict) -> str:
    """The markdown table (and, with --profile, the per-op tables)."""
    rate = f["matmul"]["gflops_median"]
    rows = {b: {r["n"]: r for r in f["probe"][b]["results"]} for b in ("ort", "tract")}
    sizes = [r["n"] for r in f["probe"]["ort"]["results"]]
    ref = 250 if 250 in sizes else min(sizes)
    py = f["python_ort"]["results"]
    lines = [
        (f"One user, L = {HISTORY}, 1 thread, medians; matmul 2048^3 float32 on 1 thread: "
         f"{rate:.1f} GFLOP/s (median of {len(f['matmul']['gflops_all'])}; best "
         f"{f['matmul']['gflops_best']:.1f}); per-candidate cost relative to N = {ref}."),
        "",
        ("| N | MFLOP | C ABI ORT ms (p10–p90) | C ABI tract ms (p10–p90) | tract/ORT "
         "| Python ORT ms | C ABI ORT / Python ORT | ORT % of matmul rate "
         "| tract % of matmul rate | ORT µs/cand | tract µs/cand "
         f"| ORT per-cand vs N={ref} | tract per-cand vs N={ref} | prep ms (ORT) "
         "| prep share ORT / tract |"),
        "|" + "---|" * 15,
    ]
    for n in sizes:
        o, t = rows["ort"][n], rows["tract"].get(n)
        p = py.get(str(n))
        fl = f["flops"][str(n)]["total"]

        def share(ms: float, fl: float = fl) -> float:
            return fl / (ms * 1e-3) / (rate * 1e9) * 100

        o_ref, t_ref = rows["ort"][ref], rows["tract"].get(ref)
        lines.append(
            f"| {n}{' (clipped)' if o['clipped'] else ''} | {fl / 1e6:.1f} "
            f"| {o['median_ms']:.3f} ({o['p10_ms']:.3f}–{o['p90_ms']:.3f}) "
            f"| {fmt(t and t['median_ms'], '.3f')} "
            f"({fmt(t and t['p10_ms'], '.3f')}–{fmt(t and t['p90_ms'], '.3f')}) "
            f"| {fmt(t and t['median_ms'] / o['median_ms'])}× "
            f"| {fmt(p and p['median_ms'], '.3f')} "
            f"| {fmt(p and o['median_ms'] / p['median_ms'])}× "
            f"| {share(o['median_ms']):.1f}% | {fmt(t and share(t['median_ms']), '.1f')}% "
            f"| {o['per_candidate_us']:.2f} | {fmt(t and t['per_candidate_us'])} "
            f"| {o['per_candidate_us'] / o_ref['per_candidate_us']:.2f}× "
            f"| {fmt(t and t_ref and t['per_candidate_us'] / t_ref['per_candidate_us'])}× "
            f"| {o['prepare_ms']:.3f} "
            f"| {o['prepare_share'] * 100:.1f}% / {fmt(t and t['prepare_share'] * 100, '.1f')}% |")
    tp = [f"{r['n']}→{r['tract_padded_n']}" for r in f["probe"]["tract"]["results"]
          if r.get("tract_padded_n") not in (None, r["n"])]
    lines += [
        "",
        ("C ABI: `atrank_model_score` from raw behaviors (C strings), 1 intra-op thread, each "
         "backend in a process of its own. Python ORT: `InferenceSession.run` on prepared "
         "int64 tensors (no preprocessing), same model.onnx, 1 intra/1 inter-op thread. prep: "
         "`Model::prepare` alone (look-ups, time buckets, tensors), share of the C ABI call. "
         f"FLOPs: `request_flops` (matmul-class work; {f['flops_note']})."),
    ]
    if tp:
        lines.append(f"tract pads candidates to power-of-two plan shapes: {', '.join(tp)} "
                     "(its prep and graph time include the padding; µs/cand divides by N).")
    lines.append(f"Load average at start / end: {f['loadavg_start']} / {f['loadavg_end']} "
                 f"({os.cpu_count()} CPUs).")
    if all("ffi_share" in rows["ort"][n] for n in sizes):
        lines += ["", ("The FFI's own cost: the same requests through the C ABI and the Rust "
                       "API (`Model::score`), alternated call by call in one process; "
                       "FFI share = (C − Rust) / C, and with prep the share of a request that "
                       "is not the graph:"), "",
                  "| N | backend | C ABI ms | Rust API ms | FFI share | prep share | prep + FFI |",
                  "|---|---|---|---|---|---|---|"]
        for n in sizes:
            for b in ("ort", "tract"):
                r = rows[b].get(n)
                if r is None or "ffi_share" not in r:
                    continue
                lines.append(f"| {n} | {b} | {r['alternated_c_ms']:.3f} "
                             f"| {r['alternated_rust_ms']:.3f} | {r['ffi_share'] * 100:.1f}% "
                             f"| {r['prepare_share'] * 100:.1f}% "
                             f"| {(r['ffi_share'] + r['prepare_share']) * 100:.1f}% |")
    if all("cached_median_ms" in rows["ort"][n] for n in sizes):
        lines += ["", ("Returning users: the same requests through `atrank_model_score_cached` "
                       "(one user key per request; after the warm-up every call finds its "
                       "user's encoding cached, so only the scorer graph runs):"), "",
                  "| N | C ABI ORT ms | C ABI tract ms | ORT, cached / uncached |",
                  "|---|---|---|---|"]
        for n in sizes:
            o, t = rows["ort"][n], rows["tract"].get(n)
            lines.append(f"| {n} | {o['cached_median_ms']:.3f} "
                         f"| {fmt(t and t.get('cached_median_ms'), '.3f')} "
                         f"| {o['cached_median_ms'] / o['median_ms']:.2f}× |")
    prof = f.get("profile")
    if prof:
        po = prof.get("ort")
        if po:
            lines += ["", (f"ONNX Runtime per-op profile (Python onnxruntime, N = {po['n']}, "
                           f"{po['runs']} runs; model_run median "
                           f"{fmt(po['model_run_ms'], '.3f')} ms, "
                           f"kernels {po['kernels_ms_per_call']:.3f} ms/call):"), "",
                      "| op type | nodes | ms/call | share of kernel time |", "|---|---|---|---|"]
            lines += [f"| {r['op']} | {r['nodes']} | {r['ms']:.3f} | {r['share'] * 100:.1f}% |"
                      for r in po["by_type"]]
            lines += ["", "| node | op | ms/call | share |", "|---|---|---|---|"]
            lines += [f"| `{r['node']}` | {r['op']} | {r['ms']:.3f} | {r['share'] * 100:.1f}% |"
                      for r in po["by_node"]]
        pt = prof.get("tract")
        if pt and "by_type" in pt:
            lines += ["", (f"tract per-op profile (N = {prof.get('tract_n')}, {pt['calls']} "
                           f"calls; {pt['plan']}; plain run median "
                           f"{pt['plain_median_ms']:.3f} ms, "
                           f"profiled {pt['profiled_ms_per_call']:.3f} ms/call):"), "",
                      "| op type | nodes | ms/call | share |", "|---|---|---|---|"]
            lines += [f"| {r['op']} | {r['nodes']} | {r['ms']:.3f} | {r['share'] * 100:.1f}% |"
                      for r in pt["by_type"]]
            lines += ["", "| node | op | ms/call | share |", "|---|---|---|---|"]
            lines += [f"| `{r['node']}` | {r['op']} | {r['ms']:.3f} | {r['share'] * 100:.1f}% |"
                      for r in pt["by_node"]]
        elif pt:
            lines += ["", f"tract profile: {pt}"]
    ab = f.get("graph_ab")
    if ab:
        lines += ["", (f"This package's graph against `{ab['against']}` (Python onnxruntime, 1 "
                       "thread, alternated call by call in one process, same requests):"), "",
                  "| N | this ms | other ms | speed-up | max abs logit difference |",
                  "|---|---|---|---|---|"]
        lines += [f"| {n} | {r['this_ms']:.3f} | {r['other_ms']:.3f} | {r['speedup']:.2f}× | "
                  f"{r['max_abs_diff']:.2e} |" for n, r in ab["results"].items()]
    fa = f.get("ab_fuse")
    if fa:
        first = fa["ab_fuse"][0]
        lines += ["", (f"tract, atrank's fused attention and layer-norm kernels against tract's "
                       f"own nodes (Rust API, one process, {fa['rounds']} alternated rounds; "
                       f"median of the per-round medians; attention cores fused: "
                       f"{first['fused_cores']}, layer norms: "
                       f"{first.get('fused_layer_norms', 0)}):"), "",
                  "| N | fused ms | tract's nodes ms | speed-up | max abs score diff |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['n']} | {r['fused_ms']:.3f} | {r['tract_nodes_ms']:.3f} | "
                  f"{r['speedup']:.2f}× | {r['max_abs_diff']:.2e} |" for r in fa["ab_fuse"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", type=Path, required=True, help="the paper_serve binary")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "paper")
    ap.add_argument("--package", type=Path, help="an exported package (else: train one)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--sizes", default="100,250,1000,10000")
    ap.add_argument("--min-calls", type=int, default=30)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--matmul-reps", type=int, default=5)
    ap.add_argument("--profile", action="store_true",
                    help="per-op profiles of ORT and tract at N = 1000")
    ap.add_argument("--against", type=Path,
                    help="another package of the same checkpoint (e.g. from an older "
                         "exporter): Python ORT on both graphs, alternated in one process")
    ap.add_argument("--ab-fuse", type=int, default=0, metavar="ROUNDS",
                    help="also tract with atrank's fused attention kernel against tract's own "
                         "nodes (LoadOptions::tract_fused_attention), alternated in one "
                         "process through the Rust API, ROUNDS rounds per N")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: N = 100, 1000; 5 calls / 0.2 s per point")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.min_calls, a.min_seconds, a.matmul_reps = "100,1000", 5, 0.2, 2
    sizes = [int(s) for s in a.sizes.split(",")]
    a.work.mkdir(parents=True, exist_ok=True)
    pkg = a.package if a.package else train(a.work, a.epochs)
    spec = json.loads((pkg / "spec.json").read_text())
    max_n = spec["limits"]["max_candidates"]
    clipped = [min(n, max_n) for n in sizes]

    f: dict = {"package": str(pkg), "sizes": sizes, "quick": a.quick,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    step("matmul rate (1 thread)")
    before = matmul_rate(reps=a.matmul_reps)
    step("Python onnxruntime, prepared tensors")
    prof_n = min(1000, max_n) if a.profile else None
    f["python_ort"] = python_ort(pkg, spec, clipped, a.min_calls, a.min_seconds, prof_n, a.work)
    if a.against:
        step(f"Python onnxruntime, this graph against {a.against}")
        f["graph_ab"] = graph_ab(pkg, a.against, spec, clipped, 3 if a.quick else 25)
    f["probe"] = {}
    for backend in ("ort", "tract"):
        step(f"C ABI probe: {backend}")
        f["probe"][backend] = probe(a.probe, pkg, backend, sizes, a.min_calls, a.min_seconds,
                                    a.profile and backend == "tract")
    if a.ab_fuse:
        step(f"tract: fused kernels against tract's nodes ({a.ab_fuse} rounds)")
        cmd = [str(a.probe), "--package", str(pkg), "--backend", "tract", "--sizes",
               ",".join(map(str, sizes)), "--min-calls", str(a.min_calls), "--min-seconds",
               str(a.min_seconds), "--ab-fuse", str(a.ab_fuse)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        f["ab_fuse"] = json.loads(out.strip().splitlines()[-1])
    step("matmul rate again")
    after = matmul_rate(reps=a.matmul_reps)
    rates = before["gflops_all"] + after["gflops_all"]
    f["matmul"] = {"n": 2048, "before": before, "after": after, "gflops_all": rates,
                   "gflops_median": statistics.median(rates), "gflops_best": max(rates),
                   "blas": before["blas"]}
    f["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    f["flops"] = {str(n): request_flops(spec["model"], n) for n in clipped + [1000]}
    f["flops_note"] = (f"{request_flops(spec['model'], 1000)['total'] / 1e6:.1f} MFLOP at N = "
                       "1000")
    if a.profile:
        f["profile"] = {"ort": f["python_ort"].pop("profile", None),
                        "tract": f["probe"]["tract"].get("profile"),
                        "tract_n": min(1000, max_n)}
    table = report(f)
    (a.work / "paper.json").write_text(json.dumps(f, indent=1) + "\n")
    (a.work / "paper.md").write_text(table + "\n")
    print(table)
    print(f"\n(raw figures: {a.work / 'paper.json'}; table: {a.work / 'paper.md'})")


if __name__ == "__main__":
    main()
