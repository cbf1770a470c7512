"""One retrain cycle: training set -> fit -> save -> score -> gate -> deploy -> record.

``run_cycle`` never leaves a retrain 'running': it ends accepted, rejected, skipped (the training
set is the champion's, unchanged) or failed,
with the reason in words, the data-quality funnel, both models' metrics and the time
of each stage written to the store.

An *inconclusive* gate decision (noninferiority mode, or too little evidence) keeps the
champion like a rejection: the retrain's status is 'rejected' (the dashboard's filters and
counts know three statuses) and its ``decision`` column says 'inconclusive'.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

import sklearn

from engine import faults, fingerprint, registry
from engine.adopt import normalisation_note
from engine.context import Context
from engine.dataset import TrainingSet, build_training_set
from engine.deployment import deploy, switching
from engine.errors import ModelLoadError, RetrainerError, TrainingError
from engine.evaluation import Scores, majority_baseline, predict_and_calibrate, score_predictions
from engine.evaluation_counts import EvaluationCounts
from engine.gate import Decision, decide
from engine.label_mix import known_labels
from engine.lifecycle import ModelRegistry
from engine.prediction_cache import PredictionCache, text_keys
from engine.stats import compare
from engine.training import FittedModel, fit
from engine.tuning import plan_from_settings
from store import querylog
from store.events import record_event
from store.models import best_deployed, get_model, model_versions, set_model_metrics
from store.vocabulary import (AssignmentKind, EventKind, GateOutcome, ModelStatus, RetrainStatus, Role, Severity,
                              Trigger)
from store.retrains import add_evaluation, finish_retrain, start_retrain

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

TRIGGERS = tuple(Trigger)
# Deployed versions (besides the champion) re-scored for the slow-decay guard, best stored macro-F1 first.
BEST_TO_RESCORE = 3


@dataclass
class CycleResult:
    retrain_id: int
    status: RetrainStatus       # accepted, rejected, skipped (training set unchanged) or failed
    reason: str
    candidate: str | None = None
    champion: str | None = None
    deployed: bool = False
    duration_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    decision: GateOutcome | None = None  # the gate's outcome; inconclusive ends with status rejected

    def summary(self) -> str:
        """"retrain #3 accepted: no metric got worse. (...)": the reason without its own leading "Accepted: "."""
        reason = self.reason
        if reason.lower().startswith(f"{self.status}:"):
            reason = reason[len(self.status) + 1:].lstrip()
        return f"retrain #{self.retrain_id} {self.status}: {reason}"


def _no_progress(fraction: float, stage: str) -> None:
    """The progress callback when the caller wants none: ignores ``fraction`` (0-1) and ``stage``."""


def _next_version(ctx: Context) -> str:
    with ctx.db.read() as con:
        versions = model_versions(con)
    numbers = [registry.version_number(v) for v in versions]
    on_disk = [registry.version_number(p.stem) for p in ctx.settings.registry_dir.glob("v*" + registry.MODEL_SUFFIX)
               if registry.VERSION_PATTERN.match(p.stem)]
    return registry.version_name(max(numbers + on_disk + [0]) + 1)


def prediction_cache(ctx: Context) -> PredictionCache:
    """Where each version's answers on evaluation texts are kept between retrains (engine/prediction_cache.py)."""
    return PredictionCache(ctx.settings.home / "cache" / "predictions")


def evaluation_counts(ctx: Context, texts: list[str], *, keys=None) -> EvaluationCounts:
    """The evaluation texts' n-gram counts, kept between retrains in ``<home>/cache/counts``
    (engine/evaluation_counts.py): each model's TF-IDF features without re-analysing the texts."""
    return EvaluationCounts(texts, folder=ctx.settings.home / "cache" / "counts", keys=keys)


