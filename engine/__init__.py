"""Retrainer's engine: the domain, with no UI.

Public names: :class:`Classifier` (serve, log, hot reload, fallback) and
:func:`load_settings`. They are imported lazily, so that ``import engine.errors``
(which every module does) does not pull scikit-learn into short-lived processes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Classifier", "ClassifierStatus", "Prediction", "Settings", "load_settings"]

_HOMES = {
    "Classifier": "engine.classifier",
    "ClassifierStatus": "engine.classifier",
    "Prediction": "engine.classifier",
    "Settings": "engine.config",
    "load_settings": "engine.config",
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
