"""Model versions on disk and the pointer to the active one.

Layout of ``<home>/models``::

    v0001.pkl         the fitted pipeline (pickle protocol 5, zlib-compressed)
    v0001.probe.json  its fingerprint: probabilities on a fixed probe set (engine.fingerprint)
    ACTIVE.json       which version serves, its checksum, and the versions that served before

Files are written to a temporary file in the same folder, fsynced, moved into place
with ``os.replace`` and the folder fsynced, so a reader sees the old file or the new
one, never half of one. A model is loaded only from this folder, only under a valid
version name, and only after its SHA-256 matches the one recorded when it was written
(pickles are code: see DESIGN.md). A pickle from another scikit-learn serves only if it
reproduces its fingerprint (``load_checked``); otherwise it is refused as stale.

Why the standard library's pickle and not ``joblib.dump``: joblib pickles through a
pure-Python pickler; for our pipelines that measured 0.57 s to dump and 0.10 s to load,
against 0.07 s and 0.012 s for the C pickler (same bytes on disk after zlib, same
security model: both run pickle). Loads happen on every deployment in every serving
process, so the 8x matters for hot reload.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from importlib.metadata import version as _package_version

from engine import faults, fingerprint
from engine.errors import InputError, ModelLoadError, StaleModelError

# ASCII digits only, and \Z rather than $ (which would accept "v0001\n").
# The running scikit-learn, read without importing it (short CLI commands stay fast).
SKLEARN_VERSION = _package_version("scikit-learn")

VERSION_PATTERN = re.compile(r"^v[0-9]{4,9}\Z")
ACTIVE_FILE = "ACTIVE.json"
MODEL_SUFFIX = ".pkl"
FINGERPRINT_SUFFIX = ".probe.json"
HISTORY_LENGTH = 50
# A pointer with HISTORY_LENGTH entries and long label lists stays far below this.
MAX_POINTER_BYTES = 4_000_000


def check_version(version: str) -> str:
    """Return ``version`` if it is a valid name (v0001, v0002, ...); refuse anything else.

    >>> check_version("v0007")
    'v0007'
    """
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise InputError(f"{version!r} is not a model version: versions look like v0007 (see `python -m engine status`)")
    return version


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(version: str) -> int:
    return int(check_version(version)[1:])


def model_file(registry_dir: Path, version: str) -> Path:
    """The file of ``version``, which is always inside ``registry_dir``."""
    path = (registry_dir / f"{check_version(version)}{MODEL_SUFFIX}").resolve()
    if path.parent != registry_dir.resolve():
        raise InputError(f"version {version!r} points outside the model registry {registry_dir}")
    return path


def atomic_write(path: Path, data: bytes, *, fault_points: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix.

    ``fault_points=False``: a side file (a fingerprint) whose loss a restart repairs; the crash tests'
    numbered atomic writes stay the model file and the pointer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if fault_points:
            faults.point("atomic_write_before_replace")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fault_points:
        faults.point("atomic_write_after_replace")
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SavedModel:
    version: str
    file: str
    sha256: str
    size_bytes: int
    sklearn_version: str


def save_model(registry_dir: Path, version: str, model: Any) -> SavedModel:
    """Write a fitted model into the registry atomically; return what was written."""
    data = zlib.compress(pickle.dumps(model, protocol=5), 3)
    path = model_file(registry_dir, version)
    faults.point("save_model_before_write")
    atomic_write(path, data)
    faults.point("save_model_after_write")
    return SavedModel(version, path.name, sha256_of(data), len(data), SKLEARN_VERSION)


def fingerprint_file(registry_dir: Path, version: str) -> Path:
    """``<registry>/v0007.probe.json``: the version's fingerprint (engine.fingerprint)."""
    return Path(registry_dir) / f"{check_version(version)}{FINGERPRINT_SUFFIX}"


