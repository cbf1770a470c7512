"""Peer suite: our store against MLflow's tracking API for the same retrain history.

The history (made once, seeded, outside the timings): ``N`` retrains, each with the candidate's
accuracy and macro-F1 (and the champion's, scored on the same rows), the fitted model's
parameters, the trigger and the gate's decision (accepted 60%, rejected 35%, inconclusive 5%).
Both sides are given exactly these values.

Ours: each retrain written through ``engine.retrain``'s own recording code, in the transactions
``run_cycle`` opens (``start_retrain``; ``ModelRegistry.register``; ``_record_decision``: the scores with
the per-class report, the evaluations of candidate and champion, the gate event, and for a rejected
candidate the retrain's outcome; for an accepted one what ``engine.deployment.deploy`` records after
the pointer switch, status, alias move and event, with the retrain's outcome), without training:
3 write transactions per retrain, 4 when accepted (see ``_ours_write``).
Then the read the Performance page's "Accuracy and macro-F1 at every retrain" chart makes:
``store.views.performance.evaluations``.

MLflow: one run per retrain in a ``sqlite:///`` tracking store in a temporary folder, the way
its docs log a training run: ``start_run``, ``log_params``, ``log_metrics`` (accuracy, macro-F1,
the champion's two), ``set_tag("decision", ...)``, end of run. Then ``mlflow.search_runs``
ordered by start time into a DataFrame. It stores less than we do (no per-class report, no
data-quality funnel, no events), which flatters it.

Not timed on either side: creating the empty store (our schema; MLflow's Alembic migrations)
and importing the libraries; both are reported. Times are the median of 3 runs (quick: 1), each
on a fresh store. MLflow is a benchmark-only dependency (``requirements-bench.txt``); without it
the suite measures our side and says the peer was skipped.

Growth (issue 15): ``--growth 1000,30000`` makes a store holding each number of retrains
(``prefill``) and an MLflow tracking store holding the first number of runs (logged through its
API), untimed; then ``--rounds`` rounds (default 3) each write ``--more`` retrains (default 40)
onto every store in turn, MLflow included: the write time of one retrain must be the same at
every history size. Medians over rounds; the load average and this process's CPU time are
printed beside each figure.

What-if (``--kept-open``, growth only): one more store of the first history size, written in the same
rounds while it stays attached between transactions (``kept_open``), the way a process owning the file
for good would write. Not how Retrainer runs: that process would lock the dashboard, the API, the CLI and
any DuckDB client out of the file. It measures what the per-transaction attach (write-ahead-log replay
included) and detach cost, for the team's decision (docs/SCALING.md).

Run: ``python -m benchmarks.peer [--quick] [--growth 1000,30000 [--more 40] [--rounds 3] [--kept-open]]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Row, SuiteResult, median, print_outcome, say

SUITE = "peer"
INSTALL_HINT = "skipped: pip install -r requirements-bench.txt"
DECISIONS = ("accepted", "rejected", "inconclusive")
TRIGGERS = ("weekly", "monthly", "adaptive", "adaptive", "adaptive", "manual", "drift")
# Retrains a growth store is filled with per transaction and checkpoint (see ``prefill``).
PREFILL_CHUNK = 100


@dataclass(frozen=True)
class Retrain:
    """One retrain of the history: what both sides log."""

    number: int
    version: str
    champion: str | None
    trigger: str
    decision: str
    accuracy: float
    macro_f1: float
    champion_accuracy: float | None
    champion_macro_f1: float | None
    eval_rows: int
    params: dict[str, Any]
    report: dict[str, Any] = field(repr=False)
    scores: Any = field(default=None, repr=False)           # engine.evaluation.Scores of the candidate
    champion_scores: Any = field(default=None, repr=False)  # and of the champion (None: the first model)


def history(n: int, *, seed: int = 3) -> list[Retrain]:
    """``n`` retrains with real per-class reports (``score_predictions`` on simulated predictions)."""
    import numpy as np

    from engine.evaluation import score_predictions
    from demo.intents import INTENTS

    rng = np.random.default_rng(seed)
    out: list[Retrain] = []
    champion: Retrain | None = None
    for i in range(1, n + 1):
        eval_rows = int(400 + 1600 * i / n)
        quality = min(0.97, 0.84 + 0.08 * i / n + rng.normal(0, 0.01))
        truth = rng.integers(len(INTENTS), size=eval_rows)
        guess = np.where(rng.random(eval_rows) > quality, rng.integers(len(INTENTS), size=eval_rows), truth)
        scores = score_predictions([INTENTS[t] for t in truth], [INTENTS[g] for g in guess])
        roll = rng.random()
        decision = "accepted" if champion is None or roll < 0.6 else ("rejected" if roll < 0.95 else "inconclusive")
        params = {"features": "tfidf word 1-2 grams, sublinear tf", "min_df": 2, "max_features": 200_000,
                  "vocabulary": int(20_000 + 60 * i + rng.integers(0, 500)), "classifier": "SGDClassifier(log_loss)",
                  "alpha": 2e-5, "max_iter": 10, "epochs_run": int(rng.integers(6, 11)), "seed": 0}
        retrain = Retrain(i, f"v{i:04d}", champion.version if champion else None, TRIGGERS[i % len(TRIGGERS)],
                          decision, scores.accuracy, scores.macro_f1,
                          champion.accuracy if champion else None, champion.macro_f1 if champion else None,
                          eval_rows, params, {**scores.report(), "ece": float(rng.uniform(0.01, 0.06))}, scores,
                          champion.scores if champion else None)
        out.append(retrain)
        if decision == "accepted":
            champion = retrain
    return out


# -- our store ----------------------------------------------------------------------------------------

def _ours_write(ctx: Any, r: Retrain) -> None:
    """What one retrain cycle writes, in its transactions, through ``engine.retrain``'s own recording
    code (nothing trained, no model file): ``start_retrain``; ``ModelRegistry.register``;
    ``_record_decision`` (scores, evaluations, the gate event, and for a rejected candidate the
    retrain's outcome, ``_Outcome.write``); for an accepted one what ``engine.deployment.deploy``
    records after switching the pointer (``ModelRegistry.promote``) with the outcome in the same
    transaction. 3 write transactions a rejected retrain, 4 an accepted one."""
    from engine.evaluation import Scores
    from engine.gate import Decision
    from engine.lifecycle import ModelRegistry
    from engine.retrain import CycleResult, _Judgement, _Outcome, _record_decision
    from store.retrains import start_retrain
    from store.vocabulary import AssignmentKind, GateOutcome, RetrainStatus

    started = time.perf_counter()
    models = ModelRegistry(ctx)
    retrain_id = start_retrain(ctx.db, trigger=r.trigger, ts=ctx.clock())
    funnel = {"rows_in": 12 * r.eval_rows, "malformed": 0, "low_confidence": 0, "conflicts": 0, "duplicates": 0,
              "reserved_for_eval": r.eval_rows, "train_rows": 10 * r.eval_rows}
    stages = {"reading the log": started, "fitting": started, "scoring": started}
    record: dict[str, Any] = {**funnel, "eval_rows": r.eval_rows}
    outcome = _Outcome(ctx, retrain_id, r.trigger, started=started, stages=stages, record=record)
    now = ctx.clock()
    with ctx.db.write() as con:
        models.register(con, {
            "version": r.version, "created_at": now, "file": f"{r.version}.pkl",
            "sha256": f"{r.number:064x}", "size_bytes": 4_000_000, "sklearn_version": "1.9.1", "params": r.params,
            "labels": r.report["labels"], "train_rows": 10 * r.eval_rows, "train_hash": f"{r.number * 7919:032x}",
            "retrain_id": retrain_id,
        }, ts=now, trigger=r.trigger)
    record["saved_version"] = r.version
    accepted = r.decision == GateOutcome.ACCEPTED
    reason = f"Candidate {r.version} {r.decision}: macro-F1 {100 * r.macro_f1:.1f}%."
    baseline = Scores(0.08, 0.01, r.eval_rows)
    record.update(candidate_accuracy=r.accuracy, candidate_macro_f1=r.macro_f1, champion_accuracy=r.champion_accuracy,
                  champion_macro_f1=r.champion_macro_f1, baseline_accuracy=baseline.accuracy,
                  baseline_macro_f1=baseline.macro_f1)
    deltas = {} if r.champion_scores is None else {"accuracy": r.accuracy - r.champion_accuracy,
                                                    "macro_f1": r.macro_f1 - r.champion_macro_f1}
    judged = _Judgement(r.scores, r.report["ece"], baseline, r.champion, r.champion_scores, r.champion,
                        Decision(accepted, "no metric worse than the tolerance", reason, deltas, outcome=r.decision),
                        reason)
    rejected = None if accepted else CycleResult(retrain_id, RetrainStatus.REJECTED, reason, r.version, r.champion,
                                                 decision=GateOutcome(r.decision))
    _record_decision(ctx, models, judged, retrain_id=retrain_id, trigger=r.trigger, version=r.version,
                     funnel=funnel, ts=now, outcome=outcome, rejected=rejected)
    if accepted:
        result = CycleResult(retrain_id, RetrainStatus.ACCEPTED, reason, r.version, r.champion, deployed=True)
        with ctx.db.write() as con:  # what deploy() records after switching the pointer, with the outcome
            models.promote(con, r.version, previous=r.champion, kind=AssignmentKind.DEPLOY, actor="benchmark",
                           reason=f"Deployed {r.version}.", ts=now)
            outcome.write(con, result)


def ours(folder: Path, retrains: list[Retrain]) -> dict[str, Any]:
    """Write the history into a fresh store, then read the chart's data back; times in seconds."""
    from engine.config import load_settings
    from engine.context import Context
    from store.views.performance import evaluations

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    ctx = Context.open(load_settings(env={}, path=None, home=folder))
    setup = time.perf_counter() - started
    started = time.perf_counter()
    for r in retrains:
        _ours_write(ctx, r)
    write = time.perf_counter() - started
    started = time.perf_counter()
    frame = evaluations(ctx.db)
    read = time.perf_counter() - started
    return {"setup_s": setup, "write_s": write, "read_s": read, "total_s": write + read, "frame": frame,
            "bytes": ctx.settings.db_path.stat().st_size}


def prefill(ctx: Any, retrains: list[Retrain], n: int, *, chunk: int | None = None) -> None:
    """``n`` retrains of history, the rows ``_ours_write`` would have left, written in transactions
    of ``chunk`` retrains each followed by a checkpoint (None: all in one).

    Each table gets what a retrain writes: its retrains row (finished), its model with
    metrics and per-class report (status retired or rejected), one or two evaluations,
    the gate event, and for an accepted candidate a deployment and a deploy event. The
    values cycle through ``retrains`` (numbered on, so every version is new). Ids come from
    the store's own sequences, so the store must be new.

    Why chunks: a checkpoint rewrites the last, partly filled row group of each table it
    appends to, and how DuckDB cuts a table into row groups depends on how it was written.
    One bulk insert leaves full row groups, and the next retrain starts a new small one, which
    flatters a large history; a store that grew a few retrains between checkpoints (the
    worker's) has a larger last row group. ``growth`` fills in chunks of ``PREFILL_CHUNK``.
    """
    import json

    import pandas as pd

    base = ctx.clock()
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in ("retrains", "models", "evaluations", "events", "alias_history")}
    champion: str | None = None
    champion_scores: tuple[float, float] | None = None
    step = chunk or n
    chunks: list[dict[str, list[dict[str, Any]]]] = []
    for i in range(1, n + 1):
        if (i - 1) % step == 0:
            rows = {t: [] for t in rows}
            chunks.append(rows)
        r = retrains[(i - 1) % len(retrains)]
        version, accepted = f"v{i:06d}", champion is None or r.decision == "accepted"
        decision = "accepted" if accepted else r.decision
        ts = base.replace(microsecond=0) - pd.Timedelta(minutes=15 * (n - i + 1))
        rows["retrains"].append({
            "started_at": ts, "finished_at": ts, "trigger": r.trigger, "status": "accepted" if accepted else "rejected",
            "command_id": None, "champion_version": champion, "candidate_version": version, "decision": decision,
            "reason": f"Candidate {version} {decision}.", "champion_accuracy": champion_scores and champion_scores[0],
            "champion_macro_f1": champion_scores and champion_scores[1], "candidate_accuracy": r.accuracy,
            "candidate_macro_f1": r.macro_f1, "baseline_accuracy": 0.08, "baseline_macro_f1": 0.01,
            "eval_rows": r.eval_rows, "rows_in": 12 * r.eval_rows, "malformed": 0, "low_confidence": 0, "conflicts": 0,
            "duplicates": 0, "reserved_for_eval": r.eval_rows, "train_rows": 10 * r.eval_rows, "duration_s": 0.1,
            "stages": json.dumps({"scoring": 0.1})})
        rows["models"].append({
            "version": version, "created_at": ts, "status": "retired" if accepted else "rejected", "file": f"{version}.pkl",
            "sha256": f"{i:064x}", "size_bytes": 4_000_000, "sklearn_version": "1.9.1",
            "params": json.dumps(r.params, sort_keys=True), "labels": json.dumps(r.report["labels"]),
            "train_rows": 10 * r.eval_rows, "train_hash": f"{i * 7919:032x}", "accuracy": r.accuracy,
            "macro_f1": r.macro_f1, "eval_rows": r.eval_rows, "report": json.dumps(r.report, sort_keys=True),
            "retrain_id": i})
        rows["evaluations"].append({"retrain_id": i, "ts": ts, "version": version, "role": "candidate",
                                    "accuracy": r.accuracy, "macro_f1": r.macro_f1, "eval_rows": r.eval_rows})
        if champion is not None:
            rows["evaluations"].append({"retrain_id": i, "ts": ts, "version": champion, "role": "champion",
                                        "accuracy": champion_scores[0], "macro_f1": champion_scores[1],
                                        "eval_rows": r.eval_rows})
        rows["events"].append({"ts": ts, "kind": "gate", "severity": "info" if accepted else "warning", "version": version,
                               "message": f"Candidate {version} {decision} ({r.trigger} retrain #{i}).",
                               "details": json.dumps({"retrain_id": i, "candidate": version, "champion": champion,
                                                      "accepted": accepted, "eval_rows": r.eval_rows})})
        if accepted:
            rows["alias_history"].append({"ts": ts, "alias": "champion", "version": version, "previous_version": champion,
                                          "kind": "deploy", "actor": "benchmark", "reason": f"Deployed {version}."})
            rows["events"].append({"ts": ts, "kind": "deploy", "severity": "info", "version": version,
                                   "message": f"Deployed {version}.",
                                   "details": json.dumps({"version": version, "previous": champion, "kind": "deploy"})})
            champion, champion_scores = version, (r.accuracy, r.macro_f1)
    with ctx.db.read() as con:
        if con.execute("SELECT count(*) FROM retrains").fetchall()[0][0]:
            raise RuntimeError("prefill needs a new store (its ids come from the sequences)")
    for rows in chunks:
        with ctx.db.write() as con:
            for table, items in rows.items():
                if not items:
                    continue
                frame = pd.DataFrame(items)
                con.register("prefill_rows", frame)
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM prefill_rows")
                con.unregister("prefill_rows")
        ctx.db.checkpoint()
    if champion is not None:
        with ctx.db.write() as con:
            con.execute("UPDATE models SET status = 'champion' WHERE version = ?", [champion])
        ctx.db.checkpoint()


