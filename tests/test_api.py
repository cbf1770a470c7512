"""The HTTP API through FastAPI's TestClient, on real demo stores, real models and the real Classifier.

Each endpoint answers what the CLI and the dashboard read from the same store; writes queue the
same commands the dashboard's buttons queue (source ``api``); bad input is a 4xx naming the field
and the fix; no answer carries a traceback or a server path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from engine import registry
from engine.access import action_token
from engine.api import create_app, public_message
from engine.classifier import Classifier
from engine.config import load_settings
from engine.context import Context
from engine.errors import SettingsError
from engine.ingest import ingest_spool
from engine.status import system_status
from store.commands import recent_commands
from store.events import recent_events
from store.models import alias_history, list_models
from store.querylog import query_logged
from store.retrains import recent_retrains
from store.views.models import rollback_targets
from tests.conftest import run_cli

TOKEN = "s3cret-token-for-tests"


def open_ctx(home: Path, **overrides) -> Context:
    settings = load_settings(env={}, home=home, reload_seconds=0.1, flush_seconds=0.05, **overrides)
    return Context.open(settings)


@pytest.fixture
def demo_ctx(demo_copy) -> Context:
    return open_ctx(demo_copy)


@pytest.fixture
def client(demo_ctx):
    """The API on a private copy of the demo store (v0002 serves; v0004 and v0001 served before)."""
    with TestClient(create_app(demo_ctx, token=None)) as c:
        yield c


def post(client: TestClient, path: str, body=None, **kwargs):
    return client.post(path, json=body, **kwargs) if body is not None else client.post(path, **kwargs)


def problem(response, status: int) -> tuple[str, str | None]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "field"}
    return body["detail"], body["field"]


def stored_commands(ctx: Context) -> list[tuple[str, dict, str, str]]:
    return [(c["kind"], c["args"], c["source"], c["status"]) for c in recent_commands(ctx.db, limit=50)]


# -- health --------------------------------------------------------------------------------------------


def test_healthz_and_readyz_with_a_model(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "version": "v0002", "fallback": False, "fallback_reason": None}


def test_readyz_without_a_model_is_503_saying_how_to_get_one(tmp_path):
    ctx = open_ctx(tmp_path / "empty")
    with TestClient(create_app(ctx, token=None)) as c:
        assert c.get("/healthz").status_code == 200
        detail, field = problem(c.get("/readyz"), 503)
        assert detail == "not ready: no model is deployed yet: train one (`python -m engine retrain --wait`)"
        detail, _ = problem(c.post("/predict", json={"text": "where is my parcel"}), 503)
        assert detail.startswith("no model is deployed in $RETRAINER_HOME yet: import labelled examples")
        assert str(tmp_path) not in detail


def test_the_openapi_documentation_lists_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert routes == {
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/model/status"), ("GET", "/retrain/metrics"),
        ("GET", "/retrain/status"), ("POST", "/retrain"), ("GET", "/commands/{command_id}"),
        ("GET", "/scheduler/status"), ("POST", "/scheduler/start"), ("POST", "/scheduler/stop"),
        ("POST", "/predict"), ("POST", "/feedback"), ("POST", "/rollback"), ("GET", "/models"), ("GET", "/events")}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/retrain"]["post"]["security"] == [{"HTTPBearer": []}]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


# -- the seed system's reads ---------------------------------------------------------------------------


def test_model_status_is_the_active_model_and_what_this_server_serves(client, demo_ctx):
    body = client.get("/model/status").json()
    active = system_status(demo_ctx)["active"]
    assert body["active"]["version"] == active["version"] == "v0002"
    assert body["active"]["accuracy"] == active["accuracy"]
    assert body["active"]["eval_rows"] == active["eval_rows"]
    assert body["serving"]["version"] == "v0002"
    assert body["serving"]["fallback"] is False
    assert len(body["serving"]["labels"]) == 20 and "track_order" in body["serving"]["labels"]
    assert body["fallback"] is None


def test_retrain_metrics_are_the_stored_cycles_newest_first(client, demo_ctx):
    body = client.get("/retrain/metrics", params={"limit": 3}).json()
    stored = recent_retrains(demo_ctx.db, limit=3)
    assert [r["id"] for r in body["retrains"]] == [r["id"] for r in stored] == [7, 6, 5]
    first = body["retrains"][0]
    assert (first["status"], first["champion_version"], first["candidate_version"]) == ("rejected", "v0002", "v0007")
    assert first["candidate_accuracy"] == stored[0]["candidate_accuracy"]
    assert first["started_at"] == stored[0]["started_at"].isoformat() + "Z"


def test_retrain_status_shows_the_last_decision_and_queued_requests(client, demo_ctx):
    body = client.get("/retrain/status").json()
    assert body["in_progress"] is None and body["queued"] == []
    assert (body["last"]["id"], body["last"]["decision"]) == (7, "rejected")
    assert body["worker"]["alive"] is False
    queued = post(client, "/retrain").json()
    after = client.get("/retrain/status").json()
    assert [(c["id"], c["source"]) for c in after["queued"]] == [(queued["id"], "api")]


def test_scheduler_status_and_its_start_and_stop(client, demo_ctx):
    body = client.get("/scheduler/status").json()
    assert body["paused"] is False
    assert sorted(j["name"] for j in body["jobs"]) == ["adaptive", "monthly", "weekly"]
    assert body["adaptive"]["min_samples"] == 100
    stop = post(client, "/scheduler/stop")
    start = post(client, "/scheduler/start")
    assert (stop.status_code, stop.json()["kind"], start.json()["kind"]) == (202, "pause", "resume")
    pending = client.get("/scheduler/status").json()["pending"]
    assert [(c["kind"], c["source"]) for c in pending] == [("pause", "api"), ("resume", "api")]


def test_events_newest_first_and_by_kind(client, demo_ctx):
    body = client.get("/events", params={"limit": 4}).json()
    assert [e["id"] for e in body["events"]] == [e["id"] for e in recent_events(demo_ctx.db, limit=4)]
    gates = client.get("/events", params={"kind": "gate", "limit": 100}).json()["events"]
    assert len(gates) == 7 and {e["kind"] for e in gates} == {"gate"}
    # An unknown kind is a mistake to name, not an empty list.
    wrong = client.get("/events", params={"kind": "nope"})
    assert wrong.status_code == 422 and "kind" in wrong.json()["detail"] and "gate" in wrong.json()["detail"]


def test_event_messages_carry_no_server_path(client, demo_ctx, tmp_path):
    from engine.errors import InputError
    from engine.importer import import_file

    missing = tmp_path / "exports" / "nope.csv"
    with pytest.raises(InputError):
        import_file(demo_ctx, missing, labeled=True)
    [event] = [e for e in client.get("/events", params={"kind": "import"}).json()["events"] if "nope.csv" in e["message"]]
    assert event["message"] == "Import of nope.csv refused: <path> does not exist or is not a file Nothing was stored."


def test_models_is_the_registry_with_the_champion_and_its_history(client, demo_ctx):
    body = client.get("/models").json()
    pointer = registry.read_active(demo_ctx.settings.registry_dir)
    assert body["champion"]["version"] == "v0002" and body["champion"]["status"] == "champion"
    assert body["champion"]["deployed_at"] == pointer.deployed_at
    assert body["fallback_order"] == [ref.version for ref in pointer.history] == ["v0001"]
    assert [m["version"] for m in body["versions"]] == [m["version"] for m in list_models(demo_ctx.db)]
    assert len(body["versions"]) == 7
    moves = alias_history(demo_ctx.db)[::-1]
    assert [(h["id"], h["version"], h["previous_version"], h["kind"]) for h in body["history"]] == [
        (m.id, m.version, m.previous_version, str(m.kind)) for m in moves]
    assert (body["history"][0]["version"], body["history"][0]["previous_version"], body["history"][0]["kind"]) == (
        "v0002", "v0004", "rollback")
    assert [h["id"] for h in client.get("/models", params={"history": 2}).json()["history"]] == [m.id for m in moves[:2]]


def test_command_shows_a_queued_command_and_404s_an_unknown_one(client):
    queued = post(client, "/retrain").json()
    again = client.get(f"/commands/{queued['id']}").json()
    assert (again["id"], again["kind"], again["status"], again["worker_running"]) == (queued["id"], "retrain", "queued", False)
    detail, field = problem(client.get("/commands/999"), 404)
    assert (detail, field) == ("there is no command #999: use the id POST /retrain, /rollback or /scheduler/... answered",
                               "command_id")


# -- writes queue the dashboard's commands --------------------------------------------------------------


def test_retrain_queues_the_dashboards_command_with_source_api(client, demo_ctx):
    response = post(client, "/retrain")
    assert response.status_code == 202
    body = response.json()
    assert (body["kind"], body["args"], body["source"], body["status"]) == ("retrain", {}, "api", "queued")
    assert stored_commands(demo_ctx)[0] == ("retrain", {}, "api", "queued")


def test_rollback_to_a_version_that_served_before(client, demo_ctx):
    assert [t["version"] for t in rollback_targets(demo_ctx.db)] == ["v0004", "v0001"]
    body = post(client, "/rollback", {"to": "v0001"}).json()
    assert (body["kind"], body["args"], body["source"]) == ("rollback", {"to": "v0001"}, "api")
    body = post(client, "/rollback").json()
    assert (body["kind"], body["args"]) == ("rollback", {})
    assert [c[:3] for c in stored_commands(demo_ctx)[:2]] == [("rollback", {}, "api"), ("rollback", {"to": "v0001"}, "api")]


@pytest.mark.parametrize("to, message", [
    ("v0009", "to: v0009 never served: roll back to a version that served before (v0004, v0001)"),
    ("v0007", "to: v0007 never served: roll back to a version that served before (v0004, v0001)"),
    ("v0002", "to: v0002 is the active version: roll back to a version that served before (v0004, v0001)"),
    ("../models/v0001", "to: '../models/v0001' is not a model version: versions look like v0007 (see `python -m engine status`)"),
], ids=["unknown", "rejected-candidate", "active", "path"])
def test_rollback_to_a_version_that_never_served_is_422_naming_the_ones_that_did(client, demo_ctx, to, message):
    assert problem(post(client, "/rollback", {"to": to}), 422) == (message, "to")
    assert [c for c in stored_commands(demo_ctx) if c[2] == "api"] == []


def test_rollback_with_nothing_served_before_is_409(tmp_path):
    ctx = open_ctx(tmp_path / "empty")
    with TestClient(create_app(ctx, token=None)) as c:
        assert problem(c.post("/rollback"), 409) == (
            "nothing to roll back to: no version has served before the active one", None)


# -- predictions through the Classifier ----------------------------------------------------------------


def test_predict_one_text_answers_as_the_classifier_does_and_is_logged(demo_ctx):
    text = "where is my parcel, it has not arrived"
    with TestClient(create_app(demo_ctx, token=None)) as c:
        body = c.post("/predict", json={"text": text}).json()
    with Classifier(settings=demo_ctx.settings, log_queries=False) as clf:
        expected = clf.predict(text)
    assert (body["label"], body["version"], body["fallback"]) == (expected.label, "v0002", False)
    assert body["confidence"] == pytest.approx(expected.confidence, abs=1e-12)
    assert [(t["label"], t["probability"]) for t in body["top"]] == [
        (label, pytest.approx(prob, abs=1e-12)) for label, prob in expected.top]
    ingest_spool(demo_ctx.db, demo_ctx.settings.spool_dir, clock=demo_ctx.clock)
    with demo_ctx.db.read() as con:
        row = con.execute("SELECT text, predicted_label, model_version, source FROM queries WHERE id = ?",
                          [body["query_id"]]).fetchone()
    assert row == (text, expected.label, "v0002", "api")


def test_predict_a_batch_answers_each_text_in_order(client, demo_ctx):
    texts = ["i want my money back", "how do i reset my password", "the item arrived broken"]
    body = client.post("/predict", json={"texts": texts}).json()
    with Classifier(settings=demo_ctx.settings, log_queries=False) as clf:
        expected = clf.predict_many(texts)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    assert len({p["query_id"] for p in body["predictions"]}) == 3


def test_a_new_deployment_answers_without_restarting_the_api(client, demo_ctx):
    from engine.deployment import rollback

    assert client.post("/predict", json={"text": "refund please"}).json()["version"] == "v0002"
    assert rollback(demo_ctx, to="v0004", why="test").deployed
    deadline = time.monotonic() + 10
    version = None
    while time.monotonic() < deadline and version != "v0004":
        version = client.post("/predict", json={"text": "refund please"}).json()["version"]
        time.sleep(0.05)
    assert version == "v0004"
    assert client.get("/readyz").json()["version"] == "v0004"


@pytest.mark.parametrize("body, message, field", [
    ({"text": ""}, "text: the query is empty: type some words to classify", "text"),
    ({"text": "   \n\t"}, "text: the query is empty: type some words to classify", "text"),
    ({"texts": ["refund", " "]}, "texts[1]: the query is empty: type some words to classify", "texts[1]"),
    ({"texts": []}, "texts is empty: send at least one text", "texts"),
    ({"texts": ["a", "b", "c", "d"]}, "texts has 4 items, over the limit of 3: split it into requests of at most 3 "
                                      "(setting api_max_batch)", "texts"),
    ({"text": "a", "texts": ["b"]}, 'send either "text" (one query) or "texts" (a list), not both and not neither', "text"),
    ({}, 'send either "text" (one query) or "texts" (a list), not both and not neither', "text"),
    ({"text": 5}, "text: Input should be a valid string: send a JSON string", "text"),
    ({"texts": "one string"}, "texts: Input should be a valid list: send a JSON array of strings", "texts"),
    ({"texts": ["ok", 7]}, "texts[1]: Input should be a valid string: send a JSON string", "texts[1]"),
    ({"txt": "hello"}, "txt: Extra inputs are not permitted: remove it (see /docs for the fields this endpoint takes)", "txt"),
    (["where is my parcel"], 'the body is a JSON array, not an object: send a JSON object, e.g. {"text": "where is my parcel"}',
     "body"),
], ids=["empty", "blank", "blank-in-batch", "empty-batch", "batch-over-limit", "both", "neither", "number", "string-as-batch",
        "number-in-batch", "unknown-field", "array-body"])
def test_bad_predict_input_is_422_naming_the_field_and_the_fix(tmp_path, demo_copy, body, message, field):
    ctx = open_ctx(demo_copy, api_max_batch=3)
    with TestClient(create_app(ctx, token=None)) as c:
        assert problem(c.post("/predict", json=body), 422) == (message, field)


def test_a_body_that_is_not_json_is_422(client):
    response = client.post("/predict", content=b"{text: where", headers={"content-type": "application/json"})
    assert problem(response, 422) == ('the body is not valid JSON: send a JSON object, e.g. {"text": "where is my parcel"}',
                                      "body")
    assert problem(client.post("/predict"), 422) == (
        'the body is missing: send a JSON object, e.g. {"text": "where is my parcel"}', "body")
    latin1 = client.post("/predict", content='{"text": "caf\xe9"}'.encode("latin-1"), headers={"content-type": "application/json"})
    assert problem(latin1, 422) == ('the body could not be read as JSON text (UTF-8): send a JSON object, e.g. '
                                    '{"text": "where is my parcel"}', "body")


def test_a_body_over_the_size_limit_is_413_declared_or_streamed(demo_copy):
    ctx = open_ctx(demo_copy, api_max_body_bytes=2048)
    big = json.dumps({"text": "parcel " * 500}).encode()
    message = ("the request body is over the limit of 2,048 bytes: send less (split a batch into several requests; "
               "setting api_max_body_bytes)", "body")
    with TestClient(create_app(ctx, token=None)) as c:
        assert problem(c.post("/predict", content=big, headers={"content-type": "application/json"}), 413) == message

        def chunks():
            for i in range(0, len(big), 512):
                yield big[i:i + 512]

        streamed = c.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert problem(streamed, 413) == message
        small = json.dumps({"text": "where is my parcel"}).encode()
        assert c.post("/predict", content=iter([small[:10], small[10:]]),
                      headers={"content-type": "application/json"}).status_code == 200


# -- feedback ---------------------------------------------------------------------------------------------


def test_feedback_on_an_answered_query_is_stored_as_a_label(demo_ctx):
    with TestClient(create_app(demo_ctx, token=None)) as c:
        answer = c.post("/predict", json={"text": "my parcel is late"}).json()
        response = c.post("/feedback", json={"query_id": answer["query_id"], "label": " Delivery_Delay "})
        assert response.status_code == 200
        assert response.json() == {"query_id": answer["query_id"], "label": "delivery_delay", "recorded": True}
    ingest_spool(demo_ctx.db, demo_ctx.settings.spool_dir, clock=demo_ctx.clock)
    with demo_ctx.db.read() as con:
        rows = con.execute("SELECT label, source FROM labels WHERE query_id = ?", [answer["query_id"]]).fetchall()
    assert rows == [("delivery_delay", "feedback")]


def test_feedback_on_a_query_already_in_the_store_is_accepted(client, demo_ctx):
    with demo_ctx.db.read() as con:
        query_id = con.execute("SELECT id FROM queries ORDER BY ts LIMIT 1").fetchone()[0]
    assert query_logged(demo_ctx.db, query_id)
    assert client.post("/feedback", json={"query_id": query_id, "label": "track_order"}).status_code == 200


def test_feedback_bad_input(client):
    query_id = client.post("/predict", json={"text": "refund please"}).json()["query_id"]
    detail, field = problem(client.post("/feedback", json={"query_id": query_id, "label": "teleport_me"}), 422)
    assert field == "label"
    assert detail.startswith("label: unknown label 'teleport_me': valid labels are apply_discount, cancel_order, ")
    assert problem(client.post("/feedback", json={"query_id": "0" * 32, "label": "track_order"}), 404) == (
        "unknown query_id '00000000000000000000000000000000': send the query_id that POST /predict answered "
        "(queries logged by other processes are known once the worker has stored them)", "query_id")
    assert problem(client.post("/feedback", json={"query_id": query_id, "label": ""}), 422) == (
        "label: String should have at least 1 character: send a non-empty string", "label")
    assert problem(client.post("/feedback", json={"query_id": query_id}), 422) == ("label: Field required: add it", "label")


# -- who may write -------------------------------------------------------------------------------------------


WRITES = [("/retrain", None), ("/rollback", {"to": "v0001"}), ("/scheduler/start", None), ("/scheduler/stop", None),
          ("/predict", {"text": "refund please"}), ("/feedback", {"query_id": "x", "label": "track_order"})]


@pytest.mark.parametrize("path, body", WRITES, ids=[p for p, _ in WRITES])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_with_a_token_every_write_needs_it_as_a_bearer_token(demo_ctx, path, body, host):
    with TestClient(create_app(demo_ctx, token=TOKEN, host=host)) as c:
        missing = post(c, path, body)
        assert problem(missing, 401) == ("the bearer token is missing: send the action_token from .streamlit/secrets.toml "
                                         "as the header `Authorization: Bearer <token>`", "Authorization")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = post(c, path, body, headers={"Authorization": "Bearer not-it"})
        assert problem(wrong, 401)[0].startswith("the bearer token does not match")
        right = post(c, path, body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code in (200, 202, 404), right.text  # 404: the made-up query id of /feedback
        assert c.get("/model/status").status_code == 200  # reads stay open


def test_the_app_refuses_an_exposed_address_without_a_token(demo_ctx):
    with pytest.raises(SettingsError, match="refusing to listen on 0.0.0.0 without an action token"):
        create_app(demo_ctx, token=None, host="0.0.0.0")


def test_action_token_reads_the_secrets_files_streamlit_reads(tmp_path):
    home_file, project_file = tmp_path / "home.toml", tmp_path / "project.toml"
    home_file.write_text('action_token = "from-home"\n')
    project_file.write_text('action_token = "from-project"\nother = 1\n')
    assert action_token(files=[home_file, project_file]) == "from-project"
    assert action_token(files=[home_file, tmp_path / "missing.toml"]) == "from-home"
    assert action_token(files=[tmp_path / "missing.toml"]) is None
    assert action_token(secrets={"action_token": ""}) is None
    assert action_token(secrets={"action_token": "abc"}) == "abc"
    project_file.write_text("action_token = unquoted\n")
    with pytest.raises(SettingsError, match=r"project.toml is not valid TOML .*: write action_token = \"a long random string\""):
        action_token(files=[project_file])


# -- errors never leak -----------------------------------------------------------------------------------------


def test_an_unexpected_error_is_a_500_without_traceback_or_path(demo_ctx, monkeypatch):
    import engine.api

    def broken(ctx):
        raise RuntimeError(f"boom in {ctx.settings.home}/retrainer.duckdb")

    monkeypatch.setattr(engine.api, "system_status", broken)
    with TestClient(create_app(demo_ctx, token=None), raise_server_exceptions=False) as c:
        response = c.get("/model/status")
    assert response.status_code == 500
    body = response.json()
    assert body["field"] is None
    assert body["detail"].startswith("internal error (reference ")
    assert body["detail"].endswith("): the server's log has the details; the request may be retried")
    for leak in ("boom", "Traceback", str(demo_ctx.settings.home), "RuntimeError"):
        assert leak not in response.text


def test_public_message_hides_the_data_directory_and_other_paths(tmp_path):
    home = tmp_path / "home"
    assert public_message(f"model v0003: file {home}/models/v0003.pkl is missing", home=home) == (
        "model v0003: file $RETRAINER_HOME/models/v0003.pkl is missing")
    assert public_message("see /var/lib/x/y.toml or POST /retrain") == "see <path> or POST /retrain"


def test_a_fallback_reason_is_shown_without_the_path(demo_ctx):
    (demo_ctx.settings.registry_dir / "v0002.pkl").unlink()
    with TestClient(create_app(demo_ctx, token=None)) as c:
        body = c.get("/readyz").json()
        status = c.get("/model/status").text
    # The demo's operator rolled back from v0004 to v0002: the fallback is v0001, which served before
    # v0002, never v0004, the version rolled back from (issue 13, case 14).
    assert (body["fallback"], body["version"]) == (True, "v0001")
    assert body["fallback_reason"].startswith(
        "active model v0002 cannot be loaded (model v0002: file $RETRAINER_HOME/models/v0002.pkl is missing)")
    assert str(demo_ctx.settings.home) not in status


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                             st.sampled_from(["text", "texts", "query_id", "label", "to", "x"]), inner, max_size=3),
                         max_leaves=8),
       path=st.sampled_from(["/predict", "/feedback", "/rollback"]))
def test_hostile_json_bodies_get_a_4xx_or_an_answer_never_a_500(client, body, path):
    response = client.post(path, json=body)
    assert response.status_code in (200, 202, 404, 409, 422), response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"detail", "field"}
    assert "Traceback" not in response.text


# -- the command line ---------------------------------------------------------------------------------------------


def test_serve_refuses_an_exposed_address_without_a_token(tmp_path):
    done = run_cli("serve", "--host", "0.0.0.0", "--port", "0", home=tmp_path / "home", env={"HOME": str(tmp_path)},
                   timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: refusing to listen on 0.0.0.0 without an action token")
    assert "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_says_so(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("serve", "--port", str(port), home=tmp_path / "home", env={"HOME": str(tmp_path)}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use: "
                                   "choose another --port (or stop what uses it)")
