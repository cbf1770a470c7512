"""`pip install .` and `pip install -e .` in a fresh virtual environment: the `retrainer` command and
`from engine import Classifier` from any directory.

To avoid a long download the fresh environment sees the test environment's packages through a
``.pth`` file, and pip runs with ``--no-index --no-build-isolation``: every pinned runtime package
must already be satisfied at exactly its pinned version, or pip would have to fetch it and fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.context import Context
from tests.conftest import ROOT, labelled_frame

pytestmark = pytest.mark.slow


def fresh_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_install(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                           "--no-build-isolation", "--quiet", *args], capture_output=True, text=True, timeout=600)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def subcommands(help_text: str) -> list[str]:
    """The COMMAND names argparse lists, four spaces in."""
    return re.findall(r"^    ([a-z][a-z-]*)\s", help_text, re.M)


def source_copy(where: Path) -> Path:
    """What `pip install .` reads, copied, so that the build leaves nothing in the checkout."""
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy2(ROOT / name, where / name)
    for package in ("engine", "store", "demo"):
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
    return where


def test_pip_install_gives_the_retrainer_command_and_the_classifier_from_any_directory(tmp_path):
    python = fresh_venv(tmp_path / "venv")
    (tmp_path / "src").mkdir()
    done = pip_install(python, str(source_copy(tmp_path / "src")))
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "service"
    elsewhere.mkdir()
    home = tmp_path / "home"
    env = clean_env(RETRAINER_HOME=str(home))

    found = subprocess.run([str(python), "-c", "import engine, store; print(engine.__file__); print(store.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    site = Path(sysconfig.get_paths(vars={"base": str(tmp_path / "venv"), "platbase": str(tmp_path / "venv")})["purelib"])
    assert [Path(f).parent.parent for f in found] == [site, site]  # the installed copy, not the checkout

    retrainer = tmp_path / "venv" / "bin" / "retrainer"
    ours = subprocess.run([str(retrainer), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True)
    theirs = subprocess.run([sys.executable, "-m", "engine", "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ours.returncode == 0 and ours.stdout.startswith("usage: retrainer ")
    assert subcommands(ours.stdout) == subcommands(theirs.stdout)
    assert {"worker", "import", "retrain", "adopt", "status", "predict"} <= set(subcommands(ours.stdout))

    labelled = elsewhere / "labelled.csv"
    labelled_frame(20, seed=1).to_csv(labelled, index=False)
    imported = subprocess.run([str(retrainer), "import", str(labelled), "--labeled"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    trained = subprocess.run([str(retrainer), "retrain", "--wait"], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert "retrain #1 accepted" in trained.stdout

    serve = ("from engine import Classifier\n"
             f"clf = Classifier(home={str(home)!r})\n"
             "p = clf.predict('i want my money back')\n"
             "clf.close()\n"
             "print(p.label, p.version)\n")
    served = subprocess.run([str(python), "-c", serve], cwd=elsewhere, env=clean_env(), capture_output=True, text=True,
                            timeout=300)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["request_refund", "v0001"]
    status = json.loads(subprocess.run([str(retrainer), "status", "--json"], cwd=elsewhere, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert (status["active"]["version"], status["active"]["pipeline"]) == ("v0001", "char")
    assert status["spool_backlog_files"] == 1  # the served query was logged, waiting for the worker


def test_pip_install_editable_runs_the_checkout(tmp_path):
    python = fresh_venv(tmp_path / "venv")
    done = pip_install(python, "-e", str(ROOT))
    assert done.returncode == 0, done.stderr
    found = subprocess.run([str(python), "-c", "import engine; print(engine.__file__)"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == ROOT / "engine" / "__init__.py"
    Context.open(load_settings(env={}, home=tmp_path / "home"))  # status refuses a directory with no store (exit 2)
    ours = subprocess.run([str(tmp_path / "venv" / "bin" / "retrainer"), "status"], cwd=tmp_path,
                          env=clean_env(RETRAINER_HOME=str(tmp_path / "home")), capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.startswith(f"data directory   {tmp_path / 'home'}")
