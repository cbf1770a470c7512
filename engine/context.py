"""What every engine operation needs: the settings, the store and the clock."""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import Clock, utcnow
from engine.config import Settings
from engine.errors import StoreError
from store import Database, open_store


@dataclass(frozen=True)
class Context:
    settings: Settings
    db: Database
    clock: Clock = utcnow

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = utcnow, create: bool = True) -> "Context":
        """Open (and with ``create``, make) the data directory and its store."""
        home = settings.home
        if create:
            try:
                home.mkdir(parents=True, exist_ok=True)
                settings.registry_dir.mkdir(exist_ok=True)
                settings.spool_dir.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {home}: {exc.strerror} (set RETRAINER_HOME to a writable directory)") from exc
        return cls(settings, open_store(settings.db_path, create=create), clock)