def _champion(ctx: Context, pointer: registry.ActivePointer | None = None,
              ) -> tuple[str | None, object | None, str | None, str | None]:
    """(version, model, problem, sha256): the version serving now, loaded as predictors load it.

    That is the active version, or, when it cannot be loaded (damaged, or a pickle from another
    scikit-learn that does not verify), the newest earlier version that can: the one the fallback
    serves. ``problem`` says why the active version was passed over; with nothing loadable the
    model is None and ``version`` is the active one. ``pointer``: the active pointer already read
    (the gate keeps the one it scored against, see :func:`_champion_changed`); read here if None.
    Raises ModelLoadError when the pointer file is damaged.
    """
    if pointer is None:
        pointer = registry.read_active(ctx.settings.registry_dir)
    if pointer is None:
        return None, None, None, None
    problems = []
    for ref in (pointer.active, *pointer.history):
        try:
            model = registry.load_model(ctx.settings.registry_dir, ref.version, sha256=ref.sha256,
                                        sklearn_version=ref.sklearn_version)
        except ModelLoadError as exc:
            problems.append(str(exc))
            continue
        return ref.version, model, (problems[0] if problems else None), ref.sha256
    return pointer.active.version, None, "; ".join(problems), pointer.active.sha256


@dataclass(frozen=True)
class AdoptRequest:
    """A fitted model file to adopt instead of fitting (``python -m engine adopt``; see engine.adopt)."""

    path: str
    note: str = ""


def run_cycle(ctx: Context, *, trigger: str, command_id: int | None = None, progress: Progress = _no_progress,
              adopt: AdoptRequest | None = None, force: bool = False) -> CycleResult:
    """Run one full retrain; return its outcome (never raises for a failed cycle).

    With ``adopt`` (trigger "adopt") the file's model takes the place of the fit: checked on the stored
    texts, saved as the next version, scored on the same evaluation rows, then made the first champion
    when nothing serves, or gated against the champion like any candidate.

    When the clean training set's hash equals the champion's (``models.train_hash``), its :func:`recipe`
    too, and the champion serves as it was pickled by this scikit-learn, nothing is fitted: the retrain
    ends 'skipped' ("training set unchanged since v0034") and the champion stays. ``force=True``
    (``retrain --force``) trains anyway.
    """
    if (trigger == Trigger.ADOPT) != (adopt is not None):
        raise ValueError("trigger 'adopt' goes with an AdoptRequest, and only it")
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}: use one of {', '.join(TRIGGERS)}")
    started = time.perf_counter()
    retrain_id = start_retrain(ctx.db, trigger=trigger, ts=ctx.clock(), command_id=command_id)
    stages: dict[str, float] = {}
    record: dict = {}

    def stage(name: str, fraction: float) -> None:
        stages[name] = time.perf_counter()
        progress(fraction, name)

    outcome = _Outcome(ctx, retrain_id, trigger, started=started, stages=stages, record=record)
    try:
        result = _cycle(ctx, retrain_id, trigger, stage, record, adopt, force=force, outcome=outcome)
    except RetrainerError as exc:
        result = CycleResult(retrain_id, RetrainStatus.FAILED, str(exc))
    except Exception as exc:  # a bug or an environment fault: recorded, never silent
        log.error("retrain #%d crashed:\n%s", retrain_id, traceback.format_exc())
        result = CycleResult(retrain_id, RetrainStatus.FAILED, f"unexpected error: {type(exc).__name__}: {exc}")
    if result is not outcome.written:  # not yet recorded with the cycle's last write (see _Outcome)
        saved = record.get("saved_version")
        if result.status == RetrainStatus.FAILED and result.candidate is None:
            result.candidate = saved  # the version was saved before the failure: name it
        # A failed cycle leaves no version waiting as a 'candidate' (the dashboard would show it pending).
        left_candidate = (result.status == RetrainStatus.FAILED and saved is not None
                          and _status_of(ctx, saved) == ModelStatus.CANDIDATE)
        with ctx.db.write() as con:
            outcome.write(con, result, left_candidate=left_candidate)
        outcome.written = result
    progress(1.0, "done")
    log.info(result.summary())
    return result


