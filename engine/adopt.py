"""Adopting a model the team already trained: ``python -m engine adopt PATH [--note TEXT]``.

The file is loaded (joblib or pickle: **only files you trust**, because loading either runs code
the file names; see the README), checked, and then handed to the retrain cycle in place of a
fit (:func:`engine.retrain.run_cycle` with ``adopted=``): it is saved into the registry as the
next version, scored on the evaluation rows, and either made the first champion (nothing serves
yet) or gated against the champion like any candidate. Later candidates are judged against it.

Checks, each refused with an :class:`~engine.errors.InputError` that says what would be right:

- the file exists, is a file, and loads (a model pickled by another scikit-learn is refused: re-save
  it with this one);
- what it holds is a fitted classifier: ``predict``, ``predict_proba`` (Retrainer's confidence) and
  ``classes_``;
- it answers on a few stored texts, with labels among its ``classes_``;
- its classes, normalised like imported labels (:func:`engine.dataset.normalize_label`: NFKC,
  lower-cased, so ``Track_Order``, ``1`` from the int 1 and ``true`` from the bool True), are distinct
  and not empty, and overlap the stored labels (the two sets are shown when they do not).

The model is kept wrapped in an :class:`AdoptedModel`, whose ``classes_`` are those normalised labels:
everything that reads a version (serving, the gate, the fingerprint, the registry's labels) sees the
same label strings as the stored labels, whatever the class values the team fitted with (ints, numpy
ints, bools, mixed case).

The version's params record the file's name and SHA-256, the note, the classes (as labels, and as the
model's own ``classes_`` printed), the estimator's JSON-safe ``get_params()`` and the scikit-learn version.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

# Stored texts the file must answer on before it is scored.
SMOKE_ROWS = 5
SKOPS_SUFFIX = ".skops"
_SHOWN = 20
# The newest stored texts on which adopt measures what normalising the text changes in the model's answers.
NORMALISATION_SAMPLE = 2000
# At most this many characters of an exception raised by the team's model or by loading its file are
# shown: scikit-learn's messages can quote the whole input (every stored text it was given).
_ERROR_CHARS = 200


@dataclass(frozen=True)
class Adopted:
    """A loaded, checked model (wrapped: its classes as stored labels) and its record for the registry."""

    model: AdoptedModel
    labels: tuple[str, ...]
    params: dict[str, Any]


class AdoptedModel:
    """A team's fitted classifier whose ``classes_`` are the stored labels its own classes stand for.

    ``model``: the fitted classifier (``predict_proba``, ``classes_``); ``labels``: one label (str) per entry
    of ``model.classes_``, in its order (:func:`class_labels`). ``predict_proba`` and, when the model has
    one, ``decision_function`` are the model's own (the same columns in the same order); ``predict``
    answers the label of the highest probability, which is the answer Retrainer serves and scores
    (``engine.classifier``, ``engine.evaluation.predict_and_calibrate``). A class of this module so the
    registry's pickle of it loads wherever ``engine`` imports.

    >>> from sklearn.dummy import DummyClassifier
    >>> m = AdoptedModel(DummyClassifier().fit([[0]] * 3, [1, 0, 1]), ("0", "1"))
    >>> m.classes_.tolist(), m.predict([[5]]).tolist(), m.predict_proba([[5]]).round(3).tolist()
    (['0', '1'], ['1'], [[0.333, 0.667]])
    """

    def __init__(self, model: Any, labels: tuple[str, ...] | list[str]):
        if len(labels) != len(model.classes_):
            raise ValueError(f"one label per class: {len(labels)} labels for {len(model.classes_)} classes")
        self.model = model
        self.classes_ = np.asarray(list(labels), dtype=object)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """The model's probabilities (texts x classes, the columns of ``classes_``)."""
        return self.model.predict_proba(texts)

    def predict(self, texts: list[str]) -> np.ndarray:
        """The label of each text's highest probability (object array of str)."""
        return self.classes_[np.asarray(self.model.predict_proba(texts)).argmax(axis=1)]

    @property
    def decision_function(self):
        """The model's own ``decision_function`` (AttributeError when it has none)."""
        return self.model.decision_function

    def __repr__(self) -> str:
        return f"AdoptedModel({type(self.model).__name__}, classes {', '.join(self.classes_.tolist())})"


