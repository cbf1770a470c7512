"""The Playground page: it answers with the same engine.Classifier a client uses (label, confidence, top three,
version; hot reload; fallback), and its corrections go to the spool as feedback."""

from __future__ import annotations

import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import registry, spool
from engine.classifier import Classifier
from engine.config import load_settings
from engine.context import Context
from engine.deployment import rollback
from tests.conftest import ROOT, shown, values, vega_chart

TEXT = "hi, my parcel never arrived and I want my money back"


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def open_page(monkeypatch, home, **env: str) -> AppTest:
    monkeypatch.setenv("RETRAINER_HOME", str(home))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/playground.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def classify(at: AppTest, text: str) -> AppTest:
    at.text_area(key="playground_text").input(text)
    at.button(key="playground_ask").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: shown(m.value) for m in at.metric}


def spool_records(home) -> list[dict]:
    return [r for path in spool.pending(home / "spool") for r in spool.read_batch(path)]


def expected(home, text: str):
    """What a client's own Classifier answers for ``text`` on this store."""
    with Classifier(settings=load_settings(env={}, home=home), log_queries=False, background=False) as clf:
        return clf.predict(text)


def test_no_model_shows_the_classifiers_message(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path / "empty")
    assert len(at.info) == 1
    # The message without the server's path: a visitor is not the operator.
    assert shown(at.info[0].value).startswith("No model can answer yet: no model is deployed in <data directory> yet: "
                                       "import labelled examples")
    assert str(tmp_path) not in at.info[0].value
    assert not at.text_area


def test_the_answer_is_what_a_client_gets(monkeypatch, demo_copy):
    at = classify(open_page(monkeypatch, demo_copy), TEXT)
    want = expected(demo_copy, TEXT)
    assert metrics(at) == {"Label": want.label, "Confidence": f"{100 * want.confidence:.1f}%", "Answered by": want.version}
    bars = values(vega_chart(at, "Top labels"), "bars")
    assert [b["label"] for b in bars] == [label for label, _ in want.top]
    assert [b["text"] for b in bars] == [f"{p:.1%}" for _, p in want.top]
    assert not at.warning[1:]  # only the worker banner: no fallback, not too long


def test_a_correction_reaches_the_spool_with_its_query(monkeypatch, demo_copy):
    at = classify(open_page(monkeypatch, demo_copy), TEXT)
    query_id = at.session_state["playground"]["query_id"]
    at.selectbox(key=f"playground_true_label_{query_id}").set_value("delivery_delay")
    at.button(key=f"playground_feedback_{query_id}").click().run()
    assert not at.exception and not at.error
    assert shown(at.success[0].value).startswith("Recorded **delivery_delay** as the true label.")
    records = spool_records(demo_copy)
    queries = [(r["id"], r["text"], r["source"], r["model_version"]) for r in records if r["k"] == "q"]
    feedback = [(r["query_id"], r["label"], r["source"]) for r in records if r["k"] == "f"]
    assert queries == [(query_id, TEXT, "playground", expected(demo_copy, TEXT).version)]
    assert feedback == [(query_id, "delivery_delay", "feedback")]


def test_a_second_query_starts_with_an_empty_label_and_gets_its_own_feedback(monkeypatch, demo_copy):
    at = classify(open_page(monkeypatch, demo_copy), TEXT)
    first = at.session_state["playground"]["query_id"]
    at.selectbox(key=f"playground_true_label_{first}").set_value("delivery_delay")
    at.button(key=f"playground_feedback_{first}").click().run()
    classify(at, "how do I reset my password")
    second = at.session_state["playground"]["query_id"]
    assert second != first
    box = at.selectbox(key=f"playground_true_label_{second}")
    assert box.value is None
    box.set_value("reset_password")
    at.button(key=f"playground_feedback_{second}").click().run()
    feedback = [(r["query_id"], r["label"]) for r in spool_records(demo_copy) if r["k"] == "f"]
    assert feedback == [(first, "delivery_delay"), (second, "reset_password")]


@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "whitespace"])
def test_empty_text_gets_a_message_not_an_answer(monkeypatch, demo_copy, text):
    at = classify(open_page(monkeypatch, demo_copy), text)
    assert at.warning[-1].value.startswith("Type a query first")
    assert not at.metric
    assert "playground" not in at.session_state
    assert spool_records(demo_copy) == []


def test_a_correction_without_a_label_is_refused(monkeypatch, demo_copy):
    at = classify(open_page(monkeypatch, demo_copy), TEXT)
    at.button(key=f"playground_feedback_{at.session_state['playground']['query_id']}").click().run()
    assert [e.value for e in at.error] == ["Choose the true label first."]
    assert [r for r in spool_records(demo_copy) if r["k"] == "f"] == []


def test_a_text_that_grows_past_max_text_length_when_normalised_is_answered_with_a_warning(monkeypatch, demo_copy):
    text = "where is my parcel \ufdfa\ufdfa\ufdfa"  # 22 characters; NFKC spells U+FDFA out in 18 (73 in all)
    at = classify(open_page(monkeypatch, demo_copy, RETRAINER_MAX_TEXT_LENGTH="60"), text)
    assert metrics(at)["Label"] == expected(demo_copy, text).label
    assert at.warning[-1].value.startswith("This query is 73 characters long (after normalising), more than "
                                           "`max_text_length` = 60: it is answered, but a retrain drops it")


def test_the_query_box_keeps_at_most_max_text_length_characters(monkeypatch, demo_copy):
    at = open_page(monkeypatch, demo_copy, RETRAINER_MAX_TEXT_LENGTH="60")
    at.text_area(key="playground_text").set_value("where is my parcel " * 4)  # 76 characters, past the browser
    at.button(key="playground_ask").click().run()
    assert at.session_state["playground"]["text"] == ("where is my parcel " * 4)[:60]


def test_a_new_deployment_answers_without_a_restart(monkeypatch, demo_copy):
    at = classify(open_page(monkeypatch, demo_copy, RETRAINER_RELOAD_SECONDS="0.1"), TEXT)
    before = metrics(at)["Answered by"]
    result = rollback(Context.open(load_settings(env={}, home=demo_copy)), why="test")
    assert result.version != before
    for _ in range(100):  # the page's Classifier notices the new pointer on its own
        if metrics(classify(at, TEXT))["Answered by"] == result.version:
            break
        time.sleep(0.1)
    assert metrics(at)["Answered by"] == result.version == expected(demo_copy, TEXT).version


def test_a_fallback_answer_is_flagged(monkeypatch, demo_copy):
    settings = load_settings(env={}, home=demo_copy)
    active = registry.read_active(settings.registry_dir).active.version
    registry.model_file(settings.registry_dir, active).write_bytes(b"not a model")
    at = classify(open_page(monkeypatch, demo_copy), TEXT)
    want = expected(demo_copy, TEXT)
    assert want.fallback and want.version != active
    assert metrics(at)["Answered by"] == want.version
    (warning,) = [shown(w.value) for w in at.warning if "fallback version answered" in w.value]
    assert warning.startswith(f"**A fallback version answered**: active model {active} cannot be loaded (")
    assert warning.endswith(f"); serving {want.version}")