class _Outcome:
    """Writes a retrain's outcome (its ``retrains`` row finished, and for a failed or skipped cycle
    the event saying why) inside a given write transaction.

    A cycle that ends with a write of its own records its outcome in that same transaction: a
    rejected candidate with the gate's decision (``_record_decision``), an accepted one with its
    deployment (``engine.deployment.deploy``'s ``record``). One attach, replay and commit of the
    store fewer per retrain (issue 15), and a crash can no longer leave a decided or deployed
    candidate beside a retrain still 'running'; what a crash before that commit leaves (a candidate
    registered, the pointer perhaps switched, the retrain running) is what start-up repair already
    handles (engine/repair.py, tests/test_crash.py). Every other ending (failed, skipped) is
    recorded by ``run_cycle`` in a write of its own, as before.
    """

    def __init__(self, ctx: Context, retrain_id: int, trigger: str, *, started: float, stages: dict[str, float],
                 record: dict):
        self.ctx, self.retrain_id, self.trigger = ctx, retrain_id, trigger
        self.started, self.stages, self.record = started, stages, record
        self.written: CycleResult | None = None  # the result once its transaction committed

    def write(self, con, result: CycleResult, *, left_candidate: bool = False) -> None:
        """Record ``result`` in ``con``'s open transaction; ``left_candidate``: also fail the version it saved.

        The caller sets :attr:`written` to ``result`` once the transaction has committed.
        """
        record, retrain_id, trigger = self.record, self.retrain_id, self.trigger
        saved = record.get("saved_version")
        result.duration_s = time.perf_counter() - self.started
        result.stages = _durations(self.stages, self.started)
        now = self.ctx.clock()
        row = {k: v for k, v in record.items() if k != "saved_version"}
        row.update(status=result.status, reason=result.reason, finished_at=now, duration_s=result.duration_s,
                   stages=result.stages, candidate_version=result.candidate, champion_version=result.champion)
        if result.status in (RetrainStatus.ACCEPTED, RetrainStatus.REJECTED, RetrainStatus.SKIPPED):
            row["decision"] = result.decision or result.status
        finish_retrain(con, retrain_id, row)
        if left_candidate:
            ModelRegistry(self.ctx).fail(con, saved, ts=now, why=result.reason, event=False)  # the retrain event says why
        if result.status == RetrainStatus.FAILED:
            record_event(con, ts=now, kind=EventKind.RETRAIN, severity=Severity.ERROR, version=result.candidate,
                         message=f"Retrain #{retrain_id} ({trigger}) failed: {result.reason}",
                         details={"retrain_id": retrain_id, "trigger": trigger})
        if result.status == RetrainStatus.SKIPPED:
            record_event(con, ts=now, kind=EventKind.RETRAIN, severity=Severity.INFO, version=result.champion,
                         message=f"Retrain #{retrain_id} ({trigger}) skipped: {result.reason}",
                         details={"retrain_id": retrain_id, "trigger": trigger, "decision": RetrainStatus.SKIPPED})


def _status_of(ctx: Context, version: str) -> str | None:
    try:
        row = get_model(ctx.db, version)
    except RetrainerError:  # the outcome is still recorded below; the status stays as it was
        log.exception("could not read the status of %s", version)
        return None
    return row["status"] if row else None


def _durations(stages: dict[str, float], started: float) -> dict[str, float]:
    names = list(stages)
    marks = [stages[n] for n in names] + [time.perf_counter()]
    return {n: round(marks[i + 1] - marks[i], 4) for i, n in enumerate(names)}


def _best_deployed(ctx: Context, eval_set, *, champion_version: str | None, champion: Scores | None,
                   exclude: str, cache: PredictionCache, counts: EvaluationCounts | None = None,
                   keys=None) -> tuple[str | None, Scores | None]:
    """The best version ever deployed, judged by re-scoring on today's evaluation set.

    The champion (already scored) and up to BEST_TO_RESCORE other deployed versions, the ones
    with the best stored macro-F1, are compared; a version that no longer loads is skipped.
    Their answers come from ``cache``: a version's model is loaded only for texts it has not
    answered before, through ``counts`` when given (the same labels, without re-analysing the texts);
    ``keys``: the texts' ``text_keys``.
    """
    rows = {r["version"]: r for r in best_deployed(ctx.db, exclude={v for v in (champion_version, exclude) if v},
                                                   limit=BEST_TO_RESCORE)}
    scored: list[tuple[str, Scores]] = [] if champion is None else [(champion_version, champion)]
    texts, truth = eval_set["text"].tolist(), eval_set["label"].tolist()
    for version, row in rows.items():
        load = lambda row=row: registry.load_model(ctx.settings.registry_dir, row["version"], sha256=row["sha256"],  # noqa: E731
                                                   sklearn_version=row["sklearn_version"])
        try:
            predicted = cache.predict(version, row["sha256"], texts, load=load,
                                      predict=None if counts is None else counts.predict, keys=keys)
        except ModelLoadError as exc:
            log.warning("slow-decay guard: skipping %s: %s", version, exc)
            continue
        scored.append((version, score_predictions(truth, predicted)))
    if not scored:
        return None, None
    return max(scored, key=lambda vs: (vs[1].macro_f1, vs[1].accuracy))