def save_fingerprint(registry_dir: Path, version: str, probe: fingerprint.Fingerprint) -> None:
    """Write a version's fingerprint beside its model file (atomically; a missing one is recorded again by the
    worker at start-up, see ``Worker.backfill_fingerprints``)."""
    atomic_write(fingerprint_file(registry_dir, version), probe.to_json(), fault_points=False)


def read_fingerprint(registry_dir: Path, version: str) -> fingerprint.Fingerprint | None:
    """The version's fingerprint, or None if none was recorded or the file is unreadable."""
    try:
        return fingerprint.Fingerprint.from_json(fingerprint_file(registry_dir, version).read_bytes())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model; ``verified`` says how a pickle from another scikit-learn was accepted (else None)."""

    model: Any
    verified: str | None = None


def load_model(registry_dir: Path, version: str, *, sha256: str, sklearn_version: str) -> Any:
    """Load a registry model: :func:`load_checked`'s model."""
    return load_checked(registry_dir, version, sha256=sha256, sklearn_version=sklearn_version).model


def load_checked(registry_dir: Path, version: str, *, sha256: str, sklearn_version: str) -> LoadedModel:
    """Load a registry model after checking its name and checksum; a pickle from another scikit-learn
    (recorded so, or warned so when unpickled) serves only if it reproduces its fingerprint.

    Such a model comes back with ``verified`` = "v0007 pickled by 1.8.0 verified under 1.9.1 (...)".
    Raises ModelLoadError saying which check failed and what to do; StaleModelError when a pickle
    from another scikit-learn has no fingerprint or does not reproduce it.
    """
    data = _checked_bytes(model_file(registry_dir, version), version, sha256=sha256)
    from sklearn.exceptions import InconsistentVersionWarning

    pickled_by = sklearn_version
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            model = pickle.loads(zlib.decompress(data))
        except Exception as exc:  # a damaged pickle (or one from a very different library) can raise nearly anything
            raise ModelLoadError(f"model {version}: the file could not be unpickled ({type(exc).__name__}: {exc})") from exc
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            pickled_by = str(warning.message.original_sklearn_version)
    if pickled_by == SKLEARN_VERSION:
        return LoadedModel(model)
    probe = read_fingerprint(registry_dir, version)
    if probe is None:
        raise StaleModelError(
            f"model {version} was pickled by scikit-learn {pickled_by}, this process has {SKLEARN_VERSION}, and "
            "no fingerprint was recorded to verify it: retrain (`python -m engine retrain`) rather than trust it")
    diff = fingerprint.difference(model, probe)
    if not diff <= fingerprint.TOLERANCE:
        shown = "other classes or an error" if diff == float("inf") else f"{diff:.2g}"
        raise StaleModelError(
            f"model {version} was pickled by scikit-learn {pickled_by} and does not reproduce its fingerprint under "
            f"{SKLEARN_VERSION} (probabilities on {len(probe.texts)} probe texts differ by up to {shown}; "
            f"tolerance {fingerprint.TOLERANCE:g}): retrain (`python -m engine retrain`)")
    return LoadedModel(model, f"{version} pickled by {pickled_by} verified under {SKLEARN_VERSION} "
                              f"({len(probe.texts)} probe texts, largest difference {diff:.1g})")


