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
- its classes overlap the stored labels (the two sets are shown when they do not).

The version's params record the file's name and SHA-256, the note, the classes, the estimator's
JSON-safe ``get_params()`` and the scikit-learn version.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError

log = logging.getLogger(__name__)

# Stored texts the file must answer on before it is scored.
SMOKE_ROWS = 5
SKOPS_SUFFIX = ".skops"
_SHOWN = 20


@dataclass(frozen=True)
class Adopted:
    """A loaded, checked model and its record for the registry."""

    model: Any
    labels: tuple[str, ...]
    params: dict[str, Any]


def _labels_text(labels: set[str] | list[str]) -> str:
    ordered = sorted(labels)
    more = len(ordered) - _SHOWN
    return ", ".join(ordered[:_SHOWN]) + (f" … ({more} more)" if more > 0 else "") if ordered else "(none)"


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
            raise InputError(f"{path.name} was pickled by another scikit-learn version ({exc}); load it where it was "
                             "made and save it with this version, or retrain it here") from exc
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, ImportError,
                AttributeError, TypeError) as exc:
            raise InputError(f"{path.name} could not be loaded as a joblib or pickle file "
                             f"({type(exc).__name__}: {exc}); save the fitted model with joblib.dump(model, path)") from exc
    return model, sha256


def check_model(model: Any, *, name: str, texts: list[str], known_labels: set[str]) -> tuple[str, ...]:
    """The model's classes as stored labels; InputError naming what is missing or wrong.

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
    labels = tuple(str(c) for c in classes)
    try:
        answers = [str(a) for a in model.predict(list(texts))]
        proba = model.predict_proba(list(texts))
    except Exception as exc:  # the team's model failed on text: say so, in its words
        raise InputError(f"{name} cannot classify stored texts ({type(exc).__name__}: {exc}); it must take a list "
                         "of strings, like a scikit-learn Pipeline that starts with a text vectorizer") from exc
    if len(answers) != len(texts) or getattr(proba, "shape", None) != (len(texts), len(labels)):
        raise InputError(f"{name} answered {len(answers)} labels and probabilities of shape "
                         f"{getattr(proba, 'shape', None)} for {len(texts)} texts and {len(labels)} classes")
    unknown = set(answers) - set(labels)
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


def prepare(path: Path | str, *, texts: list[str], known_labels: set[str], note: str | None = None) -> Adopted:
    """Load and check ``path``; the model and its record (params) for :func:`engine.retrain.run_cycle`."""
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
        "adopted": {"file": str(path.resolve()), "sha256": sha256, "note": note or "", "classes": list(labels)},
    }
    log.info("adopting %s (%s, %d classes, sha256 %s)", path, type(model).__name__, len(labels), sha256[:12])
    return Adopted(model, labels, record)