def _unjudged(data) -> str:
    """Names the labels without evaluation rows and what to do about them (one sentence)."""
    names = list(data.labels_without_eval)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (f"{len(names)} label(s) have no evaluation rows ({shown}): a label needs at least two human-labelled "
            "texts (one is held out for evaluation); import more labelled examples of them with "
            "`python -m engine import FILE --labeled`.")


def _champion_changed(ctx: Context, judged_against: str | None, *, deployed_at: str | None = None) -> str | None:
    """Why the candidate must not deploy because the active pointer switched since it was judged, or None.

    ``judged_against`` and ``deployed_at``: the active version and its ``deployed_at`` in the very pointer
    read the champion was loaded and scored from (:func:`_judge`). A switch since then (a rollback on
    the worker's control thread) stops the deploy, also one that came back to the same version (a
    rollback, then a rollback to it again: the operator chose it since). Called under
    ``engine.deployment.switching()``, so no switch can come between this check and the deploy.
    """
    try:
        pointer = registry.read_active(ctx.settings.registry_dir)
    except ModelLoadError:
        return None  # a damaged pointer: deploying repairs it, as before
    active = pointer.active.version if pointer else None
    if active != judged_against:
        return (f"the active version changed from {judged_against or 'none'} to {active or 'none'} while this "
                "retrain ran (a rollback); the candidate was judged against the old one, so the next retrain "
                "judges it again")
    if deployed_at is not None and pointer is not None and pointer.deployed_at != deployed_at:
        return (f"the active version was switched while this retrain ran ({active} again since {pointer.deployed_at}, "
                f"after a rollback; it was judged against {active} deployed at {deployed_at}): the operator's "
                "choice stands, and the next retrain judges the candidate again")
    return None


def _adopted(ctx: Context, adopt: AdoptRequest, data, known: set[str]) -> FittedModel:
    """The adopted file's model in the shape of a fit (train_rows 0: it was trained elsewhere)."""
    from engine.adopt import NORMALISATION_SAMPLE, prepare

    texts = data.eval["text"].tolist() + data.train["text"].tolist()
    adopted = prepare(adopt.path, texts=texts, known_labels=set(known), note=adopt.note,
                      raw_texts=querylog.recent_texts(ctx.db, limit=NORMALISATION_SAMPLE))
    return FittedModel(adopted.model, adopted.params, 0, adopted.labels, 0.0, adopted.params["sklearn_version"])


def _first_champion(candidate: Scores, baseline: Scores, file: str) -> Decision:
    """Nothing serves yet: the adopted model becomes the champion, with its scores beside the baseline's."""
    reason = (f"Adopted as the first champion (nothing served before; the team already serves this model): "
              f"accuracy {100 * candidate.accuracy:.1f}% vs majority baseline {100 * baseline.accuracy:.1f}%, "
              f"macro-F1 {100 * candidate.macro_f1:.1f}% vs {100 * baseline.macro_f1:.1f}%.")
    return Decision(True, "adopt: the first champion needs no gate", reason,
                    {"accuracy": candidate.accuracy - baseline.accuracy, "macro_f1": candidate.macro_f1 - baseline.macro_f1},
                    evidence={"first_model": True, "adopted": file})


def recipe(settings) -> dict:
    """What decides a fit besides its training set, from the settings (JSON-ready): the pipeline, its
    feature limits, the seed and the alpha search. Stored with each fitted version (``params["recipe"]``);
    the same recipe on the same training set gives the same model. The executor of the search
    (``search_jobs``, ``dask_scheduler``) is left out: it changes where the fits run, not their result.
    A team factory is named, not read: a changed factory under the same name needs ``retrain --force``.
    """
    return {"pipeline": settings.pipeline, "max_features": settings.max_features, "min_df": settings.min_df,
            "seed": settings.seed, "cv_folds": settings.cv_folds,
            "search_alphas": list(settings.search_alpha_values) if settings.cv_folds else None}