def _checked_bytes(path: Path, version: str, *, sha256: str) -> bytes:
    """The file's bytes after its SHA-256 matched ``sha256``; ModelLoadError saying what is wrong otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model {version}: file {path} is missing") from exc
    except OSError as exc:
        raise ModelLoadError(f"model {version}: cannot read {path}: {exc.strerror}") from exc
    actual = sha256_of(data)
    if actual != sha256:
        raise ModelLoadError(
            f"model {version}: checksum mismatch (file {actual[:12]}…, registry {sha256[:12]}…): "
            "the file was changed or damaged after it was written; it will not be loaded"
        )
    return data


class FileCheck:
    """Checks that model files on disk still match the registry, cheaply when they are unchanged.

    :meth:`problem` hashes a file only when its size, mtime, ctime or inode differ from the last
    time it matched (a write of any kind changes its ctime, which no tool can set back), so a check
    of an unchanged file is one ``stat``. Used by the worker's fallback monitor: a running process
    never reloads a version whose pointer did not change, so without it a file damaged after it was
    loaded went unnoticed until a restart.
    """

    def __init__(self, registry_dir: Path):
        self.registry_dir = Path(registry_dir)
        self._matched: dict[tuple[str, str], tuple[int, int, int, int]] = {}  # (version, sha256) -> stat

    def problem(self, ref: "ModelRef") -> str | None:
        """Why ``ref``'s file no longer matches its recorded SHA-256 (missing, unreadable, changed), or None."""
        path = model_file(self.registry_dir, ref.version)
        key = (ref.version, ref.sha256)
        try:
            st = os.stat(path)
        except OSError:
            st = None
        stamp = None if st is None else (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if stamp is not None and self._matched.get(key) == stamp:
            return None
        self._matched.pop(key, None)
        try:
            _checked_bytes(path, ref.version, sha256=ref.sha256)
        except ModelLoadError as exc:
            return str(exc)
        if stamp is not None:
            self._matched[key] = stamp
        return None


@dataclass(frozen=True)
class ModelRef:
    """Enough to find and verify one version's file."""

    version: str
    sha256: str
    sklearn_version: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActivePointer:
    """Which version serves, since when, and which served before (newest first)."""

    active: ModelRef
    deployed_at: str
    history: tuple[ModelRef, ...] = field(default=())

    def to_json(self) -> bytes:
        doc = {
            "active": asdict(self.active),
            "deployed_at": self.deployed_at,
            "history": [asdict(ref) for ref in self.history],
        }
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ActivePointer":
        doc = json.loads(data)

        def ref(d: dict) -> ModelRef:
            return ModelRef(d["version"], d["sha256"], d["sklearn_version"], tuple(d.get("labels", ())))

        return cls(ref(doc["active"]), doc["deployed_at"], tuple(ref(d) for d in doc.get("history", [])))


def read_active(registry_dir: Path) -> ActivePointer | None:
    """The active pointer, or None when nothing was ever deployed."""
    path = registry_dir / ACTIVE_FILE
    advice = "the worker rewrites it from the store at its next start (or run `python -m engine rollback`)"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, no permission
        raise ModelLoadError(f"{path} cannot be read ({exc.strerror}): {advice}") from exc
    if len(data) > MAX_POINTER_BYTES:
        raise ModelLoadError(f"{path} is damaged (it holds {len(data):,} bytes, a pointer is a few KB): {advice}")
    try:
        pointer = ActivePointer.from_json(data)
        for ref in (pointer.active, *pointer.history):
            check_version(ref.version)  # a hand-edited pointer must not name a path
        return pointer
    except RecursionError as exc:  # deeply nested JSON
        raise ModelLoadError(f"{path} is damaged (nested too deeply to be a pointer): {advice}") from exc
    except (ValueError, KeyError, TypeError, AttributeError, InputError) as exc:
        raise ModelLoadError(f"{path} is damaged ({exc}): {advice}") from exc


def active_stamp(registry_dir: Path) -> tuple[int, int] | None:
    """A cheap fingerprint of the pointer file (mtime, inode) to notice deployments."""
    try:
        st = os.stat(registry_dir / ACTIVE_FILE)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def write_active(registry_dir: Path, pointer: ActivePointer) -> None:
    """Switch the active version atomically."""
    atomic_write(registry_dir / ACTIVE_FILE, pointer.to_json())


def point_to(registry_dir: Path, ref: ModelRef, *, deployed_at: str) -> ActivePointer:
    """Make ``ref`` active, pushing the current one onto the history; return the new pointer."""
    current = read_active(registry_dir)
    history: list[ModelRef] = []
    if current is not None:
        history = [current.active, *current.history]
    history = [h for h in history if h.version != ref.version][:HISTORY_LENGTH]
    pointer = ActivePointer(ref, deployed_at, tuple(history))
    write_active(registry_dir, pointer)
    return pointer
