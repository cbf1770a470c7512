"""What the system is doing now, in one dictionary: the CLI's ``status`` and the dashboard's health strip."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from engine import registry, spool
from engine.context import Context
from engine.lock import worker_running
from engine.scheduling import PAUSED_KEY, adaptive_status
from store.models import get_model
from store.state import read_jobs, read_state
from store.vocabulary import Trigger

HEARTBEAT_KEY = "worker"
FALLBACK_KEY = "fallback"
PROGRESS_KEY = "retrain_progress"


def model_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What a version is: its pipeline (preset, factory or adopted file), params, calibration, scikit-learn.

    Versions trained before the ``pipeline`` setting existed used the word preset.
    """
    params = row.get("params") or {}
    return {
        "pipeline": params.get("pipeline", "word" if params.get("features") else None),
        "pipeline_kind": params.get("pipeline_kind", "preset" if params.get("features") else None),
        "pipeline_params": params.get("pipeline_params"),
        "calibration": params.get("calibration"),
        "adopted": params.get("adopted"),
        "sklearn_version": row.get("sklearn_version"),
    }


def system_status(ctx: Context) -> dict[str, Any]:
    """Active model and metrics, fallback, worker health, scheduler, adaptive counters, spool backlog."""
    now = ctx.clock()
    state = read_state(ctx.db)
    pointer = None
    pointer_problem = None
    try:
        pointer = registry.read_active(ctx.settings.registry_dir)
    except Exception as exc:  # a damaged pointer is shown, not raised
        pointer_problem = str(exc)
    active = None
    if pointer is not None:
        row = get_model(ctx.db, pointer.active.version) or {}
        active = {
            "version": pointer.active.version,
            "deployed_at": pointer.deployed_at,
            "accuracy": row.get("accuracy"),
            "macro_f1": row.get("macro_f1"),
            "train_rows": row.get("train_rows"),
            "eval_rows": row.get("eval_rows"),
            **model_facts(row),
        }
    heartbeat, beat_at = state.get(HEARTBEAT_KEY, (None, None))
    holder = worker_running(ctx.settings.worker_lock_path)
    age = (now - beat_at).total_seconds() if beat_at else None
    alive = holder is not None and age is not None and age <= ctx.settings.worker_stale_seconds
    fallback = state.get(FALLBACK_KEY, (None, None))[0]
    if pointer_problem:
        fallback = {"reason": pointer_problem}
    adaptive = adaptive_status(ctx)
    progress = state.get(PROGRESS_KEY, (None, None))[0]
    return {
        "home": str(ctx.settings.home),
        "active": active,
        "fallback": fallback,
        "worker": {
            "alive": alive,
            "pid": (holder or {}).get("pid") or (heartbeat or {}).get("pid"),
            "heartbeat_age_s": age,
            "busy": (heartbeat or {}).get("busy") if alive else None,
        },
        "retrain_in_progress": progress,
        "scheduler": {
            "paused": bool(state.get(PAUSED_KEY, (False, None))[0]),
            "jobs": read_jobs(ctx.db),
        },
        "adaptive": {
            "new_samples": adaptive.new_samples,
            "min_samples": adaptive.min_samples,
            "days_since_last_retrain": adaptive.days_since,
            "max_days": adaptive.max_days,
            "due": adaptive.due,
        },
        "spool_backlog_files": spool.backlog(ctx.settings.spool_dir),
    }


@dataclass(frozen=True)
class NextRetrain:
    """What the scheduler will do next, in the terms a person asks about.

    ``at`` (naive UTC) and ``job`` name the earliest scheduled retrain that will certainly start
    if nothing else happens first (None when paused or no job is defined yet); ``check_at``
    and ``counters`` describe the adaptive job's next check and where its two counters stand
    (it may retrain sooner, at any check, once enough new labels arrive); ``paused`` says the
    jobs start nothing.
    """

    at: datetime | None
    job: str | None
    check_at: datetime | None
    counters: str | None
    adaptive_due: bool
    paused: bool


def next_retrain(jobs: Sequence[dict[str, Any]], adaptive: dict[str, Any], *, paused: bool,
                 every_minutes: float) -> NextRetrain:
    """The next scheduled retrain from the stored jobs and the live adaptive counters.

    ``jobs``: rows of ``store.state.read_jobs`` (``name``, ``next_run`` naive UTC); ``adaptive``:
    the ``"adaptive"`` part of :func:`system_status`. The weekly and monthly jobs' ``next_run``
    is a retrain; the adaptive job's is a check, which retrains only when due: at once if the
    counters are due now, else at the first check after ``max_days`` have passed since the
    last retrain (any retrain, of any outcome, resets both counters). The earliest of these wins.

    >>> jobs = [{"name": "weekly", "next_run": datetime(2026, 12, 6, 3)},
    ...         {"name": "adaptive", "next_run": datetime(2026, 11, 30, 5, 14)}]
    >>> live = {"new_samples": 30, "min_samples": 100, "days_since_last_retrain": 0.5, "max_days": 7, "due": False}
    >>> n = next_retrain(jobs, live, paused=False, every_minutes=15)
    >>> str(n.job), n.at, n.counters
    ('weekly', datetime.datetime(2026, 12, 6, 3, 0), '30 of 100 labels, 0.5 of 7 days')
    """
    runs = {j["name"]: j.get("next_run") for j in jobs}
    days = adaptive.get("days_since_last_retrain")
    counters = (f"{adaptive['new_samples']:,} of {adaptive['min_samples']:,} labels, "
                + ("no retrain yet" if days is None else f"{days:.1f} of {adaptive['max_days']:g} days"))
    check = runs.get(Trigger.ADAPTIVE)
    options: list[tuple[datetime, str]] = [(runs[name], name) for name in (Trigger.WEEKLY, Trigger.MONTHLY)
                                           if runs.get(name)]
    if check is not None:
        if adaptive.get("due"):
            options.append((check, Trigger.ADAPTIVE))
        elif days is not None:
            wait = timedelta(days=adaptive["max_days"] - days)
            step = timedelta(minutes=every_minutes)
            options.append((check + step * max(0, math.ceil(wait / step)), Trigger.ADAPTIVE))
    if paused or not options:
        return NextRetrain(None, None, check, counters if check else None, bool(adaptive.get("due")), paused)
    at, job = min(options)
    return NextRetrain(at, job, check, counters, bool(adaptive.get("due")), False)