def training_cap(settings, data: TrainingSet) -> dict:
    """The training cap as a fitted version records it (``params["training_cap"]``): the setting
    ``max_train_rows`` (0: none), the training texts it left out, and which ones a cap keeps."""
    return {"max_train_rows": settings.max_train_rows, "over_training_cap": data.funnel.over_training_cap,
            "keeps": "human-labelled texts first, then pseudo-labelled ones, newest first within each"}


def _unchanged_since(ctx: Context, data_hash: str) -> str | None:
    """The champion's version if it was fitted on exactly this training set with this :func:`recipe`,
    was pickled by this scikit-learn and serves (it loads: no fallback), else None.

    A champion pickled by another scikit-learn, one that cannot be loaded, one fitted with another
    recipe (a new ``pipeline`` setting, say) or recorded without one, is retrained even on the same set.
    """
    try:
        pointer = registry.read_active(ctx.settings.registry_dir)
    except ModelLoadError:
        return None
    if pointer is None or pointer.active.sklearn_version != sklearn.__version__:
        return None
    row = get_model(ctx.db, pointer.active.version)
    if (row is None or row["train_hash"] != data_hash or row["sklearn_version"] != sklearn.__version__
            or (row["params"] or {}).get("recipe") != recipe(ctx.settings)):
        return None
    version, model, problem, _ = _champion(ctx, pointer)  # the same read: the version named is the one loaded
    return version if model is not None and problem is None and version == pointer.active.version else None


@dataclass(frozen=True)
class _Judgement:
    """The candidate scored beside the champion (or the baseline) and the gate's decision."""

    candidate: Scores
    candidate_ece: float
    baseline: Scores
    champion_version: str | None   # the version judged against: the one serving (the fallback's, if the active fails)
    champion: Scores | None
    active_at_gate: str | None     # the active version when judged: a rollback since then stops the deploy
    decision: Decision
    reason: str
    # The active pointer's deployed_at in the same read (None: not known): a switch back to the same version stops it too.
    deployed_at_gate: str | None = None


def _cycle(ctx: Context, retrain_id: int, trigger: str, stage: Callable[[str, float], None], record: dict,
           adopt: AdoptRequest | None = None, *, force: bool = False, outcome: _Outcome) -> CycleResult:
    s = ctx.settings
    data, known = _training_set(ctx, stage, record)
    unchanged = None if force or adopt is not None else _unchanged_since(ctx, data.data_hash)
    if unchanged is not None:
        return CycleResult(retrain_id, RetrainStatus.SKIPPED,
                           f"training set unchanged since {unchanged} ({data.funnel.train_rows:,} rows, the same "
                           f"texts and labels): {unchanged} stays champion; `retrain --force` trains anyway",
                           champion=unchanged, decision=RetrainStatus.SKIPPED)
    faults.point("cycle_before_fit")
    if adopt is not None:
        stage("checking the adopted model", 0.25)
        fitted = _adopted(ctx, adopt, data, known)
    else:
        stage("fitting", 0.25)
        fitted = fit(data.train, pipeline=s.pipeline, max_features=s.max_features, min_df=s.min_df, seed=s.seed,
                     search=plan_from_settings(s))
    faults.point("cycle_after_fit")
    stage("saving", 0.6)
    version = _next_version(ctx)
    saved = registry.save_model(s.registry_dir, version, fitted.pipeline)
    # The fingerprint: what this version answers on a fixed probe of its own texts (verified load after an upgrade).
    probe = fingerprint.probe_texts(data.eval["text"].tolist() + data.train["text"].tolist())
    registry.save_fingerprint(s.registry_dir, version,
                              fingerprint.take(fitted.pipeline, probe, sklearn_version=saved.sklearn_version))
    now = ctx.clock()
    models = ModelRegistry(ctx)
    with ctx.db.write() as con:
        models.register(con, {
            "version": version, "created_at": now, "file": saved.file, "sha256": saved.sha256,
            "size_bytes": saved.size_bytes, "sklearn_version": saved.sklearn_version,
            "params": fitted.params if adopt else {**fitted.params, "recipe": recipe(s),
                                                   "training_cap": training_cap(s, data)},
            "labels": list(fitted.labels),
            "train_rows": None if adopt else fitted.train_rows, "train_hash": None if adopt else data.data_hash,
            "retrain_id": retrain_id,
        }, ts=now, trigger=trigger)
    record["saved_version"] = version
    faults.point("cycle_after_save")
    stage("scoring", 0.7)
    j = _judge(ctx, fitted, data, version, saved.sha256, adopt=adopt)
    faults.point("cycle_after_gate")
    record.update(
        candidate_accuracy=j.candidate.accuracy, candidate_macro_f1=j.candidate.macro_f1,
        champion_accuracy=j.champion.accuracy if j.champion else None,
        champion_macro_f1=j.champion.macro_f1 if j.champion else None,
        baseline_accuracy=j.baseline.accuracy, baseline_macro_f1=j.baseline.macro_f1, eval_rows=j.candidate.rows,
    )
    rejected = None if j.decision.accepted else CycleResult(retrain_id, RetrainStatus.REJECTED, j.reason, version,
                                                            j.champion_version, decision=j.decision.outcome)
    _record_decision(ctx, models, j, retrain_id=retrain_id, trigger=trigger, version=version,
                     funnel=data.funnel.as_dict(), ts=now, outcome=outcome, rejected=rejected)
    if rejected is not None:
        return rejected
    return _deploy(ctx, models, j, fitted, retrain_id=retrain_id, trigger=trigger, version=version, stage=stage,
                   outcome=outcome)


