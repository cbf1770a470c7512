"""The Models page's reads: every version with its metrics and deployment history, rollback targets."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from store.db import Database
from store.records import rows_as_dicts
from store.vocabulary import AssignmentKind, ModelStatus

# One row per version; ``history`` lists every deployment the version took part in, oldest first:
# as the version switched to (role 'to') or as the version switched away from (role 'from').
VERSIONS = """
WITH touched AS (
    SELECT version, id, ts, kind, 'to' AS role, previous_version AS other FROM deployments
    UNION ALL
    SELECT previous_version AS version, id, ts, kind, 'from' AS role, version AS other
    FROM deployments WHERE previous_version IS NOT NULL
),
history AS (
    SELECT version,
           list({'ts': ts, 'kind': kind, 'role': role, 'other': other} ORDER BY id) AS history,
           max(ts) FILTER (WHERE role = 'to') AS last_deployed_at,
           count(*) FILTER (WHERE role = 'to') AS times_deployed
    FROM touched GROUP BY version
)
SELECT m.version, m.created_at, m.status, m.train_rows, m.accuracy, m.macro_f1, m.eval_rows,
       m.sha256, m.size_bytes, m.sklearn_version, m.retrain_id, r.trigger,
       h.last_deployed_at, coalesce(h.times_deployed, 0) AS times_deployed,
       coalesce(h.history, []) AS history
FROM models m
LEFT JOIN retrains r ON r.id = m.retrain_id
LEFT JOIN history h ON h.version = m.version
ORDER BY m.created_at DESC, m.version DESC
"""
ROLLBACK_TARGETS = """
SELECT m.version, m.accuracy, m.macro_f1, max(d.ts) AS last_deployed_at
FROM models m LEFT JOIN deployments d ON d.version = m.version
WHERE m.status = $retired
GROUP BY m.version, m.accuracy, m.macro_f1
ORDER BY m.version DESC
"""
DEPLOYMENTS = "SELECT id, ts, version, previous_version, kind, reason FROM deployments ORDER BY id DESC LIMIT ?"

# What a deployment meant for one version, by (kind, role); ``{other}`` is the version on the other side.
K = AssignmentKind
WORDS = {
    (K.DEPLOY, "to"): "deployed",
    (K.DEPLOY, "from"): "replaced by {other}",
    (K.ROLLBACK, "to"): "restored by a rollback from {other}",
    (K.ROLLBACK, "from"): "rolled back to {other}",
    (K.AUTO_ROLLBACK, "to"): "restored automatically after {other} failed",
    (K.AUTO_ROLLBACK, "from"): "failed after deployment; rolled back automatically to {other}",
    (K.REPAIR, "to"): "recorded as deployed by the start-up repair",
    (K.REPAIR, "from"): "replaced by {other} (start-up repair)",
}
KIND_WORDS = {K.DEPLOY: "deployed", K.ROLLBACK: "rolled back", K.AUTO_ROLLBACK: "rolled back automatically",
              K.REPAIR: "repaired at start-up"}


def describe(kind: str, role: str, other: str | None) -> str:
    """One deployment from one version's point of view, in words.

    >>> describe("rollback", "from", "v0004")
    'rolled back to v0004'
    >>> describe("deploy", "to", None)
    'deployed'
    >>> describe("promote", "to", "v0002")
    'promote (from v0002)'
    """
    template = WORDS.get((kind, role))
    if template is None:
        side = "from" if role == "to" else "to"
        return f"{kind} ({side} {other})" if other else kind
    return template.format(other=other or "nothing")


def versions(db: Database) -> pd.DataFrame:
    """Every version, newest first, with metrics, checksum, trigger and its deployment history (oldest first)."""
    with db.read() as con:
        frame = con.execute(VERSIONS).df()
    frame["history"] = [list(h) if h is not None else [] for h in frame["history"]]
    return frame


def rollback_targets(db: Database) -> list[dict[str, Any]]:
    """Versions that served before and may be rolled back to (status 'retired'), newest first."""
    with db.read() as con:
        return rows_as_dicts(con.execute(ROLLBACK_TARGETS, {"retired": ModelStatus.RETIRED}))


def deployments(db: Database, *, limit: int = 200) -> pd.DataFrame:
    """The deployment log, newest first."""
    with db.read() as con:
        return con.execute(DEPLOYMENTS, [limit]).df()


_REQUESTED = re.compile(r"\s*\(requested from [^()]*(\(command #\d+\))?\)(?P<end>\.?)\s*$")


def command_result(message: str | None) -> str:
    """A command's result without the "(requested from X (command #N))" the worker appends: the command's own
    line already says who asked, and which command it is.

    >>> command_result("Rolled back from v0017 to v0016 (requested from demo operator (command #1)).")
    'Rolled back from v0017 to v0016.'
    >>> command_result("retrain #3 accepted: no metric got worse.")
    'retrain #3 accepted: no metric got worse.'
    """
    return _REQUESTED.sub(lambda m: m.group("end"), message or "").strip()
