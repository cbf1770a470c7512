"""The hyperparameter search on a real Dask cluster: the optional extra (requirements-dask.txt).

Skipped, with the reason, when the extra is not installed. With it, a ``LocalCluster`` of two
worker processes (one thread each, over TCP, so every fit and its data are pickled to another
process as on a real cluster) runs the search; the scheduler's task stream shows where each fit
ran, and the outcome must equal the same search run by joblib in this process.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed", reason="the optional Dask extra is not installed (pip install -r requirements-dask.txt)")

from engine.errors import TrainingError  # noqa: E402
from engine.importer import import_file  # noqa: E402
from demo.intents import IntentGenerator  # noqa: E402
from engine.retrain import run_cycle  # noqa: E402
from engine.training import fit  # noqa: E402
from engine.tuning import SearchPlan  # noqa: E402
from store.models import list_models  # noqa: E402
from tests.conftest import labelled_frame  # noqa: E402

ALPHAS = (1e-5, 2e-5, 5e-5, 1e-4, 1e-3)
FOLDS = 3
BATCH = re.compile(r"_fit_and_score_(\d+)_calls")  # joblib's Dask backend names each task after its batch


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def observer(cluster):
    """A second client, as an operator's: it watches the scheduler while the engine uses its own."""
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def train():
    return labelled_frame(20, seed=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_runs_on_the_cluster_and_chooses_as_joblib_here(cluster, observer, train):
    address = cluster.scheduler_address
    worker_pids = observer.run(os.getpid)  # {worker address: pid}
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()

    with distributed.get_task_stream(client=observer) as stream:
        on_cluster = fit(train, pipeline="word", seed=0, search=SearchPlan(cv_folds=FOLDS, alphas=ALPHAS, dask_scheduler=address))
    here = fit(train, pipeline="word", seed=0, search=SearchPlan(cv_folds=FOLDS, alphas=ALPHAS))

    # Every fit of the search ran as a task on the cluster's worker processes, on both of them.
    fits = [(int(BATCH.search(t["key"]).group(1)), t["worker"]) for t in stream.data if BATCH.search(t["key"])]
    assert sum(n for n, _ in fits) == len(ALPHAS) * FOLDS == 15
    assert {worker for _, worker in fits} == set(worker_pids)

    # The record says what was chosen and where it ran; the choice is the local one.
    searched, local = on_cluster.params["search"], here.params["search"]
    assert searched["ran_on"] == f"dask {address} (2 workers, 2 threads)"
    assert local["ran_on"] == "this machine (joblib, search_jobs = 1)"
    assert searched["chosen_alpha"] == local["chosen_alpha"] == on_cluster.params["alpha"] == 1e-3
    assert searched["scores"] == local["scores"]
    assert (searched["fits"], searched["cv_folds"]) == (15, FOLDS)

    # The fitted models (the final fit runs in this process either way) predict alike.
    texts = [e.text for e in IntentGenerator(seed=4242).sample(200)]
    np.testing.assert_array_equal(on_cluster.pipeline.predict(texts), here.pipeline.predict(texts))
    np.testing.assert_allclose(on_cluster.pipeline.predict_proba(texts), here.pipeline.predict_proba(texts),
                               rtol=0, atol=1e-12)


def test_a_retrain_searches_on_the_scheduler_the_settings_name(cluster, ctx, tmp_path):
    path = tmp_path / "labelled.csv"
    labelled_frame(20, seed=1).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    settings = ctx.settings.replace(cv_folds=FOLDS, search_alphas="1e-5, 1e-4, 1e-3",
                                    dask_scheduler=cluster.scheduler_address)

    result = run_cycle(dataclasses.replace(ctx, settings=settings), trigger="manual", force=True)
    assert (result.status, result.candidate) == ("accepted", "v0001")
    (model,) = list_models(ctx.db)
    assert model["params"]["search"]["ran_on"] == f"dask {cluster.scheduler_address} (2 workers, 2 threads)"
    assert [s["alpha"] for s in model["params"]["search"]["scores"]] == [1e-5, 1e-4, 1e-3]
    assert model["params"]["alpha"] == model["params"]["search"]["chosen_alpha"]


def test_unreachable_scheduler_says_check_the_address(train, monkeypatch):
    monkeypatch.setattr("engine.tuning.DASK_CONNECT_SECONDS", 1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(TrainingError, match=(
            rf"^setting 'dask_scheduler' = '{re.escape(address)}': the scheduler cannot be reached \(.*\); check the "
            r"address and that `dask scheduler` runs there, or leave dask_scheduler empty to search on this machine$")):
        fit(train, seed=0, search=SearchPlan(cv_folds=FOLDS, alphas=ALPHAS, dask_scheduler=address))


def test_scheduler_without_workers_says_start_some(train, monkeypatch):
    monkeypatch.setattr("engine.tuning.DASK_CONNECT_SECONDS", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=":0") as empty:
        address = empty.scheduler_address
        with pytest.raises(TrainingError, match=(
                rf"^setting 'dask_scheduler' = '{re.escape(address)}': the scheduler has no workers after 1 s; "
                rf"start some with `dask worker {re.escape(address)}`$")):
            fit(train, seed=0, search=SearchPlan(cv_folds=FOLDS, alphas=ALPHAS, dask_scheduler=address))