def _labels_text(labels: set[str] | list[str]) -> str:
    ordered = sorted(labels)
    more = len(ordered) - _SHOWN
    return ", ".join(ordered[:_SHOWN]) + (f" … ({more} more)" if more > 0 else "") if ordered else "(none)"


def _bounded(text: str, limit: int = _ERROR_CHARS) -> str:
    """``text``'s first line, cut to ``limit`` characters (an ellipsis says it was cut).

    >>> _bounded("Expected 2D array, got 1D array instead:\\narray=['a' 'b']"), _bounded("x" * 9, 4)
    ('Expected 2D array, got 1D array instead: …', 'xxxx…')
    """
    lines = str(text).strip().splitlines() or [""]
    first = lines[0]
    if len(first) > limit:
        return first[:limit] + "…"
    return first + (" …" if len(lines) > 1 else "")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_bounded(str(exc))}" if str(exc).strip() else type(exc).__name__


def _class_text(value: Any) -> str:
    """A class as the message shows it: a str quoted, anything else with its type (``1 (int64)``)."""
    shown = _bounded(str(value), 80)
    return repr(shown) if isinstance(value, str) else f"{shown} ({type(value).__name__})"


def class_labels(classes: Any, *, name: str) -> tuple[str, ...]:
    """Each of a model's ``classes_`` as the stored label it stands for: :func:`engine.dataset.normalize_label`,
    which every import applies (NFKC, lower-cased). InputError when a class is no label (None, NaN, blank)
    or when two classes become the same label.

    >>> class_labels([0, 1], name="m.joblib"), class_labels(["Cancel", "Track_Order", True], name="m.joblib")
    (('0', '1'), ('cancel', 'track_order', 'true'))
    """
    from engine.dataset import normalize_label

    labels: list[str] = []
    first: dict[str, Any] = {}
    for value in list(classes):
        label = normalize_label(value)
        if label is None:
            raise InputError(f"{name} has the class {_class_text(value)}, which is no label (empty once normalised "
                             "like imported labels): fit the model on non-empty labels only")
        if label in first:
            raise InputError(f"{name} has the classes {_class_text(first[label])} and {_class_text(value)}, which are "
                             f"one label once normalised like imported labels (NFKC, lower-cased): {label!r}. "
                             "Retrainer stores them as one label, so merge them (or rename one) and fit the model again")
        first[label] = value
        labels.append(label)
    return tuple(labels)


def load_file(path: Path) -> tuple[Any, str]:
    """The object in a trusted joblib/pickle file and the file's SHA-256; InputError when it cannot be loaded."""
    from sklearn.exceptions import InconsistentVersionWarning

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is not a file: give the path of a model saved with joblib.dump or pickle.dump")
    if path.suffix == SKOPS_SUFFIX:
        raise InputError(f"{path.name} is a skops file, and skops is not part of Retrainer: load it and save it again "
                         "with joblib.dump, after checking it with skops.io.get_untrusted_types")
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            model = joblib.load(path)
        except InconsistentVersionWarning as exc:
            raise InputError(f"{path.name} was pickled by another scikit-learn version ({_bounded(str(exc))}); load "
                             "it where it was made and save it with this version, or retrain it here") from exc
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, ImportError,
                AttributeError, TypeError) as exc:
            raise InputError(f"{path.name} could not be loaded as a joblib or pickle file "
                             f"({_error_text(exc)}); save the fitted model with joblib.dump(model, path)") from exc
    return model, sha256


