"""Dashboard suite: each page's first-render reads on a big store, in a fresh process.

The store (built once, kept under ``--work``): 1,000,000 logged queries over 90 days
ending at build time, ~102k true labels, 10,000 events, 500 model versions with
per-class reports, 500 retrains with their evaluations and deployments. Version v0001
is a real model trained by ``engine.retrain.run_cycle``; v0500, the active one, is a copy
of it saved under that name, so the Playground and the health strip see a real model.

For each page, ``PAGES[page]`` calls exactly the store/engine read functions that
``pages/<page>.py`` calls on its first render, with the arguments the page uses.

Baseline (same run, same store): every SQL statement those functions ran (recorded in a
separate process) executed through its own ``duckdb.connect(path, read_only=True)``,
then fetched the way the function fetched it, then closed: what a naive page that opens a
connection per query would pay. It leaves out the functions' Python work (pandas,
JSON decoding, the registry pointer), so it flatters the baseline slightly.

Run: ``python -m benchmarks --only dashboard`` (children use ``python -m benchmarks.dashboard --child ...``).

Before and after in one run: ``python -m benchmarks.dashboard --before CHECKOUT [--runs 5] [--work DIR]``
times every page's reads with this code and with the code at ``CHECKOUT`` (e.g. ``git worktree add`` of
main), alternating fresh processes, on the same rows (``before_copy``: this store without the tables that
code lacks), and prints both medians with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import ROOT, Row, SuiteResult, deploy_first_model, median, run_child, say

PAGE_NAMES = ("overview", "performance", "history", "models", "scheduler", "data", "playground", "sql")
TARGET_MS = 300.0
BUILD_TAG = "dashboard-store v3"   # v2: the rollups (store/rollups.py) built with the log; v3: labels_from
MAX_AGE = timedelta(hours=24)   # "timestamps ending now": rebuild a stale store

N_QUERIES = 1_000_000
N_IMPORTED_LABELS = 40_000
FEEDBACK_PERCENT = 6            # of the queries: ~60k feedback labels
N_EVENTS = 10_000
N_VERSIONS = 500
N_COMMANDS = 2_000
DAYS = 90
POOL = 5_000


# -- the store -------------------------------------------------------------------------------------

def store_home(work: Path) -> Path:
    return work / "dashboard-store"


def build_store(work: Path, *, force: bool = False) -> Path:
    """Build the big store once (a few minutes); reuse it while it is fresh."""
    home = store_home(work)
    marker = home / "BENCH_READY"
    if marker.exists() and not force:
        tag, built = marker.read_text().splitlines()[:2]
        if tag == BUILD_TAG and datetime.utcnow() - datetime.fromisoformat(built) < MAX_AGE:
            say(f"dashboard: reusing the store in {home} (built {built} UTC)")
            return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    started = time.perf_counter()
    say(f"dashboard: building the store in {home} (1M queries; a minute or two)")
    _build(home)
    marker.write_text(f"{BUILD_TAG}\n{datetime.utcnow().isoformat()}\n")
    say(f"dashboard: store built in {time.perf_counter() - started:.0f} s")
    return home


def _build(home: Path) -> None:
    import numpy as np
    import pandas as pd

    from engine import registry
    from engine.clock import utcnow
    from engine.config import load_settings
    from engine.context import Context
    from engine.evaluation import score_predictions
    from demo.intents import INTENTS, IntentGenerator
    from store import rollups
    from store.vocabulary import Alias, ModelStatus
    from store.models import get_model

    settings = load_settings(env={}, path=None, home=home)
    ctx = Context.open(settings)
    # 1. A real first model: 2,000 labelled rows, one retrain cycle (v0001, retrain #1).
    deploy_first_model(ctx, seed=3)
    first = get_model(ctx.db, "v0001")
    pipeline = registry.load_model(settings.registry_dir, "v0001", sha256=first["sha256"],
                                   sklearn_version=first["sklearn_version"])

    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    rng = np.random.default_rng(7)
    pool = IntentGenerator(seed=11).sample(POOL, progress=0.5)
    pool_frame = pd.DataFrame({"i": range(POOL), "text": [e.text for e in pool], "label": [e.label for e in pool]})

    # 2. Versions, retrains, evaluations, deployments: a consistent history, made in Python (500 rows each).
    versions, retrains, evaluations, deployments = [], [], [], []
    labels_json = json.dumps(list(INTENTS))
    active, active_acc, active_f1 = 1, first["accuracy"], first["macro_f1"]
    real = registry.save_model(settings.registry_dir, f"v{N_VERSIONS:04d}", pipeline)
    step = timedelta(days=DAYS) / N_VERSIONS
    triggers = ["weekly", "monthly", "adaptive", "adaptive", "adaptive", "manual", "demo"]
    for k in range(2, N_VERSIONS + 1):
        began = start + step * k
        trigger = triggers[int(rng.integers(len(triggers)))] if k < N_VERSIONS else "manual"
        roll = rng.random()
        status = "accepted" if k == N_VERSIONS or roll < 0.6 else ("rejected" if roll < 0.97 else "failed")
        eval_rows = int(400 + 3600 * k / N_VERSIONS)
        quality = 0.84 + 0.08 * k / N_VERSIONS + rng.normal(0, 0.01)
        truth = rng.choice(len(INTENTS), size=eval_rows)
        wrong = rng.random(eval_rows) > quality
        guess = np.where(wrong, rng.choice(len(INTENTS), size=eval_rows), truth)
        scores = score_predictions([INTENTS[t] for t in truth], [INTENTS[g] for g in guess])
        if status == "accepted" and k < N_VERSIONS and scores.accuracy < active_acc - 0.01:
            status = "rejected"
        duration = float(2 + 40 * k / N_VERSIONS + rng.random() * 5)
        rows_in = int(2000 + 98000 * k / N_VERSIONS)
        funnel = {"malformed": int(rows_in * 0.01), "low_confidence": int(rows_in * 0.12), "conflicts": int(rows_in * 0.005),
                  "duplicates": int(rows_in * 0.08)}
        kept = rows_in - sum(funnel.values())
        reserved = int(kept * 0.2)
        name = f"v{k:04d}"
        champion = f"v{active:04d}"
        finished = began + timedelta(seconds=duration)
        reason = {"accepted": f"candidate accuracy {scores.accuracy:.3f} >= champion {active_acc:.3f} - tolerance",
                  "rejected": f"candidate accuracy {scores.accuracy:.3f} is below champion {active_acc:.3f} - 0.010",
                  "failed": "training failed: TrainingError: only one label left after cleaning"}[status]
        retrains.append({
            "id": k, "started_at": began, "finished_at": finished, "trigger": trigger, "status": status,
            "command_id": None, "champion_version": champion, "candidate_version": name,
            "decision": None if status == "failed" else status, "reason": reason,
            "champion_accuracy": active_acc, "champion_macro_f1": active_f1,
            "candidate_accuracy": None if status == "failed" else scores.accuracy,
            "candidate_macro_f1": None if status == "failed" else scores.macro_f1,
            "baseline_accuracy": 0.08, "baseline_macro_f1": 0.01, "eval_rows": eval_rows, "rows_in": rows_in,
            **funnel, "reserved_for_eval": reserved, "train_rows": kept - reserved, "duration_s": duration,
            "stages": json.dumps({"read": duration * 0.2, "fit": duration * 0.6, "score": duration * 0.15,
                                  "deploy": duration * 0.05}),
        })
        versions.append({
            "version": name, "created_at": finished - timedelta(seconds=1), "status": status,
            "file": f"{name}{registry.MODEL_SUFFIX}", "sha256": real.sha256 if k == N_VERSIONS else f"{k:064x}",
            "size_bytes": real.size_bytes, "sklearn_version": real.sklearn_version,
            "params": json.dumps({"alpha": 1e-5, "max_features": 200000, "min_df": 2}), "labels": labels_json,
            "train_rows": kept - reserved, "train_hash": f"{k * 7919:032x}", "accuracy": scores.accuracy,
            "macro_f1": scores.macro_f1, "eval_rows": eval_rows, "report": json.dumps(scores.report()), "retrain_id": k,
        })
        if status != "failed":
            evaluations.append({"retrain_id": k, "ts": finished, "version": champion, "role": "champion",
                                "accuracy": active_acc, "macro_f1": active_f1, "eval_rows": eval_rows})
            evaluations.append({"retrain_id": k, "ts": finished, "version": name, "role": "candidate",
                                "accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "eval_rows": eval_rows})
        if status == "accepted":
            deployments.append({"ts": finished, "version": name, "previous_version": champion, "kind": "deploy",
                                "reason": f"retrain #{k} accepted"})
            if k < N_VERSIONS - 1 and rng.random() < 0.03:  # an operator rolls it back two hours later
                deployments.append({"ts": finished + timedelta(hours=2), "version": champion, "previous_version": name,
                                    "kind": "rollback", "reason": "operator rollback from the dashboard"})
            else:
                active, active_acc, active_f1 = k, scores.accuracy, scores.macro_f1
    deployed = {d["version"] for d in deployments} | {d["previous_version"] for d in deployments}
    for v in versions:
        if v["status"] == "accepted":
            v["status"] = ModelStatus.CHAMPION if v["version"] == f"v{N_VERSIONS:04d}" else ModelStatus.RETIRED
        elif v["version"] in deployed:
            v["status"] = ModelStatus.RETIRED
    last_deploy = deployments[-1]["ts"]
    frames = {"bench_versions": pd.DataFrame(versions), "bench_retrains": pd.DataFrame(retrains),
              "bench_evaluations": pd.DataFrame(evaluations), "bench_deployments": pd.DataFrame(deployments),
              "bench_pool": pool_frame}

    with ctx.db.write() as con:
        for name, frame in frames.items():
            con.register(name, frame)
        p = {"now": now}
        # The real first cycle happened at the start of the 90 days.
        con.execute("UPDATE retrains SET started_at = $t, finished_at = $t + INTERVAL 2 SECOND WHERE id = 1", {"t": start})
        con.execute("UPDATE models SET created_at = $t, status = $s WHERE version = 'v0001'",
                    {"t": start, "s": ModelStatus.RETIRED})
        con.execute("UPDATE evaluations SET ts = $t WHERE retrain_id = 1", {"t": start})
        con.execute("UPDATE alias_history SET ts = $t", {"t": start})
        con.execute("UPDATE labels SET ts = $t", {"t": start})
        con.execute("UPDATE events SET ts = $t", {"t": start})
        con.execute("INSERT INTO models BY NAME SELECT * FROM bench_versions")
        con.execute("INSERT INTO retrains BY NAME SELECT * FROM bench_retrains")
        con.execute("SELECT nextval('retrain_ids') FROM range(600)").fetchall()
        con.execute("INSERT INTO evaluations BY NAME SELECT * FROM bench_evaluations")
        con.execute("INSERT INTO alias_history (ts, alias, version, previous_version, kind, actor, reason) "
                    "SELECT ts, $alias, version, previous_version, kind, 'benchmark', reason FROM bench_deployments "
                    "ORDER BY ts", {"alias": Alias.CHAMPION})
        # 1M queries in time order (as ingestion writes them): text from a pool of demo queries, 88% predicted
        # right, confidence 0.2-1.0 skewed high, the version serving at the time.
        con.execute(f"""
            INSERT INTO queries (id, ts, text, predicted_label, confidence, model_version, source)
            SELECT md5('q' || r.range::VARCHAR) AS id,
                   CAST($now AS TIMESTAMP) - to_milliseconds(CAST(hash(r.range * 5 + 1) % {DAYS * 86_400_000} AS BIGINT)) AS ts,
                   a.text,
                   CASE WHEN hash(r.range * 5 + 2) % 100 < 88 THEN a.label ELSE b.label END,
                   0.2 + 0.8 * sqrt((hash(r.range * 5 + 3) % 1000000) / 1000000.0),
                   NULL,
                   CASE WHEN hash(r.range * 5 + 4) % 10 < 9 THEN 'classifier' ELSE 'playground' END
            FROM range({N_QUERIES}) r
            JOIN bench_pool a ON a.i = r.range % {POOL}
            JOIN bench_pool b ON b.i = (r.range * 7 + 3) % {POOL}
            ORDER BY ts
        """, p)
        con.execute("""
            UPDATE queries SET model_version = 'v' || lpad(CAST(least(500, 1 + CAST(epoch(ts - $start) / $span * 500 AS BIGINT)) AS VARCHAR), 4, '0')
        """, {"start": start, "span": DAYS * 86400.0})
        # ~60k feedback labels (a person's true label, minutes after the query) and 40k imported labelled texts.
        con.execute(f"""
            INSERT INTO labels (id, ts, query_id, text, label, source)
            SELECT md5('f' || r.range::VARCHAR),
                   least(CAST($now AS TIMESTAMP),
                         CAST($now AS TIMESTAMP) - to_milliseconds(CAST(hash(r.range * 5 + 1) % {DAYS * 86_400_000} AS BIGINT))
                         + to_minutes(CAST(hash(r.range * 5 + 6) % 600 AS BIGINT))),
                   md5('q' || r.range::VARCHAR), NULL, a.label, 'feedback'
            FROM range({N_QUERIES}) r JOIN bench_pool a ON a.i = r.range % {POOL}
            WHERE hash(r.range * 5 + 7) % 100 < {FEEDBACK_PERCENT}
            ORDER BY 2
        """, p)
        con.execute(f"""
            INSERT INTO labels (id, ts, query_id, text, label, source)
            SELECT md5('l' || r.range::VARCHAR),
                   CAST($now AS TIMESTAMP) - to_milliseconds(CAST(hash(r.range * 3 + 1) % {DAYS * 86_400_000} AS BIGINT)),
                   NULL, a.text, a.label, 'import'
            FROM range({N_IMPORTED_LABELS}) r JOIN bench_pool a ON a.i = (r.range * 13) % {POOL}
            ORDER BY 2
        """, p)
        existing = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.execute(f"""
            INSERT INTO events (ts, kind, severity, version, message, details)
            SELECT CAST($now AS TIMESTAMP) - to_milliseconds(CAST(hash(r.range * 3 + 2) % {DAYS * 86_400_000} AS BIGINT)) AS ts,
                   ['ingest', 'retrain', 'deploy', 'schedule', 'worker', 'import', 'rollback', 'fallback'][1 + CAST(hash(r.range) % 8 AS INTEGER)],
                   CASE WHEN hash(r.range * 3) % 100 < 90 THEN 'info' WHEN hash(r.range * 3) % 100 < 97 THEN 'warning' ELSE 'error' END,
                   'v' || lpad(CAST(1 + r.range % 500 AS VARCHAR), 4, '0'),
                   'Benchmark event #' || r.range::VARCHAR || ': something the worker did, in words.',
                   '{{"n": ' || r.range::VARCHAR || '}}'
            FROM range({N_EVENTS - existing}) r ORDER BY ts
        """, p)
        con.execute(f"""
            INSERT INTO commands (created_at, kind, args, source, status, started_at, finished_at, progress, stage, message)
            SELECT ts, kind, NULL, 'dashboard', 'done', ts, ts + INTERVAL 20 SECOND, 1.0, 'done', 'done'
            FROM (SELECT CAST($start AS TIMESTAMP) + to_seconds(r.range * {DAYS * 86400 // N_COMMANDS}) AS ts,
                         ['retrain', 'pause', 'resume', 'rollback'][1 + CAST(r.range % 4 AS INTEGER)] AS kind
                  FROM range({N_COMMANDS}) r) ORDER BY ts
        """, {"start": start})
        con.execute("""
            INSERT OR REPLACE INTO jobs VALUES
            ('adaptive', $now + INTERVAL 10 MINUTE, $now - INTERVAL 5 MINUTE, 'not due: 12 of 100 new samples', NULL, 8600, 3),
            ('monthly', $now + INTERVAL 20 DAY, $now - INTERVAL 10 DAY, 'retrain #480 accepted', NULL, 3, 0),
            ('weekly', $now + INTERVAL 3 DAY, $now - INTERVAL 4 DAY, 'retrain #497 rejected', NULL, 13, 0)
        """, p)
        for name in frames:
            con.unregister(name)
    with ctx.db.write() as con:  # the log was written with SQL of its own: count it into the rollups, once committed
        rollups.rebuild(con)
    ref = registry.ModelRef(f"v{N_VERSIONS:04d}", real.sha256, real.sklearn_version, tuple(INTENTS))
    registry.point_to(settings.registry_dir, ref, deployed_at=last_deploy.isoformat())
    (home / "seed.csv").unlink()


# -- what each page reads on its first render ----------------------------------------------------------

Timer = Callable[..., Any]


def _page_overview(ctx, t: Timer) -> None:
    from engine.clock import utcnow
    from engine.status import system_status
    from store.events import recent_events
    from store.views import overview as views

    current = t("system_status", system_status, ctx)
    active = current["active"]
    t("previous_metrics", views.previous_metrics, ctx.db, active["version"])
    now = utcnow()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    t("traffic", views.traffic, ctx.db, now=now.replace(second=0, microsecond=0), day_start=day_start,
      min_confidence=ctx.settings.min_confidence)
    t("timeline", views.timeline, ctx.db)
    t("markers", views.markers, ctx.db)
    t("recent_events", recent_events, ctx.db, limit=12)


def _utc_offset_minutes() -> int:
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _page_performance(ctx, t: Timer) -> None:
    from engine.clock import utcnow
    from engine.drift import version_figures
    from engine.status import system_status
    from store.rollups import bucket_floor
    from store.views import performance as views

    current = t("system_status", system_status, ctx)
    t("evaluations", views.evaluations, ctx.db)
    t("live_accuracy", views.live_accuracy, ctx.db, offset_minutes=_utc_offset_minutes(),
      since=bucket_floor(utcnow() - timedelta(days=7)))
    catalogue = t("versions_with_metrics", views.versions_with_metrics, ctx.db)
    names = catalogue["version"].tolist()
    active = current["active"]["version"] if current["active"] else None
    version = active if active in names else names[-1]
    t("class_report", views.class_report, ctx.db, version)
    t("version_figures (drift)", version_figures, ctx.db, version, min_confidence=ctx.settings.min_confidence)
    t("drift_warnings", views.drift_warnings, ctx.db, version)
    second = names.index(version)
    a, b = names[second - 1 if second > 0 else 1], names[second]
    t("compare", views.compare, ctx.db, a, b)


def _page_history(ctx, t: Timer) -> None:
    from engine.status import system_status
    from store.views import history as views

    t("system_status", system_status, ctx)
    t("filter_options", views.filter_options, ctx.db)
    t("totals", views.totals, ctx.db, statuses=(), triggers=(), start=None, end=None)
    rows = t("retrains", views.retrains, ctx.db, statuses=(), triggers=(), start=None, end=None)
    t("retrain", views.retrain, ctx.db, int(rows["id"].iloc[0]))
    t("gate_decision", views.gate_decision, ctx.db, int(rows["id"].iloc[0]))


def _page_models(ctx, t: Timer) -> None:
    from engine.status import system_status
    from store.commands import recent_commands
    from store.views import models as views

    t("system_status", system_status, ctx)
    t("versions", views.versions, ctx.db)
    t("rollback_targets", views.rollback_targets, ctx.db)
    t("recent_commands", recent_commands, ctx.db, limit=6)
    t("deployments", views.deployments, ctx.db)


def _page_scheduler(ctx, t: Timer) -> None:
    from engine.scheduling import adaptive_status
    from engine.status import system_status
    from store.state import read_jobs
    from store.views import scheduler as views

    t("system_status", system_status, ctx)
    t("pending_toggle", views.pending_toggle, ctx.db)
    t("read_jobs", read_jobs, ctx.db)
    t("outcomes", views.outcomes, ctx.db)
    t("adaptive_status", adaptive_status, ctx)
    t("scheduled_retrains", views.scheduled_retrains, ctx.db, limit=10)


def _page_data(ctx, t: Timer) -> None:
    from engine.clock import utcnow
    from engine.label_mix import known_labels, training_mix
    from engine.status import system_status
    from store.views import data as views

    t("system_status", system_status, ctx)
    span = t("span", views.span, ctx.db)
    t("predicted_labels", views.predicted_labels, ctx.db)
    t("known_labels", known_labels, ctx.db)
    offset = _utc_offset_minutes()
    now = utcnow().replace(second=0, microsecond=0)
    since = views.since_day(now, days=30, offset_minutes=offset)   # the page's default period
    t("volume_by_label", views.volume_by_label, ctx.db, since=since, offset_minutes=offset)
    t("confidence_histogram", views.confidence_histogram, ctx.db, since=since)
    t("low_confidence_by_day", views.low_confidence_by_day, ctx.db, since=since,
      min_confidence=ctx.settings.min_confidence, offset_minutes=offset)
    s = ctx.settings
    t("training_mix", training_mix, ctx.db, since=views.since_day(now, days=7, offset_minutes=offset),
      min_confidence=s.min_confidence, max_text_length=s.max_text_length, eval_percent=s.eval_percent,
      use_pseudo_labels=s.use_pseudo_labels)
    t("quality", views.quality, ctx.db)
    # The query browser's default filters: every date from the first logged day to today, 200 rows.
    shift = timedelta(minutes=offset)
    first_day = (span["first"] + shift).date()
    last_day = max((span["last"] + shift).date(), (now + shift).date())
    t("search_queries", views.search_queries, ctx.db, text=None, labels=(), low=None, high=None, has_feedback=None,
      since=views.local_day_start(first_day, offset_minutes=offset),
      until=views.local_day_start(last_day + timedelta(days=1), offset_minutes=offset), limit=200)


def _page_playground(ctx, t: Timer) -> None:
    from engine.status import system_status

    # The rest of the page is the Classifier (loading the model), not a store read.
    t("system_status", system_status, ctx)


def _page_sql(ctx, t: Timer) -> None:
    from engine.status import system_status
    from store.views import sql as views

    t("system_status", system_status, ctx)
    t("prepare", views.prepare, ctx.db)   # a waiting query process and a current snapshot, in the background
    t("schema", views.schema, ctx.db)
    t("row_counts", views.row_counts, ctx.db)
    # Not on first render (it needs the Run button), but what a user does first: the first example, once the
    # page has been on screen for PRESS_RUN_S (not counted in the total).
    pause(PRESS_RUN_S)
    t("run_readonly(example 1)", views.run_readonly, ctx.db, views.EXAMPLES[0][1], row_limit=1000, timeout_s=5.0)


PRESS_RUN_S = 1.0   # the least time between the SQL page appearing and a person pressing Run
_paused = [0.0]


def pause(seconds: float) -> None:
    """Wait like a person would (reading the page); the time is left out of the page's total."""
    time.sleep(seconds)
    _paused[0] += seconds


PAGES: dict[str, Callable] = {
    "overview": _page_overview, "performance": _page_performance, "history": _page_history,
    "models": _page_models, "scheduler": _page_scheduler, "data": _page_data,
    "playground": _page_playground, "sql": _page_sql,
}


# -- children (fresh processes) ----------------------------------------------------------------------------

def _context(home: Path):
    from engine.config import load_settings
    from engine.context import Context

    return Context.open(load_settings(env={}, path=None, home=home), create=False)


def child_functions(home: Path, page: str) -> dict[str, Any]:
    """Time the page's reads once; imports happen before the clock starts (a server has them loaded)."""
    import engine.status, store.views.data, store.views.sql, store.views.performance  # noqa: F401,E401

    ctx = _context(home)
    times: dict[str, float] = {}

    def t(name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        times[name] = times.get(name, 0.0) + (time.perf_counter() - started) * 1000
        return value

    started = time.perf_counter()
    PAGES[page](ctx, t)
    return {"total_ms": (time.perf_counter() - started - _paused[0]) * 1000, "functions": times}


class _Result:
    """Forwards to a DuckDB result and notes how it was fetched."""

    FETCHES = ("df", "fetchdf", "fetchone", "fetchall", "fetchmany", "arrow")

    def __init__(self, real: Any, record: dict[str, Any]):
        self._real, self._record = real, record

    def __getattr__(self, name: str) -> Any:
        if name in self.FETCHES and self._record.get("fetch") is None:
            self._record["fetch"] = name
        return getattr(self._real, name)


class _Recorder:
    """Forwards to a DuckDB connection and records every statement with its parameters."""

    def __init__(self, real: Any, log: list[dict[str, Any]]):
        self._real, self._log = real, log

    def execute(self, sql: str, params: Any = None) -> _Result:
        record = {"sql": sql, "params": params, "fetch": None}
        self._log.append(record)
        return _Result(self._real.execute(sql, params) if params is not None else self._real.execute(sql), record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def child_record(home: Path, page: str, out: Path) -> dict[str, Any]:
    """Run the page's reads once, recording every SQL statement they send (for the baseline)."""
    from contextlib import contextmanager

    from store import db as store_db
    from store.views import sql as sql_views

    log: list[dict[str, Any]] = []
    original_read = store_db.Database.read
    original_sandbox = sql_views.sandbox

    @contextmanager
    def read(self):
        with original_read(self) as con:
            yield _Recorder(con, log)

    @contextmanager
    def sandbox(db):
        with original_sandbox(db) as con:
            yield _Recorder(con, log)

    store_db.Database.read = read
    sql_views.sandbox = sandbox
    ctx = _context(home)
    PAGES[page](ctx, lambda name, fn, *a, **k: fn(*a, **k))
    with open(out, "wb") as handle:
        pickle.dump(log, handle)
    return {"statements": len(log)}


def child_baseline(home: Path, statements: Path) -> dict[str, Any]:
    """The recorded statements, each through its own read-only connection (connect, run, fetch, close)."""
    import duckdb

    with open(statements, "rb") as handle:
        log = pickle.load(handle)
    path = str(home / "retrainer.duckdb")
    started = time.perf_counter()
    for s in log:
        con = duckdb.connect(path, read_only=True)
        try:
            result = con.execute(s["sql"], s["params"]) if s["params"] is not None else con.execute(s["sql"])
            fetch = s["fetch"] or "fetchall"
            getattr(result, fetch)(1001) if fetch == "fetchmany" else getattr(result, fetch)()
        finally:
            con.close()
    return {"total_ms": (time.perf_counter() - started) * 1000, "statements": len(log)}


APP_PAGES = {"overview": None, "performance": "pages/performance.py", "history": "pages/history.py",
             "models": "pages/models.py", "scheduler": "pages/scheduler.py", "data": "pages/data.py",
             "playground": "pages/playground.py", "sql": "pages/sql.py"}


def child_apptest(home: Path) -> dict[str, Any]:
    """Render every page in AppTest: the app's first run (Overview), then a switch to each page with Streamlit's
    caches cleared first (so each page reads the store itself). Milliseconds per page."""
    os.environ["RETRAINER_HOME"] = str(home)
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    times, problems = {}, {}
    started = time.perf_counter()
    at.run()
    times["overview"] = (time.perf_counter() - started) * 1000
    if at.exception:
        problems["overview"] = str(at.exception[0].value)[:300]
    for page, path in APP_PAGES.items():
        if path is None:
            continue
        st.cache_data.clear()
        started = time.perf_counter()
        at.switch_page(path).run()
        times[page] = (time.perf_counter() - started) * 1000
        if at.exception:
            problems[page] = str(at.exception[0].value)[:300]
    return {"times": times, "problems": problems}


# -- the suite ------------------------------------------------------------------------------------------------

def run(work: Path, *, quick: bool) -> SuiteResult:
    home = build_store(work)
    reps = 3 if quick else 5
    app_reps = 3
    me = "benchmarks.dashboard"
    result = SuiteResult()
    per_page: dict[str, dict[str, Any]] = {}
    for page in PAGE_NAMES:
        say(f"dashboard: {page}: {reps} fresh processes for the reads, {reps} for the baseline")
        runs = [run_child(me, "--child", "functions", "--home", str(home), "--page", page) for _ in range(reps)]
        statements = work / f"statements-{page}.pkl"
        recorded = run_child(me, "--child", "record", "--home", str(home), "--page", page, "--out", str(statements))
        base = [run_child(me, "--child", "baseline", "--home", str(home), "--out", str(statements)) for _ in range(reps)]
        names = list(runs[0]["functions"])
        fn_median = {n: median([r["functions"][n] for r in runs]) for n in names}
        slowest = max(fn_median, key=fn_median.get)
        per_page[page] = {
            "total": median([r["total_ms"] for r in runs]), "baseline": median([b["total_ms"] for b in base]),
            "functions": fn_median, "slowest": slowest, "statements": recorded["statements"],
        }
    say(f"dashboard: AppTest renders, {app_reps} fresh processes")
    renders = [run_child(me, "--child", "apptest", "--home", str(home)) for _ in range(app_reps)]
    problems = {p: m for r in renders for p, m in r["problems"].items()}
    for page in PAGE_NAMES:
        info = per_page[page]
        info["render"] = median([r["times"][page] for r in renders])
        slow = info["slowest"]
        result.rows.append(Row(
            "dashboard", f"{page}: page reads ({len(info['functions'])} calls, {info['statements']} SQL)",
            info["total"], "ms", baseline=info["baseline"], target=f"< {TARGET_MS:.0f} ms",
            passed=info["total"] < TARGET_MS,
            note=f"slowest {slow} {info['functions'][slow]:.0f} ms"))
    for page in PAGE_NAMES:
        result.rows.append(Row("dashboard", f"{page}: AppTest render (cold caches)", per_page[page]["render"], "ms",
                               note=problems.get(page, "")))
    lines = [
        "### Dashboard: per page, median of "
        f"{reps} fresh processes (AppTest: median of {app_reps})",
        "",
        f"Store: {N_QUERIES:,} queries over {DAYS} days, ~{N_QUERIES * FEEDBACK_PERCENT // 100 + N_IMPORTED_LABELS:,} labels, "
        f"{N_EVENTS:,} events, {N_VERSIONS} versions with per-class reports, {N_VERSIONS} retrains with evaluations and "
        f"deployments ({home / 'retrainer.duckdb'}, {(home / 'retrainer.duckdb').stat().st_size / 1e6:,.0f} MB).",
        "",
        "Baseline: the same SQL statements (recorded from the functions) each run through a fresh "
        "`duckdb.connect(path, read_only=True)`, fetched the same way, then closed; it leaves out the functions' "
        "Python work, so it is a slightly generous baseline. Fresh processes mean no DuckDB or Streamlit cache is "
        "warm; the OS page cache is (same for both).",
        "",
        "| page | reads (ms) | verdict | baseline (ms) | AppTest render (ms) | slowest function | every function (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for page in PAGE_NAMES:
        i = per_page[page]
        every = ", ".join(f"{n} {v:.0f}" for n, v in i["functions"].items())
        lines.append(f"| {page} | {i['total']:.0f} | {'PASS' if i['total'] < TARGET_MS else 'MISS'} | {i['baseline']:.0f} | "
                     f"{i['render']:.0f} | {i['slowest']} ({i['functions'][i['slowest']]:.0f}) | {every} |")
    if problems:
        lines += ["", "AppTest exceptions: " + "; ".join(f"{p}: {m}" for p, m in problems.items())]
    result.details.append("\n".join(lines))
    result.per_page = per_page  # type: ignore[attr-defined]
    return result


# -- before and after in the same run ------------------------------------------------------------------------

def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _child_in(root: Path, *args: str, timeout: float = 600) -> Any:
    """``python -m benchmarks.dashboard args`` with the code at ``root`` (its own checkout), in a fresh process."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-m", "benchmarks.dashboard", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child in {root} `{' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.strip()][-1])


def before_copy(home: Path, dest: Path, *, before_root: Path) -> Path:
    """A copy of the store at ``home`` as the code at ``before_root`` knows it: the same rows, without the
    rollup tables (store/rollups.py) and the schema versions that code lacks (its ``open_store`` refuses a
    newer store). Made once; the SQL page's snapshots are left behind."""
    import duckdb

    from store import rollups

    marker = dest / "BENCH_READY"
    if marker.exists() and marker.read_text() == (home / "BENCH_READY").read_text():
        return dest
    latest = int(subprocess_output(before_root, "import store.schema as s; print(s.LATEST)"))
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(home, dest, ignore=shutil.ignore_patterns("*.lock", "sql-snapshots"))
    con = duckdb.connect(str(dest / "retrainer.duckdb"))
    try:
        for table in rollups.TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("DELETE FROM schema_version WHERE version > ?", [latest])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return dest


def subprocess_output(root: Path, code: str) -> str:
    import subprocess

    return subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ, PYTHONPATH=str(root)),
                          capture_output=True, text=True, check=True).stdout.strip()


def compare(home: Path, before_home: Path, *, before_root: Path, runs: int,
            pages: tuple[str, ...] = PAGE_NAMES) -> dict[str, dict[str, Any]]:
    """Every page's first-render reads with this code on ``home`` and with the code at ``before_root`` on
    ``before_home`` (the same rows), alternating fresh processes, ``runs`` of each: medians in ms, each
    function's median, and the load average when the page started."""
    out = {}
    for page in pages:
        load = _load()
        before, after = [], []
        for _ in range(runs):
            before.append(_child_in(before_root, "--child", "functions", "--home", str(before_home), "--page", page))
            after.append(run_child("benchmarks.dashboard", "--child", "functions", "--home", str(home), "--page", page))
        out[page] = {"before": median([r["total_ms"] for r in before]), "after": median([r["total_ms"] for r in after]),
                     "before_functions": {n: median([r["functions"][n] for r in before]) for n in before[0]["functions"]},
                     "after_functions": {n: median([r["functions"][n] for r in after]) for n in after[0]["functions"]},
                     "load": load, "load_after": _load()}
        say(f"dashboard: {page}: before {out[page]['before']:.0f} ms, after {out[page]['after']:.0f} ms "
            f"(load {load} -> {out[page]['load_after']})")
    return out


def compare_table(results: dict[str, dict[str, Any]], *, title: str) -> str:
    """A Markdown table of :func:`compare`'s figures, slowest functions named."""
    lines = [title, "", "| page | before (ms) | after (ms) | slowest before | slowest after | load (1/5/15 min) |",
             "|---|---|---|---|---|---|"]
    for page, r in results.items():
        slow_b = max(r["before_functions"].items(), key=lambda kv: kv[1])
        slow_a = max(r["after_functions"].items(), key=lambda kv: kv[1])
        lines.append(f"| {page} | {r['before']:.0f} | {r['after']:.0f} | {slow_b[0]} {slow_b[1]:.0f} | "
                     f"{slow_a[0]} {slow_a[1]:.0f} | {r['load']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    parser.add_argument("--child", choices=["functions", "record", "baseline", "apptest", "build"])
    parser.add_argument("--before", type=Path, help="compare: a checkout of the code to compare with (e.g. main)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--page", choices=PAGE_NAMES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    if args.before is not None:  # before and after in one run, on the same rows
        work = args.work or Path("/tmp/retrainer-bench")
        home = build_store(work)
        before_home = before_copy(home, work / "dashboard-store-before", before_root=args.before)
        results = compare(home, before_home, before_root=args.before, runs=args.runs)
        print(compare_table(results, title=f"### Page reads at {N_QUERIES:,} logged queries, median of {args.runs} "
                                           f"fresh processes each (before: {args.before})"))
        return 0
    if args.child is None:
        parser.error("give --child, or --before to compare")
    if args.child == "functions":
        out = child_functions(args.home, args.page)
    elif args.child == "record":
        out = child_record(args.home, args.page, args.out)
    elif args.child == "baseline":
        out = child_baseline(args.home, args.out)
    elif args.child == "build":
        out = {"home": str(build_store(args.work))}
    else:
        out = child_apptest(args.home)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
