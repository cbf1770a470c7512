"""Deploying a version, validating it first, and rolling back.

The active pointer file (``models/ACTIVE.json``) is the truth serving processes
follow; the store records the same facts for people. A deployment:

1. validates the saved file: loaded back through the predictors' loader (checksum,
   scikit-learn version), predictions on a smoke sample (the newest texts in the store)
   equal the in-memory model's;
2. switches the pointer atomically;
3. has the worker's own predictor load the new pointer and answer; if it cannot, the
   previous pointer is restored at once and the event says why (automatic rollback);
4. records the status change, the champion alias move and an event in one transaction.

Statuses, the alias and the pointer file are changed only through ``engine.lifecycle``;
this module decides *whether* a version may serve. A crash between 2 and 4 is repaired at
the next worker start (``engine.repair`` -> ``ModelRegistry.reconcile``).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from engine import faults, registry
from engine.classifier import load_serving_model
from engine.context import Context
from engine.errors import InputError, ModelLoadError, RegistryError
from engine.lifecycle import ModelRegistry, check_transition, ref_of
from store import querylog
from store.db import Connection
from store.vocabulary import AssignmentKind, ModelStatus

log = logging.getLogger(__name__)

# One switch of the active version at a time in this process: the worker rolls back on its control
# thread while its executor may be deploying a candidate (engine.worker). Re-entrant: rollback deploys.
_switching = threading.RLock()


def switching() -> threading.RLock:
    """The lock held while a switch of the active version is decided and made (``with switching(): ...``)."""
    return _switching


def _one_switch_at_a_time(function):
    @functools.wraps(function)
    def locked(*args, **kwargs):
        with _switching:
            return function(*args, **kwargs)
    return locked

# How many texts from the store the smoke test asks the saved file to answer.
SMOKE_SIZE = 20


@dataclass(frozen=True)
class DeployResult:
    deployed: bool
    version: str
    previous: str | None
    message: str


def smoke_texts(ctx: Context, ref: registry.ModelRef) -> list[str]:
    """The texts a deployment is smoke-tested on: the newest logged and labelled texts in the store.

    They fit whatever labels the model serves. A store without texts (never the case after a
    retrain, whose gate needs labelled rows) falls back to the model's own label names, then its
    version name: any string is a valid input to a text pipeline.
    """
    return querylog.recent_texts(ctx.db, limit=SMOKE_SIZE) or list(ref.labels) or [ref.version]


def validate(ctx: Context, ref: registry.ModelRef, in_memory: Any, *, smoke: Sequence[str] | None = None) -> None:
    """Load the saved file as predictors will and compare its answers on ``smoke`` (default
    :func:`smoke_texts`); raise ModelLoadError if they differ (probabilities within 1e-9)."""
    loaded = registry.load_model(ctx.settings.registry_dir, ref.version, sha256=ref.sha256, sklearn_version=ref.sklearn_version)
    texts = list(smoke) if smoke is not None else smoke_texts(ctx, ref)
    if in_memory is not None:
        expected = in_memory.predict_proba(texts)
        got = loaded.predict_proba(texts)
        if expected.shape != got.shape or not np.allclose(expected, got, rtol=0, atol=1e-9):
            raise ModelLoadError(f"model {ref.version}: the saved file answers differently from the trained model")
    else:
        loaded.predict(texts)


def _check_serving(ctx: Context, version: str, text: str) -> str | None:
    """Load the pointer as a fresh predictor would and answer one query; None if all is well."""
    try:
        loaded, status = load_serving_model(ctx.settings.registry_dir)
    except ModelLoadError as exc:
        return str(exc)
    if loaded is None or status.fallback or loaded.version != version:
        return status.fallback_reason or f"the predictor serves {loaded.version if loaded else 'nothing'}, not {version}"
    try:
        loaded.pipeline.predict_proba([text])
    except Exception as exc:  # any failure to answer counts
        return f"the predictor could not answer a query: {type(exc).__name__}: {exc}"
    return None


@_one_switch_at_a_time
def deploy(ctx: Context, version: str, *, kind: AssignmentKind, reason: str, in_memory: Any = None,
           actor: str = "worker", record: Callable[[Connection], None] | None = None) -> DeployResult:
    """Make ``version`` the champion after validating it; restore the previous one if serving fails.

    ``kind`` is DEPLOY for a candidate that passed the gate, ROLLBACK for a retired version;
    ``actor`` says who asked (worker, dashboard, cli, demo). ``record(con)``, when given, writes more
    in the transaction that records a successful deployment (a retrain's outcome: one commit for
    both); it is not called when the deployment fails. Raises RegistryError when the
    version is unknown or its status does not allow the move (``engine.lifecycle``), and
    ModelLoadError when the saved file fails validation (nothing is switched then).
    """
    registry.check_version(version)
    models = ModelRegistry(ctx)
    row = check_transition(models.get(version), "promote" if kind == AssignmentKind.DEPLOY else "roll back to",
                           name=version)
    ref = ref_of(row)
    smoke = smoke_texts(ctx, ref)
    validate(ctx, ref, in_memory, smoke=smoke)
    faults.point("deploy_after_validate")
    now = ctx.clock()
    switch = models.switch(row, kind=kind, ts=now)
    previous = switch.previous
    faults.point("deploy_after_switch")
    problem = _check_serving(ctx, version, smoke[0])
    faults.point("deploy_after_check")
    if problem is not None:
        models.switch_back(switch)
        message = (
            f"Deployment of {version} failed after the switch: {problem}. "
            + (f"Rolled back automatically to {previous}." if previous else "No earlier version to restore; nothing serves.")
        )
        with ctx.db.write() as con:
            models.restore(con, version, previous=previous, actor=actor, message=message, problem=problem, ts=now)
        log.error(message)
        return DeployResult(False, version, previous, message)
    with ctx.db.write() as con:
        models.promote(con, version, previous=previous, kind=kind, actor=actor, reason=reason, ts=now)
        if record is not None:
            record(con)
    log.info("deployed %s (previous %s)", version, previous)
    return DeployResult(True, version, previous, reason)


@_one_switch_at_a_time
def rollback(ctx: Context, *, to: str | None = None, why: str = "requested", actor: str = "worker") -> DeployResult:
    """Return to the version that served before the champion, or to ``to``; one alias move and one event.

    A damaged pointer file is first rewritten from the store (``ModelRegistry.repair_pointer``),
    so the rollback a damaged pointer calls for can run.
    """
    models = ModelRegistry(ctx)
    models.repair_pointer(ts=ctx.clock())
    pointer = models.pointer()
    if pointer is None:
        raise RegistryError("nothing is deployed yet, so there is nothing to roll back")
    current = pointer.active.version
    if to is None:
        candidates = [h.version for h in pointer.history if h.version != current]
        if not candidates:
            raise RegistryError(f"{current} is the only version ever deployed: there is no earlier version to roll back to")
        target = candidates[0]
    else:
        target = registry.check_version(to.strip())
        registry.model_file(ctx.settings.registry_dir, target)
    if target == current:
        raise RegistryError(f"{target} is already the champion")
    row = models.get(target)
    if row is None:
        deployable = (ModelStatus.RETIRED, ModelStatus.CHAMPION)
        known = ", ".join(m.version for m in models.versions() if m.status in deployable) or "none"
        raise InputError(f"version {target} does not exist: deployable versions are {known}")
    if row.status != ModelStatus.RETIRED:
        raise RegistryError(
            f"version {target} is {row.status}: only versions that served before (retired) can be rolled back to"
        )
    message = f"Rolled back from {current} to {target} ({why})."
    faults.point("rollback_before_deploy")
    result = deploy(ctx, target, kind=AssignmentKind.ROLLBACK, reason=message, actor=actor)
    if result.deployed:
        faults.point("rollback_after_deploy")
    return result
