"""Tests for engine.config: defaults, the settings file, environment variables, and refusals."""

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from engine.config import DEFAULT_CONFIG, WEEKDAYS, Settings, load_settings
from engine.errors import SettingsError

WEEKDAY_LIST = ", ".join(WEEKDAYS)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ------------------------------------------------------------------------------


def test_retrainer_toml_lists_every_setting_with_its_default():
    in_file = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert sorted(in_file) == sorted(defaults)
    # The file holds strings where the dataclass holds a Path.
    assert {k: (Path(v) if k == "home" else v) for k, v in in_file.items()} == defaults


def test_loading_the_default_file_gives_the_dataclass_defaults():
    assert load_settings(env={}) == Settings()
    assert load_settings(env={}, path=None) == Settings()


def test_paths_below_home(tmp_path):
    s = load_settings(env={}, path=None, home=tmp_path)
    assert (s.db_path, s.registry_dir, s.spool_dir, s.worker_lock_path) == (
        tmp_path / "retrainer.duckdb",
        tmp_path / "models",
        tmp_path / "spool",
        tmp_path / "worker.lock",
    )


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().tolerance = 0.5


# --- precedence ----------------------------------------------------------------------------


def test_env_overrides_default():
    assert load_settings(env={"RETRAINER_TOLERANCE": "0.02"}).tolerance == 0.02


def test_file_then_env_then_overrides(tmp_path):
    path = write_toml(tmp_path, "tolerance = 0.03\nmin_df = 4\nseed = 9\n")
    s = load_settings(path=path, env={"RETRAINER_MIN_DF": " 5 ", "RETRAINER_SEED": "11"}, seed=12)
    assert (s.tolerance, s.min_df, s.seed) == (0.03, 5, 12)
    assert s.eval_percent == 20  # untouched keys keep their defaults


def test_retrainer_config_names_another_file(tmp_path):
    path = write_toml(tmp_path, 'weekly_day = "friday"\n')
    s = load_settings(env={"RETRAINER_CONFIG": str(path)})
    assert s.weekly_day == "friday"


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("RETRAINER_USE_PSEUDO_LABELS", "no", "use_pseudo_labels", False),
        ("RETRAINER_USE_PSEUDO_LABELS", "ON", "use_pseudo_labels", True),
        ("RETRAINER_HOME", "/srv/retrainer", "home", Path("/srv/retrainer")),
        ("RETRAINER_ADAPTIVE_MAX_DAYS", "2.5", "adaptive_max_days", 2.5),
        ("RETRAINER_MONTHLY_TIME", "23:59", "monthly_time", "23:59"),
    ],
    ids=["bool-no", "bool-on", "path", "float", "time"],
)
def test_env_values_are_coerced(name, raw, field, expected):
    assert getattr(load_settings(env={name: raw}), field) == expected


def test_whole_number_in_file_for_a_float_setting_becomes_float(tmp_path):
    value = load_settings(env={}, path=write_toml(tmp_path, "tolerance = 0\n")).tolerance
    assert (value, type(value)) == (0.0, float)


def test_kill_hook_variable_is_not_a_setting():
    assert load_settings(env={"RETRAINER_KILL_AT": "deploy_after_switch"}) == Settings()


def test_replace_checks_again():
    with pytest.raises(SettingsError, match=r"setting 'eval_percent' = 80 is out of range: use a value from 1 to 50"):
        Settings().replace(eval_percent=80)


# --- refusals -------------------------------------------------------------------------------


def test_unknown_key_in_file_is_named(tmp_path):
    path = write_toml(tmp_path, "tolerence = 0.02\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'tolerence' in .*settings\.toml: valid settings are .*tolerance"):
        load_settings(env={}, path=path)


def test_unknown_env_variable_is_named():
    with pytest.raises(SettingsError, match=r"unknown environment variable RETRAINER_TOLERENCE: valid ones are .*RETRAINER_TOLERANCE"):
        load_settings(env={"RETRAINER_TOLERENCE": "0.02"})


