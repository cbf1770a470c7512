"""Settings: one frozen object, checked when it is built.

Defaults come from the dataclass below, then ``retrainer.toml`` at the project root
(or the file named by ``RETRAINER_CONFIG``), then environment variables
``RETRAINER_<KEY>``. Unknown keys and wrong types are refused with a message that
names the key and what is valid.

>>> s = load_settings(env={"RETRAINER_TOLERANCE": "0.02"}, path=None)
>>> s.tolerance
0.02
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from engine.errors import SettingsError
from engine.pipelines import DEFAULT_PIPELINE, check_spec
from store.vocabulary import GateMode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "retrainer.toml"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Variables with the prefix that are not settings: another settings file, and the test-only fault hook.
NOT_SETTINGS = frozenset({"RETRAINER_CONFIG", "RETRAINER_KILL_AT"})
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# A Dask scheduler address: "scheme://anything" (tcp://10.0.0.5:8786, tls://..., inproc://...) or "host:port".
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://\S+|[^\s/:]+:\d+)$")
ALPHA_RANGE = (1e-8, 1.0)


@dataclass(frozen=True)
class Settings:
    """Every tunable of Retrainer. Build with :func:`load_settings` (or directly in tests)."""

    home: Path = Path("./data")
    min_confidence: float = 0.5
    use_pseudo_labels: bool = True
    pseudo_label_days: float = 0.0
    max_text_length: int = 100_000
    eval_percent: int = 20
    max_labels: int = 1000
    max_train_rows: int = 500_000
    tolerance: float = 0.01
    gate_mode: str = GateMode.POINT  # a GateMode word (typed str: settings are parsed by their annotation)
    min_eval_rows: int = 200
    min_class_support: int = 5
    per_class_tolerance: float = 0.05
    per_class_min_support: int = 30
    cumulative_tolerance: float = 0.02
    bootstrap_resamples: int = 1000
    drift_reference_days: int = 7
    drift_min_queries: int = 50
    drift_confidence_drop: float = 0.05
    drift_low_share_rise: float = 0.10
    drift_js_threshold: float = 0.15
    drift_retrain: bool = False
    weekly_day: str = "sunday"
    weekly_time: str = "03:00"
    monthly_day: int = 1
    monthly_time: str = "02:00"
    adaptive_every_minutes: int = 15
    adaptive_min_samples: int = 100
    adaptive_max_days: float = 7
    pipeline: str = DEFAULT_PIPELINE
    max_features: int = 200_000
    min_df: int = 2
    seed: int = 0
    cv_folds: int = 0
    search_alphas: str = "1e-5, 2e-5, 5e-5, 1e-4"
    search_jobs: int = 1
    dask_scheduler: str = ""
    poll_seconds: float = 0.5
    heartbeat_seconds: float = 5.0
    worker_stale_seconds: float = 30.0
    reload_seconds: float = 0.5
    flush_seconds: float = 0.2
    flush_rows: int = 500
    api_max_batch: int = 256
    api_max_body_bytes: int = 1_048_576
    dashboard_private: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "home", Path(self.home))
        _check(self)

    # Paths below home: one place names them all.
    @property
    def db_path(self) -> Path:
        return self.home / "retrainer.duckdb"

    @property
    def registry_dir(self) -> Path:
        return self.home / "models"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def worker_lock_path(self) -> Path:
        return self.home / "worker.lock"

    @property
    def search_alpha_values(self) -> tuple[float, ...]:
        """The candidates of ``search_alphas``, in the order given, without repeats."""
        return tuple(dict.fromkeys(parse_alphas(self.search_alphas)))

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)


_RANGES: dict[str, tuple[float, float]] = {
    "min_confidence": (0.0, 1.0),
    "pseudo_label_days": (0.0, 3650),
    "max_text_length": (1, 10_000_000),
    "eval_percent": (1, 50),
    "max_labels": (2, 100_000),
    "max_train_rows": (0, 1_000_000_000),
    "tolerance": (0.0, 0.5),
    "min_eval_rows": (0, 10_000_000),
    "min_class_support": (0, 1_000_000),
    "per_class_tolerance": (0.0, 1.0),
    "per_class_min_support": (1, 1_000_000),
    "cumulative_tolerance": (0.0, 1.0),
    "bootstrap_resamples": (100, 100_000),
    "drift_reference_days": (1, 365),
    "drift_min_queries": (1, 10_000_000),
    "drift_confidence_drop": (0.0, 1.0),
    "drift_low_share_rise": (0.0, 1.0),
    "drift_js_threshold": (0.0, 1.0),
    "monthly_day": (1, 28),
    "adaptive_every_minutes": (1, 24 * 60),
    "adaptive_min_samples": (1, 10_000_000),
    "adaptive_max_days": (0.01, 3650),
    "max_features": (100, 50_000_000),
    "min_df": (1, 1000),
    "seed": (0, 2**32 - 1),
    "cv_folds": (0, 20),
    "search_jobs": (-1, 1024),
    "poll_seconds": (0.01, 60),
    "heartbeat_seconds": (0.1, 3600),
    "worker_stale_seconds": (1, 86400),
    "reload_seconds": (0.05, 60),
    "flush_seconds": (0.01, 60),
    "flush_rows": (1, 1_000_000),
    "api_max_batch": (1, 100_000),
    "api_max_body_bytes": (1024, 1_073_741_824),
}


def _check(s: Settings) -> None:
    for name, (low, high) in _RANGES.items():
        value = getattr(s, name)
        if not (low <= value <= high):
            raise SettingsError(f"setting {name!r} = {value!r} is out of range: use a value from {low} to {high}")
    if s.gate_mode not in tuple(GateMode):
        raise SettingsError(f"setting 'gate_mode' = {s.gate_mode!r} is not a gate mode: use one of {', '.join(GateMode)}")
    if s.weekly_day not in WEEKDAYS:
        raise SettingsError(f"setting 'weekly_day' = {s.weekly_day!r} is not a weekday: use one of {', '.join(WEEKDAYS)}")
    for name in ("weekly_time", "monthly_time"):
        if not _TIME.match(getattr(s, name)):
            raise SettingsError(f"setting {name!r} = {getattr(s, name)!r} is not a time: use HH:MM, 24-hour, e.g. '03:00'")
    _check_search(s)
    check_spec(s.pipeline, call=False)  # its form only: a factory is imported when training (check_training)


def check_training(s: Settings) -> None:
    """Refuse settings that cannot train: a ``pipeline`` factory is imported, called and its estimator checked
    (engine.pipelines.check_spec). Called when the worker, ``run`` and ``retrain`` start, not when settings load,
    so that serving and reading (status, predict, the dashboard, ``Classifier``) never import the team's
    training code. Raises :class:`~engine.errors.PipelineError` (a SettingsError) naming the fix.
    """
    check_spec(s.pipeline)


def parse_alphas(text: str) -> list[float]:
    """The numbers of a comma-separated list; ValueError if one is not a number.

    >>> parse_alphas("1e-5, 2e-5")
    [1e-05, 2e-05]
    """
    return [float(part) for part in text.split(",")]


def _check_search(s: Settings) -> None:
    if s.cv_folds == 1:
        raise SettingsError("setting 'cv_folds' = 1 cannot cross-validate: use 0 (no search) or a value from 2 to 20")
    if s.search_jobs == 0:
        raise SettingsError("setting 'search_jobs' = 0 would run nothing: use -1 (every core) or a value from 1 to 1024")
    low, high = ALPHA_RANGE
    try:
        alphas = parse_alphas(s.search_alphas)
    except ValueError:
        alphas = []
    if not alphas or not all(low <= a <= high for a in alphas) or len(set(alphas)) < 2:
        raise SettingsError(
            f"setting 'search_alphas' = {s.search_alphas!r} is not a list of candidates: use at least two different "
            f"comma-separated values of SGD's alpha from {low} to {high}, e.g. '1e-5, 2e-5, 5e-5, 1e-4'"
        )
    if s.dask_scheduler and not _ADDRESS.match(s.dask_scheduler):
        raise SettingsError(
            f"setting 'dask_scheduler' = {s.dask_scheduler!r} is not a scheduler address: use e.g. "
            "'tcp://10.0.0.5:8786', or leave it empty to search on this machine"
        )
    if s.dask_scheduler and s.cv_folds == 0:
        raise SettingsError(
            f"setting 'dask_scheduler' = {s.dask_scheduler!r} has nothing to run while 'cv_folds' = 0: "
            "set cv_folds to 2 or more to search on the cluster, or leave dask_scheduler empty"
        )


_FIELDS = {f.name: f for f in fields(Settings)}
_KINDS = {"Path": Path, "float": float, "int": int, "bool": bool, "str": str}
_WANT = {Path: "a path (string)", float: "a number", int: "a whole number", bool: "true or false", str: "a string"}


def _kind(key: str) -> type:
    kind = _FIELDS[key].type
    return _KINDS.get(kind, kind)


def _type_ok(kind: type, value: Any) -> bool:
    return {
        Path: isinstance(value, (str, os.PathLike)),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]


def _check_types(s: Settings) -> None:
    """Values given directly (overrides, ``Settings(...)``) get the same type check as the file's."""
    for name in _FIELDS:
        value = getattr(s, name)
        kind = _kind(name)
        if not _type_ok(kind, value):
            raise SettingsError(f"setting {name!r} = {value!r} has the wrong type: use {_WANT[kind]}")


