"""What every suite shares: result rows, the one table, the machine description, child processes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = Path("/tmp/retrainer-bench")
PACKAGES = ("duckdb", "scikit-learn", "numpy", "pandas", "streamlit", "schedule", "mlflow-skinny")


@dataclass
class Row:
    """One line of the table: a figure beside its baseline measured in the same run."""

    suite: str
    figure: str
    value: float | None          # in ``unit``
    unit: str
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None   # None: no target for this line
    note: str = ""
    higher_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        """How many times better the figure is than its baseline (>1: better)."""
        if self.value is None or self.baseline is None or not self.value or not self.baseline:
            return None
        return self.value / self.baseline if self.higher_is_better else self.baseline / self.value

    def cells(self) -> list[str]:
        ratio = self.ratio
        verdict = {True: "PASS", False: "MISS", None: ""}[self.passed]
        return [self.suite, self.figure, fmt(self.value, self.unit), fmt(self.baseline, self.unit),
                "–" if ratio is None else f"{ratio:,.1f}x", self.target or "–", verdict]


COUNT_UNITS = ("failed",)  # whole numbers
HEADER = ["suite", "figure", "value", "baseline", "ratio", "target", "verdict"]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit in COUNT_UNITS:
        return f"{value:,.0f} {unit}"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    if unit == "ms" and abs(value) < 1:
        return f"{value:.3f} ms"
    if unit == "ms":
        return f"{value:,.0f} ms" if abs(value) >= 100 else f"{value:.1f} ms"
    return f"{value:,.2f} {unit}"


def table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """The one table, as aligned text or as Markdown."""
    body = [r.cells() for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(HEADER)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(HEADER), line(["-" * w for w in widths])] + [line(c) for c in body])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return float(ordered[rank])


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, OS, Python and package versions, the date."""
    cpu = "unknown"
    with contextlib.suppress(OSError):  # not Linux: say "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory": memory,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def run_child(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    """Run ``python -m module args`` in a fresh process; it prints one JSON document last on stdout."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child `{module} {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def print_outcome(suite: str, outcome: "SuiteResult", started: float, *, details: bool = True) -> None:
    """A suite run on its own (``python -m benchmarks.<suite>``): its table, notes and details."""
    print(table(outcome.rows))
    notes = [f"{r.figure}: {r.note}" for r in outcome.rows if r.note]
    if notes:
        print("\nnotes:\n" + "\n".join(f"  {n}" for n in notes))
    if details:
        print("\n" + "\n\n".join(outcome.details))
    say(f"{suite}: {time.perf_counter() - started:.0f} s in all")


def say(message: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class SuiteResult:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)   # Markdown paragraphs/tables for RESULTS.md


def deploy_first_model(ctx: Any, *, seed: int) -> None:
    """Import 2,000 labelled demo rows (100 per intent) and run one retrain cycle, so v0001 serves."""
    import pandas as pd

    from engine.importer import import_file
    from demo.intents import IntentGenerator
    from engine.retrain import run_cycle

    rows = IntentGenerator(seed=seed).balanced(100)
    csv = ctx.settings.home / "seed.csv"
    pd.DataFrame({"text": [e.text for e in rows], "label": [e.label for e in rows]}).to_csv(csv, index=False)
    import_file(ctx, csv, labeled=True)
    result = run_cycle(ctx, trigger="manual", force=True)
    if result.status != "accepted":
        raise RuntimeError(f"the benchmark's first model was not deployed: {result.summary()}")


def middle_of_three(run: Callable[[], dict[str, Any]], *, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``run`` three times: the run whose ``key`` is the median, and all three (sorted by ``key``)."""
    runs = sorted((run() for _ in range(3)), key=lambda r: r[key])
    return runs[1], runs
