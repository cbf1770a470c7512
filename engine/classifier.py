"""Serving: predict with the active model, log every query, hot-reload, fall back.

>>> clf = Classifier()                         # doctest: +SKIP
>>> p = clf.predict("where is my parcel")       # doctest: +SKIP
>>> p.label, p.confidence, p.version, p.query_id  # doctest: +SKIP

A background thread writes logged queries to the spool (see ``engine.spool``) and
watches the registry's active pointer; a new version is loaded beside the old one
and swapped in with one assignment, so no prediction fails during a deployment.
When the active version cannot be loaded (file missing, checksum mismatch, another
scikit-learn), the newest loadable version that served before it answers instead,
``status().fallback_reason`` says why, and an event is logged for the worker.

What a caller may pass (checked at the call, before anything is predicted or logged, so
nothing a caller passes can stop the background thread's logging or hot reload):

- ``predict(text)`` takes one ``str``; ``predict_many(texts)`` takes any iterable of
  ``str`` (a list, a tuple, a generator: it is read once), never one string, bytes or None.
  One contract for both: every text must be a ``str`` that is not empty after
  normalising (nor only control characters: ``engine.dataset.is_blank``), holds no NUL
  byte (the import's rule too), holds no lone UTF-16 surrogate (``"\\ud800"``: not Unicode text, it
  cannot be stored as UTF-8; decode the client's bytes as UTF-8 instead) and has at
  most ``max_text_length`` characters (the setting; the same limit a retrain applies).
  One bad text refuses the whole call with :class:`InputError` saying what is wrong
  (``check(text)`` tells which text); nothing of that call is predicted or logged.
- ``feedback(query_id, label)`` takes the id ``predict`` returned: 32 hexadecimal
  characters (a uuid4), anything else is refused. The Classifier never reads the store,
  so a well-formed id it cannot check is accepted; a label whose query is not in the
  log has no text, so a retrain counts it as malformed and never trains or judges on it.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from engine import registry, spool
from engine.clock import Clock, utcnow
from engine.config import Settings, load_settings
from engine.dataset import is_blank, normalize_label, normalize_text
from engine.errors import InputError, ModelLoadError, NoModelError, StaleModelError, UnknownLabelError
from store.vocabulary import EventKind, Severity

log = logging.getLogger(__name__)

RETRY_FALLBACK_SECONDS = 10.0
# The form of a query id predict() issues (uuid4().hex); feedback() refuses anything else.
QUERY_ID = re.compile(r"[0-9a-f]{32}")
_SURROGATE = re.compile("[\ud800-\udfff]")

# Every Classifier still alive writes its buffer at interpreter exit. A WeakSet, not one
# atexit registration per instance, so short-lived classifiers can be garbage-collected.
_live: "weakref.WeakSet[Classifier]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for clf in list(_live):
        clf.close()


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    version: str
    query_id: str
    top: tuple[tuple[str, float], ...]
    fallback: bool = False


@dataclass(frozen=True)
class ClassifierStatus:
    version: str | None           # the version answering now
    active_version: str | None    # the version the registry says should answer
    fallback_reason: str | None   # why they differ (None when serving the active version)
    active_stale: bool = False    # the active version was built by another scikit-learn and did not verify
    verified: str | None = None   # how a pickle from another scikit-learn was verified ("v0007 pickled by ...")

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


@dataclass(frozen=True)
class _Loaded:
    version: str
    pipeline: Any
    labels: tuple[str, ...]
    classes: np.ndarray


def load_serving_model(registry_dir: Path) -> tuple[_Loaded | None, ClassifierStatus]:
    """Load the active model, or the newest loadable earlier one; say which and why."""
    pointer = registry.read_active(registry_dir)
    if pointer is None:
        return None, ClassifierStatus(None, None, None)
    errors = []
    stale = False
    for i, ref in enumerate((pointer.active, *pointer.history)):
        try:
            checked = registry.load_checked(registry_dir, ref.version, sha256=ref.sha256,
                                            sklearn_version=ref.sklearn_version)
        except ModelLoadError as exc:
            errors.append(str(exc))
            stale = stale or (i == 0 and isinstance(exc, StaleModelError))
            continue
        model = checked.model
        loaded = _Loaded(ref.version, model, ref.labels, np.asarray(model.classes_))
        reason = None if i == 0 else f"active model {pointer.active.version} cannot be loaded ({errors[0]}); serving {ref.version}"
        return loaded, ClassifierStatus(ref.version, pointer.active.version, reason, stale, checked.verified)
    return None, ClassifierStatus(None, pointer.active.version,
                                  "no deployed version can be loaded: " + " | ".join(errors), stale)


class Classifier:
    """Classify queries with the active model and log them. Thread-safe.

    ``home`` overrides the settings' data directory. ``log_queries=False`` serves
    without logging (benchmarks). ``clock`` stamps logged queries (the demo replays time).
    """

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        settings: Settings | None = None,
        log_queries: bool = True,
        source: str = "classifier",
        clock: Clock = utcnow,
        background: bool = True,
        report_events: bool = True,
    ):
        settings = settings or load_settings()
        if home is not None:
            settings = settings.replace(home=Path(home))
        self.settings = settings
        self._registry = settings.registry_dir
        self._spool = settings.spool_dir
        self._log = log_queries
        self._source = source
        self._clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._buffer_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._stamp = None
        self._loaded_at = 0.0
        self._model: _Loaded | None = None
        self._status = ClassifierStatus(None, None, None)
        self._reported_fallback: str | None = None
        self._report_events = report_events
        self._stop = threading.Event()
        self._thread = None  # before the first reload: reporting a fallback may flush (see _append)
        self.reload()
        if background:
            self._thread = threading.Thread(target=self._background, name="classifier-background", daemon=True)
            self._thread.start()
        _live.add(self)

    # -- serving ---------------------------------------------------------------

    def predict(self, text: str) -> Prediction:
        """The label of one query, with its confidence, the answering version and a query id.

        Raises :class:`InputError` for a text that breaks the module's input rules,
        :class:`NoModelError` when no model can answer.
        """
        return self._predict([self._clean(text)], [text])[0]

    def predict_many(self, texts: Iterable[str]) -> list[Prediction]:
        """Labels of many queries at once (one model call), each logged; ``[]`` for no texts.

        ``texts`` is any iterable of ``str``, read once. Raises :class:`InputError` when it is
        not one (None, a string, bytes) or when one text breaks the input rules (``check`` tells
        which), :class:`NoModelError` when no model can answer.
        """
        if texts is None or isinstance(texts, (str, bytes, bytearray)):
            what = "None" if texts is None else f"one {type(texts).__name__}"
            raise InputError(f"predict_many takes a list of texts, not {what}: use predict(text) for one text")
        try:
            raw = list(texts)
        except TypeError:
            raise InputError(f"predict_many takes a list of texts, not {type(texts).__name__}") from None
        cleaned = [self._clean(t) for t in raw]
        return self._predict(cleaned, raw)

    def _predict(self, cleaned: list[str], texts: list[str]) -> list[Prediction]:
        model = self._model
        if model is None:
            raise NoModelError(self._no_model_message())
        if not cleaned:
            return []
        proba = model.pipeline.predict_proba(cleaned)
        order = np.argsort(-proba, axis=1)[:, :3]
        now = self._clock()
        fallback = self._status.fallback
        results = []
        records = []
        for i, raw in enumerate(texts):
            top = tuple((str(model.classes[j]), float(proba[i, j])) for j in order[i])
            query_id = uuid.uuid4().hex
            results.append(Prediction(top[0][0], top[0][1], model.version, query_id, top, fallback))
            if self._log:
                records.append(
                    {
                        "k": "q",
                        "id": query_id,
                        "ts": now.isoformat(),
                        "text": raw,
                        "predicted_label": top[0][0],
                        "confidence": top[0][1],
                        "model_version": model.version,
                        "source": self._source,
                    }
                )
        if records:
            self._append(records)
        return results

    def feedback(self, query_id: str, true_label: str) -> None:
        """Attach a person's true label to a logged query (it becomes training and evaluation data).

        ``query_id`` is the id ``predict`` returned (32 hexadecimal characters; see the module's
        rules for ids it cannot check). Raises :class:`InputError` for another id or an empty
        label, :class:`UnknownLabelError` for a label the serving model does not know.
        """
        if not isinstance(query_id, str) or not query_id.strip():
            raise InputError("feedback needs the query_id returned by predict()")
        query_id = query_id.strip().lower()
        if not QUERY_ID.fullmatch(query_id):
            shown = repr(query_id[:40]) + ("…" if len(query_id) > 40 else "")
            raise InputError(f"feedback needs the query_id returned by predict() (32 hexadecimal characters), "
                             f"not {shown} ({len(query_id):,} characters)")
        if not isinstance(true_label, str):
            raise InputError(f"the true label must be text (str), not {type(true_label).__name__}")
        if _SURROGATE.search(true_label):
            raise InputError("the true label holds a lone UTF-16 surrogate, which is not Unicode text: "
                             "give one of the model's labels")
        label = normalize_label(true_label)
        if label is None:
            raise InputError("the true label is empty: give one of the model's labels")
        known = self.labels()
        if known and label not in known:
            shown = true_label if len(true_label) <= 80 else true_label[:80] + "…"
            raise UnknownLabelError(f"unknown label {shown!r}: valid labels are {', '.join(known)}")
        self._append(
            [{"k": "f", "id": uuid.uuid4().hex, "ts": self._clock().isoformat(), "query_id": query_id,
              "label": label, "source": "feedback"}]
        )

    def check(self, text: Any) -> str:
        """``text`` as the model sees it (normalised); raises InputError saying why it cannot be classified."""
        return self._clean(text)

    def labels(self) -> tuple[str, ...]:
        """The labels the serving model knows (empty when no model is loaded)."""
        model = self._model
        if model is None:
            return ()
        return model.labels or tuple(str(c) for c in model.classes)

    def status(self) -> ClassifierStatus:
        return self._status

    @property
    def version(self) -> str | None:
        return self._status.version

    # -- reload and logging ----------------------------------------------------------

    def reload(self, *, force: bool = False) -> bool:
        """Load the active version if the pointer changed; return True if the serving model changed.

        While in fallback the active version is retried every ``RETRY_FALLBACK_SECONDS``. ``force``:
        load as a process starting now would even if the pointer did not change (the worker's fallback
        monitor, when the active version's file no longer matches its checksum).
        """
        with self._reload_lock:
            stamp = registry.active_stamp(self._registry)
            retry = self._status.fallback and time.monotonic() - self._loaded_at > RETRY_FALLBACK_SECONDS
            if stamp == self._stamp and self._model is not None and not retry and not force:
                return False
            self._stamp = stamp
            self._loaded_at = time.monotonic()
            try:
                loaded, status = load_serving_model(self._registry)
            except ModelLoadError as exc:  # a damaged pointer file
                loaded, status = None, ClassifierStatus(None, None, str(exc))
            previous = self._model
            if loaded is None and previous is not None:
                # Nothing loadable now: keep answering with the model in memory, and say so.
                status = ClassifierStatus(previous.version, status.active_version, status.fallback_reason,
                                          status.active_stale, status.verified)
            else:
                self._model = loaded
            self._status = status
            if status.fallback:
                self._report_fallback(status.fallback_reason, status.active_version)
            else:
                self._reported_fallback = None
            if self._model is not previous and self._model is not None:
                log.info("serving %s%s", self._model.version, " (fallback)" if status.fallback else "")
            return self._model is not previous

    def _report_fallback(self, reason: str, active: str | None) -> None:
        if self._reported_fallback == reason:
            return
        self._reported_fallback = reason
        log.warning("fallback: %s", reason)
        if not self._report_events:
            return
        self._append(
            [{"k": "e", "ts": self._clock().isoformat(), "kind": EventKind.FALLBACK, "severity": Severity.ERROR, "version": active,
              "message": f"A serving process fell back: {reason}.", "details": {"serving": self.version}}]
        )

    def flush(self) -> None:
        """Write buffered records to the spool now."""
        with self._buffer_lock:
            records, self._buffer = self._buffer, []
        if records:
            try:
                spool.write_batch(self._spool, records)
            except OSError as exc:  # disk full, permissions: keep the records, try again later
                log.error("cannot write the query spool in %s (%s); keeping %d records", self._spool, exc, len(records))
                with self._buffer_lock:
                    self._buffer = records + self._buffer
                raise

    def close(self) -> None:
        """Stop the background thread and write what is buffered."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            self.flush()
        except OSError as exc:  # closing must not raise; flush logged the error, say what it means now
            log.error("closing with %d logged records unwritten (%s): they are lost when this process ends",
                      len(self._buffer), exc)

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append(self, records: list[dict[str, Any]]) -> None:
        with self._buffer_lock:
            self._buffer.extend(records)
            full = len(self._buffer) >= self.settings.flush_rows
        if full and self._thread is None:
            self.flush()

    def _background(self) -> None:
        next_reload = time.monotonic() + self.settings.reload_seconds
        while not self._stop.wait(self.settings.flush_seconds):
            try:
                self.flush()
            except OSError:  # disk full, permissions: flush kept the records and logged why
                log.debug("spool write deferred")
            except Exception:  # never let logging stop hot reload; the next tick tries again
                log.exception("spool write failed")
            if time.monotonic() >= next_reload:
                next_reload = time.monotonic() + self.settings.reload_seconds
                try:
                    self.reload()
                except Exception:  # never let the watcher die; the next tick tries again
                    log.exception("reload failed")

    def _clean(self, text: Any) -> str:
        """The normalised text, or InputError naming what is wrong with it."""
        if not isinstance(text, str):
            raise InputError(f"a query must be text (str), not {type(text).__name__}")
        limit = self.settings.max_text_length
        if len(text) > limit:
            raise InputError(f"the query is {len(text):,} characters long; at most {limit:,} are accepted "
                             "(setting max_text_length)")
        bad = _SURROGATE.search(text)
        if bad:
            raise InputError(f"the query holds a lone UTF-16 surrogate (U+{ord(bad.group()):04X} at character "
                             f"{bad.start()}), which is not Unicode text: decode the client's bytes as UTF-8")
        nul = text.find("\x00")
        if nul >= 0:
            raise InputError(f"the query holds a NUL byte (U+0000 at character {nul}), which is not text and which the "
                             "import refuses too: remove it")
        cleaned = normalize_text(text)
        if not cleaned or is_blank(text):  # nothing but spaces and control characters, as the import reads it
            raise InputError("the query is empty: type some words to classify")
        return cleaned

    def _no_model_message(self) -> str:
        if self._status.fallback_reason:
            return f"no model can serve: {self._status.fallback_reason}"
        return (
            f"no model is deployed in {self.settings.home} yet: import labelled examples "
            "(`python -m engine import FILE --labeled`) and train one (`python -m engine retrain --wait`), "
            "or build the demo (`python -m engine demo`)"
        )
