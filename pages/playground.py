"""Playground: ask the model in production, see how sure it is, and correct it."""

import streamlit as st

from engine.classifier import Classifier
from engine.dataset import normalize_text
from engine.errors import NoModelError, RetrainerError
from pages import _charts_data as charts
from pages import _ui

_ui.page_header("Playground", "Type a query and see what the model in production answers. This is the same "
                              "`engine.Classifier` every client uses, so a new deployment answers here within a second. "
                              "Queries typed here are logged like any other (source `playground`), so asking is an action: "
                              "it needs the action token, or a dashboard declared private.")
settings = _ui.context().settings


@st.cache_resource(show_spinner=False, on_release=lambda clf: clf.close())
def classifier() -> Classifier:
    return Classifier(settings=_ui.context().settings, log_queries=True, source="playground")


def ask(clf: Classifier, text: str) -> None:
    """Classify ``text`` and keep the answer for this session; say why when it cannot be answered."""
    if not text or not text.strip():
        st.warning("Type a query first: a few words a customer might send, e.g. *where is my parcel?*")
        return
    if not _ui.action_allowed():  # a classified query is logged: it writes to the store
        return
    try:
        p = clf.predict(text)
    except NoModelError as exc:
        st.info(f"No model can answer: {_ui.literal(_ui.redact(str(exc)))}.", icon="ℹ️")
        return
    except RetrainerError as exc:
        st.error(f"Not classified: {_ui.literal(_ui.redact(str(exc)))}.")
        return
    st.session_state["playground"] = {
        "text": text, "label": p.label, "confidence": p.confidence, "version": p.version, "query_id": p.query_id,
        "top": list(p.top), "fallback": p.fallback, "fallback_reason": clf.status().fallback_reason,
    }


def correct(clf: Classifier, answer: dict, label: str | None) -> None:
    """Record a person's label for the last answer through the Classifier (it becomes feedback)."""
    if not label:
        st.error("Choose the true label first.")
        return
    if not _ui.send_feedback(clf, answer["query_id"], label):
        return
    st.success(f"Recorded **{_ui.literal(label)}** as the true label. The worker stores it with its next ingest; the next "
               "retrain learns from it.", icon=":material/check_circle:")


clf = classifier()
try:
    clf.predict_many([])  # answers [] when a model is loaded, raises NoModelError otherwise; logs nothing
except NoModelError as exc:
    _ui.empty(f"No model can answer yet: {_ui.literal(_ui.redact(str(exc)))}.")

_ui.actions_notice()
with st.form("ask", border=False):
    text = st.text_area("Query", key="playground_text", height=90, placeholder="e.g. where is my parcel?",
                        max_chars=settings.max_text_length)
    asked = st.form_submit_button("Classify", type="primary", key="playground_ask", **_ui.guarded())
if asked:
    ask(clf, text)

answer = st.session_state.get("playground")
if answer is None:
    st.caption(f"The model serving now: {_ui.literal(clf.version)}. It knows {len(clf.labels())} labels.")
    st.stop()

st.markdown(f"**Answer for:** {_ui.literal(answer['text'][:300])}{'…' if len(answer['text']) > 300 else ''}")
m = st.columns(3)
m[0].metric("Label", _ui.literal(answer["label"]))
m[1].metric("Confidence", _ui.pct(answer["confidence"]))
m[2].metric("Answered by", _ui.literal(answer["version"]))
if answer["fallback"]:
    st.warning(f"**A fallback version answered**: {_ui.literal(_ui.redact(str(answer['fallback_reason'])))}",
               icon=":material/support:")
if answer["confidence"] < settings.min_confidence:
    st.caption(f"Below the minimum confidence ({settings.min_confidence:g}): this answer is not used as a pseudo label.")
length = len(normalize_text(answer["text"]))
if length > settings.max_text_length:
    st.warning(f"This query is {length:,} characters long (after normalising), more than `max_text_length` = "
               f"{settings.max_text_length:,}: it is answered, but a retrain drops it as malformed, so it (and a true "
               "label given to it) will not be used for training.")
left, right = st.columns([3, 2])
with left:
    _ui.chart(charts.top_labels, answer["top"], key="top")
with right:
    st.markdown("**Correct the label**")
    # Keyed by the query: a new answer gets a new, empty box, so a label chosen for one query is never
    # recorded for the next.
    true_label = st.selectbox("True label", clf.labels(), index=None, key=f"playground_true_label_{answer['query_id']}",
                              placeholder="choose the right label")
    if st.button("Record true label", key=f"playground_feedback_{answer['query_id']}", **_ui.guarded()):
        correct(clf, answer, true_label)
    st.caption(f"Query id {_ui.literal(answer['query_id'])}")
