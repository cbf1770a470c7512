"""The store: the only package that imports duckdb.

``open_store(path)`` (``store.schema``) returns a :class:`~store.db.Database` whose schema is up
to date; every read and write elsewhere goes through the named functions in this package's
modules. Importing the package or its leaf modules (``store.errors``, ``store.vocabulary``) does
not import duckdb: ``Database`` and ``open_store`` are loaded on first use, so a process that only
serves (``engine.Classifier``) or prints an error never pays for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Database", "open_store"]

_HOMES = {"Database": "store.db", "open_store": "store.schema"}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
