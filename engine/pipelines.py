"""What a model is: a built-in preset, or a factory the team names (setting ``pipeline``).

``pipeline`` (env ``RETRAINER_PIPELINE``) is one of

- ``"word"``: TF-IDF over word 1-2 grams + SGD (logistic loss). Retrainer's first pipeline.
- ``"char"`` (the default): TF-IDF over character 1-4 grams inside word boundaries (``char_wb``) + the same SGD.
- ``"word+char"``: both feature sets side by side (a ``FeatureUnion``) + the same SGD.
- ``"package.module:function"``: a function of the team's, called with no arguments, that returns
  an **unfitted** scikit-learn estimator (usually a ``Pipeline``) whose ``fit(X, y)`` and
  ``predict(X)`` take a list of strings.

Why ``char`` is the default: measured by ``benchmarks/presets.py`` on two real corpora and the
demo's intents (table in benchmarks/RESULTS.md, reason in the README). The word tokenizer makes one
token of a whole unspaced Chinese or Japanese sentence, so ``word`` alone fails on those scripts;
``word+char`` is as accurate as ``char`` but its FeatureUnion costs several times more per query.

A factory's form is checked when the settings load; the factory itself when training starts
(:func:`check_spec`, from ``engine.config.check_training``: the worker, ``run``, ``retrain``) and again before every fit
(:func:`build_estimator`): importable, callable, returns an estimator (``get_params``, ``fit``),
unfitted, with ``predict``, that ``sklearn.base.clone`` can copy. Each failure is a
:class:`~engine.errors.PipelineError` whose message names the fix.

Confidence: Retrainer needs ``predict_proba`` (the confidence filter, the dashboard, the gate's
calibration figure). An estimator without it (``LinearSVC``, ``RidgeClassifier``, SGD with the
hinge loss) is wrapped in ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``: Platt
scaling fitted on cross-validated decision values, then one copy of the estimator fitted on all
rows, so serving costs one model call. The wrapping is recorded in the version's params
(``calibration``), never done silently.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from engine.errors import PipelineError

PRESETS = ("word", "char", "word+char")
DEFAULT_PIPELINE = "char"
# "package.module:function": dotted Python identifiers, one colon, one identifier.
FACTORY_PATTERN = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")
# Folds of the calibration of an estimator without predict_proba (fewer when a label has fewer rows).
CALIBRATION_FOLDS = 3
# The presets read this many characters of a text (the rest of a long document is stored, not featurised).
FEATURE_CHARS = 10_000
# Below this many training rows, min_df is relaxed to 1 (a tiny set would lose most of its words).
SMALL_TRAINING_SET = 200
_SPEC_HELP = (f"use one of the presets {', '.join(PRESETS)} or 'package.module:function' naming a function "
              "that returns an unfitted scikit-learn estimator (e.g. a Pipeline)")


def is_preset(spec: str) -> bool:
    return spec in PRESETS


def check_spec(spec: str, *, call: bool = True) -> None:
    """Refuse a ``pipeline`` setting that is neither a preset nor a working factory.

    With ``call`` (the default) a factory is imported, called and its estimator checked
    (see :func:`build_estimator`); raises :class:`PipelineError`.

    >>> check_spec("char")
    >>> check_spec("words")
    Traceback (most recent call last):
    ...
    engine.errors.PipelineError: setting 'pipeline' = 'words' is neither a preset nor a factory: use one of the presets word, char, word+char or 'package.module:function' naming a function that returns an unfitted scikit-learn estimator (e.g. a Pipeline)
    """
    if not isinstance(spec, str):
        raise PipelineError(f"setting 'pipeline' = {spec!r} has the wrong type: {_SPEC_HELP}")
    if is_preset(spec):
        return
    if not FACTORY_PATTERN.match(spec):
        raise PipelineError(f"setting 'pipeline' = {spec!r} is neither a preset nor a factory: {_SPEC_HELP}")
    if call:
        _from_factory(spec)


def _factory(spec: str) -> Callable[[], Any]:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: module {module_name!r} cannot be imported ({exc}); install the package "
            "that provides it in this environment (`pip install ...`) or put its folder on PYTHONPATH"
        ) from exc
    except Exception as exc:  # the team's module raised while importing: say what, not where
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: importing module {module_name!r} failed ({type(exc).__name__}: {exc}); "
            "fix the module so that `import` works"
        ) from exc
    try:
        factory = getattr(module, attribute)
    except AttributeError as exc:
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: module {module_name!r} has no {attribute!r}; name a function defined "
            "in it, as 'package.module:function'"
        ) from exc
    if not callable(factory):
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: {attribute!r} is a {type(factory).__name__}, not callable; name a "
            "function that takes no arguments and returns an unfitted estimator"
        )
    return factory


def _from_factory(spec: str) -> Any:
    """Call the factory and check what it returns; the estimator, unfitted."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    factory = _factory(spec)
    try:
        estimator = factory()
    except Exception as exc:
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: calling the factory raised {type(exc).__name__}: {exc}; it must take no "
            "arguments and return an unfitted estimator"
        ) from exc
    what = type(estimator).__name__
    if not (hasattr(estimator, "get_params") and hasattr(estimator, "fit")):
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: the factory returned a {what}, not a scikit-learn estimator (one with "
            "fit and get_params); return e.g. Pipeline([('tfidf', TfidfVectorizer()), ('clf', LogisticRegression())])"
        )
    if not hasattr(estimator, "predict"):
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: the factory's {what} has no predict method; end the pipeline with a "
            "classifier (e.g. LogisticRegression, SGDClassifier, LinearSVC)"
        )
    try:
        check_is_fitted(estimator)
        fitted = True
    except NotFittedError:
        fitted = False
    except (TypeError, AttributeError, ValueError):  # not checkable: treat as unfitted, clone() decides below
        fitted = False
    if fitted:
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: the factory returned a fitted {what}; return a new, unfitted one "
            "(Retrainer fits it on every training set). To serve a model you already trained, adopt it: "
            "`python -m engine adopt FILE`"
        )
    try:
        clone(estimator)
    except Exception as exc:
        raise PipelineError(
            f"setting 'pipeline' = {spec!r}: the factory's {what} cannot be cloned ({type(exc).__name__}: {exc}); "
            "scikit-learn's rule: every __init__ argument is stored unchanged under its own name, and nothing "
            "else is done in __init__"
        ) from exc
    return estimator


