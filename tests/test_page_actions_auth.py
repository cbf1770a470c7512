"""Whatever writes to the store (retrain, rollback, pause, resume, labels, the Playground's logged queries) needs
the action token, unless the operator declared the dashboard private; what visitors see of an error (issue 13, 9-12).

The address the server listens on proves nothing: behind a reverse proxy or a TCP forwarder a server bound to
127.0.0.1 took Retrain and Pause from remote browsers. So the rule no longer looks at it.
"""

from __future__ import annotations

import subprocess
import time
import tomllib

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import spool
from engine.config import load_settings
from engine.context import Context
from store.commands import recent_commands
from pages import _ui
from tests.conftest import ROOT, shown as read


def open_overview(monkeypatch, home, *, secrets=None, address=None) -> AppTest:
    monkeypatch.setenv("RETRAINER_HOME", str(home))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    if address is not None:
        monkeypatch.setattr(st, "get_option", _with_address(st.get_option, address))
    at.run()
    assert not at.exception
    return at


def _with_address(get_option, address):
    def patched(name):
        return address if name == "server.address" else get_option(name)

    return patched


def queued(home) -> list[str]:
    return [c["kind"] for c in recent_commands(Context.open(load_settings(env={}, home=home)).db)]


def test_a_private_dashboard_without_token_allows_actions(monkeypatch, demo_copy):
    at = open_overview(monkeypatch, demo_copy)  # tests/conftest.py declares it private
    at.button(key="retrain").click().run()
    assert queued(demo_copy).count("retrain") == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"], ids=["loopback-behind-a-proxy", "every-address"])
def test_an_undeclared_dashboard_without_token_refuses_actions_whatever_its_address(monkeypatch, demo_copy, address):
    monkeypatch.delenv("RETRAINER_DASHBOARD_PRIVATE")
    at = open_overview(monkeypatch, demo_copy, address=address)
    why = ("Actions are disabled: no action_token is set in .streamlit/secrets.toml and the dashboard is not declared "
           "private. Set a token (see the README, \"Exposing the dashboard\"), or set dashboard_private = true if only "
           "trusted people can reach this dashboard.")
    # The button is disabled before anyone clicks, with the reason beside it and as its help.
    button = at.button(key="retrain")
    assert button.disabled and button.help == why
    assert f":material/lock: {why}" in [c.value for c in at.caption]
    assert "retrain" not in queued(demo_copy)


@pytest.mark.parametrize("typed, allowed", [("", False), ("wrong", False), ("s3cret-token", True)],
                         ids=["no-token", "wrong-token", "right-token"])
def test_a_configured_token_must_be_typed(monkeypatch, demo_copy, typed, allowed):
    at = open_overview(monkeypatch, demo_copy, secrets={"action_token": "s3cret-token"}, address="0.0.0.0")
    at.sidebar.text_input(key="action_token_input").set_value(typed).run()
    assert at.button(key="retrain").disabled is not allowed
    if allowed:
        at.button(key="retrain").click().run()
    else:
        assert at.button(key="retrain").help == "Enter the action token in the sidebar to use this button."
    assert ("retrain" in queued(demo_copy)) is allowed


def test_a_token_is_needed_even_on_a_private_dashboard_once_set(monkeypatch, demo_copy):
    at = open_overview(monkeypatch, demo_copy, secrets={"action_token": "s3cret-token"})
    assert at.button(key="retrain").disabled
    assert ":material/lock: Enter the action token in the sidebar to use this button." in [c.value for c in at.caption]
    assert "retrain" not in queued(demo_copy)


# --- the Playground logs what it classifies: a write ----------------------------------------------------


def open_playground(monkeypatch, home, *, secrets=None) -> AppTest:
    at = open_overview(monkeypatch, home, secrets=secrets)
    at.switch_page("pages/playground.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ask(at: AppTest, text: str) -> AppTest:
    at.text_area(key="playground_text").input(text)
    at.button(key="playground_ask").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def logged(home) -> list[str]:
    return [r["text"] for path in spool.pending(home / "spool") for r in spool.read_batch(path) if r["k"] == "q"]


def test_an_anonymous_visitor_cannot_log_queries_through_the_playground(monkeypatch, demo_copy):
    at = open_playground(monkeypatch, demo_copy, secrets={"action_token": "s3cret-token"})
    assert at.button(key="playground_ask").disabled
    assert ":material/lock: Enter the action token in the sidebar to use this button." in [c.value for c in at.caption]
    assert not at.metric and logged(demo_copy) == []

    at.sidebar.text_input(key="action_token_input").set_value("s3cret-token").run()
    ask(at, "where is my parcel")
    assert not at.error and at.metric
    deadline = time.monotonic() + 10  # the page's Classifier writes its buffer every flush_seconds
    while not logged(demo_copy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged(demo_copy) == ["where is my parcel"]


def test_the_playground_bounds_a_query_by_max_text_length(monkeypatch, demo_copy):
    at = open_playground(monkeypatch, demo_copy)
    area = at.text_area(key="playground_text")
    limit = load_settings(env={}, home=demo_copy).max_text_length
    assert area.max_chars == limit
    # A client that sends 20 MB past the browser's limit (the report's case): the server keeps max_chars.
    area.set_value("where is my parcel " + "x" * 20_000_000)
    at.button(key="playground_ask").click().run()
    assert len(at.session_state["playground"]["text"]) == limit


# --- secrets and errors ---------------------------------------------------------------------------------------


def test_the_secrets_file_is_never_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    found = subprocess.run(["git", "check-ignore", "-v", ".streamlit/secrets.toml"], cwd=ROOT,
                           capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.startswith(".gitignore:"), found.stdout + found.stderr


def test_visitors_never_see_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_a_store_that_cannot_be_read_is_reported_without_its_path(monkeypatch, tmp_path):
    home = tmp_path / "secret-place" / "home"
    home.mkdir(parents=True)
    (home / "retrainer.duckdb").write_bytes(b"SQLite format 3\x00" + bytes(4096))  # a foreign file as the store
    monkeypatch.setenv("RETRAINER_HOME", str(home))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception
    shown = " ".join(read(e.value) for e in at.error)
    assert shown.startswith("**The Overview page cannot be shown**: <data directory>/retrainer.duckdb is not a "
                            "DuckDB database file"), shown
    assert "secret-place" not in shown and str(tmp_path) not in shown and "Traceback" not in shown


@pytest.mark.parametrize(("message", "shown"), [
    ("cannot open the store /srv/retrainer/retrainer.duckdb: denied", "cannot open the store <path>: denied"),
    ("read ~/notes.txt, and/or 5 MB/s, 1/2 done.", "read <path>, and/or 5 MB/s, 1/2 done."),
    (f"{ROOT}/engine/worker.py line 3", "<project>/engine/worker.py line 3"),
], ids=["absolute", "home-and-fractions", "project"])
def test_redact_hides_paths_and_keeps_the_words(message, shown):
    assert _ui.redact(message) == shown
