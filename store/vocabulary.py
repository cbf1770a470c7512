"""The project's words: one ``StrEnum`` per set, defined once.

Every status, outcome, trigger and kind that is stored or compared is a member of one of
these enums; the strings appear as literals only here and in migrations (``store/schema.py``).
A ``StrEnum`` member *is* its string (``ModelStatus.CHAMPION == "champion"``), so members go
into SQL as bound parameters and into JSON unchanged, and rows read back compare equal.

This module lives in ``store/`` (and imports nothing) so that ``store/`` and ``engine/`` share
it without ``store/`` importing ``engine/``. The names follow the field: *champion* and
*candidate* (MLflow's aliases), *evaluation (holdout) set*, *alias*, *drift*.
"""

from __future__ import annotations

from enum import StrEnum


class ModelStatus(StrEnum):
    """Where a model version is in its life (``models.status``); see ``engine.lifecycle``."""

    CANDIDATE = "candidate"        # saved by a retrain, being judged
    REJECTED = "rejected"          # the gate refused it
    INCONCLUSIVE = "inconclusive"  # the gate could not tell (noninferiority mode): the champion stays
    FAILED = "failed"              # it could not be validated or serve, or its retrain died
    CHAMPION = "champion"          # it serves: the champion alias points at it
    RETIRED = "retired"            # it served before; it may be rolled back to


class Alias(StrEnum):
    """Names that point at one version at a time (``alias_history.alias``)."""

    CHAMPION = "champion"


class AssignmentKind(StrEnum):
    """Why an alias moved (``alias_history.kind``, also the ``deployments`` view's ``kind``)."""

    DEPLOY = "deploy"                # a candidate passed the gate and serves
    ROLLBACK = "rollback"            # an operator (or the demo) went back to a retired version
    AUTO_ROLLBACK = "auto_rollback"  # a new champion could not serve: the previous one restored at once
    REPAIR = "repair"                # a switch a crash left unrecorded, recorded at start-up


class GateOutcome(StrEnum):
    """The gate's answer about a candidate (``retrains.decision``)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    INCONCLUSIVE = "inconclusive"


class GateMode(StrEnum):
    """How the gate judges (setting ``gate_mode``); see ``engine.gate``."""

    POINT = "point"                    # the product rule: each metric >= the champion's - tolerance
    NONINFERIORITY = "noninferiority"  # each paired interval's lower end must clear -tolerance


class Role(StrEnum):
    """Which side of a comparison a scored model was on (``evaluations.role``)."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"


class RetrainStatus(StrEnum):
    """How a retrain ended (``retrains.status``); an inconclusive gate is 'rejected' + decision."""

    RUNNING = "running"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SKIPPED = "skipped"      # the training set was the champion's, unchanged: nothing was fitted
    FAILED = "failed"


class Trigger(StrEnum):
    """What started a retrain (``retrains.trigger``)."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"
    ADAPTIVE = "adaptive"
    MANUAL = "manual"
    DEMO = "demo"
    DRIFT = "drift"
    FALLBACK = "fallback"
    ADOPT = "adopt"            # a fitted model file adopted (python -m engine adopt), not fitted here


SCHEDULED_TRIGGERS = (Trigger.WEEKLY, Trigger.MONTHLY, Trigger.ADAPTIVE)


class CommandKind(StrEnum):
    """What the dashboard or CLI asks the worker to do (``commands.kind``)."""

    RETRAIN = "retrain"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"
    ADOPT = "adopt"


class CommandStatus(StrEnum):
    """Where a queued command is (``commands.status``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EventKind(StrEnum):
    """What an event is about (``events.kind``)."""

    REGISTRY = "registry"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    GATE = "gate"
    RETRAIN = "retrain"
    REPAIR = "repair"
    FALLBACK = "fallback"
    DRIFT = "drift"
    WORKER = "worker"
    SCHEDULER = "scheduler"
    INGEST = "ingest"
    IMPORT = "import"
    DEMO = "demo"
    QUARANTINE = "quarantine"
    ROLLUPS = "rollups"          # the rollups disagreed with the log and were rebuilt from it


class Severity(StrEnum):
    """How much an event matters (``events.severity``)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