@dataclass(frozen=True)
class Built:
    """An unfitted estimator and what it is (for the version's params)."""

    estimator: Any
    spec: str
    kind: str                 # "preset" or "factory"
    needs_calibration: bool   # no predict_proba: fit() wraps it in CalibratedClassifierCV


def build_estimator(spec: str = DEFAULT_PIPELINE, *, max_features: int = 200_000, min_df: int = 2, seed: int = 0,
                    n_rows: int | None = None) -> Built:
    """The unfitted estimator of ``spec``; a factory is checked again here (raises PipelineError).

    ``max_features``, ``min_df`` and ``seed`` shape the presets only; a team's factory is used as it
    builds its estimator. ``min_df`` is relaxed to 1 below 200 training rows (``n_rows``).

    >>> build_estimator("char", seed=3).estimator.named_steps["clf"].random_state
    3
    """
    check_spec(spec, call=False)
    if not is_preset(spec):
        estimator = _from_factory(spec)
        return Built(estimator, spec, "factory", not hasattr(estimator, "predict_proba"))
    if n_rows is not None and n_rows < SMALL_TRAINING_SET:
        min_df = 1
    return Built(_preset(spec, max_features=max_features, min_df=min_df, seed=seed), spec, "preset", False)


def _preset(spec: str, *, max_features: int, min_df: int, seed: int) -> Any:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline

    def words() -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, max_features=max_features, sublinear_tf=True,
                               dtype=np.float32, preprocessor=feature_text)

    def chars() -> TfidfVectorizer:
        # char_wb: n-grams inside word boundaries (padded with a space), so an unspaced Chinese or
        # Japanese sentence still yields its characters and their pairs, triples and quadruples.
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=min_df, max_features=max_features,
                               sublinear_tf=True, dtype=np.float32, preprocessor=feature_text)

    features: Any = {"word": words, "char": chars}.get(spec)
    features = features() if features else FeatureUnion([("word", words()), ("char", chars())])
    clf = SGDClassifier(loss="log_loss", alpha=2e-5, max_iter=10, tol=1e-3, random_state=seed, n_jobs=2, average=False)
    return Pipeline([("tfidf", features), ("clf", clf)])


def feature_text(text: str) -> str:
    """What the presets' vectorizers read of a text: its first ``FEATURE_CHARS`` characters, lower-cased.

    The vectorizers' own preprocessing is lower-casing only (no accent stripping), so short texts get
    exactly the features they got before; a long document (stored whole, up to ``max_text_length``) is
    classified by its first 10,000 characters (about four pages), which bounds the time and memory of a
    fit and of one prediction (benchmarks/presets.py measures both with 20,000-character documents).

    >>> feature_text("Where Is MY Order")
    'where is my order'
    >>> len(feature_text("x" * 50_000))
    10000
    """
    return text[:FEATURE_CHARS].lower()


def calibrated(estimator: Any, labels: Any) -> tuple[Any, dict[str, Any]]:
    """``estimator`` wrapped in CalibratedClassifierCV, and the record of it for the params.

    Folds: ``CALIBRATION_FOLDS``, fewer when a label has fewer training rows; a label with a single
    row cannot be calibrated (PipelineError naming it).
    """
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    folds = int(min(CALIBRATION_FOLDS, counts.min()))
    if folds < 2:
        raise PipelineError(
            f"the pipeline has no predict_proba, so Retrainer calibrates it with CalibratedClassifierCV, which needs "
            f"at least 2 training rows per label; label {values[counts.argmin()]!r} has {counts.min()}: label more "
            "examples of it, or end the pipeline with a classifier that has predict_proba (e.g. LogisticRegression)"
        )
    wrapper = CalibratedClassifierCV(estimator, method="sigmoid", cv=StratifiedKFold(folds), ensemble=False)
    record = {
        "wrapper": "CalibratedClassifierCV",
        "method": "sigmoid",
        "cv_folds": folds,
        "ensemble": False,
        "why": f"{type(estimator).__name__} has no predict_proba; Retrainer's confidence is Platt scaling fitted on "
               f"{folds}-fold cross-validated decision values, serving one copy of the estimator fitted on all rows",
    }
    return wrapper, record


def json_params(estimator: Any) -> dict[str, Any]:
    """``estimator.get_params(deep=True)`` made JSON-safe: estimators and callables by name, the rest as text.

    >>> from sklearn.linear_model import SGDClassifier
    >>> json_params(SGDClassifier(alpha=1e-4))["alpha"]
    0.0001
    """
    return {str(k): _json_value(v) for k, v in sorted(estimator.get_params(deep=True).items())}


def _json_value(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return _json_value(value.item(), depth)
    if depth < 3 and isinstance(value, (list, tuple)):
        return [_json_value(v, depth + 1) for v in value]
    if depth < 3 and isinstance(value, dict):
        return {str(k): _json_value(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "get_params"):
        return type(value).__name__
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"
