"""The demo: 90 days of a support bot's life, replayed through the real engine.

A simulated clock moves through the days. Each day, customers send queries (a weekly
rhythm: busier on weekdays and in the daytime) that the real ``Classifier`` answers
and logs; about 10% get a human label later. The intent mix drifts and new product
names and phrasings appear (``demo.intents``). The real ``Worker`` ingests the log and
its ``Scheduler`` runs the weekly, monthly and adaptive jobs at their simulated times;
each retrain goes through the real gate and registry. Two incidents make the history
worth looking at:

- around day 50 a misconfigured client (the ``kiosk``, serving a broken model file while
  reporting the deployed version) logs a day of confidently wrong predictions, which
  become pseudo labels; the candidates trained on them score worse on the human-labelled
  evaluation set, and the gate keeps them out. A week later the operator quarantines the
  kiosk's rows (``engine.quarantine``) and asks for a retrain, which is accepted: the
  recovery;
- an operator rolls back the model that the week-10 retrain deployed, through the real
  command queue, after a (simulated) complaint.

Nothing is faked after the fact: every row, model file, decision and event in the
store was produced by the same code that runs in production.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import pandas as pd

from engine import registry
from engine.classifier import Classifier
from engine.clock import ManualClock, to_local, utcnow
from engine.commands import submit
from engine.config import Settings
from engine.context import Context
from engine.errors import InputError
from demo.intents import INTENTS, IntentGenerator
from engine.lock import WorkerLock
from engine.quarantine import Rule, quarantine
from engine.retrain import run_cycle
from engine.worker import Worker
from store import querylog
from store.db import Database
from store.events import record_event
from store.retrains import recent_retrains
from store.vocabulary import AssignmentKind, CommandKind, EventKind, Severity, Trigger

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

SEED_PER_INTENT = 40          # labelled examples per intent imported on day 0
WEEKDAY_VOLUME = 260          # queries on a weekday at the start (weekends ~55%)
GROWTH = 0.5                  # volume grows by this share over the period
FEEDBACK_SHARE = 0.10         # share of queries that get a human label
BAD_CLIENT_QUERIES = 5000     # confidently wrong predictions logged by a misconfigured client
BLOCK_HOURS = 12              # traffic is simulated in blocks of this many hours
DAY_SHAPE = (0.45, 0.55)      # share of a day's traffic in each 12-hour block


@dataclass
class DemoSummary:
    days: int
    queries: int = 0
    labels: int = 0
    retrains: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    rollbacks: int = 0
    active: str | None = None

    def text(self) -> str:
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(self.retrains.items())) or "none"
        return (
            f"Demo: {self.days} days, {self.queries:,} logged queries, {self.labels:,} human labels, "
            f"{sum(self.retrains.values())} retrains ({decisions}), {self.versions} model versions, "
            f"{self.rollbacks} rollback(s); {self.active} serves now."
        )


def _clear(settings: Settings) -> None:
    home = settings.home
    for path in (settings.db_path, settings.db_path.with_name(settings.db_path.name + ".wal")):
        path.unlink(missing_ok=True)
    for folder in (settings.registry_dir, settings.spool_dir):
        if folder.exists():
            shutil.rmtree(folder)
    home.mkdir(parents=True, exist_ok=True)


def _has_data(settings: Settings) -> bool:
    """Models on disk, or a store holding logged queries or labels.

    A store that exists but holds neither counts as empty: ``make run`` starts the dashboard beside
    the demo build, and a page opened first creates the store's empty tables.
    """
    if any(settings.registry_dir.glob("v*" + registry.MODEL_SUFFIX)):
        return True
    if not settings.db_path.exists():
        return False
    return any(querylog.count_rows(Database(settings.db_path)).values())


def _daily_volume(day: int, days: int, moment: datetime, rng: random.Random) -> int:
    weekday = to_local(moment).weekday()
    base = WEEKDAY_VOLUME * (1 + GROWTH * day / max(days, 1))
    if weekday >= 5:
        base *= 0.55
    return max(0, int(rng.gauss(base, base * 0.08)))


def build_demo(
    settings: Settings,
    *,
    days: int = 90,
    seed: int = 7,
    force: bool = False,
    end: datetime | None = None,
    recovery: bool = True,
    progress: Progress | None = None,
) -> DemoSummary:
    """Replay ``days`` days ending at ``end`` (default now) into ``settings.home``.

    ``recovery=False`` leaves out the operator's quarantine after the kiosk incident (the gate then
    keeps rejecting poisoned candidates until clean data outweighs them): the store that tests of
    the pages and the API were written against.
    """
    if not 7 <= days <= 365:
        raise InputError(f"--days {days} is out of range: use 7 to 365 days")
    if _has_data(settings) and not force:
        raise InputError(f"{settings.home} already holds data: use another RETRAINER_HOME, or --force to replace it")
    settings.home.mkdir(parents=True, exist_ok=True)
    lock = WorkerLock(settings.worker_lock_path, role="demo").acquire()  # no worker may run while history is written
    try:
        if force:
            _clear(settings)
        return _replay(settings, days=days, seed=seed, end=end or utcnow(), recovery=recovery,
                       progress=progress or (lambda *a: None))
    finally:
        lock.release()


def _replay(settings: Settings, *, days: int, seed: int, end: datetime, recovery: bool, progress: Progress) -> DemoSummary:
    start = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = ManualClock(start)
    # The replay trains with the "word" preset, the pipeline its story (the poisoned candidates the gate
    # keeps out, the rollbacks) was written and pinned with; a retrain after it uses the `pipeline` setting.
    demo_settings = settings.replace(adaptive_every_minutes=BLOCK_HOURS * 60, pipeline="word")
    ctx = Context.open(demo_settings, clock=clock)
    rng = random.Random(seed)
    gen = IntentGenerator(seed=seed)
    summary = DemoSummary(days=days)

    # Day 0: the team imports a small hand-labelled set and trains the first model.
    seed_rows = gen.balanced(SEED_PER_INTENT, progress=0.0)
    _store_labels(ctx, [(e.text, e.label) for e in seed_rows], source="demo")
    record_event(ctx.db, ts=clock(), kind=EventKind.DEMO, message=f"Demo: imported {len(seed_rows)} hand-labelled examples to start.")
    first = run_cycle(ctx, trigger=Trigger.DEMO)
    log.info("first model: %s", first.summary())

    worker = Worker(ctx, synchronous=True)
    worker.start()
    classifier = Classifier(settings=demo_settings, clock=clock, source="demo", background=False)
    incident_day = int(days * 0.55)
    quarantine_day = incident_day + max(1, round(days * 0.08))
    rollback_day = int(days * 0.75)
    incident: tuple[datetime, datetime] | None = None
    block = timedelta(hours=BLOCK_HOURS)
    moment = start
    day = 0
    volume_today = _daily_volume(0, days, moment, rng)
    while moment < end:
        day = (moment - start).days
        if moment.hour == 0:
            volume_today = _daily_volume(day, days, moment, rng)
            progress(day, days, _latest_note(ctx))
        share = DAY_SHAPE[min(moment.hour // BLOCK_HOURS, len(DAY_SHAPE) - 1)]
        # The last block ends at ``end`` (now): its share of traffic, and no query stamped after it.
        block_end = min(moment + block, end)
        minutes = int((block_end - moment).total_seconds() // 60)
        n = int(round(volume_today * share * min(1.0, minutes / (BLOCK_HOURS * 60))))
        examples = gen.sample(n, progress=min(1.0, day / days))
        # Clients use the classifier through the day; queries are stamped across the block.
        if examples:
            offset = rng.randint(5, minutes - 5) if minutes >= 10 else 0
            clock.set(moment + timedelta(minutes=offset))
            classifier.reload()
            predictions = classifier.predict_many([e.text for e in examples])
            for example, prediction in zip(examples, predictions):
                if rng.random() < FEEDBACK_SHARE:
                    classifier.feedback(prediction.query_id, example.label)
            classifier.flush()
        if day == incident_day and moment.hour == 12:
            incident = _misconfigured_client(ctx, gen, rng, progress=min(1.0, day / days))
        if recovery and day == quarantine_day and moment.hour == 12 and incident is not None:
            _operator_quarantine(ctx, worker, incident)
        if day == rollback_day and moment.hour == 12:
            _operator_rollback(ctx, worker)
        # Run the worker's loop up to the end of the block, stopping at every job's exact time.
        while True:
            due = worker.scheduler.next_due()
            if due > block_end:
                break
            clock.set(max(due, clock()))
            worker.ingest()
            worker.scheduler.run_pending()
        clock.set(block_end)
        worker.ingest()
        worker.check_drift()  # judges a day once it is over, as the worker's loop does
        moment = block_end
    classifier.close()
    worker.ingest()
    worker.check_model(force=True)
    progress(days, days, _latest_note(ctx))
    record_event(ctx.db, ts=clock(), kind=EventKind.DEMO, message=f"Demo: replayed {days} days of traffic.")
    worker.shutdown()
    return _summarise(ctx, summary)


def _store_labels(ctx: Context, rows: list[tuple[str, str]], *, source: str) -> None:
    import uuid

    frame = pd.DataFrame({
        "id": [uuid.uuid4().hex for _ in rows], "ts": ctx.clock(), "query_id": None,
        "text": [t for t, _ in rows], "label": [l for _, l in rows], "source": source,
    })
    frame["query_id"] = frame["query_id"].astype("object")
    with ctx.db.write() as con:
        querylog.insert_labels(con, frame, arrived_at=ctx.clock())


KIOSK = "kiosk"  # the misconfigured client's source name


def _misconfigured_client(ctx: Context, gen: IntentGenerator, rng: random.Random, *,
                          progress: float) -> tuple[datetime, datetime]:
    """A client serving a broken model logs a day of confident, wrong answers (through the spool, like any client).

    It reports the deployed version (its pointer file says so; its model file is another), so its
    answers pass the pseudo-label rule. Returns the span of time its rows claim.
    """
    pointer = registry.read_active(ctx.settings.registry_dir)
    version = pointer.active.version if pointer else None
    import uuid

    from engine import spool

    shift = {label: INTENTS[(i + 1) % len(INTENTS)] for i, label in enumerate(INTENTS)}
    records = []
    for e in gen.sample(BAD_CLIENT_QUERIES, progress=progress):
        moment = ctx.clock() - timedelta(minutes=rng.randint(0, 24 * 60))
        records.append({"k": "q", "id": uuid.uuid4().hex, "ts": moment.isoformat(), "text": e.text,
                        "predicted_label": shift[e.label], "confidence": round(rng.uniform(0.9, 0.99), 3),
                        "model_version": version, "source": KIOSK})
    spool.write_batch(ctx.settings.spool_dir, records)
    record_event(ctx.db, ts=ctx.clock(), kind=EventKind.DEMO, severity=Severity.WARNING,
                 message=f"Demo incident: a misconfigured client ({KIOSK}) logged {len(records)} confidently wrong "
                         f"predictions as {version} over the last day (they become pseudo labels).")
    return ctx.clock() - timedelta(days=1), ctx.clock()


def _operator_quarantine(ctx: Context, worker: Worker, incident: tuple[datetime, datetime]) -> None:
    """The operator spots the run of rejections, quarantines the kiosk's rows of that day and asks for a retrain."""
    since, until = incident
    quarantine(ctx, Rule(source=KIOSK, since=since, until=until + timedelta(minutes=1),
                         reason="the kiosk served a broken model file and logged its wrong answers"), by="demo operator")
    command_id = submit(ctx, CommandKind.RETRAIN, source="demo operator")
    worker.process_commands()
    log.info("operator quarantine and retrain: command #%d", command_id)


def _operator_rollback(ctx: Context, worker: Worker) -> None:
    command_id = submit(ctx, CommandKind.ROLLBACK, source="demo operator")
    worker.process_commands()
    log.info("operator rollback: command #%d", command_id)


def _latest_note(ctx: Context) -> str:
    latest = recent_retrains(ctx.db, limit=1)
    if not latest:
        return ""
    r = latest[0]
    return f"last retrain #{r['id']} ({r['trigger']}): {r['status']}"


def _summarise(ctx: Context, summary: DemoSummary) -> DemoSummary:
    counts = querylog.count_rows(ctx.db)
    summary.queries, summary.labels = counts["queries"], counts["labels"]
    for r in recent_retrains(ctx.db, limit=10_000):
        summary.retrains[r["status"]] = summary.retrains.get(r["status"], 0) + 1
    from store.models import list_deployments, list_models

    summary.versions = len(list_models(ctx.db))
    summary.rollbacks = sum(1 for d in list_deployments(ctx.db) if d["kind"] in (AssignmentKind.ROLLBACK, AssignmentKind.AUTO_ROLLBACK))
    pointer = registry.read_active(ctx.settings.registry_dir)
    summary.active = pointer.active.version if pointer else None
    return summary
