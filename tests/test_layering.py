"""The packages' import rules (README "How the parts fit"), checked on the source itself.

- store/ imports nothing from engine/ (nor from demo/): the error tree lives in store/errors.py;
- only store/ imports duckdb;
- only app.py and pages/ import streamlit;
- the demo data (demo/) is imported only by the demo command (engine/cli.py's ``demo``),
  demo/ itself, tests and benchmarks: never by the serving or deploy path;
- status, outcome, trigger, kind and severity words are spelled out only in store/vocabulary.py
  and in migrations: engine/ and store/ compare, pass and bind the enum members.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import pytest

from store import vocabulary
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


WORDS = {m.value for enum in vars(vocabulary).values()
         if isinstance(enum, type) and issubclass(enum, StrEnum) and enum is not StrEnum for m in enum}
WORD_ARGUMENTS = {"kind", "severity", "status", "trigger", "role", "mode", "outcome", "decision"}
SQL_WORD = re.compile(r"(?:=|<>|IN\s*\(|,)\s*'(" + "|".join(sorted(WORDS)) + r")'")


def _spelled_words(path: Path) -> list[str]:
    """Vocabulary words written as literals where a member belongs: compared, passed as a word
    argument (``kind="gate"``), or quoted inside an SQL statement."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        literals: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                literals += side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        elif isinstance(node, ast.keyword) and node.arg in WORD_ARGUMENTS:
            literals.append(node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_WORD.search(node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} SQL '{SQL_WORD.search(node.value).group(1)}'")
        found += [f"{path.relative_to(ROOT)}:{lit.lineno} {lit.value!r}" for lit in literals
                  if isinstance(lit, ast.Constant) and lit.value in WORDS]
    return found


# Literals that are not the vocabulary's words, though spelled alike.
NOT_WORDS = {
    "engine/cli.py": "'worker'",   # the `worker` subcommand's name (argparse), not the event kind
    "store/views/sql.py": "SQL",   # example queries a person reads and edits on the SQL page
}


def test_vocabulary_words_are_members_not_literals():
    files = [p for p in _sources("engine", "store") if p.name not in ("vocabulary.py", "schema.py")]
    assert len(WORDS) > 30
    hits = [hit for p in files for hit in _spelled_words(p)]
    assert [h for h in hits if NOT_WORDS.get(h.split(":")[0], "\0") not in h.split(" ", 1)[1]] == []


def test_serving_and_the_error_tree_do_not_import_duckdb():
    """A process that only serves (engine.Classifier) or raises the project's errors never loads DuckDB."""
    code = "import sys, engine.classifier, engine.errors, store.vocabulary; print('duckdb' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout.strip()) == (0, "False"), out.stderr
