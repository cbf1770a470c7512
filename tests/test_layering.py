"""The packages' import rules (README "How the parts fit"), checked on the source itself.

- store/ imports nothing from engine/ (nor from demo/): the error tree lives in store/errors.py;
- only store/ imports duckdb;
- only app.py and pages/ import streamlit;
- the demo data (demo/) is imported only by the demo command (engine/cli.py's ``demo``),
  demo/ itself, tests and benchmarks: never by the serving or deploy path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("engine", "store", "pages", "demo")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _sources(*packages: str) -> list[Path]:
    files = [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]
    return files + ([ROOT / "app.py"] if "pages" in packages else [])


def _offending(files: list[Path], top: str) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {module}" for path in files
            for line, module in _imports(path) if module.split(".")[0] == top]


def test_store_imports_nothing_from_engine_or_demo():
    files = _sources("store")
    assert len(files) > 10  # the rule is checked on the real package
    assert _offending(files, "engine") + _offending(files, "demo") == []


@pytest.mark.parametrize("library, allowed", [("duckdb", ("store",)), ("streamlit", ("pages",))],
                         ids=["duckdb", "streamlit"])
def test_a_library_is_imported_only_by_its_layer(library, allowed):
    others = [p for p in _sources(*PACKAGES) if p.relative_to(ROOT).parts[0] not in allowed and p.name != "app.py"]
    assert _offending(others, library) == []


def test_the_demo_data_is_imported_only_by_the_demo_command():
    found = _offending(_sources("engine", "store", "pages"), "demo")
    assert [entry.split(":")[0] for entry in found] == ["engine/cli.py"]
    tree = ast.parse((ROOT / "engine" / "cli.py").read_text())
    importers = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                 and any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("demo") for n in ast.walk(f))]
    assert importers == ["cmd_demo"]
