"""The project's error tree (a leaf module: it imports nothing from the project).

``store/`` and ``engine/`` both raise these; ``engine.errors`` re-exports them. Every error
a user can cause derives from ``RetrainerError``; its message says what was wrong and what
would be right, and it is chained to the error behind it (``raise ... from exc``) so the
DuckDB or OS cause is kept for logs. Engine code raises; only entry points (CLI, worker
loop, dashboard) turn errors into messages and events.
"""


class RetrainerError(Exception):
    """Base class of every error Retrainer raises on purpose."""


class SettingsError(RetrainerError):
    """A setting is unknown, of the wrong type, or out of range."""


class StoreError(RetrainerError):
    """The DuckDB store cannot be opened or used (path, permissions, format)."""


class StoreBusyError(StoreError):
    """Another program (a DuckDB shell, a notebook) holds the store file open: wait or close it."""


class DiskFullError(StoreError):
    """The disk that holds the data directory is full: the message names the directory and the free space."""


class InputError(RetrainerError):
    """User input (a file, a label, a text, a version name) is not acceptable."""


class UnknownLabelError(InputError):
    """A label is not one of the labels the model knows."""


class NoModelError(RetrainerError):
    """No model has been deployed yet."""


class ModelLoadError(RetrainerError):
    """A model file is missing, fails its checksum, or was built by another scikit-learn."""


class StaleModelError(ModelLoadError):
    """A model file was written by another scikit-learn version: retrain rather than load it."""


class RegistryError(RetrainerError):
    """A registry operation (deploy, rollback, version lookup) cannot be done."""


class WorkerLockedError(RetrainerError):
    """Another worker already holds the data directory."""


class TrainingError(RetrainerError):
    """A training set cannot be built or a model cannot be fitted."""


class PipelineError(SettingsError):
    """The ``pipeline`` setting names no preset, or a factory that does not give a usable unfitted estimator."""
