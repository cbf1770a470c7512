"""Quarantine rules: logged queries and labels taken out of training and evaluation, reversibly.

A rule matches a row when every condition it gives holds: the row's ``source``, its model
version (a label's is the version that answered its query), and ``since <= ts < until`` on the
time the row claims. Rows are never deleted: lifting a rule brings them back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import rows_as_dicts

INSERT_RULE = """
INSERT INTO quarantine (created_at, source, model_version, since, until, reason) VALUES (?, ?, ?, ?, ?, ?)
RETURNING id
"""
SELECT_RULES = """
SELECT id, created_at, source, model_version, since, until, reason, lifted_at FROM quarantine
WHERE $all OR lifted_at IS NULL ORDER BY id
"""
SELECT_RULE = "SELECT id, created_at, source, model_version, since, until, reason, lifted_at FROM quarantine WHERE id = ?"
LIFT_RULE = "UPDATE quarantine SET lifted_at = ? WHERE id = ? AND lifted_at IS NULL"


def matches(rule: str, *, source: str, version: str, ts: str) -> str:
    """SQL that is true when the rule row ``rule`` matches a row with these column expressions.

    >>> matches("r", source="q.source", version="q.model_version", ts="q.ts").split(" AND ")[0]
    '(r.source IS NULL OR r.source = q.source)'
    """
    return (f"({rule}.source IS NULL OR {rule}.source = {source}) AND "
            f"({rule}.model_version IS NULL OR {rule}.model_version = {version}) AND "
            f"({rule}.since IS NULL OR {ts} >= {rule}.since) AND ({rule}.until IS NULL OR {ts} < {rule}.until)")


# Whether a query row q / a label row l (joined to its query q) is under an active rule.
QUERY_QUARANTINED = ("EXISTS (SELECT 1 FROM quarantine r WHERE r.lifted_at IS NULL AND "
                     + matches("r", source="q.source", version="q.model_version", ts="q.ts") + ")")
LABEL_QUARANTINED = ("EXISTS (SELECT 1 FROM quarantine r WHERE r.lifted_at IS NULL AND "
                     + matches("r", source="l.source", version="q.model_version", ts="l.ts") + ")")

# What one rule (given as parameters, not stored yet) would take out.
_PARAM_RULE = ("(SELECT $source::VARCHAR AS source, $version::VARCHAR AS model_version, $since::TIMESTAMP AS since, "
               "$until::TIMESTAMP AS until)")
PREVIEW = f"""
SELECT (SELECT count(*) FROM queries q, {_PARAM_RULE} p
        WHERE {matches("p", source="q.source", version="q.model_version", ts="q.ts")}) AS queries,
       (SELECT count(*) FROM labels l LEFT JOIN queries q ON q.id = l.query_id, {_PARAM_RULE} p
        WHERE {matches("p", source="l.source", version="q.model_version", ts="l.ts")}) AS labels
"""
# The values an operator can choose from: sources and versions in the log, with their row counts.
LOG_SOURCES = """
SELECT source, count(*) AS rows FROM (SELECT source FROM queries UNION ALL SELECT source FROM labels)
GROUP BY source ORDER BY rows DESC, source
"""
LOG_VERSIONS = """
SELECT model_version AS version, count(*) AS rows FROM queries WHERE model_version IS NOT NULL
GROUP BY model_version ORDER BY model_version
"""


def add_rule(con: duckdb.DuckDBPyConnection, *, ts: datetime, source: str | None, version: str | None,
             since: datetime | None, until: datetime | None, reason: str) -> int:
    """Store a rule inside an open write; return its id. Times are naive UTC."""
    return con.execute(INSERT_RULE, [ts, source, version, since, until, reason]).fetchone()[0]


def lift_rule(con: duckdb.DuckDBPyConnection, rule_id: int, *, ts: datetime) -> bool:
    """Lift an active rule inside an open write; False if there is no such active rule."""
    return con.execute(LIFT_RULE, [ts, rule_id]).fetchone()[0] == 1


def get_rule(con: duckdb.DuckDBPyConnection, rule_id: int) -> dict[str, Any] | None:
    rows = rows_as_dicts(con.execute(SELECT_RULE, [rule_id]))
    return rows[0] if rows else None


def list_rules(db: Database, *, include_lifted: bool = True) -> list[dict[str, Any]]:
    """Every rule (or only the active ones), oldest first: id, created_at, source, model_version,
    since, until, reason, lifted_at (None while active)."""
    with db.read() as con:
        return rows_as_dicts(con.execute(SELECT_RULES, {"all": include_lifted}))


def preview(db: Database, *, source: str | None, version: str | None, since: datetime | None,
            until: datetime | None) -> dict[str, int]:
    """How many logged queries and labels a rule with these conditions matches: {"queries": n, "labels": m}."""
    with db.read() as con:
        queries, labels = con.execute(PREVIEW, {"source": source, "version": version, "since": since,
                                                "until": until}).fetchone()
    return {"queries": queries, "labels": labels}


def log_choices(db: Database) -> dict[str, list[tuple[str, int]]]:
    """The sources and model versions found in the log, each with its row count (for pickers)."""
    with db.read() as con:
        return {"sources": [tuple(r) for r in con.execute(LOG_SOURCES).fetchall()],
                "versions": [tuple(r) for r in con.execute(LOG_VERSIONS).fetchall()]}
