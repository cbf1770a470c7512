"""Versioned migrations: the schema is built and upgraded one numbered step at a time.

All timestamps are stored as naive UTC ``TIMESTAMP``; the dashboard shows them in the
user's local zone. JSON documents are stored as text (query them with DuckDB's json functions).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from store import rollups
from store.db import Database
from store.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            # Every query a model answered (logged through engine.Classifier or imported).
            """CREATE TABLE queries (
                id VARCHAR PRIMARY KEY,
                ts TIMESTAMP NOT NULL,
                text VARCHAR NOT NULL,
                predicted_label VARCHAR,
                confidence DOUBLE,
                model_version VARCHAR,
                source VARCHAR NOT NULL
            )""",
            # True labels from people: feedback on a logged query, or imported labelled rows.
            """CREATE TABLE labels (
                id VARCHAR PRIMARY KEY,
                ts TIMESTAMP NOT NULL,
                query_id VARCHAR,
                text VARCHAR,
                label VARCHAR NOT NULL,
                source VARCHAR NOT NULL
            )""",
            "CREATE SEQUENCE event_ids START 1",
            """CREATE TABLE events (
                id BIGINT PRIMARY KEY DEFAULT nextval('event_ids'),
                ts TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                severity VARCHAR NOT NULL,
                version VARCHAR,
                message VARCHAR NOT NULL,
                details VARCHAR
            )""",
            # The registry: every trained version, kept.
            """CREATE TABLE models (
                version VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                status VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                size_bytes BIGINT,
                sklearn_version VARCHAR NOT NULL,
                params VARCHAR,
                labels VARCHAR,
                train_rows INTEGER,
                train_hash VARCHAR,
                accuracy DOUBLE,
                macro_f1 DOUBLE,
                eval_rows INTEGER,
                report VARCHAR,
                retrain_id BIGINT
            )""",
            "CREATE SEQUENCE deployment_ids START 1",
            """CREATE TABLE deployments (
                id BIGINT PRIMARY KEY DEFAULT nextval('deployment_ids'),
                ts TIMESTAMP NOT NULL,
                version VARCHAR NOT NULL,
                previous_version VARCHAR,
                kind VARCHAR NOT NULL,
                reason VARCHAR
            )""",
            "CREATE SEQUENCE retrain_ids START 1",
            """CREATE TABLE retrains (
                id BIGINT PRIMARY KEY DEFAULT nextval('retrain_ids'),
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                trigger VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                command_id BIGINT,
                champion_version VARCHAR,
                candidate_version VARCHAR,
                decision VARCHAR,
                reason VARCHAR,
                champion_accuracy DOUBLE,
                champion_macro_f1 DOUBLE,
                candidate_accuracy DOUBLE,
                candidate_macro_f1 DOUBLE,
                baseline_accuracy DOUBLE,
                baseline_macro_f1 DOUBLE,
                eval_rows INTEGER,
                rows_in INTEGER,
                malformed INTEGER,
                low_confidence INTEGER,
                conflicts INTEGER,
                duplicates INTEGER,
                reserved_for_eval INTEGER,
                train_rows INTEGER,
                duration_s DOUBLE,
                stages VARCHAR
            )""",
            # Every model scored on an evaluation set: the data behind accuracy-over-time charts.
            """CREATE TABLE evaluations (
                retrain_id BIGINT NOT NULL,
                ts TIMESTAMP NOT NULL,
                version VARCHAR NOT NULL,
                role VARCHAR NOT NULL,
                accuracy DOUBLE NOT NULL,
                macro_f1 DOUBLE NOT NULL,
                eval_rows INTEGER NOT NULL
            )""",
            "CREATE SEQUENCE command_ids START 1",
            # The queue between the dashboard/CLI and the worker.
            """CREATE TABLE commands (
                id BIGINT PRIMARY KEY DEFAULT nextval('command_ids'),
                created_at TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                args VARCHAR,
                source VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                progress DOUBLE,
                stage VARCHAR,
                message VARCHAR
            )""",
            # Scheduler jobs: what the worker last did and will do next.
            """CREATE TABLE jobs (
                name VARCHAR PRIMARY KEY,
                next_run TIMESTAMP,
                last_run TIMESTAMP,
                last_result VARCHAR,
                last_error VARCHAR,
                runs INTEGER NOT NULL DEFAULT 0,
                failures INTEGER NOT NULL DEFAULT 0
            )""",
            # Small facts: scheduler paused, worker heartbeat, fallback in use.
            """CREATE TABLE state (
                key VARCHAR PRIMARY KEY,
                value VARCHAR,
                updated_at TIMESTAMP NOT NULL
            )""",
        ],
    ),
    (
        2,
        "the champion alias with an append-only history; model statuses champion and inconclusive",
        [
            # Every move of an alias: who (actor), when, why, from which version, by which operation.
            # It takes over the deployments table (same ids, same sequence); `deployments` stays as a view.
            """CREATE TABLE alias_history (
                id BIGINT PRIMARY KEY DEFAULT nextval('deployment_ids'),
                ts TIMESTAMP NOT NULL,
                alias VARCHAR NOT NULL,
                version VARCHAR NOT NULL,
                previous_version VARCHAR,
                kind VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                reason VARCHAR
            )""",
            """INSERT INTO alias_history (id, ts, alias, version, previous_version, kind, actor, reason)
               SELECT id, ts, 'champion', version, previous_version, kind, 'unrecorded (before schema 2)', reason
               FROM deployments ORDER BY id""",
            "DROP TABLE deployments",
            """CREATE VIEW deployments AS
               SELECT id, ts, version, previous_version, kind, reason FROM alias_history WHERE alias = 'champion'""",
            # The serving version is the champion; 'inconclusive' was stored as 'rejected' + the retrain's decision.
            "UPDATE models SET status = 'champion' WHERE status = 'active'",
            """UPDATE models SET status = 'inconclusive'
               WHERE status = 'rejected' AND version IN (
                   SELECT candidate_version FROM retrains WHERE decision = 'inconclusive' AND candidate_version IS NOT NULL)""",
        ],
    ),
    (
        3,
        "the query log and the labels without a primary-key index",
        [
            # The index on a random id (a uuid per row) was most of the file (123 MB of a 1M-query store
            # against 30 MB without it), most of an insert's time (100k rows into 1M: 3.3 s against 0.2 s)
            # and was rewritten whole at every checkpoint, so ingest slowed as the log grew (issue 15).
            # A repeat (a spool file ingested twice) is now found by id among the rows stored in the
            # batch's own time span (store/querylog.py), which the time order of the log keeps to a few row groups.
            """CREATE TABLE queries_unindexed (
                id VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                text VARCHAR NOT NULL,
                predicted_label VARCHAR,
                confidence DOUBLE,
                model_version VARCHAR,
                source VARCHAR NOT NULL
            )""",
            "INSERT INTO queries_unindexed SELECT id, ts, text, predicted_label, confidence, model_version, source FROM queries ORDER BY ts",
            "DROP TABLE queries",
            "ALTER TABLE queries_unindexed RENAME TO queries",
            """CREATE TABLE labels_unindexed (
                id VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                query_id VARCHAR,
                text VARCHAR,
                label VARCHAR NOT NULL,
                source VARCHAR NOT NULL
            )""",
            "INSERT INTO labels_unindexed SELECT id, ts, query_id, text, label, source FROM labels ORDER BY ts",
            "DROP TABLE labels",
            "ALTER TABLE labels_unindexed RENAME TO labels",
        ],
    ),
    (
        4,
        "arrival times: when each logged query and label reached the store, and the claims clamped to it",
        [
            # ``ts`` is the time a row claims (a client's clock, an imported column); ``arrived_at`` is
            # this machine's clock when the row was stored: "new since the last retrain" counts by it.
            # A claim more than a few minutes past the arrival (a client's clock or zone is wrong) is
            # stored with ts = arrived_at and kept in ``claimed_ts`` (NULL otherwise), where the repeat
            # check of migration 3 finds it again (store/querylog.py).
            "ALTER TABLE queries ADD COLUMN arrived_at TIMESTAMP",
            "ALTER TABLE queries ADD COLUMN claimed_ts TIMESTAMP",
            "ALTER TABLE labels ADD COLUMN arrived_at TIMESTAMP",
            "ALTER TABLE labels ADD COLUMN claimed_ts TIMESTAMP",
            # Rows stored before: their claimed time is all that is known.
            "UPDATE queries SET arrived_at = ts",
            "UPDATE labels SET arrived_at = ts",
        ],
    ),
    (
        5,
        "quarantine rules, and what each retrain left out",
        [
            "CREATE SEQUENCE quarantine_ids START 1",
            # A rule takes the logged queries and labels it matches out of training and evaluation
            # until it is lifted. Every given condition must hold: source, model version, since <= ts < until.
            """CREATE TABLE quarantine (
                id BIGINT PRIMARY KEY DEFAULT nextval('quarantine_ids'),
                created_at TIMESTAMP NOT NULL,
                source VARCHAR,
                model_version VARCHAR,
                since TIMESTAMP,
                until TIMESTAMP,
                reason VARCHAR NOT NULL,
                lifted_at TIMESTAMP
            )""",
            # Rows left out before the funnel's rows_in: under a quarantine rule, pseudo labels from
            # versions never deployed, pseudo labels older than pseudo_label_days.
            "ALTER TABLE retrains ADD COLUMN quarantined INTEGER",
            "ALTER TABLE retrains ADD COLUMN pseudo_not_deployed INTEGER",
            "ALTER TABLE retrains ADD COLUMN pseudo_too_old INTEGER",
        ],
    ),
    (
        6,
        "rollups the dashboard reads: counts per 15-minute bucket, confidence bins, live-accuracy feedback",
        # Kept current by every writer of the log (store/rollups.py); built here from the log already stored.
        rollups.CREATE + rollups.FILL_6,
    ),
    (
        7,
        "live-accuracy feedback per bucket: the first labels row its refresh reads",
        rollups.MIGRATION_7,
    ),
    (
        8,
        "what each retrain's training cap left out",
        [
            # Training texts beyond the setting max_train_rows (a step of the funnel, inside rows_in).
            "ALTER TABLE retrains ADD COLUMN over_training_cap INTEGER",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def current_version(db: Database) -> int:
    """The schema version of the store (0 for a new file)."""
    with db.read() as con:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() AND table_name = 'schema_version'"
        ).fetchone()[0]
        if not exists:
            return 0
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def migrate(db: Database) -> int:
    """Apply every migration the store lacks, each in its own transaction; return the new version."""
    with db.write() as con:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
        have = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        if have > LATEST:
            return have
        for version, name, statements in MIGRATIONS:
            if version <= have:
                continue
            log.info("applying migration %s: %s", version, name)
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)", [version, name])
            have = version
        return have


_migrated: set[Path] = set()
_lock = threading.Lock()


def open_store(path: Path | str, *, create: bool = True) -> Database:
    """The store at ``path``, created and migrated on first use in this process.

    With ``create=False`` a missing file is not created (readers on a fresh machine
    get an empty view instead; see ``Database.exists``).
    """
    path = Path(path).absolute()
    db = Database(path)
    with _lock:
        if path in _migrated and path.exists():
            return db
        if not path.exists() and not create:
            return db
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc.strerror}") from exc
        # A reader's check first: only a store that is behind takes the write lock to migrate.
        version = current_version(db) if path.exists() else 0
        if version < LATEST:
            version = migrate(db)
        if version > LATEST:
            raise StoreError(
                f"{path} was written by a newer Retrainer (schema {version}, this one knows {LATEST}): upgrade Retrainer"
            )
        _migrated.add(path)
    return db