def _coerce(key: str, value: Any, *, from_env: bool) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is valid."""
    kind = _kind(key)
    want = _WANT[kind]
    if from_env:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError as exc:
            raise SettingsError(f"environment variable RETRAINER_{key.upper()}={value!r} is not {want}") from exc
        return Path(text) if kind is Path else text
    if not _type_ok(kind, value) or (kind is Path and not isinstance(value, str)):
        raise SettingsError(f"setting {key!r} = {value!r} has the wrong type: use {want}")
    if kind is Path:
        return Path(value)
    return float(value) if kind is float else value


def load_settings(
    *,
    path: Path | str | None = DEFAULT_CONFIG,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then the settings file, then ``RETRAINER_*`` variables, then ``overrides``.

    ``path=None`` skips the file, and so does a missing ``retrainer.toml`` at the default place (an
    installed package has none: the dataclass holds the same defaults). ``RETRAINER_CONFIG`` in
    ``env`` names another file, which must exist.
    """
    env = os.environ if env is None else env
    if env.get("RETRAINER_CONFIG"):
        path = Path(env["RETRAINER_CONFIG"])
    values: dict[str, Any] = {}
    if path is not None and Path(path) == DEFAULT_CONFIG and not DEFAULT_CONFIG.exists():
        path = None  # installed with pip (no checkout): the defaults below are the file's defaults
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"settings file {path} does not exist: create it or unset RETRAINER_CONFIG") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            if key not in _FIELDS:
                raise SettingsError(f"unknown setting {key!r} in {path}: valid settings are {', '.join(sorted(_FIELDS))}")
            values[key] = _coerce(key, value, from_env=False)
    for name, raw in env.items():
        if not name.startswith("RETRAINER_") or name in NOT_SETTINGS:
            continue
        key = name[len("RETRAINER_"):].lower()
        if key not in _FIELDS:
            raise SettingsError(
                f"unknown environment variable {name}: valid ones are "
                + ", ".join(f"RETRAINER_{k.upper()}" for k in sorted(_FIELDS))
                + " and " + ", ".join(sorted(NOT_SETTINGS))
            )
        values[key] = _coerce(key, raw, from_env=True)
    for key, value in overrides.items():
        if key not in _FIELDS:
            raise SettingsError(f"unknown setting {key!r}: valid settings are {', '.join(sorted(_FIELDS))}")
        values[key] = value
    return Settings(**values)