@contextmanager
def kept_open(db: Any) -> Any:
    """What-if, never how Retrainer runs: inside the block the store ``db`` (a ``store.db.Database``)
    stays attached read-write with its file lock held, so its writes pay no attach, write-ahead-log
    replay or detach; they still BEGIN, COMMIT (fsync) and checkpoint when the log is due, as always.

    What a process that owned the store for good would pay per transaction. It would also lock every
    other process (the dashboard, the API, the CLI, a person's own DuckDB client) out of the file, since
    DuckDB lets no other process open a file one process writes: the reason ``store.db`` attaches per
    access. Other ``Database`` objects in the block keep the normal path. Only for this benchmark, in
    a process where nothing else touches ``db`` meanwhile.
    """
    import fcntl

    import store.db as store_db

    original = store_db.Database._attached
    con = store_db._memory_connection()
    lock = os.open(db.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    db._attach(con, write=True)

    @contextmanager
    def attached(self: Any, *, write: bool) -> Any:
        if self is not db:
            with original(self, write=write) as other:
                yield other
            return
        con.execute(f"USE {store_db.ALIAS}")
        yield con

    store_db.Database._attached = attached
    try:
        yield
    finally:
        store_db.Database._attached = original
        con.execute("USE memory")
        con.execute(f"DETACH {store_db.ALIAS}")
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


def growth(folder: Path, retrains: list[Retrain], *, history_sizes: tuple[int, ...], k: int, rounds: int = 1,
           peer_history: int | None = None, what_if_kept_open: bool = False) -> dict[str, Any]:
    """Write time of one retrain as the history grows, ours beside MLflow's, in the same rounds.

    For each history size H: a store holding H retrains (``prefill``); with ``peer_history`` and
    MLflow installed, an MLflow tracking store holding that many runs (logged through its API).
    Then ``rounds`` rounds, each writing ``k`` more retrains onto every store in turn (so load on
    the machine falls on all of them alike). Per size: the median over rounds of the mean write
    time (ms a retrain) and of this process's CPU time for it, and the chart's read after the
    last round. Returns ``{"ours": [one dict per size], "mlflow": dict or None}``.
    """
    from engine.config import load_settings
    from engine.context import Context
    from store.views.performance import evaluations

    more = retrains[len(retrains) // 2:][:k]
    # (key, retrains stored, kept open): one store per history size, and the what-if store
    plan = [(h, h, False) for h in history_sizes]
    if what_if_kept_open:
        plan.append(("kept-open", history_sizes[0], True))
    stores = {}
    for key, h, _ in plan:
        home = folder / f"growth-{key}"
        shutil.rmtree(home, ignore_errors=True)
        ctx = Context.open(load_settings(env={}, path=None, home=home))
        started = time.perf_counter()
        prefill(ctx, retrains, h, chunk=PREFILL_CHUNK)
        say(f"peer: history of {h:,} retrains filled in {time.perf_counter() - started:.1f} s"
            + (" (the what-if store, kept open while written)" if key == "kept-open" else ""))
        stores[key] = ctx
    peer = full = None
    if peer_history and mlflow_available():
        peer = _MlflowGrowth(folder / "mlflow", retrains, peer_history)
        full = _MlflowGrowth(folder / "mlflow-full", retrains, peer_history, full=True)
    written = {key: h for key, h, _ in plan}
    samples: dict[Any, list[dict[str, float]]] = {key: [] for key, _, _ in plan}
    samples["mlflow"], samples["mlflow-full"] = [], []
    for round_ in range(rounds):
        for key, _, kept in plan:
            n = written[key]
            batch = [Retrain(**{**r.__dict__, "number": n + j + 1, "version": f"v{n + j + 1:06d}",
                                "champion": f"v{n + j:06d}" if r.champion else None})
                     for j, r in enumerate(more)]
            load = os.getloadavg()[0]
            cpu, started = time.process_time(), time.perf_counter()
            with kept_open(stores[key].db) if kept else _nothing():
                for r in batch:
                    _ours_write(stores[key], r)
            samples[key].append({"write_ms": 1000 * (time.perf_counter() - started) / len(batch),
                                 "cpu_ms": 1000 * (time.process_time() - cpu) / len(batch), "load": load})
            written[key] += len(batch)
        if peer is not None:
            samples["mlflow"].append(peer.write(more))
            samples["mlflow-full"].append(full.write(more))
        say(f"peer: round {round_ + 1} of {rounds}: " + ", ".join(
            f"{key:,} stored {samples[key][-1]['write_ms']:.0f} ms" if not kept
            else f"what-if kept open {samples[key][-1]['write_ms']:.0f} ms" for key, _, kept in plan)
            + (f", MLflow {samples['mlflow'][-1]['write_ms']:.0f} ms (with the report and every figure "
               f"{samples['mlflow-full'][-1]['write_ms']:.0f} ms)" if peer is not None else ""))
    out = []
    for key, h, kept in plan:
        started = time.perf_counter()
        frame = evaluations(stores[key].db)
        read = time.perf_counter() - started
        out.append({"history": h, "kept_open": kept, "k": len(more), "rounds": rounds,
                    "write_ms": median([x["write_ms"] for x in samples[key]]),
                    "cpu_ms": median([x["cpu_ms"] for x in samples[key]]),
                    "runs_ms": [x["write_ms"] for x in samples[key]],
                    "load": median([x["load"] for x in samples[key]]), "read_ms": 1000 * read, "rows": len(frame),
                    "mb": stores[key].settings.db_path.stat().st_size / 1e6})
        shutil.rmtree(folder / f"growth-{key}", ignore_errors=True)
    theirs_ = theirs_full = None
    if peer is not None:
        theirs_, theirs_full = ({"history": peer_history, "k": len(more), "version": p.version, "fill_s": p.fill_s,
                                 "write_ms": median([x["write_ms"] for x in samples[key]]),
                                 "runs_ms": [x["write_ms"] for x in samples[key]],
                                 "load": median([x["load"] for x in samples[key]])}
                                for p, key in ((peer, "mlflow"), (full, "mlflow-full")))
        shutil.rmtree(folder / "mlflow", ignore_errors=True)
        shutil.rmtree(folder / "mlflow-full", ignore_errors=True)
    return {"ours": [g for g in out if not g["kept_open"]], "mlflow": theirs_, "mlflow_full": theirs_full,
            "kept_open": next((g for g in out if g["kept_open"]), None)}


@contextmanager
def _nothing() -> Any:
    yield


class _MlflowGrowth:
    """An MLflow tracking store on SQLite holding ``history_size`` runs, to which rounds of runs are added.

    A run logs what ``theirs`` logs (the parameters, four metrics, the decision as a tag); with
    ``full``, also what we store of a retrain beyond that: the baseline's scores, the ECE, the
    data-quality funnel and the duration as metrics, trigger and status as tags, the version's
    checksum and training-set hash as parameters, and the per-class report as a JSON artifact
    (``log_dict``), the like-for-like run.
    """

    def __init__(self, folder: Path, retrains: list[Retrain], history_size: int, *, full: bool = False):
        _quiet_mlflow()
        import mlflow

        self.mlflow, self.version, self.number, self.full = mlflow, mlflow.__version__, 0, full
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        self.experiment = mlflow.create_experiment("retrains", artifact_location=(folder / "artifacts").as_uri())
        started = time.perf_counter()
        for i in range(history_size):
            self._log(retrains[i % len(retrains)])
        self.fill_s = time.perf_counter() - started
        say(f"peer: MLflow history of {history_size:,} runs logged in {self.fill_s:.1f} s")

    def _log(self, r: Retrain) -> None:
        """One run, the way ``theirs`` logs a retrain."""
        mlflow = self.mlflow
        self.number += 1
        params = {**r.params, "trigger": r.trigger, "eval_rows": r.eval_rows, "champion": r.champion or "none"}
        metrics = {"accuracy": r.accuracy, "macro_f1": r.macro_f1}
        if r.champion is not None:
            metrics.update(champion_accuracy=r.champion_accuracy, champion_macro_f1=r.champion_macro_f1)
        if self.full:
            params.update(version=r.version, sha256=f"{r.number:064x}", train_hash=f"{r.number * 7919:032x}")
            metrics.update(baseline_accuracy=0.08, baseline_macro_f1=0.01, ece=r.report["ece"], rows_in=12 * r.eval_rows,
                           train_rows=10 * r.eval_rows, reserved_for_eval=r.eval_rows, duration_s=0.1)
        with mlflow.start_run(experiment_id=self.experiment, run_name=f"retrain-{self.number:06d}"):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics, step=self.number)
            if self.full:
                mlflow.set_tags({"decision": r.decision, "trigger": r.trigger,
                                 "status": "accepted" if r.decision == "accepted" else "rejected"})
                mlflow.log_dict(r.report, "report.json")
            else:
                mlflow.set_tag("decision", r.decision)

    def write(self, batch: list[Retrain]) -> dict[str, float]:
        """Log ``batch`` as runs: the mean ms a run, and the load average when it started."""
        load = os.getloadavg()[0]
        started = time.perf_counter()
        for r in batch:
            self._log(r)
        return {"write_ms": 1000 * (time.perf_counter() - started) / len(batch), "load": load}


def growth_report(measured: dict[str, Any]) -> SuiteResult:
    """Rows: our write time per retrain at each history size, beside MLflow's per run in the same rounds."""
    mine, theirs_ = measured["ours"], measured["mlflow"]
    result = SuiteResult()
    first = mine[0]
    for g in mine:
        result.rows.append(Row(
            SUITE, f"write one retrain's history, {g['history']:,} stored", g["write_ms"], "ms",
            baseline=theirs_["write_ms"] if theirs_ else None,
            target=f"flat (same as at {first['history']:,})" if g is not first else "–",
            passed=(g["write_ms"] <= 1.5 * first["write_ms"]) if g is not first else None,
            note=(f"baseline: MLflow {theirs_['version']} on SQLite, one run, {theirs_['history']:,} stored, same rounds; "
                  if theirs_ else f"MLflow: {INSTALL_HINT}; ") + f"load {g['load']:.1f}"))
        result.rows.append(Row(SUITE, f"  the same, CPU time of this process, {g['history']:,} stored", g["cpu_ms"], "ms",
                               baseline=first["cpu_ms"] if g is not first else None,
                               note=f"baseline: the same at {first['history']:,} stored" if g is not first else ""))
    kept, full = measured.get("kept_open"), measured.get("mlflow_full")
    if kept:
        result.rows.append(Row(
            SUITE, f"  what-if: the store kept open between transactions, {kept['history']:,} stored", kept["write_ms"],
            "ms", baseline=full["write_ms"] if full else None,
            note=("baseline: MLflow logging what we store, same rounds; " if full else "")
            + "not how Retrainer runs (it would lock every other process out of the file): what the per-transaction "
            f"attach costs; load {kept['load']:.1f}"))
    runs = lambda xs: ", ".join(f"{x:.0f}" for x in xs)  # noqa: E731
    lines = [f"### Peer: writing one retrain's history as the history grows ({first['k']} retrains a round, "
             f"median of {first['rounds']} interleaved round{'s' * (first['rounds'] > 1)})", "",
             "| stored | ms a retrain (each round) | CPU ms in this process | chart read | store | load |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {g['history']:,} retrains | {g['write_ms']:.1f} ({runs(g['runs_ms'])}) | {g['cpu_ms']:.1f} | "
              f"{g['read_ms']:.0f} ms ({g['rows']:,} rows) | {g['mb']:.1f} MB | {g['load']:.1f} |" for g in mine]
    if theirs_:
        lines.append(f"| MLflow {theirs_['version']}, {theirs_['history']:,} runs | {theirs_['write_ms']:.1f} "
                     f"({runs(theirs_['runs_ms'])}) | – | – | – | {theirs_['load']:.1f} |")
    if kept:
        lines.append(f"| what-if: {kept['history']:,} retrains, the store kept open between transactions (not how "
                     f"Retrainer runs) | {kept['write_ms']:.1f} ({runs(kept['runs_ms'])}) | {kept['cpu_ms']:.1f} | "
                     f"{kept['read_ms']:.0f} ms ({kept['rows']:,} rows) | {kept['mb']:.1f} MB | {kept['load']:.1f} |")
    if full:
        lines.append(f"| MLflow {full['version']}, {full['history']:,} runs, logging what we store (report as an "
                     f"artifact, every figure) | {full['write_ms']:.1f} ({runs(full['runs_ms'])}) | – | – | – | "
                     f"{full['load']:.1f} |")
    lines += ["", "A retrain writes 3-4 short transactions (each attaches the file, commits and detaches); wall time "
              "above CPU time is waiting for the disk's fsync and for a core on the shared machine."]
    result.details.append("\n".join(lines))
    return result


def ours_points(frame: Any) -> Any:
    """The candidate's points of the chart, in the chart's order (the frame holds champions too)."""
    return frame[frame["role"] == "candidate"].reset_index(drop=True)


# -- MLflow ----------------------------------------------------------------------------------------

def mlflow_available() -> bool:
    _quiet_mlflow()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def _quiet_mlflow() -> None:
    # No telemetry from a benchmark (it would try to reach the network), and no INFO chatter.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def theirs(folder: Path, retrains: list[Retrain]) -> dict[str, Any]:
    """The same history through MLflow's fluent tracking API on SQLite, then ``search_runs``."""
    _quiet_mlflow()
    import mlflow

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    started = time.perf_counter()
    experiment = mlflow.create_experiment("retrains", artifact_location=(folder / "artifacts").as_uri())
    setup = time.perf_counter() - started
    started = time.perf_counter()
    for r in retrains:
        with mlflow.start_run(experiment_id=experiment, run_name=f"retrain-{r.number:06d}"):
            mlflow.log_params({**r.params, "trigger": r.trigger, "eval_rows": r.eval_rows,
                               "champion": r.champion or "none"})
            metrics = {"accuracy": r.accuracy, "macro_f1": r.macro_f1}
            if r.champion is not None:
                metrics.update(champion_accuracy=r.champion_accuracy, champion_macro_f1=r.champion_macro_f1)
            mlflow.log_metrics(metrics, step=r.number)
            mlflow.set_tag("decision", r.decision)
    write = time.perf_counter() - started
    started = time.perf_counter()
    frame = mlflow.search_runs(experiment_ids=[experiment], max_results=max(1000, 2 * len(retrains)),
                               order_by=["attributes.start_time ASC", "attributes.run_name ASC"])
    read = time.perf_counter() - started
    return {"setup_s": setup, "write_s": write, "read_s": read, "total_s": write + read, "frame": frame,
            "bytes": (folder / "mlflow.db").stat().st_size, "version": mlflow.__version__}


# -- the suite ---------------------------------------------------------------------------------------

def measure(work: Path, *, n: int, runs: int) -> dict[str, Any]:
    """``runs`` rounds of (ours, MLflow) on fresh stores; every round's figures and the medians."""
    retrains = history(n)
    have_mlflow = mlflow_available()
    mine, peers = [], []
    work.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="peer-", dir=work))
    try:
        for k in range(runs):
            say(f"peer: run {k + 1} of {runs}: our store, {n:,} retrains")
            mine.append(ours(base / f"ours-{k}", retrains))
            if have_mlflow:
                say(f"peer: run {k + 1} of {runs}: MLflow on SQLite, {n:,} retrains")
                peers.append(theirs(base / f"mlflow-{k}", retrains))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    keys = ("setup_s", "write_s", "read_s", "total_s")
    return {"n": n, "runs": runs, "retrains": retrains, "mlflow": have_mlflow,
            "ours": {k: median([m[k] for m in mine]) for k in keys}, "ours_runs": mine,
            "theirs": {k: median([p[k] for p in peers]) for k in keys} if peers else None, "theirs_runs": peers}


