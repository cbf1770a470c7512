"""The Data page's quarantine section: pick a source, see what it would take out, quarantine, lift."""

from __future__ import annotations

import json

from datetime import datetime, timedelta

import pytest

from engine.quarantine import list_rules
from store.events import recent_events
from tests.conftest import labelled_frame, open_app, shown
from tests.test_quarantine import log_queries


@pytest.fixture
def home(ctx):
    ctx.clock.set(datetime(2026, 3, 4, 12, 0))
    frame = labelled_frame(3)
    log_queries(ctx, frame, source="web", version="v0001", ts=datetime(2026, 3, 2, 12, 0))
    log_queries(ctx, frame.iloc[:25], source="kiosk", version="v0001", ts=datetime(2026, 3, 3, 12, 0))
    return ctx


def captions(at) -> list[str]:
    return [shown(c.value) for c in at.caption]


@pytest.mark.slow
def test_quarantine_from_the_data_page_previews_stores_and_lifts(monkeypatch, home):
    at = open_app(monkeypatch, home.settings.home, "pages/data.py")
    assert at.selectbox(key="q_source").options == ["any", "web (" + f"{len(labelled_frame(3))} rows)", "kiosk (25 rows)"]
    assert "Choose what to take out: a quarantine rule needs at least one of --source, --version, --since, --until " \
           "(it would take out the whole log)." in captions(at)

    at.selectbox(key="q_source").set_value("kiosk").run()
    assert "This rule would leave out **25** logged queries and **0** labels." in captions(at)
    at.button(key="q_add").click().run()
    assert [shown(e.value) for e in at.error] == ["Not quarantined: --reason is empty: say why these rows are taken out "
                                           "(it is shown with the rule)."]
    assert list_rules(home) == []

    at.text_input(key="q_reason").input("the kiosk served a broken model").run()
    at.button(key="q_add").click().run()
    assert not at.exception
    assert at.success[0].value == "Quarantine #1: 25 logged queries and 0 labels are left out from the next retrain."
    [rule] = list_rules(home)
    assert (rule["source"], rule["model_version"], rule["reason"], rule["lifted_at"]) == (
        "kiosk", None, "the kiosk served a broken model", None)
    assert recent_events(home.db, kind="quarantine")[0]["message"].startswith("Quarantine #1 (source kiosk) by dashboard: ")
    # A rule in force has no "lifted" time: the table shows "–" there (not a grey "None"), and its help says why.
    [rules] = [d for d in at.dataframe if "lifted" in d.value.columns]
    assert rules.value["lifted"].isna().tolist() == [True]
    assert rules.proto.placeholder == "–"
    assert json.loads(rules.proto.columns)["lifted"]["help"] == "When the rule was lifted; – while it is in force"

    at.selectbox(key="q_lift_id").set_value(1)
    at.button(key="q_lift").click().run()
    assert not at.exception
    assert at.success[0].value == "Quarantine #1 lifted: its rows count again from the next retrain."
    assert list_rules(home, include_lifted=False) == []
