"""The API benchmark's parts on a tiny load: the server it starts answers, and the load generator counts
and checks every answer it times."""

from __future__ import annotations

import pytest

from benchmarks import api as bench


@pytest.mark.slow
def test_the_load_generator_times_every_checked_answer(demo_copy, tmp_path):
    server = bench.Server(demo_copy, tmp_path / "serve.log", access_log=False)
    try:
        cpu = server.cpu_seconds()
        predict = bench.load(server.port, 3, 30, warmup=6)
        health = bench.load(server.port, 2, 10, path="/healthz", warmup=2)
        used = server.cpu_seconds() - cpu
    finally:
        server.stop()
    assert (predict["clients"], predict["n"], predict["bad"]) == (3, 30, 0)
    assert 0 < predict["p50"] <= predict["p99"] <= predict["max"]
    assert predict["per_s"] > 0
    assert (health["n"], health["bad"]) == (10, 0)
    assert used > 0
    assert server.proc.returncode == 0


def test_a_sample_belongs_to_the_layer_of_its_innermost_known_frame():
    http = "run (uvicorn/server.py:67)"
    route = "app (fastapi/routing.py:152)"
    endpoint = "predict (engine/api.py:520)"
    classifier = "predict_many (engine/classifier.py:160)"
    model = "predict_proba (sklearn/pipeline.py:900)"
    assert bench.layer_of([http, route, endpoint, classifier, model, "<listcomp> (inspect.py:1798)"]) == (
        "model: scikit-learn, NumPy, SciPy")
    assert bench.layer_of([http, route, endpoint, classifier, "uuid4 (uuid.py:720)"]) == "Classifier: cleaning, ids, log buffer"
    assert bench.layer_of([http, route, "serialize_response (fastapi/routing.py:200)", "dumps (json/__init__.py:231)"]) == (
        "JSON encode/decode")
    assert bench.layer_of([http, "handle_events (uvicorn/protocols/http/h11_impl.py:237)"]) == "uvicorn, h11, asyncio (HTTP)"
    assert bench.layer_of(["<module> (somewhere.py:1)"]) == "other"
