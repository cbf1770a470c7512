"""Hyperparameter search: which SGD ``alpha`` to fit, chosen by cross-validation.

Off by default (``cv_folds = 0``): training fits its one fixed pipeline. With ``cv_folds`` of 2
or more, every candidate of ``search_alphas`` is fitted on ``cv_folds - 1`` stratified folds of
the training set and scored by macro-F1 on the remaining one; the best mean wins (ties go to
the candidate listed first) and :func:`engine.training.fit` fits it on all the rows.

The ``folds x candidates`` fits are independent of each other: joblib runs them, on this
machine (``search_jobs`` at once) or, when ``dask_scheduler`` names a Dask scheduler, on that
cluster's workers through joblib's Dask backend. Dask is an optional extra
(``requirements-dask.txt``) imported only in that case, so the runtime does not depend on it.
A missing extra, an unreachable scheduler or a cluster without workers is a
:class:`~engine.errors.TrainingError` that names the setting and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from engine.config import Settings
from engine.errors import TrainingError

log = logging.getLogger(__name__)

SCORING = "f1_macro"
# How long to wait for the scheduler to answer, and then for at least one worker (seconds).
DASK_CONNECT_SECONDS = 10.0


@dataclass(frozen=True)
class SearchPlan:
    """What to search and where. Build it with :func:`plan_from_settings`."""

    cv_folds: int
    alphas: tuple[float, ...]
    n_jobs: int = 1
    dask_scheduler: str = ""


@dataclass(frozen=True)
class SearchResult:
    alpha: float | None              # None when the search was skipped
    scores: tuple[tuple[float, float], ...]  # (alpha, mean macro-F1 over the folds), in candidate order
    cv_folds: int
    fits: int
    ran_on: str
    seconds: float
    skipped: str | None = None       # why no search ran, in words

    def as_params(self) -> dict[str, Any]:
        """The record stored with the model (JSON-ready)."""
        if self.skipped:
            return {"skipped": self.skipped, "cv_folds": self.cv_folds}
        return {
            "chosen_alpha": self.alpha,
            "scoring": "macro-F1, mean over the folds",
            "cv_folds": self.cv_folds,
            "scores": [{"alpha": a, "macro_f1": round(f, 6)} for a, f in self.scores],
            "fits": self.fits,
            "ran_on": self.ran_on,
            "seconds": round(self.seconds, 3),
        }


def plan_from_settings(settings: Settings) -> SearchPlan | None:
    """The search the settings ask for, or None when ``cv_folds`` is 0.

    >>> plan_from_settings(Settings()) is None
    True
    >>> plan_from_settings(Settings(cv_folds=3, search_alphas="1e-5, 1e-4")).alphas
    (1e-05, 0.0001)
    """
    if settings.cv_folds == 0:
        return None
    return SearchPlan(cv_folds=settings.cv_folds, alphas=settings.search_alpha_values, n_jobs=settings.search_jobs,
                      dask_scheduler=settings.dask_scheduler)


def search_alpha(pipeline: Pipeline, texts: Sequence[str], labels: np.ndarray, *, plan: SearchPlan, seed: int = 0,
                 connect_seconds: float | None = None) -> SearchResult:
    """Cross-validate ``pipeline`` (unfitted, its last step named ``clf``) over ``plan.alphas``.

    The folds are shuffled with ``seed``, so the same data and seed choose the same alpha
    wherever the fits run. The search is skipped (and says why) when a label has fewer rows
    than folds, since stratified folds could not all contain it.
    """
    values, counts = np.unique(labels, return_counts=True)
    if counts.min() < plan.cv_folds:
        rare = values[counts.argmin()]
        reason = (f"label {rare!r} has {counts.min()} training row(s), fewer than cv_folds = {plan.cv_folds}; "
                  f"the fixed alpha {pipeline.named_steps['clf'].alpha} was used")
        log.warning("hyperparameter search skipped: %s", reason)
        return SearchResult(None, (), plan.cv_folds, 0, "", 0.0, skipped=reason)
    search = GridSearchCV(
        pipeline,
        {"clf__alpha": list(plan.alphas)},
        scoring=SCORING,
        cv=StratifiedKFold(n_splits=plan.cv_folds, shuffle=True, random_state=seed),
        refit=False,              # training.fit fits the winner on every row, as it fits the fixed pipeline
        error_score="raise",      # a failing fit is a bug to see, not a NaN score to rank
        n_jobs=-1 if plan.dask_scheduler else plan.n_jobs,
    )
    started = time.perf_counter()
    connect_seconds = DASK_CONNECT_SECONDS if connect_seconds is None else connect_seconds
    with _where(plan, connect_seconds=connect_seconds) as ran_on, warnings.catch_warnings():
        # max_iter is a deliberate time budget; scikit-learn passes this filter on to the workers.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # An array, not a list: joblib's Dask backend sends an array argument to the cluster once
        # (client.scatter) where a list would be pickled into every one of the fits' tasks.
        search.fit(np.asarray(list(texts), dtype=object), labels)
    seconds = time.perf_counter() - started
    means = search.cv_results_["mean_test_score"]
    scores = tuple((float(a), float(m)) for a, m in zip(plan.alphas, means))
    best = float(search.best_params_["clf__alpha"])
    log.info("hyperparameter search on %s: alpha %g chosen from %s in %.2fs", ran_on, best,
             ", ".join(f"{a:g}: {m:.4f}" for a, m in scores), seconds)
    return SearchResult(best, scores, plan.cv_folds, len(plan.alphas) * plan.cv_folds, ran_on, seconds)


@contextlib.contextmanager
def _where(plan: SearchPlan, *, connect_seconds: float) -> Iterator[str]:
    """Run the joblib calls inside on this machine (joblib's default backend), or on the plan's Dask cluster."""
    if not plan.dask_scheduler:
        yield f"this machine (joblib, search_jobs = {plan.n_jobs})"
        return
    with _dask_client(plan.dask_scheduler, connect_seconds=connect_seconds) as (client, workers, threads):
        with joblib.parallel_config(backend="dask", client=client):
            yield f"dask {plan.dask_scheduler} ({workers} workers, {threads} threads)"


@contextlib.contextmanager
def _dask_client(address: str, *, connect_seconds: float) -> Iterator[tuple[Any, int, int]]:
    """A connected ``distributed.Client`` with at least one worker, and the cluster's size."""
    try:
        from distributed import Client  # joblib's "dask" backend needs it too
    except ImportError as exc:
        raise TrainingError(
            f"setting 'dask_scheduler' = {address!r} needs the optional Dask extra, which is not installed "
            f"({exc}): install it with `pip install -r requirements-dask.txt`, or leave dask_scheduler empty "
            "to search on this machine"
        ) from None
    try:
        client = Client(address, timeout=connect_seconds, set_as_default=False)
    except OSError as exc:
        raise TrainingError(
            f"setting 'dask_scheduler' = {address!r}: the scheduler cannot be reached ({exc}); check the address "
            "and that `dask scheduler` runs there, or leave dask_scheduler empty to search on this machine"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=connect_seconds)
        except TimeoutError:
            raise TrainingError(
                f"setting 'dask_scheduler' = {address!r}: the scheduler has no workers after {connect_seconds:g} s; "
                f"start some with `dask worker {address}`"
            ) from None
        threads = client.ncores()
        yield client, len(threads), sum(threads.values())