def test_unknown_override_is_named():
    with pytest.raises(SettingsError, match=r"unknown setting 'tolerence': valid settings are"):
        load_settings(env={}, tolerence=0.02)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('tolerance = "high"', "setting 'tolerance' = 'high' has the wrong type: use a number"),
        ("min_df = 2.5", "setting 'min_df' = 2.5 has the wrong type: use a whole number"),
        ("use_pseudo_labels = 1", "setting 'use_pseudo_labels' = 1 has the wrong type: use true or false"),
        ("seed = true", "setting 'seed' = True has the wrong type: use a whole number"),
        ("weekly_day = 3", "setting 'weekly_day' = 3 has the wrong type: use a string"),
        ("home = 7", "setting 'home' = 7 has the wrong type: use a path (string)"),
    ],
    ids=["str-for-float", "float-for-int", "int-for-bool", "bool-for-int", "int-for-str", "int-for-path"],
)
def test_wrong_type_in_file(tmp_path, toml, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env={}, path=write_toml(tmp_path, toml + "\n"))


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("RETRAINER_MIN_DF", "abc", "environment variable RETRAINER_MIN_DF='abc' is not a whole number"),
        ("RETRAINER_TOLERANCE", "", "environment variable RETRAINER_TOLERANCE='' is not a number"),
        ("RETRAINER_USE_PSEUDO_LABELS", "maybe", "environment variable RETRAINER_USE_PSEUDO_LABELS='maybe' is not true or false"),
    ],
    ids=["int", "empty-float", "bool"],
)
def test_wrong_type_in_env(name, raw, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env={name: raw})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tolerance": "high"}, "setting 'tolerance' = 'high' has the wrong type: use a number"),
        ({"use_pseudo_labels": "no"}, "setting 'use_pseudo_labels' = 'no' has the wrong type: use true or false"),
        ({"home": None}, "setting 'home' = None has the wrong type: use a path (string)"),
    ],
    ids=["str-for-float", "str-for-bool", "none-for-path"],
)
def test_wrong_type_in_overrides(override, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env={}, **override)


OUT_OF_RANGE = [
    ("tolerance", -0.01, "tolerance = -0.01", "RETRAINER_TOLERANCE",
     "setting 'tolerance' = -0.01 is out of range: use a value from 0.0 to 0.5"),
    ("monthly_day", 31, "monthly_day = 31", "RETRAINER_MONTHLY_DAY",
     "setting 'monthly_day' = 31 is out of range: use a value from 1 to 28"),
    ("weekly_time", "25:00", 'weekly_time = "25:00"', "RETRAINER_WEEKLY_TIME",
     "setting 'weekly_time' = '25:00' is not a time: use HH:MM, 24-hour, e.g. '03:00'"),
    ("weekly_day", "funday", 'weekly_day = "funday"', "RETRAINER_WEEKLY_DAY",
     f"setting 'weekly_day' = 'funday' is not a weekday: use one of {WEEKDAY_LIST}"),
]
OUT_OF_RANGE_IDS = ["negative-tolerance", "monthly-day-31", "time-25h", "funday"]


