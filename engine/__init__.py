"""Retrainer's engine: the domain, with no UI.

Public names: :class:`Classifier` (serve, log, hot reload, fallback) and
:func:`load_settings`. Everything else is reached through its module.
"""

from engine.classifier import Classifier, ClassifierStatus, Prediction
from engine.config import Settings, load_settings

__all__ = ["Classifier", "ClassifierStatus", "Prediction", "Settings", "load_settings"]
