"""Request bodies a tester sent the API: each is refused with a 422 naming what was wrong and what would be
right, and no answer echoes a client's input unbounded; ``POST /retrain`` takes the CLI's ``--force``.

The API runs on a real (empty) store through FastAPI's TestClient with its real Classifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from engine.api import create_app
from engine.config import load_settings
from engine.context import Context
from store.commands import recent_commands
from tests.conftest import run_cli

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ctx(home) -> Context:
    return Context.open(load_settings(env={}, home=home, reload_seconds=0.1, flush_seconds=0.05))


@pytest.fixture
def client(ctx):
    with TestClient(create_app(ctx, token=None)) as c:
        yield c


def problem(response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"detail", "field"}
    return response.status_code, body["detail"], body["field"]


# -- bounded input, never echoed unbounded ----------------------------------------------------------------


def test_a_rollback_version_of_100000_characters_is_refused_without_echoing_it(client):
    response = client.post("/rollback", json={"to": "v" * 100_000})

    assert problem(response) == (422, "to: String should have at most 200 characters: send a shorter string", "to")
    assert len(response.content) < 200


def test_an_unknown_field_with_a_huge_name_is_named_cut_to_40_characters(client):
    response = client.post("/predict", json={"x" * 100_000: 1})

    clipped = "x" * 40 + "… (100,000 characters)"
    assert problem(response) == (422, f"{clipped}: Extra inputs are not permitted: remove it (see /docs for the fields "
                                      "this endpoint takes)", clipped)


LONG = st.text(min_size=300, max_size=2000).filter(lambda t: len(t.strip()) >= 300)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/predict", "/feedback", "/rollback", "/retrain"]), long=LONG,
       place=st.sampled_from(["key", "to", "query_id", "label", "force", "texts"]))
def test_no_answer_echoes_a_long_input(client, path, long, place):
    body = {long: "x"} if place == "key" else {place: long}

    response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert long[:100] not in response.text
    assert len(response.content) < 1000


# -- bodies that are not a JSON object -------------------------------------------------------------------


@pytest.mark.parametrize("path, example", [
    ("/predict", '{"text": "where is my parcel"}'),
    ("/rollback", '{"to": "v0003"}'),
    ("/retrain", '{"force": true}'),
], ids=["predict", "rollback", "retrain"])
def test_json_nested_100000_deep_is_named_as_too_deep(client, path, example):
    response = client.post(path, content="[" * 100_000 + "]" * 100_000, headers=JSON)

    assert problem(response) == (422, f"the body's JSON is nested too deeply to be read: send a JSON object, e.g. {example}",
                                 "body")


@pytest.mark.parametrize("body, shown", [
    (["where is my parcel"], "a JSON array"),
    ("where is my parcel", "a JSON string"),
    (7, "a JSON number"),
    (2.5, "a JSON number"),
    (True, "a JSON true or false"),
], ids=["array", "string", "int", "float", "bool"])
@pytest.mark.parametrize("path, example", [
    ("/predict", '{"text": "where is my parcel"}'),
    ("/feedback", '{"query_id": "3f2a…", "label": "track_order"}'),
    ("/rollback", '{"to": "v0003"}'),
], ids=["predict", "feedback", "rollback"])
def test_a_json_body_that_is_not_an_object_is_named_by_its_kind(client, path, example, body, shown):
    response = client.post(path, content=json.dumps(body), headers=JSON)

    assert problem(response) == (422, f"the body is {shown}, not an object: send a JSON object, e.g. {example}", "body")


def test_json_null_on_an_endpoint_whose_body_is_required(client):
    response = client.post("/predict", content="null", headers=JSON)

    assert problem(response) == (422, 'the body is JSON null, not an object: send a JSON object, e.g. '
                                      '{"text": "where is my parcel"}', "body")


def test_an_object_without_the_json_content_type_is_told_to_send_the_header(client):
    response = client.post("/predict", content='{"text": "where is my parcel"}')

    assert problem(response) == (422, "body: Input should be a valid dictionary or object to extract fields from: send a "
                                      "JSON object with the header Content-Type: application/json (see /docs)", "body")


# -- POST /retrain: the CLI's --force, and nothing else ---------------------------------------------------


@pytest.mark.parametrize("body, args", [
    (None, {}),
    ({}, {}),
    ({"force": False}, {}),
    ({"force": True}, {"force": True}),
], ids=["no-body", "empty", "false", "true"])
def test_retrain_queues_force_as_the_cli_does(client, ctx, body, args):
    response = client.post("/retrain", json=body) if body is not None else client.post("/retrain")

    assert response.status_code == 202, response.text
    assert (response.json()["kind"], response.json()["args"]) == ("retrain", args)
    command = recent_commands(ctx.db, limit=1)[0]
    assert (command["kind"], command["args"], command["source"]) == ("retrain", args, "api")


def test_retrain_force_is_the_same_command_the_cli_queues(client, ctx, home):
    assert client.post("/retrain", json={"force": True}).status_code == 202
    assert run_cli("retrain", "--force", home=home).returncode == 0

    commands = recent_commands(ctx.db, limit=2)
    assert [(c["kind"], c["args"], c["source"]) for c in commands[::-1]] == [
        ("retrain", {"force": True}, "api"), ("retrain", {"force": True}, "cli")]


@pytest.mark.parametrize("body, message, field", [
    ({"force": "yes"}, "force: Input should be a valid boolean: send true or false", "force"),
    ({"force": 1}, "force: Input should be a valid boolean: send true or false", "force"),
    ({"forse": True}, "forse: Extra inputs are not permitted: remove it (see /docs for the fields this endpoint takes)",
     "forse"),
], ids=["string", "number", "misspelt"])
def test_retrain_refuses_anything_but_force_true_or_false(client, ctx, body, message, field):
    response = client.post("/retrain", json=body)

    assert problem(response) == (422, message, field)
    assert recent_commands(ctx.db, limit=5) == []