@pytest.mark.parametrize(("key", "value", "toml", "env_name", "message"), OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_in_file(tmp_path, key, value, toml, env_name, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env={}, path=write_toml(tmp_path, toml + "\n"))


@pytest.mark.parametrize(("key", "value", "toml", "env_name", "message"), OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_in_env(key, value, toml, env_name, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env={env_name: str(value)})


@pytest.mark.parametrize(("key", "value", "toml", "env_name", "message"), OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_in_constructor(key, value, toml, env_name, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Settings(**{key: value})


@pytest.mark.parametrize("raw", ["nan", "inf"], ids=["nan", "inf"])
def test_non_finite_tolerance_is_out_of_range(raw):
    with pytest.raises(SettingsError, match=r"setting 'tolerance' = (nan|inf) is out of range: use a value from 0.0 to 0.5"):
        load_settings(env={"RETRAINER_TOLERANCE": raw})


@pytest.mark.parametrize("value", ["00:00", "23:59", "09:30"], ids=["midnight", "last-minute", "morning"])
def test_valid_times_pass(value):
    assert Settings(weekly_time=value).weekly_time == value


@pytest.mark.parametrize("value", ["3:00", "24:00", "12:60", "12:00:00", "noon"], ids=["one-digit", "24h", "60min", "seconds", "word"])
def test_invalid_times_are_refused(value):
    with pytest.raises(SettingsError, match=r"setting 'monthly_time' = .* is not a time: use HH:MM"):
        Settings(monthly_time=value)


def test_missing_config_file_named_by_env(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(SettingsError, match=rf"settings file {missing} does not exist: create it or unset RETRAINER_CONFIG"):
        load_settings(env={"RETRAINER_CONFIG": str(missing)})


def test_invalid_toml_is_refused(tmp_path):
    path = write_toml(tmp_path, "tolerance = = 0.01\n")
    with pytest.raises(SettingsError, match=rf"settings file {path} is not valid TOML"):
        load_settings(env={}, path=path)


# --- hyperparameter search and the Dask scheduler -----------------------------------------------


def test_search_is_off_by_default():
    s = Settings()
    assert (s.cv_folds, s.search_jobs, s.dask_scheduler) == (0, 1, "")
    assert s.search_alpha_values == (1e-5, 2e-5, 5e-5, 1e-4)


def test_search_settings_from_env():
    s = load_settings(env={"RETRAINER_CV_FOLDS": "3", "RETRAINER_SEARCH_ALPHAS": "1e-4,1e-5, 1e-4",
                           "RETRAINER_SEARCH_JOBS": "-1", "RETRAINER_DASK_SCHEDULER": "tcp://10.0.0.5:8786"})
    assert (s.cv_folds, s.search_jobs, s.dask_scheduler) == (3, -1, "tcp://10.0.0.5:8786")
    assert s.search_alpha_values == (1e-4, 1e-5)  # the order given, repeats dropped


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "tls://scheduler.internal:8786", "scheduler:8786",
                                     "tcp://[::1]:8786"], ids=["tcp", "tls", "host-port", "ipv6"])
def test_scheduler_addresses_pass(address):
    assert Settings(cv_folds=3, dask_scheduler=address).dask_scheduler == address


ALPHA_HELP = ("use at least two different comma-separated values of SGD's alpha from 1e-08 to 1.0, "
              "e.g. '1e-5, 2e-5, 5e-5, 1e-4'")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cv_folds": 21}, "setting 'cv_folds' = 21 is out of range: use a value from 0 to 20"),
        ({"cv_folds": 1}, "setting 'cv_folds' = 1 cannot cross-validate: use 0 (no search) or a value from 2 to 20"),
        ({"search_jobs": -2}, "setting 'search_jobs' = -2 is out of range: use a value from -1 to 1024"),
        ({"search_jobs": 0}, "setting 'search_jobs' = 0 would run nothing: use -1 (every core) or a value from 1 to 1024"),
        ({"search_alphas": "1e-5; 1e-4"}, f"setting 'search_alphas' = '1e-5; 1e-4' is not a list of candidates: {ALPHA_HELP}"),
        ({"search_alphas": "1e-4"}, f"setting 'search_alphas' = '1e-4' is not a list of candidates: {ALPHA_HELP}"),
        ({"search_alphas": "0, 1e-4"}, f"setting 'search_alphas' = '0, 1e-4' is not a list of candidates: {ALPHA_HELP}"),
        ({"search_alphas": "nan, 1e-4"}, f"setting 'search_alphas' = 'nan, 1e-4' is not a list of candidates: {ALPHA_HELP}"),
        ({"cv_folds": 3, "dask_scheduler": "my scheduler"},
         "setting 'dask_scheduler' = 'my scheduler' is not a scheduler address: use e.g. 'tcp://10.0.0.5:8786', "
         "or leave it empty to search on this machine"),
        ({"dask_scheduler": "tcp://10.0.0.5:8786"},
         "setting 'dask_scheduler' = 'tcp://10.0.0.5:8786' has nothing to run while 'cv_folds' = 0: "
         "set cv_folds to 2 or more to search on the cluster, or leave dask_scheduler empty"),
    ],
    ids=["folds-21", "folds-1", "jobs-minus-2", "jobs-0", "semicolons", "one-alpha", "zero-alpha", "nan-alpha",
         "address-with-space", "scheduler-without-search"],
)
def test_search_settings_are_checked(changes, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Settings(**changes)


def test_search_alphas_in_file_must_be_a_string(tmp_path):
    with pytest.raises(SettingsError, match=r"^setting 'search_alphas' = \[1e-05, 0\.0001\] has the wrong type: use a string$"):
        load_settings(env={}, path=write_toml(tmp_path, "search_alphas = [1e-5, 1e-4]\n"))