def _deploy(ctx: Context, models: ModelRegistry, j: _Judgement, fitted: FittedModel, *, retrain_id: int,
            trigger: str, version: str, stage: Callable[[str, float], None], outcome: _Outcome) -> CycleResult:
    """Deploy a candidate the gate accepted, unless a rollback overtook its judgement (then it is rejected).

    The retrain's outcome is recorded in the transaction that records the deployment (or the rejection)."""
    with switching():  # a rollback on the worker's control thread cannot slip between this check and the deploy
        overtaken = _champion_changed(ctx, j.active_at_gate, deployed_at=j.deployed_at_gate)
        if overtaken:  # a rollback ran while this cycle fitted and scored: never deploy over it
            result = CycleResult(retrain_id, RetrainStatus.REJECTED, overtaken, version, j.champion_version,
                                 decision=j.decision.outcome)
            with ctx.db.write() as con:
                models.reject(con, version, inconclusive=False, ts=ctx.clock(),
                              message=f"Candidate {version} not deployed ({trigger} retrain #{retrain_id}): {overtaken}.",
                              details={"retrain_id": retrain_id, "candidate": version,
                                       "judged_against": j.champion_version, "overtaken": True})
                outcome.write(con, result)
            outcome.written = result
            return result
        stage("validating and deploying", 0.85)
        accepted = CycleResult(retrain_id, RetrainStatus.ACCEPTED, j.reason, version, j.champion_version, deployed=True)
        try:
            deployed = deploy(ctx, version, kind=AssignmentKind.DEPLOY, in_memory=fitted.pipeline,
                              reason=f"Deployed {version} ({trigger} retrain #{retrain_id}). {j.reason}",
                              record=lambda con: outcome.write(con, accepted))
        except ModelLoadError as exc:
            why = f"candidate {version} passed the gate but failed validation: {exc}"
            with ctx.db.write() as con:
                models.fail(con, version, ts=ctx.clock(), why=why, event=False)  # the retrain's failed event says why
            return CycleResult(retrain_id, RetrainStatus.FAILED, why, version, j.champion_version)
    if not deployed.deployed:
        return CycleResult(retrain_id, RetrainStatus.FAILED, deployed.message, version, j.champion_version)
    outcome.written = accepted  # recorded with the deployment, which committed
    return accepted


