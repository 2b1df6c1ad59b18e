"""Model comparison under one protocol: ATRank against SASRec, GRU, DIN, mean-pool and BPR-MF.

``python -m atrank_export compare --data <reader> [reader options] --runs DIR [...]``

The protocol (docs/results.md states it for readers):

* **Task.** Targets are behaviors of the target group (optionally only some actions, e.g.
  ``--target-actions buy,cart``, and/or only a user's first behavior on an object,
  ``--first-touch``); a user's last target is test, the one before validation, every earlier
  one a training target, each with every earlier behavior as its history (split.py).
* **Items never seen in training** (``vocabulary="train"``, ``universe="objects"``): the id
  vocabulary holds the ids seen at least ``--min-count`` times in training events; any other
  id is unknown (row 0), for every model, as at serving. Candidates, negatives and the
  full-ranking evaluation range over every object of the target group: an unknown object is
  scored through its features (category) with the unknown id, so it is neither favoured nor
  pushed down by an id row that training never touched (objects alike in every input share
  one score and are counted with their multiplicity).
* **Tuning budget, the same for every model.** On the first seed only, a grid of
  ``len(lr) x len(knob)`` configurations (two learning rates x one model-specific knob with
  two values: ``GRID``), each trained with early stopping on validation all-items AUC (the
  same ``--max-epochs`` and ``--patience`` for all). The configuration with the best
  validation all-items AUC wins; test is evaluated once, for it. The other seeds rerun the
  winner (each with its own early stopping) and are evaluated on test once each.
* **Variants** (not tuned again: they reuse their parent's configuration): ATRank without
  actions and without time (``ATRank -action`` / ``ATRank -time``), ATRank with behaviors
  grouped by action (``ATRank +action groups``: one group, projection and history budget
  per action, shared embeddings; the default is one group), and each history model without
  the time and action features it is given by default (``<model> -ta``).
* **Seeds** set the negatives, the initialisation and the training order; all models share
  each seed's data, so differences are paired.

Every finished run is written to ``DIR/<run>.json`` at once (the tuning runs' best weights to
``DIR/<run>.pt`` until test is evaluated), so a stopped comparison resumes where it was.
``summary.json`` and the report section follow at the end.

Several processes may share one ``DIR`` (say one per core, e.g. one with ``--models`` in the
reverse order): a process claims a run with ``DIR/<run>.claim`` (created exclusively, holding
its host and pid) before it trains or tests it, and waits for a run that another live process
holds. A claim left by a process that died is taken over. Each process writes the
``summary.json`` of what it was asked; ``--report-only`` with every model summarises all.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import platform
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .baselines import MODELS, BaselineConfig, UserSplit
from .cli import add_data_arguments, describe, read_data
from .model import ATRank
from .preprocess import TimeBuckets
from .split import DEFAULT_SEED, Split, build_split
from .train import evaluate, setup_threads, train

ORDER = ["ATRank", "SASRec", "GRU", "DIN", "mean-pool", "BPR"]
# Every history model trains with a sampled softmax: the target against M negatives shared by
# the batch (uniform over objects). SASRec gets the literature's large M; the models that score
# each candidate through a network of their own (ATRank's attention, DIN's attention MLP, the
# MLP heads of GRU and mean-pool) get the same, smaller M, because every negative costs them a
# full candidate pass. BPR-MF keeps its pairwise BPR loss (one fixed negative).
NEGATIVES = 64
LOSS = {"ATRank": ("softmax", NEGATIVES), "SASRec": ("softmax", 1024),
        "GRU": ("softmax", NEGATIVES), "DIN": ("softmax", NEGATIVES),
        "mean-pool": ("softmax", NEGATIVES), "BPR": ("bpr", 0)}
# The tuning budget: every model gets 2 learning rates x 2 values of one knob of its own.
GRID = {
    "ATRank": ((1e-3, 3e-3), ("dropout", (0.0, 0.2))),
    "SASRec": ((1e-3, 3e-3), ("dropout", (0.2, 0.5))),
    "GRU": ((1e-3, 3e-3), ("dropout", (0.0, 0.2))),
    "DIN": ((1e-3, 3e-3), ("dropout", (0.0, 0.2))),
    "mean-pool": ((1e-3, 3e-3), ("dropout", (0.0, 0.2))),
    "BPR": ((3e-3, 1e-2), ("l2", (1e-5, 1e-4))),
}
# Variants: name -> (parent, what changes). Their parent's chosen configuration is reused.
VARIANTS = {
    "ATRank -action": ("ATRank", {"use_actions": False}),
    "ATRank -time": ("ATRank", {"use_time": False}),
    "ATRank +action groups": ("ATRank", {"group_by_action": True}),
    "ATRank bce": ("ATRank", {"loss": ("bce", 0)}),
    "SASRec -ta": ("SASRec", {"baseline_ta": False}),
    "GRU -ta": ("GRU", {"baseline_ta": False}),
    "DIN -ta": ("DIN", {"baseline_ta": False}),
    "mean-pool -ta": ("mean-pool", {"baseline_ta": False}),
}
# ATRank's other knobs, one at a time around its chosen configuration, on the first seed's
# validation only (reported as "what mattered"; not part of the equal-budget comparison).
SENSITIVITY = {
    "ATRank @width 64": ("ATRank", {"embedding_dim": 64}),
    "ATRank @heads 8": ("ATRank", {"heads": 8}),
    "ATRank @L2 1e-4": ("ATRank", {"l2": 1e-4}),
    "ATRank @day buckets": ("ATRank", {"time_unit": 86400}),
    "ATRank @256 negatives": ("ATRank", {"loss": ("softmax", 256)}),
    # the baselines' head, b_i + MLP([u, c, u*c]), instead of the original b_i + <u, c>
    "ATRank @MLP ranking": ("ATRank", {"ranking": "mlp"}),
}
DERIVED = {**VARIANTS, **SENSITIVITY}
SPLIT_KEYS = ("use_actions", "use_time", "embedding_dim", "heads", "time_unit",
              "group_by_action", "ranking")
L2 = 1e-5            # embedding L2 of every model whose knob is not L2
BATCH = 128


@dataclass(frozen=True)
class RunSpec:
    model: str                 # a name of ORDER or VARIANTS
    lr: float
    knob: str
    value: float
    seed: int

    @property
    def base(self) -> str:
        return DERIVED[self.model][0] if self.model in DERIVED else self.model

    @property
    def loss(self) -> tuple[str, int]:
        return DERIVED.get(self.model, (0, {}))[1].get("loss", LOSS[self.base])

    @property
    def key(self) -> str:
        slug = (self.model.replace(" ", "").replace("-", "_").replace("@", "at_")
                .replace(".", "_"))
        kind, m = self.loss
        loss = f"sm{m}" if kind == "softmax" else kind
        return f"{slug}__lr{self.lr:g}__{self.knob}{self.value:g}__{loss}__seed{self.seed}"


def split_options(a: argparse.Namespace) -> dict:
    """build_split keywords of the task (shared by every model and seed)."""
    return {"max_history": a.max_history, "max_users": a.max_users,
            "time_buckets": TimeBuckets(unit_seconds=a.time_unit),
            "embedding_dim": a.embedding_dim, "vocabulary": "train", "universe": "objects",
            "min_count": a.min_count,
            "target_actions": a.target_actions.split(",") if a.target_actions else None,
            "first_touch": a.first_touch}


def leakage_check(split: Split) -> dict:
    """Counts over the test and validation rows: the fixed negative inside the history and
    among the user's objects (both must be 0), and the target inside its own history (a
    repeat: allowed, reported)."""
    out = {}
    for part, rows in (("test", split.test), ("valid", split.valid)):
        hist = split.history(rows[:, :2])[f"{split.config.target_group}_id"]
        target = split.target_items(rows[:, :2])
        neg_id = split.universe[rows[:, 2], 0]
        out[part] = {
            "target_in_history": int(((hist == target[:, None]) & (target[:, None] > 0))
                                     .any(1).sum()),
            "negative_in_history": int(((hist == neg_id[:, None]) & (neg_id[:, None] > 0))
                                       .any(1).sum()),
            "negative_interacted": int(sum(np.isin(r[2], split.interacted[r[0]])
                                           and split.universe_count[r[2]] == 1
                                           for r in rows)),
            "target_unknown_id": int((target == 0).sum()),
            "rows": len(rows),
        }
    return out


def make_model(spec: RunSpec, split: Split):
    """(model factory, the split to train on, model config) of a run."""
    over = DERIVED.get(spec.model, (None, {}))[1]
    if spec.base == "ATRank":
        cfg = type(split.config).from_dict({**split.config.to_dict(),
                                            "dropout": spec.value if spec.knob == "dropout"
                                            else 0.0})
        return ATRank, split, cfg
    ta = over.get("baseline_ta", True)
    cfg = BaselineConfig.of(split.config, use_action=ta, use_time=ta,
                            dropout=spec.value if spec.knob == "dropout" else 0.0)
    if spec.base == "BPR":
        run_split = UserSplit.of(split)
        return (lambda c: MODELS["BPR"](c, run_split)), run_split, cfg
    return (lambda c: MODELS[spec.base](c, split)), split, cfg


class NotRun(Exception):
    """A run that ``--report-only`` needs but nobody has trained yet."""


class Comparison:
    """One task's protocol: tuning grid, winners, seeds, variants; resumable from ``runs``."""

    def __init__(self, log_data, a: argparse.Namespace, runs: Path, echo=print):
        self.log_data, self.a, self.runs, self.echo = log_data, a, runs, echo
        self.seeds = [a.seed + k for k in range(a.seeds)]
        self.splits: dict[tuple[int, str], Split] = {}
        self.run_seconds = 0.0                # training time of every run used, resumed or not
        runs.mkdir(parents=True, exist_ok=True)

    def split(self, seed: int, model: str) -> Split:
        over = DERIVED.get(model, (None, {}))[1]
        flags = {k: v for k, v in over.items() if k in SPLIT_KEYS}
        key = (seed, json.dumps(flags, sort_keys=True))
        if key not in self.splits:
            kw = split_options(self.a)
            if "time_unit" in flags:
                kw["time_buckets"] = TimeBuckets(unit_seconds=flags.pop("time_unit"))
            kw.update(flags)
            self.splits[key] = build_split(self.log_data, seed=seed, **kw)
        return self.splits[key]

    @contextmanager
    def claim(self, key: str, poll_seconds: float = 2.0):
        """Hold ``<key>.claim`` while training or testing run ``key``: another process that
        shares this runs directory waits for it (the claim is created exclusively). A claim
        whose process is gone (same host, pid not alive) is taken over."""
        path = self.runs / f"{key}.claim"
        me = f"{socket.gethostname()} {os.getpid()}"
        waiting = False
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    host, pid = path.read_text().split()
                except (OSError, ValueError):      # vanished, or not written yet
                    time.sleep(0.1)
                    continue
                if host == socket.gethostname() and not pid_alive(int(pid)):
                    path.unlink(missing_ok=True)   # its process died: take it over
                    continue
                if not waiting:
                    self.echo(f"waiting for {key}: another process ({host}, pid {pid}) "
                              f"holds it")
                    waiting = True
                time.sleep(poll_seconds)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def write_run(self, key: str, m: dict) -> None:
        """``<key>.json``, replaced in one step: a process sharing the directory never reads
        half a file."""
        tmp = self.runs / f".{key}.json.{os.getpid()}"
        tmp.write_text(json.dumps(m, indent=1) + "\n")
        os.replace(tmp, self.runs / f"{key}.json")

    def done(self, spec: RunSpec) -> dict | None:
        """The finished run of ``spec``, unless it ran into a lower epoch cap than today's
        without stopping early (then it is trained again under the higher cap; a run that
        stopped early is the same run under any higher cap)."""
        f = self.runs / f"{spec.key}.json"
        if not f.exists():
            return None
        m = json.loads(f.read_text())
        if len(m["epochs"]) >= m["max_epochs"] and m["max_epochs"] < self.a.max_epochs:
            return None
        return m

    def run(self, spec: RunSpec, test: bool) -> dict:
        """Train one configuration (or read its finished run). ``test=False``: keep the best
        weights in ``<run>.pt`` and evaluate test later, only if it wins."""
        old = self.done(spec)
        if old is None and not self.a.report_only:
            with self.claim(spec.key):
                return self._run(spec, test)
        return self._run(spec, test)

    def _run(self, spec: RunSpec, test: bool) -> dict:
        old = self.done(spec)           # again: another process may have finished it
        if old is not None:
            self.run_seconds += old.get("wall_seconds", 0.0)
            return old
        if self.a.report_only:
            raise NotRun(spec.key)
        split = self.split(spec.seed, spec.model)
        factory, run_split, cfg = make_model(spec, split)
        t0 = time.perf_counter()
        l2 = spec.value if spec.knob == "l2" else DERIVED.get(spec.model, (0, {}))[1].get(
            "l2", L2)
        model, m = train(run_split, cfg, epochs=self.a.max_epochs, batch_size=BATCH,
                         lr=spec.lr, l2=l2, seed=spec.seed, progress=False, log=lambda s: None,
                         model_factory=factory, loss=spec.loss[0],
                         softmax_negatives=spec.loss[1] or 1, patience=self.a.patience,
                         evaluate_test=test)
        m.pop("config", None)
        m.update({"name": spec.model, "key": spec.key, "knob": spec.knob,
                  "negatives": spec.loss[1],
                  "knob_value": spec.value, "wall_seconds": time.perf_counter() - t0})
        if not test and spec.model not in SENSITIVITY:
            torch.save(model.state_dict(), self.runs / f"{spec.key}.pt")
        self.write_run(spec.key, m)
        self.run_seconds += m["wall_seconds"]
        v = m["valid"]["all_items_auc"] if m["valid"] else float("nan")
        self.echo(f"{spec.model:14s} seed {spec.seed} lr {spec.lr:g} {spec.knob} "
                  f"{spec.value:g}: best epoch {m['best_epoch']}/{len(m['epochs'])}"
                  f"{' (at the cap)' if m['best_at_cap'] else ''}, valid all-items {v:.4f}"
                  + (f", test all-items {m['test']['all_items_auc']:.4f}" if test else "")
                  + f" ({m['wall_seconds']:.0f}s)")
        return m

    def test_winner(self, spec: RunSpec, m: dict) -> dict:
        """Evaluate the chosen tuning run on test, once (from its saved best weights)."""
        if m.get("test") is not None:
            return m
        with self.claim(spec.key):
            f = self.runs / f"{spec.key}.json"
            if f.exists():                  # another process may have tested it meanwhile
                m = json.loads(f.read_text())
                if m.get("test") is not None:
                    return m
            return self._test_winner(spec, m)

    def _test_winner(self, spec: RunSpec, m: dict) -> dict:
        if not (self.runs / f"{spec.key}.pt").exists():
            # its weights did not survive (a fresh clone keeps only the run files): train
            # the winner again, evaluating test at its best epoch
            (self.runs / f"{spec.key}.json").unlink()
            return self._run(spec, test=True)    # this process holds the claim
        split = self.split(spec.seed, spec.model)
        factory, run_split, cfg = make_model(spec, split)
        model = factory(cfg)
        model.load_state_dict(torch.load(self.runs / f"{spec.key}.pt", weights_only=True))
        m["test"] = evaluate(model, run_split, run_split.test)
        self.write_run(spec.key, m)
        (self.runs / f"{spec.key}.pt").unlink()
        return m

    def grid(self, model: str) -> list[RunSpec]:
        lrs, (knob, values) = GRID[model]
        return [RunSpec(model, lr, knob, v, self.seeds[0]) for lr in lrs for v in values]

    def plan(self, models: list[str], variants: list[str]) -> int:
        """Number of training runs the protocol needs (finished ones included)."""
        return sum(len(self.grid(m)) + len(self.seeds) - 1 for m in models) + \
            len(variants) * len(self.seeds) + \
            (len(SENSITIVITY) if self.a.sensitivity and "ATRank" in models else 0)

    def execute(self, models: list[str], variants: list[str]) -> dict:
        total = self.plan(models, variants)
        bar = tqdm(total=total, desc="runs", unit="run", disable=not self.a.progress)
        out: dict = {"models": {}, "tuning": {}, "not_run": []}

        def step(spec: RunSpec, test: bool) -> dict:
            m = self.run(spec, test)
            bar.update(1)
            return m

        chosen: dict[str, RunSpec] = {}
        for name in models:
            try:
                tried = [(s, step(s, test=False)) for s in self.grid(name)]
            except NotRun:                         # --report-only: the grid is unfinished
                out["not_run"].append(name)
                continue
            best_spec, best_m = max(tried, key=lambda p: p[1]["valid"]["all_items_auc"])
            chosen[name] = best_spec
            out["tuning"][name] = [{"lr": s.lr, "knob": s.knob, "value": s.value,
                                    "valid_all_items_auc": m["valid"]["all_items_auc"],
                                    "best_epoch": m["best_epoch"], "epochs": len(m["epochs"]),
                                    "best_at_cap": m["best_at_cap"]} for s, m in tried]
            first = self.test_winner(best_spec, best_m)
            for s, _ in tried:                  # the losers' weights: never tested
                (self.runs / f"{s.key}.pt").unlink(missing_ok=True)
            rest = []
            for sd in self.seeds[1:]:
                try:
                    rest.append(step(RunSpec(name, best_spec.lr, best_spec.knob,
                                             best_spec.value, sd), test=True))
                except NotRun:
                    break
            out["models"][name] = [first] + rest
        for name in variants:
            parent = VARIANTS[name][0]
            if parent not in chosen:
                continue
            c = chosen[parent]
            done = []
            for sd in self.seeds:
                try:
                    done.append(step(RunSpec(name, c.lr, c.knob, c.value, sd), test=True))
                except NotRun:
                    break
            if done:
                out["models"][name] = done
            else:
                out["not_run"].append(name)
        if self.a.sensitivity and "ATRank" in chosen:
            c = chosen["ATRank"]
            base = out["models"]["ATRank"][0]
            out["sensitivity"] = {"chosen": {"lr": c.lr, c.knob: c.value,
                                             "valid_all_items_auc":
                                             base["valid"]["all_items_auc"],
                                             "valid_recall_at_10":
                                             base["valid"].get("recall_at_10"),
                                             "best_epoch": base["best_epoch"]}}
            for name in (list(SENSITIVITY)[::-1] if self.a.reverse_order else SENSITIVITY):
                try:
                    m = step(RunSpec(name, c.lr, c.knob, c.value, self.seeds[0]), test=False)
                except NotRun:
                    out["not_run"].append(name)
                    continue
                out["sensitivity"][name] = {"valid_all_items_auc": m["valid"]["all_items_auc"],
                                            "valid_recall_at_10":
                                            m["valid"].get("recall_at_10"),
                                            "best_epoch": m["best_epoch"],
                                            "epochs": len(m["epochs"]),
                                            "best_at_cap": m["best_at_cap"]}
        bar.close()
        return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                  # alive, another user's
        return True
    return True


