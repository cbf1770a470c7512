"""A model version's fingerprint: its predicted probabilities on a fixed probe set of texts.

Recorded when a version is trained (``engine.retrain``) and for older versions by the worker
at start-up while the scikit-learn that pickled them runs (``backfill``). After a library
upgrade, a version pickled by another scikit-learn is loaded only if it reproduces its
fingerprint (``engine.registry.load_checked``): every probability within ``TOLERANCE`` of the
recorded one and the same classes in the same order. A pickle that loads but predicts
differently (a changed estimator, a changed default) is refused like a damaged file.

Why a probe and not the evaluation set: the probe is stored with the version, so it does not
change when new labels arrive, and checking it takes one ``predict_proba`` call on a few
hundred texts (about 20 ms for the default pipeline).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

# Texts in a probe (the first this many distinct texts of a training set, in a stable order).
PROBE_SIZE = 300
# The largest difference allowed between a recorded and a re-predicted probability. Re-running the
# same fitted pipeline is deterministic, so an unchanged estimator reproduces its fingerprint
# exactly or up to floating-point summation order (observed differences: 0 and ~1e-16); a
# behaviour change shows up as differences of 1e-3 and more. 1e-6 separates the two.
TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """``proba[i, j]``: the probability of ``classes[j]`` for ``texts[i]``, predicted under ``sklearn_version``."""

    sklearn_version: str
    texts: tuple[str, ...]
    classes: tuple[str, ...]
    proba: np.ndarray

    def to_json(self) -> bytes:
        """The fingerprint as UTF-8 JSON; floats keep every digit (``repr`` round-trips exactly)."""
        return json.dumps({"sklearn_version": self.sklearn_version, "texts": list(self.texts),
                           "classes": list(self.classes), "proba": self.proba.tolist()},
                          ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "Fingerprint":
        """Parse :meth:`to_json`'s output; ValueError for anything else."""
        try:
            raw = json.loads(data)
            proba = np.asarray(raw["proba"], dtype=float)
            fingerprint = cls(str(raw["sklearn_version"]), tuple(map(str, raw["texts"])),
                              tuple(map(str, raw["classes"])), proba)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a fingerprint: {exc}") from exc
        if proba.shape != (len(fingerprint.texts), len(fingerprint.classes)):
            raise ValueError(f"not a fingerprint: probabilities of shape {proba.shape} for "
                             f"{len(fingerprint.texts)} texts and {len(fingerprint.classes)} classes")
        return fingerprint


def probe_texts(texts: Iterable[str], *, size: int = PROBE_SIZE) -> list[str]:
    """The probe: up to ``size`` distinct texts, those with the smallest SHA-256 first (stable, spread out).

    >>> probe_texts(["b", "a", "b", "c"], size=2)
    ['c', 'b']
    """
    distinct = {t for t in texts if isinstance(t, str) and t}
    return sorted(distinct, key=lambda t: hashlib.sha256(t.encode("utf-8")).digest())[:size]


def take(model: Any, texts: list[str], *, sklearn_version: str) -> Fingerprint:
    """Predict ``texts`` with ``model`` and record the result. ValueError for an empty probe."""
    if not texts:
        raise ValueError("an empty probe: give at least one text")
    return Fingerprint(sklearn_version, tuple(texts), tuple(str(c) for c in model.classes_),
                       np.asarray(model.predict_proba(list(texts)), dtype=float))


def difference(model: Any, fingerprint: Fingerprint) -> float:
    """The largest absolute difference between ``model``'s probabilities on the probe and the recorded ones.

    ``inf`` when the classes differ (other labels, another order) or the model cannot predict the probe.
    """
    if tuple(str(c) for c in getattr(model, "classes_", ())) != fingerprint.classes:
        return float("inf")
    try:
        proba = np.asarray(model.predict_proba(list(fingerprint.texts)), dtype=float)
    except Exception:  # a pickle from another library version can fail in any way when used
        return float("inf")
    if proba.shape != fingerprint.proba.shape or not np.isfinite(proba).all():
        return float("inf")
    return float(np.max(np.abs(proba - fingerprint.proba))) if proba.size else 0.0