def _training_set(ctx: Context, stage: Callable[[str, float], None], record: dict) -> tuple[TrainingSet, list[str]]:
    """The cycle's training and evaluation set and the known labels, its funnel written into ``record``;
    TrainingError without evaluation rows (the gate needs human labels)."""
    s = ctx.settings
    stage("reading the log", 0.05)
    faults.point("cycle_read")
    pseudo_since = ctx.clock() - timedelta(days=s.pseudo_label_days) if s.pseudo_label_days else None
    # Grouped in DuckDB (one row per raw text, label and flag, with its count): the same counts and sets
    # as row by row, from a frame 2-3x smaller at 1M-10M logged queries.
    rows = querylog.training_groups(ctx.db, include_pseudo=s.use_pseudo_labels, min_confidence=s.min_confidence,
                                    pseudo_since=pseudo_since)
    known = known_labels(ctx.db)
    stage("cleaning the training set", 0.15)
    data = build_training_set(rows, known_labels=known or None, min_confidence=s.min_confidence,
                              max_text_length=s.max_text_length, eval_percent=s.eval_percent,
                              use_pseudo_labels=s.use_pseudo_labels, pseudo_since=pseudo_since,
                              max_train_rows=s.max_train_rows)
    del rows
    record.update({k: v for k, v in data.funnel.as_dict().items() if k != "eval_rows"})
    record["eval_rows"] = data.funnel.eval_rows
    if len(data.labels) > s.max_labels:
        raise TrainingError(
            f"the training set has {len(data.labels):,} labels; the limit is {s.max_labels:,} (setting max_labels): "
            "a model's size and fit time grow with its labels, so check that the label column holds classes "
            "(not ids or free text), merge rare labels, or raise max_labels"
        )
    if data.eval["label"].nunique() == 1 and data.labels_without_eval:
        raise TrainingError(
            f"the evaluation set holds one label ({data.eval['label'].iloc[0]}), so the gate cannot compare models: "
            f"{_unjudged(data)}"
        )
    if data.eval.empty:
        raise TrainingError(
            f"no human-labelled evaluation rows ({data.funnel.train_rows} training rows): "
            "the gate needs labelled examples; import some with `python -m engine import FILE --labeled`"
        )
    return data, known


def _judge(ctx: Context, fitted: FittedModel, data: TrainingSet, version: str, sha256: str, *,
           adopt: AdoptRequest | None = None) -> _Judgement:
    """Score the candidate and the champion (loaded as predictors load it) on the same evaluation rows,
    with the paired comparison and the best version ever deployed, and ask the gate. Answers go
    through the prediction cache (the candidate's are stored under its ``sha256`` for later cycles).
    An adopted model with nothing serving becomes the first champion; a champion that exists but
    cannot be scored makes the decision inconclusive, never a 'first model'."""
    s = ctx.settings
    truth, texts = data.eval["label"].tolist(), data.eval["text"].tolist()
    cache, keys = prediction_cache(ctx), text_keys(texts)
    counts = evaluation_counts(ctx, texts, keys=keys)  # every model's features from the texts' kept n-gram counts
    candidate_pred, candidate_ece = predict_and_calibrate(fitted.pipeline, data.eval, counts=counts)
    cache.store(version, sha256, texts, candidate_pred, keys=keys)  # the next cycles re-score it from here
    candidate = score_predictions(truth, candidate_pred)
    baseline = majority_baseline(data.train, data.eval)
    # One read of the pointer for both the champion scored and the active version the deploy checks against:
    # a rollback between two reads would make the check pass for a candidate judged against the old champion.
    pointer = registry.read_active(s.registry_dir)
    champion_version, champion_model, champion_problem, champion_sha = _champion(ctx, pointer)
    # The active version then (the champion judged against may be an earlier one the fallback serves).
    active_at_gate = pointer.active.version if pointer is not None else None
    deployed_at_gate = pointer.deployed_at if pointer is not None else None
    champion: Scores | None = None
    paired = best = best_version = None
    if champion_model is not None:
        champion_pred = cache.predict(champion_version, champion_sha, texts, load=lambda: champion_model,
                                      predict=counts.predict, keys=keys)
        champion = score_predictions(truth, champion_pred)
        paired = compare(truth, candidate_pred, champion_pred, resamples=s.bootstrap_resamples, seed=s.seed)
        best_version, best = _best_deployed(ctx, data.eval, champion_version=champion_version, champion=champion,
                                            exclude=version, cache=cache, counts=counts, keys=keys)
    decision = decide(candidate=candidate, champion=champion, baseline=baseline if champion is None else None,
                      tolerance=s.tolerance, mode=s.gate_mode, paired=paired, min_eval_rows=s.min_eval_rows,
                      min_class_support=s.min_class_support, per_class_tolerance=s.per_class_tolerance,
                      per_class_min_support=s.per_class_min_support, best=best, best_version=best_version,
                      cumulative_tolerance=s.cumulative_tolerance)
    if adopt is not None and champion_model is None:
        decision = _first_champion(candidate, baseline, fitted.params["adopted"]["file"])
    reason = decision.reason
    if adopt is not None and (note := normalisation_note(fitted.params["adopted"].get("normalised_text"))):
        reason = f"{reason} {note}"
    if data.labels_without_eval:
        reason = f"{reason} Not judged: {_unjudged(data)}"
    if champion_model is not None and champion_problem:
        reason = (f"{reason} (Judged against {champion_version}, which serves while the active version {active_at_gate} "
                  f"cannot be loaded: {champion_problem})")
    elif champion_problem:
        # A champion exists but cannot be scored (its file is damaged, or a pickle from another scikit-learn
        # does not verify): never judge the candidate against the baseline as if it were the first model.
        reason = (f"Inconclusive: the champion {champion_version} could not be scored ({champion_problem}), so the "
                  f"candidate cannot be compared with it and stays out; the champion keeps serving. Candidate: "
                  f"accuracy {candidate.accuracy:.1%}, macro-F1 {candidate.macro_f1:.1%}.")
        decision = dataclasses.replace(decision, accepted=False, outcome=GateOutcome.INCONCLUSIVE, reason=reason,
                                       rule="the champion must be scored on the same evaluation set")
    return _Judgement(candidate, candidate_ece, baseline, champion_version, champion, active_at_gate, decision, reason,
                      deployed_at_gate)


