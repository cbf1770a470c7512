"""What the system is doing now, in one dictionary: the CLI's ``status`` and the dashboard's health strip."""

from __future__ import annotations

from typing import Any

from engine import registry, spool
from engine.context import Context
from engine.lock import worker_running
from engine.scheduling import PAUSED_KEY, adaptive_status
from store.models import get_model
from store.state import read_jobs, read_state

HEARTBEAT_KEY = "worker"
FALLBACK_KEY = "fallback"
PROGRESS_KEY = "retrain_progress"


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