def run(work: Path, *, quick: bool) -> SuiteResult:
    n, runs = (200, 1) if quick else (1000, 3)
    return report(measure(work, n=n, runs=runs))


def report(m: dict[str, Any]) -> SuiteResult:
    """The table's rows and the details paragraph from what ``measure`` returned."""
    n, runs = m["n"], m["runs"]
    o, t = m["ours"], m["theirs"]
    result = SuiteResult()
    base = (lambda key: 1000 * t[key]) if t else (lambda key: None)
    what = f"{n:,} retrains"
    result.rows += [
        Row(SUITE, f"log {what} (write)", 1000 * o["write_s"], "ms", baseline=base("write_s"),
            note="baseline: MLflow tracking API, SQLite store" if t else ""),
        Row(SUITE, f"read {what} for the accuracy chart", 1000 * o["read_s"], "ms", baseline=base("read_s")),
        Row(SUITE, f"log and read {what} (total)", 1000 * o["total_s"], "ms", baseline=base("total_s")),
    ]
    if t is None:
        result.rows.append(Row(SUITE, "MLflow peer", None, "ms", note=INSTALL_HINT))
    per_run = lambda runs, key: ", ".join(f"{r[key]:.2f}" for r in runs)  # noqa: E731
    accepted = sum(r.decision == "accepted" for r in m["retrains"])
    writes = 3 * n + accepted  # write transactions: 3 a retrain, one more to record a deployment
    lines = [
        f"### Peer: our store vs MLflow tracking, {what}, median of {runs} run{'s' * (runs > 1)}",
        "",
        f"- History: {n:,} retrains ({accepted} accepted), each with the candidate's and the champion's accuracy and "
        "macro-F1, 9 model parameters plus trigger and evaluation rows, and the gate's decision.",
        f"- Ours (DuckDB, the store's own functions in `run_cycle`'s transactions, with per-class reports, events and "
        f"deployments): write {o['write_s']:.2f} s ({1000 * o['write_s'] / n:.1f} ms a retrain, "
        f"{1000 * o['write_s'] / writes:.1f} ms for each of its {writes:,} write transactions, each of which attaches "
        f"the file, commits and detaches; runs "
        f"{per_run(m['ours_runs'], 'write_s')} s), read `evaluations()` {1000 * o['read_s']:.0f} ms "
        f"({len(m['ours_runs'][-1]['frame']):,} rows: candidate and champion points; runs "
        f"{per_run(m['ours_runs'], 'read_s')} s). Creating the empty store: {o['setup_s']:.2f} s; file "
        f"{m['ours_runs'][-1]['bytes'] / 1e6:.1f} MB.",
    ]
    if t is not None:
        lines.append(
            f"- MLflow {m['theirs_runs'][-1]['version']} (`mlflow-skinny` with SQLAlchemy on SQLite, fluent API, one run a "
            f"retrain): write {t['write_s']:.2f} s ({1000 * t['write_s'] / n:.1f} ms a retrain; runs "
            f"{per_run(m['theirs_runs'], 'write_s')} s), `search_runs` {1000 * t['read_s']:.0f} ms (runs "
            f"{per_run(m['theirs_runs'], 'read_s')} s). Creating the empty tracking store (Alembic migrations): "
            f"{t['setup_s']:.2f} s; file {m['theirs_runs'][-1]['bytes'] / 1e6:.1f} MB. It stores less than we do "
            "(no per-class report, funnel, events or deployments).")
    else:
        lines.append(f"- MLflow: {INSTALL_HINT} (the peer was not measured).")
    result.details.append("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-bench"))
    parser.add_argument("--growth", default="", help="history sizes, e.g. 1000,30000: write time per retrain at each")
    parser.add_argument("--more", type=int, default=40, help="retrains written onto each history a round (--growth)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (--growth)")
    parser.add_argument("--kept-open", action="store_true",
                        help="what-if (--growth): also a store kept attached between its transactions")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.growth:
        sizes = tuple(int(x) for x in args.growth.split(",") if x.strip())
        retrains = history(max(200, 2 * args.more))
        args.work.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="peer-growth-", dir=args.work))
        try:
            measured = growth(folder, retrains, history_sizes=sizes, k=args.more, rounds=args.rounds,
                              peer_history=sizes[0], what_if_kept_open=args.kept_open)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print_outcome("peer", growth_report(measured), started)
        return 0
    outcome = run(args.work, quick=args.quick)
    print_outcome("peer", outcome, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