def _record_decision(ctx: Context, models: ModelRegistry, j: _Judgement, *, retrain_id: int, trigger: str,
                     version: str, funnel: dict, ts, outcome: _Outcome | None = None,
                     rejected: CycleResult | None = None) -> None:
    """In one transaction: the candidate's metrics, both evaluations, and the gate event (through
    ``ModelRegistry.reject`` when the candidate was refused or the gate could not tell); with
    ``rejected``, the retrain's outcome too (``outcome.write``: nothing is left to do after a rejection)."""
    candidate, champion, decision = j.candidate, j.champion, j.decision
    with ctx.db.write() as con:
        set_model_metrics(con, version, accuracy=candidate.accuracy, macro_f1=candidate.macro_f1,
                          eval_rows=candidate.rows, report={**candidate.report(), "ece": j.candidate_ece})
        add_evaluation(con, retrain_id=retrain_id, ts=ts, version=version, role=Role.CANDIDATE,
                       accuracy=candidate.accuracy, macro_f1=candidate.macro_f1, eval_rows=candidate.rows)
        if champion is not None:
            add_evaluation(con, retrain_id=retrain_id, ts=ts, version=j.champion_version, role=Role.CHAMPION,
                           accuracy=champion.accuracy, macro_f1=champion.macro_f1, eval_rows=champion.rows)
        message = f"Candidate {version} {decision.outcome} ({trigger} retrain #{retrain_id}). {j.reason}"
        details = {
            "retrain_id": retrain_id, "trigger": trigger, "candidate": version, "champion": j.champion_version,
            "rule": decision.rule, "deltas": decision.deltas, "accepted": decision.accepted,
            "candidate_metrics": {"accuracy": candidate.accuracy, "macro_f1": candidate.macro_f1},
            "champion_metrics": None if champion is None else {"accuracy": champion.accuracy, "macro_f1": champion.macro_f1},
            "baseline_metrics": {"accuracy": j.baseline.accuracy, "macro_f1": j.baseline.macro_f1},
            "eval_rows": candidate.rows, "funnel": funnel,
            "outcome": decision.outcome, "evidence": decision.evidence, "candidate_ece": j.candidate_ece,
        }
        if decision.accepted:  # the candidate stays a candidate until its deployment promotes it
            record_event(con, ts=ts, kind=EventKind.GATE, severity=Severity.INFO, version=version, message=message,
                         details=details)
        else:
            models.reject(con, version, inconclusive=decision.outcome == GateOutcome.INCONCLUSIVE, ts=ts,
                          message=message, details=details)
        if rejected is not None and outcome is not None:
            outcome.write(con, rejected)
    if rejected is not None and outcome is not None:
        outcome.written = rejected