def check_model(model: Any, *, name: str, texts: list[str], known_labels: set[str]) -> tuple[str, ...]:
    """The model's classes as stored labels (:func:`class_labels`, in the order of its ``classes_``);
    InputError naming what is missing or wrong.

    ``texts`` are a few stored texts it must answer on; ``known_labels`` the labels in the store.
    """
    what = type(model).__name__
    for method in ("predict", "predict_proba"):
        if not callable(getattr(model, method, None)):
            extra = (" (Retrainer's confidence needs probabilities: wrap it with CalibratedClassifierCV before saving, "
                     "or name your pipeline in the `pipeline` setting and Retrainer calibrates it)"
                     if method == "predict_proba" else "")
            raise InputError(f"{name} holds a {what}, which has no {method}{extra}: adopt a fitted classifier")
    classes = getattr(model, "classes_", None)
    if classes is None:
        raise InputError(f"{name} holds a {what} without classes_: adopt a fitted classifier (call fit before saving)")
    labels = class_labels(classes, name=name)
    try:
        answers = [str(a) for a in model.predict(list(texts))]
        proba = model.predict_proba(list(texts))
    except Exception as exc:  # the team's model failed on text: say so, in its words, briefly
        raise InputError(f"{name} cannot classify stored texts: given a list of {len(texts)} str it raised "
                         f"{_error_text(exc)}; an adopted model must take a list of str (the texts), like a "
                         "scikit-learn Pipeline that starts with a text vectorizer; a model fitted on numeric "
                         "features cannot be adopted") from exc
    if len(answers) != len(texts) or getattr(proba, "shape", None) != (len(texts), len(labels)):
        raise InputError(f"{name} answered {len(answers)} labels and probabilities of shape "
                         f"{getattr(proba, 'shape', None)} for {len(texts)} texts and {len(labels)} classes")
    unknown = set(answers) - {str(c) for c in classes}
    if unknown:
        raise InputError(f"{name} predicted {_labels_text(unknown)}, which are not among its classes_")
    overlap = set(labels) & known_labels
    if not overlap:
        raise InputError(
            f"{name} knows none of the stored labels, so it cannot be scored or gated. Its classes: "
            f"{_labels_text(labels)}. Stored labels: {_labels_text(known_labels)}. Import labelled examples with the "
            "model's labels, or adopt the model trained for these labels"
        )
    return labels


def normalisation_effect(model: Any, raw_texts: list[str]) -> dict[str, int | None]:
    """What Retrainer's text normalisation changes in ``model``'s answers on ``raw_texts`` (stored texts as they
    came): ``{"texts": n, "texts_changed": t, "answers_changed": a}``, where ``t`` texts are altered by
    :func:`engine.dataset.normalize_text` (NFKC, case-folded, whitespace collapsed) and ``a`` of them are answered
    otherwise than their raw text; ``a`` is None when the model failed on them (the reason is logged).

    Retrainer gives every model the normalised text, an adopted one included, when it serves and when it is
    scored; a model fitted elsewhere on raw text that tells case apart (``CountVectorizer(lowercase=False)``)
    answers some texts otherwise here than where it was fitted, and this says how many.
    """
    from engine.dataset import normalize_text

    raw = [t for t in raw_texts if isinstance(t, str) and t]
    normalised = [normalize_text(t) for t in raw]
    changed = [i for i, (t, n) in enumerate(zip(raw, normalised)) if t != n and n]
    effect: dict[str, int | None] = {"texts": len(raw), "texts_changed": len(changed), "answers_changed": 0}
    if changed:
        try:
            as_given = np.asarray(model.predict([raw[i] for i in changed]), dtype=object)
            as_served = np.asarray(model.predict([normalised[i] for i in changed]), dtype=object)
            effect["answers_changed"] = int((as_given != as_served).sum())
        except Exception as exc:  # measuring must not stop the adopt: say it was not measured
            log.warning("adopt: the model's answers on raw and normalised text could not be compared: %s",
                        _error_text(exc))
            effect["answers_changed"] = None
    return effect


