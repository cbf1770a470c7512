"""Actions (retrain, rollback, pause, resume, labels) are protected by a token, or by the server staying local."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.config import load_settings
from engine.context import Context
from store.commands import recent_commands
from tests.conftest import ROOT


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


def test_local_server_without_token_allows_actions(monkeypatch, demo_copy):
    at = open_overview(monkeypatch, demo_copy)
    at.button(key="retrain").click().run()
    assert queued(demo_copy).count("retrain") == 1


def test_exposed_server_without_token_refuses_actions(monkeypatch, demo_copy):
    at = open_overview(monkeypatch, demo_copy, address="0.0.0.0")
    at.button(key="retrain").click().run()
    assert "Actions are disabled: this dashboard listens on 0.0.0.0" in at.error[0].value
    assert "retrain" not in queued(demo_copy)


@pytest.mark.parametrize("typed, allowed", [("", False), ("wrong", False), ("s3cret-token", True)],
                         ids=["no-token", "wrong-token", "right-token"])
def test_a_configured_token_must_be_typed(monkeypatch, demo_copy, typed, allowed):
    at = open_overview(monkeypatch, demo_copy, secrets={"action_token": "s3cret-token"}, address="0.0.0.0")
    at.sidebar.text_input(key="action_token_input").set_value(typed).run()
    at.button(key="retrain").click().run()
    assert ("retrain" in queued(demo_copy)) is allowed
    if not allowed:
        assert at.error[0].value == "Enter the action token in the sidebar to use this button."
