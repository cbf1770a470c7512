"""The store: the only package that imports duckdb.

``open_store(path)`` returns a :class:`Database` whose schema is up to date; every
read and write elsewhere goes through the named functions in this package's modules.
"""

from __future__ import annotations

import threading
from pathlib import Path

from store.errors import StoreError
from store.db import Database
from store.schema import LATEST, current_version, migrate

__all__ = ["Database", "open_store"]

_migrated: set[Path] = set()
_lock = threading.Lock()


def open_store(path: Path | str, *, create: bool = True) -> Database:
    """The store at ``path``, created and migrated on first use in this process.

    With ``create=False`` a missing file is not created (readers on a fresh machine
    get an empty view instead; see ``Database.exists``).
    """
    path = Path(path).absolute()
    db = Database(path)
    with _lock:
        if path in _migrated and path.exists():
            return db
        if not path.exists() and not create:
            return db
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc.strerror}") from exc
        # A reader's check first: only a store that is behind takes the write lock to migrate.
        version = current_version(db) if path.exists() else 0
        if version < LATEST:
            version = migrate(db)
        if version > LATEST:
            raise StoreError(
                f"{path} was written by a newer Retrainer (schema {version}, this one knows {LATEST}): upgrade Retrainer"
            )
        _migrated.add(path)
    return db
