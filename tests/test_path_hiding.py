"""No server path reaches a dashboard visitor or an API reader: an adopted model is named by its file's name,
and a folder is hidden only where it is a whole path component ("/tmp/b1" is not the start of "/tmp/b1-work")."""

from __future__ import annotations

import joblib
import pytest
import streamlit as st
from fastapi.testclient import TestClient

from engine.api import create_app, public_message
from engine.config import PROJECT_ROOT, load_settings
from engine.context import Context
from engine.importer import import_file
from engine.retrain import AdoptRequest, run_cycle
from pages import _ui
from store.models import get_model
from tests.conftest import labelled_frame, open_app, shown
from tests.team_pipeline import logistic


@pytest.fixture(scope="module")
def adopted(tmp_path_factory):
    """A store whose only version, v0001, was adopted from <root>/team-models/team.joblib."""
    root = tmp_path_factory.mktemp("adopted")
    ctx = Context.open(load_settings(env={}, home=root / "home"))
    labelled_frame(30, seed=1).to_csv(root / "labelled.csv", index=False)
    import_file(ctx, root / "labelled.csv", labeled=True)
    frame = labelled_frame(30, seed=21)
    (root / "team-models").mkdir()
    joblib.dump(logistic().fit(frame["text"].tolist(), frame["label"].tolist()), root / "team-models" / "team.joblib")
    assert run_cycle(ctx, trigger="adopt", adopt=AdoptRequest(str(root / "team-models" / "team.joblib"),
                                                              f"was {root}/team-models/team.joblib")).deployed
    return root, ctx


def test_the_api_names_an_adopted_model_by_its_file_name(adopted):
    root, ctx = adopted
    with TestClient(create_app(ctx, token=None)) as client:
        status = client.get("/model/status")
        models = client.get("/models")
    assert status.status_code == models.status_code == 200
    assert status.json()["active"]["adopted"]["file"] == "team.joblib"
    assert [v["params"]["adopted"]["file"] for v in models.json()["versions"]] == ["team.joblib"]
    assert models.json()["champion"]["params"]["adopted"]["file"] == "team.joblib"
    assert models.json()["champion"]["params"]["adopted"]["note"] == "was <path>"
    for answer in (status, models):
        assert str(root) not in answer.text and "team-models" not in answer.text


def test_the_models_page_names_an_adopted_model_by_its_file_name(monkeypatch, adopted):
    root, ctx = adopted
    at = open_app(monkeypatch, ctx.settings.home, "pages/models.py")
    sha = get_model(ctx.db, "v0001")["params"]["adopted"]["sha256"]
    adopted_lines = [shown(c.value) for c in at.caption if c.value.startswith("Adopted from")]
    assert adopted_lines == [f"Adopted from team.joblib (SHA-256 {sha[:12]}…): was <path>"]
    assert not any(str(root) in m.value for m in [*at.caption, *at.markdown, *at.info])


def test_redact_hides_a_folder_only_where_it_is_a_whole_path_component(monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAINER_HOME", str(tmp_path / "b1"))
    st.cache_resource.clear()
    home = str((tmp_path / "b1").resolve())
    assert _ui.redact(f"Import of g2_sep.csv refused: {home}-work/g2_sep.csv is not a CSV") == \
        "Import of g2_sep.csv refused: <path> is not a CSV"
    assert _ui.redact(f"stored in {home}/spool, and {home}.") == "stored in <data directory>/spool, and <data directory>."
    assert _ui.redact(f"see {PROJECT_ROOT}-old/x.py and {PROJECT_ROOT}/engine/x.py") == \
        "see <path> and <project>/engine/x.py"
    st.cache_resource.clear()


def test_the_apis_messages_hide_a_folder_only_where_it_is_a_whole_path_component(tmp_path):
    home = tmp_path / "b1"
    home.mkdir()
    assert public_message(f"refused: {home}-work/g2_sep.csv; kept in {home}/spool", home=home) == \
        "refused: <path>; kept in $RETRAINER_HOME/spool"


def test_the_models_table_shows_a_dash_where_an_adopted_version_has_no_training_rows(monkeypatch, adopted):
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    root, ctx = adopted
    assert get_model(ctx.db, "v0001")["train_rows"] is None  # adopted: not trained here
    at = open_app(monkeypatch, ctx.settings.home, "pages/models.py")
    table = at.dataframe[0]  # the versions (a read-only table has no element id to find it by its key)
    shown_cells = convert_arrow_bytes_to_pandas_df(table.proto.arrow_data.styler.display_values)
    columns = list(table.value.columns)
    assert columns[:5] == ["Version", "Status", "Created", "Trigger", "Train rows"]
    row = dict(zip(columns, shown_cells.iloc[0]))
    assert (row["Version"], row["Train rows"]) == ("v0001", "–")
    assert row["Eval rows"] == str(get_model(ctx.db, "v0001")["eval_rows"])
    assert table.proto.placeholder == "–"
    assert "None" not in shown_cells.astype(str).to_numpy().ravel().tolist()