def probe_eta(comp: Comparison, models: list[str], variants: list[str]) -> float:
    """Seconds the plan should take, from a timed probe: per model, 20 training batches and
    a tenth of a validation evaluation on the first seed's split, scaled to an epoch and a
    full evaluation, times the planned runs, each assumed to run ``expected`` epochs; less
    the share of runs already finished."""
    split = comp.split(comp.seeds[0], "ATRank")
    expected = min(comp.a.max_epochs, 3 * comp.a.patience + 2)
    total = 0.0
    for name in models:
        spec = comp.grid(name)[0]
        factory, run_split, cfg = make_model(spec, split)
        sub = type(run_split)(**{**run_split.__dict__, "train": run_split.train[:20 * BATCH],
                                 "valid": run_split.valid[:1]})
        model, m = train(sub, cfg, epochs=1, batch_size=BATCH, lr=spec.lr, seed=spec.seed,
                         progress=False, log=lambda s: None, model_factory=factory,
                         loss=spec.loss[0], softmax_negatives=spec.loss[1] or 1,
                         evaluate_test=False)
        dt_train = m["epochs"][0]["seconds"] * len(run_split.train) / max(1, len(sub.train))
        part = run_split.valid[:max(1, len(run_split.valid) // 10)]
        t0 = time.perf_counter()
        evaluate(model, run_split, part)
        dt_eval = (time.perf_counter() - t0) * len(run_split.valid) / len(part)
        runs = len(comp.grid(name)) + len(comp.seeds) - 1 + sum(
            len(comp.seeds) for v in variants if VARIANTS[v][0] == name) + (
            len(SENSITIVITY) if name == "ATRank" and comp.a.sensitivity else 0)
        total += runs * (expected * (dt_train + dt_eval) + dt_eval)
        comp.echo(f"  probe {name}: about {dt_train:.0f}s per epoch + {dt_eval:.0f}s per "
                  f"validation evaluation; {runs} runs")
    planned = comp.plan(models, variants)
    finished = sum(1 for f in comp.runs.glob("*.json") if f.name != "summary.json")
    return remaining_seconds(total, planned, finished, comp.a.processes)


def remaining_seconds(total: float, planned: int, finished: int, processes: int = 1) -> float:
    """The wall time left of a plan that takes ``total`` seconds for its ``planned`` runs on
    one process: the unfinished share, divided among the ``processes`` that share its runs
    directory (each trains one run at a time, so the split is even only on average)."""
    return total * max(0, planned - finished) / max(1, planned) / max(1, processes)


def compare_groups(log_data, seeds=(1, 2, 3), epochs: int = 8, embedding_dim: int = 16,
                   heads: int = 4, ffn: int = 32, log=print) -> dict:
    """Multi-group ATRank vs item-only ATRank on the same targets and negatives, per seed
    (the synthetic multi-group check, run only when asked): {"multi-group": [...],
    "item-only": [...]}, test metrics at the epoch chosen on validation."""
    out: dict[str, list] = {"multi-group": [], "item-only": []}
    for seed in seeds:
        for name, groups in (("multi-group", None), ("item-only", [log_data.target_group])):
            t0 = time.perf_counter()
            split = build_split(log_data, groups=groups, seed=seed,
                                embedding_dim=embedding_dim, heads=heads, ffn=ffn)
            _, m = train(split, split.config, epochs=epochs, seed=seed, progress=False,
                         log=lambda _m: None)
            row = {**m["test"], "best_epoch": m["best_epoch"], "valid": m["valid"],
                   "seconds": time.perf_counter() - t0, "seed": seed}
            out[name].append(row)
            log(f"seed {seed} {name:<12} test all-items {row['all_items_auc']:.4f} (epoch "
                f"{row['best_epoch']}, {row['seconds']:.0f}s)")
    return out


def mean_std(xs) -> str:
    xs = np.asarray(xs, dtype=np.float64)
    sd = xs.std(ddof=1) if len(xs) > 1 else 0.0
    return f"{xs.mean():.4f} ± {sd:.4f}"


def mean_std_of(rows, key: str) -> str:
    """``mean_std`` of ``row[key]`` over rows, or "n/a" where a row lacks it."""
    if any(key not in r for r in rows):
        return "n/a"
    return mean_std([r[key] for r in rows])


def plot_curves(models: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rs in models.items():
        if name in DERIVED:
            continue
        n = min(len(m["epochs"]) for m in rs)
        if n == 0:
            continue
        ep = np.arange(1, n + 1)
        auc = np.mean([[m["epochs"][i]["valid"]["all_items_auc"] for i in range(n)]
                       for m in rs], 0)
        loss = np.mean([[m["epochs"][i]["loss"] for i in range(n)] for m in rs], 0)
        ax1.plot(ep, auc, marker="o", ms=3, label=name)
        kind, m = LOSS[name]
        ax2.plot(ep, loss, marker="o", ms=3,
                 label=f"{name} ({kind}{f', {m} negatives' if m else ''})")
    ax1.set(xlabel="epoch", ylabel="validation all-items AUC",
            title=f"{title}: validation all-items AUC")
    ax2.set(xlabel="epoch", ylabel="training loss (incl. L2)", title="training loss")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(summary: dict, png: Path | None, base: Path) -> list[str]:
    """The Markdown of one task: data, tuning, results, paired differences, variants."""
    f, models, tuning = summary["facts"], summary["models"], summary["tuning"]
    lines = [f"## {f['title']}", "", f"- Command: `{summary['command']}`",
             f"- Data: {f['describe']}.",
             (f"- Task: {f['task']}. {f['users']} users kept (at least 3 targets); "
              f"{f['train']} training targets; validation and test: {f['valid']} and "
              f"{f['test']} users (seed {f['seeds'][0]}; the same for every seed)."),
             (f"- Vocabulary: {f['n_items']} ids seen at least {f['min_count']} time(s) in "
              f"training events; candidate universe: {f['objects']} objects in "
              f"{f['n_candidates']} distinct candidate rows. Test targets whose id is unknown "
              f"(never or too rarely seen in training, scored through their features): "
              f"{f['leakage']['test']['target_unknown_id']} of {f['test']}."),
             ("- Leakage check (seed " + str(f["seeds"][0]) + "): " + "; ".join(
                 f"{part}: negative in history {v['negative_in_history']}, negative among the "
                 f"user's objects {v['negative_interacted']}, target repeats an object of its "
                 f"history {v['target_in_history']} (of {v['rows']})"
                 for part, v in f["leakage"].items()) + "."),
             (f"- Time buckets count units of {f['time_unit']} s; history up to "
              f"{f['max_history']} behaviors; early stopping: up to {f['max_epochs']} epochs, "
              f"patience {f['patience']}; seeds {', '.join(map(str, f['seeds']))}."), "",
             "### Tuning (validation all-items AUC, first seed)", "",
             "| model | configurations (lr, knob: valid AUC, best epoch / epochs run) | chosen |",
             "|---|---|---|"]
    for name, tried in tuning.items():
        best = max(tried, key=lambda t: t["valid_all_items_auc"])
        cells = "; ".join(f"{t['lr']:g}, {t['knob']} {t['value']:g}: "
                          f"{t['valid_all_items_auc']:.4f} ({t['best_epoch']}/{t['epochs']}"
                          f"{', at cap' if t['best_at_cap'] else ''})" for t in tried)
        lines.append(f"| {name} | {cells} | lr {best['lr']:g}, {best['knob']} "
                     f"{best['value']:g} |")
    sens = summary.get("sensitivity")
    if sens and len(sens) > 1:
        c = sens["chosen"]
        lines += ["", ("ATRank's other knobs, one at a time around its chosen configuration "
                  f"(validation all-items AUC {c['valid_all_items_auc']:.4f}, first seed; "
                  "validation only, outside the equal budget):"), "",
                  ("| change | valid all-items AUC | difference | valid Recall@10 | difference "
                   "| best epoch / epochs run |"),
                  "|---|---|---|---|---|---|"]

        def recall(r: dict) -> tuple[str, str]:
            """(valid Recall@10, its difference to the chosen's); blank in summaries written
            before it was recorded."""
            mine, theirs = r.get("valid_recall_at_10"), c.get("valid_recall_at_10")
            if mine is None:
                return "", ""
            return f"{mine:.4f}", ("" if theirs is None else f"{mine - theirs:+.4f}")

        for name, r in sens.items():
            if name == "chosen":
                continue
            lines.append(f"| {name.split('@', 1)[1]} | {r['valid_all_items_auc']:.4f} | "
                         f"{r['valid_all_items_auc'] - c['valid_all_items_auc']:+.4f} | "
                         f"{' | '.join(recall(r))} | {r['best_epoch']}/{r['epochs']}"
                         f"{', at cap' if r['best_at_cap'] else ''} |")
    if summary.get("not_run"):
        lines += ["", ("**Not run yet** (the comparison was stopped; rerunning its command "
                  "resumes it): " + ", ".join(summary["not_run"]) + ".")]
    lines += ["", "### Test (mean ± std over seeds)", "",
              ("| model | all-items AUC | Recall@10 | NDCG@10 | one-neg AUC | valid all-items "
               "AUC | chosen epochs (epochs run) | wall time / run |"),
              "|---|---|---|---|---|---|---|---|"]
    for name, rs in models.items():
        tests = [m["test"] for m in rs]
        lines.append(
            f"| {name} | {mean_std_of(tests, 'all_items_auc')} | "
            f"{mean_std_of(tests, 'recall_at_10')} | {mean_std_of(tests, 'ndcg_at_10')} | "
            f"{mean_std_of(tests, 'one_neg_auc')} | "
            f"{mean_std([m['valid']['all_items_auc'] for m in rs])} | "
            + ", ".join(f"{m['best_epoch']} ({len(m['epochs'])}"
                        f"{', at cap' if m['best_at_cap'] else ''})" for m in rs)
            + f" | {np.mean([m['wall_seconds'] for m in rs]):.0f}s |")
    if "ATRank" in models:
        lines += ["", ("Paired differences ATRank − model on test (same seed's data), mean ± "
                  "std over seeds:"), "",
                  "| vs | all-items AUC | Recall@10 | NDCG@10 |", "|---|---|---|---|"]
        a = models["ATRank"]
        for name, rs in models.items():
            if name == "ATRank":
                continue
            pairs = list(zip(a, rs))                # the seeds both have, in seed order
            cells = [mean_std([x["test"][k] - y["test"][k] for x, y in pairs])
                     if all(k in x["test"] and k in y["test"] for x, y in pairs)
                     else "n/a" for k in ("all_items_auc", "recall_at_10", "ndcg_at_10")]
            seeds = "" if len(pairs) == len(f["seeds"]) else f" ({len(pairs)} seeds)"
            lines.append(f"| {name}{seeds} | " + " | ".join(cells) + " |")
    if png is not None:
        lines += ["", f"![training curves]({os.path.relpath(png, base)})", "",
                  ("Validation all-items AUC per epoch (left) and training loss (right), "
                   "means over seeds up to the shortest run; variants are not drawn."), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="atrank_export compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p)
    p.add_argument("--runs", type=Path, required=True,
                   help="directory of this task's runs (resumes from what it holds)")
    p.add_argument("--title", default=None, help="the report section's title")
    p.add_argument("--target-actions", default=None,
                   help="comma-separated actions whose behaviors are targets (default all)")
    p.add_argument("--first-touch", action="store_true",
                   help="only a user's first behavior on an object is a target")
    p.add_argument("--min-count", type=int, default=1,
                   help="ids seen fewer times in training events are unknown")
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1, help="first seed")
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--models", default=",".join(ORDER))
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated, or 'none'")
    p.add_argument("--max-history", type=int, default=50)
    p.add_argument("--time-unit", type=int, default=86400,
                   help="seconds per time-bucket unit (every model with time input)")
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--no-eta", action="store_true", help="skip the timed probe")
    p.add_argument("--processes", type=int, default=1,
                   help="how many compare processes share --runs (one per core, e.g. "
                   "RESULTS_JOBS=2): the estimated time is divided among them")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: summarise the finished runs (a model whose tuning "
                   "grid is unfinished is listed as not run; fewer seeds are shown as such)")
    p.add_argument("--no-sensitivity", dest="sensitivity", action="store_false",
                   help="skip ATRank's one-knob-at-a-time validation runs (SENSITIVITY)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--reverse-order", action="store_true",
                   help="take the models, variants and ATRank's knobs in the reverse order "
                   "(for a second process sharing --runs: the two meet in the middle)")
    p.add_argument("--multigroup", action="store_true",
                   help="also run the synthetic multi-group vs item-only check (its own data)")
    a = p.parse_args(argv)
    models = [n.strip() for n in a.models.split(",") if n.strip()]
    variants = [] if a.variants == "none" else [v.strip() for v in a.variants.split(",")
                                                if v.strip()]
    if a.processes < 1:
        p.error(f"--processes must be at least 1, not {a.processes}")
    for n in models:
        if n not in ORDER:
            p.error(f"unknown model {n!r} (choose from {ORDER})")
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r} (choose from {list(VARIANTS)})")
    if a.reverse_order:
        models, variants = models[::-1], variants[::-1]
    setup_threads()
    t0 = time.perf_counter()
    log_data, _ = read_data(p, a, DEFAULT_SEED)
    echo = (lambda s: tqdm.write(s)) if a.progress else (lambda s: print(s, flush=True))
    comp = Comparison(log_data, a, a.runs, echo)
    split = comp.split(comp.seeds[0], "ATRank")
    echo(f"{describe(log_data)}\n{len(split.users)} users, {len(split.train)} training "
         f"targets, {split.n_candidates} candidate rows ({int(split.universe_count.sum())} "
         f"objects); {comp.plan(models, variants)} runs planned")
    if not a.no_eta and not a.report_only:
        eta = probe_eta(comp, models, variants)
        shared = f", {a.processes} processes" if a.processes > 1 else ""
        echo(f"estimated time: about {eta / 60:.0f} min (from the probe; finished runs "
             f"are skipped{shared})")
    result = comp.execute(models, variants)
    task = "next " + ("behavior with action " + " or ".join(a.target_actions.split(","))
                      if a.target_actions else f"{log_data.target_group} behavior")
    if a.first_touch:
        task += ", first touches only (an object the user never touched before)"
    facts = {"title": a.title or f"{log_data.name}: {task}", "describe": describe(log_data),
             "task": task, "users": len(split.users), "train": len(split.train),
             "valid": len(split.valid), "test": len(split.test), "n_items": split.n_items,
             "n_candidates": split.n_candidates, "objects": int(split.universe_count.sum()),
             "min_count": a.min_count, "leakage": leakage_check(split),
             "time_unit": a.time_unit, "max_history": a.max_history,
             "max_epochs": a.max_epochs, "patience": a.patience, "seeds": comp.seeds,
             "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch "
                        f"{torch.__version__}, {torch.get_num_threads()} threads",
             "wall_seconds": time.perf_counter() - t0, "run_seconds": comp.run_seconds}
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--report-only"]
    command = "python -m atrank_export compare " + shlex.join(args)
    summary = {"facts": facts, "command": command.strip(), **result}
    if a.multigroup:
        from .synthetic import synthetic_multigroup

        summary["multigroup"] = compare_groups(synthetic_multigroup(n_users=400),
                                               seeds=tuple(comp.seeds), log=echo)
    (a.runs / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot_curves(result["models"], a.runs / "curves.png", facts["title"])
    echo(f"wrote {a.runs / 'summary.json'} and {a.runs / 'curves.png'} "
         f"({facts['wall_seconds'] / 60:.1f} min)")
    return 0


def report(argv: list[str] | None = None) -> int:
    """``python -m atrank_export compare-report --out docs/results.md --protocol P.md
    --task DIR ...``: one Markdown report from the tasks' summary.json files."""
    p = argparse.ArgumentParser(prog="atrank_export compare-report")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--protocol", type=Path, required=True,
                   help="hand-written protocol and reading, included first")
    p.add_argument("--task", type=Path, action="append", required=True)
    a = p.parse_args(argv)
    lines = ["# ATRank vs. baselines", "",
             ("Generated by `atrank_export compare-report` from each task's `summary.json`; "
              "the protocol and reading come from " f"`{a.protocol}`."), "",
             a.protocol.read_text().rstrip(), ""]
    for d in a.task:
        summary = json.loads((d / "summary.json").read_text())
        lines += section(summary, d / "curves.png", a.out.parent)
        f = summary["facts"]
        lines.append(f"Machine: {f['machine']}. Training time of the runs above, tuning "
                     f"included: {f.get('run_seconds', f['wall_seconds']) / 60:.0f} min.")
        lines.append("")
        if "multigroup" in summary:
            mg = summary["multigroup"]
            lines += ["### Synthetic multi-group check (asked for with --multigroup)", "",
                      "| model | all-items AUC | Recall@10 | NDCG@10 | chosen epochs |",
                      "|---|---|---|---|---|"]
            for name, rs in mg.items():
                lines.append(f"| {name} | {mean_std_of(rs, 'all_items_auc')} | "
                             f"{mean_std_of(rs, 'recall_at_10')} | "
                             f"{mean_std_of(rs, 'ndcg_at_10')} | "
                             + ", ".join(str(r["best_epoch"]) for r in rs) + " |")
            lines.append("")
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
