"""Schemathesis against the API's own OpenAPI document: requests generated from the schema, valid ones and
ones that break it, never get a 500, and every answer has a status code, content type and body the schema
documents.

Schemathesis's pytest plugin does not load under pytest 9 (it reads a private attribute pytest removed),
so each operation's Hypothesis strategy is driven directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from engine.api import create_app
from engine.classifier import Classifier
from engine.config import load_settings
from engine.context import Context

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(demo_copy):
    """The schema of an API on a private demo store, its Classifier started (ASGI calls skip the lifespan)."""
    ctx = Context.open(load_settings(env={}, home=demo_copy))
    clf = Classifier(settings=ctx.settings, source="api")
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(ctx, token=None, classifier=clf))
    clf.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_every_generated_request_gets_a_documented_answer(api_schema, mode):
    tried, failures = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing can break the schema of an operation without input (GET /healthz)
            continue
        except AssertionError as exc:  # schemathesis's failures are AssertionErrors naming the check
            failures.append(f"{operation.label}: {str(exc)[:600]}")
        tried.append(operation.label)
    with_input = {"POST /predict", "POST /feedback", "POST /rollback", "GET /retrain/metrics", "GET /commands/{command_id}",
                  "GET /models", "GET /events"}
    assert len(tried) == 15 if mode is schemathesis.GenerationMode.POSITIVE else with_input <= set(tried)
    assert failures == []
