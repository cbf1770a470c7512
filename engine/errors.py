"""The project's error tree, re-exported from its leaf module ``store.errors``.

The tree lives in ``store/errors.py`` because both ``store/`` and ``engine/`` raise these
errors and ``store/`` imports nothing from ``engine/``. Import from either module.
"""

from store.errors import (DiskFullError, InputError, ModelLoadError, NoModelError, PipelineError, RegistryError,
                          RetrainerError, SettingsError, StaleModelError, StoreBusyError, StoreError, TrainingError,
                          UnknownLabelError, WorkerLockedError)

__all__ = [
    "DiskFullError", "InputError", "ModelLoadError", "NoModelError", "PipelineError", "RegistryError", "RetrainerError",
    "SettingsError",
    "StaleModelError", "StoreBusyError", "StoreError", "TrainingError", "UnknownLabelError", "WorkerLockedError",
]