def normalisation_note(effect: dict | None) -> str | None:
    """A sentence for the adopt's outcome when normalising the text changes some of the model's answers
    (:func:`normalisation_effect`), else None.

    >>> normalisation_note({"texts": 120, "texts_changed": 120, "answers_changed": 31})[:80]
    'Note: Retrainer gives every model normalised text (NFKC, case-folded, whitespace'
    >>> normalisation_note({"texts": 120, "texts_changed": 3, "answers_changed": 0}) is None
    True
    """
    changed = (effect or {}).get("answers_changed")
    if not changed:
        return None
    texts = effect["texts"]
    return (f"Note: Retrainer gives every model normalised text (NFKC, case-folded, whitespace collapsed), this one "
            f"too, when it serves and when it is scored: {changed:,} of {texts:,} stored texts ({changed / texts:.1%}) "
            "get another answer from it than their raw text does, so it answers them otherwise here than where it was "
            "fitted (a model that tells case apart, such as CountVectorizer(lowercase=False), loses that).")


NO_TEXTS = ("there are no labelled texts to check and score an adopted model on: import labelled examples first "
            "(`python -m engine import FILE --labeled`)")


def precheck(path: Path | str, *, texts: list[str], known_labels: set[str]) -> None:
    """The checks of :func:`prepare` made before an adopt command is queued (the CLI), so a file that cannot
    be adopted is refused at once (InputError: exit 2) rather than recorded as a failed retrain.

    ``texts``: a few stored texts (``store.querylog.recent_texts``); none means no labelled data yet.
    The worker checks again on the whole training set when it runs the command.
    """
    if not known_labels:
        raise InputError(NO_TEXTS)
    _load_checked(Path(path), texts=texts, known_labels=known_labels)


def _load_checked(path: Path, *, texts: list[str], known_labels: set[str]) -> tuple[Any, str, tuple[str, ...]]:
    """Load ``path`` and check it on the first SMOKE_ROWS ``texts``: (model, sha256, its classes as labels)."""
    if not texts:
        raise InputError(NO_TEXTS)
    model, sha256 = load_file(path)
    return model, sha256, check_model(model, name=path.name, texts=texts[:SMOKE_ROWS], known_labels=known_labels)


def prepare(path: Path | str, *, texts: list[str], known_labels: set[str], note: str | None = None,
            raw_texts: list[str] | None = None) -> Adopted:
    """Load and check ``path``; the model and its record (params) for :func:`engine.retrain.run_cycle`.

    ``raw_texts``: stored texts as they came (up to NORMALISATION_SAMPLE, ``store.querylog.recent_texts``); the
    record's ``adopted.normalised_text`` says what normalising them changes in the model's answers
    (:func:`normalisation_effect`).
    """
    from engine.pipelines import json_params
    from engine.registry import SKLEARN_VERSION

    path = Path(path)
    model, sha256, labels = _load_checked(path, texts=texts, known_labels=known_labels)
    try:
        params = json_params(model)
    except Exception as exc:  # get_params of a custom estimator may fail; the record says so
        params = {"get_params failed": f"{type(exc).__name__}: {exc}"}
    record = {
        "pipeline": f"adopted:{path.name}",
        "pipeline_kind": "adopted",
        "estimator": type(model).__name__,
        "pipeline_params": params,
        "calibration": None,
        "sklearn_version": SKLEARN_VERSION,
        "adopted": {"file": str(path.resolve()), "sha256": sha256, "note": note or "", "classes": list(labels),
                    "model_classes": [_bounded(str(c), 80) for c in model.classes_]},
    }
    adopted = AdoptedModel(model, labels)
    if raw_texts is not None:
        record["adopted"]["normalised_text"] = normalisation_effect(adopted, raw_texts)
    log.info("adopting %s (%s, %d classes, sha256 %s)", path, type(model).__name__, len(labels), sha256[:12])
    return Adopted(adopted, labels, record)
