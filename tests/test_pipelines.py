"""The ``pipeline`` setting: presets, a team's factory end to end, every bad factory's error, CJK and long texts.

The factories live in tests/team_pipeline.py and are named as a team would name its own
("tests.team_pipeline:logistic"); the repository root is on sys.path (pytest.ini's pythonpath).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from engine import registry
from engine.classifier import Classifier
from engine.config import check_training, load_settings
from engine.context import Context
from engine.deployment import rollback
from engine.errors import PipelineError, SettingsError
from engine.importer import import_file
from engine.pipelines import PRESETS, build_estimator, check_spec, json_params
from engine.retrain import run_cycle
from engine.status import system_status
from engine.training import fit
from store.models import get_model
from tests import team_pipeline
from tests.conftest import labelled_frame

LOGISTIC = "tests.team_pipeline:logistic"
SVC = "tests.team_pipeline:linear_svc"


def wait_for_version(clf: Classifier, version: str, timeout: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and clf.version != version:
        time.sleep(0.02)
    return clf.version


# -- the setting ------------------------------------------------------------------------------------------


def test_default_is_char_and_the_env_variable_picks_another():
    assert load_settings(env={}, path=None).pipeline == "char"
    assert load_settings(env={}).pipeline == "char"  # retrainer.toml says the same
    assert load_settings(env={"RETRAINER_PIPELINE": "word+char"}, path=None).pipeline == "word+char"
    assert load_settings(env={"RETRAINER_PIPELINE": LOGISTIC}, path=None).pipeline == LOGISTIC


BAD = [
    ("words",
     "setting 'pipeline' = 'words' is neither a preset nor a factory: use one of the presets word, char, word+char "
     "or 'package.module:function' naming a function that returns an unfitted scikit-learn estimator (e.g. a Pipeline)"),
    ("tests.no_such_module:make",
     "setting 'pipeline' = 'tests.no_such_module:make': module 'tests.no_such_module' cannot be imported (No module "
     "named 'tests.no_such_module'); install the package that provides it in this environment (`pip install ...`) "
     "or put its folder on PYTHONPATH"),
    ("tests.team_pipeline:missing",
     "setting 'pipeline' = 'tests.team_pipeline:missing': module 'tests.team_pipeline' has no 'missing'; name a "
     "function defined in it, as 'package.module:function'"),
    ("tests.team_pipeline:NOT_CALLABLE",
     "setting 'pipeline' = 'tests.team_pipeline:NOT_CALLABLE': 'NOT_CALLABLE' is a int, not callable; name a "
     "function that takes no arguments and returns an unfitted estimator"),
    ("tests.team_pipeline:raises",
     "setting 'pipeline' = 'tests.team_pipeline:raises': calling the factory raised RuntimeError: the feature store "
     "is down; it must take no arguments and return an unfitted estimator"),
    ("tests.team_pipeline:not_an_estimator",
     "setting 'pipeline' = 'tests.team_pipeline:not_an_estimator': the factory returned a str, not a scikit-learn "
     "estimator (one with fit and get_params); return e.g. Pipeline([('tfidf', TfidfVectorizer()), "
     "('clf', LogisticRegression())])"),
    ("tests.team_pipeline:no_predict",
     "setting 'pipeline' = 'tests.team_pipeline:no_predict': the factory's TfidfVectorizer has no predict method; "
     "end the pipeline with a classifier (e.g. LogisticRegression, SGDClassifier, LinearSVC)"),
    ("tests.team_pipeline:fitted",
     "setting 'pipeline' = 'tests.team_pipeline:fitted': the factory returned a fitted Pipeline; return a new, "
     "unfitted one (Retrainer fits it on every training set). To serve a model you already trained, adopt it: "
     "`python -m engine adopt FILE`"),
    ("tests.team_pipeline:uncloneable",
     "setting 'pipeline' = 'tests.team_pipeline:uncloneable': the factory's Uncloneable cannot be cloned "
     "(RuntimeError: Cannot clone object Uncloneable(c=2.0), as the constructor either does not set or modifies "
     "parameter c); scikit-learn's rule: every __init__ argument is stored unchanged under its own name, and "
     "nothing else is done in __init__"),
]


@pytest.mark.parametrize("spec, message", BAD, ids=[b[0].rpartition(":")[2] or b[0] for b in BAD])
def test_a_bad_pipeline_is_refused_when_training_starts_with_the_fix(spec, message):
    # A spec of the wrong form is refused when the settings load; a factory is imported only to train (serving and
    # reading never need it: tests/test_cli_guards.py), when the worker, `run` and `retrain` start.
    with pytest.raises(PipelineError) as caught:
        check_training(load_settings(env={"RETRAINER_PIPELINE": spec}, path=None))
    assert str(caught.value) == message
    assert isinstance(caught.value, SettingsError)  # the CLI prints it as `error: ...` and exits 2


def test_the_cli_refuses_a_bad_factory_with_exit_2_and_no_traceback(tmp_path):
    from tests.conftest import run_cli

    done = run_cli("retrain", "--wait", home=tmp_path / "home", env={"RETRAINER_PIPELINE": "tests.team_pipeline:fitted"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: setting 'pipeline' = 'tests.team_pipeline:fitted': the factory returned a "
                                  "fitted Pipeline; return a new, unfitted one")
    assert "Traceback" not in done.stderr


def test_the_factory_is_checked_again_before_the_fit(settings, clock, tmp_path, monkeypatch):
    ctx = Context.open(settings.replace(pipeline=LOGISTIC), clock=clock)  # fine when the settings loaded
    path = tmp_path / "labelled.csv"
    labelled_frame(10, seed=1).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    monkeypatch.setattr(team_pipeline, "logistic", team_pipeline.fitted)  # the team's module changed since
    result = run_cycle(ctx, trigger="manual")
    assert result.status == "failed"
    assert result.reason.startswith("setting 'pipeline' = 'tests.team_pipeline:logistic': the factory returned a "
                                    "fitted Pipeline; return a new, unfitted one")
    assert registry.read_active(settings.registry_dir) is None


# -- presets and params -----------------------------------------------------------------------------------


def test_each_preset_builds_its_documented_features():
    steps = {p: build_estimator(p).estimator.named_steps["tfidf"] for p in PRESETS}
    assert (steps["word"].analyzer, steps["word"].ngram_range) == ("word", (1, 2))
    assert (steps["char"].analyzer, steps["char"].ngram_range) == ("char_wb", (1, 4))
    union = steps["word+char"].transformer_list
    assert [(n, t.analyzer, t.ngram_range) for n, t in union] == [("word", "word", (1, 2)), ("char", "char_wb", (1, 4))]
    assert check_spec("word+char") is None


def test_params_record_the_spec_its_params_as_json_and_the_sklearn_version():
    import sklearn

    model = fit(labelled_frame(10, seed=1), pipeline="word+char", seed=0)
    params = json.loads(json.dumps(model.params))  # JSON-safe as stored
    assert params["pipeline"] == "word+char" and params["pipeline_kind"] == "preset"
    assert params["sklearn_version"] == sklearn.__version__
    assert params["calibration"] is None
    got = params["pipeline_params"]
    assert got["steps"] == [["tfidf", "FeatureUnion"], ["clf", "SGDClassifier"]]
    assert got["tfidf__word__ngram_range"] == [1, 2] and got["tfidf__char__analyzer"] == "char_wb"
    assert got["tfidf__word__dtype"] == "numpy.float32"
    assert got["clf__alpha"] == 2e-05 and got["clf__random_state"] == 0
    assert params["features"] == "tfidf word 1-2 grams + char_wb 1-4 grams, sublinear tf, first 10,000 characters"
    assert got["tfidf__char__preprocessor"] == "engine.pipelines.feature_text"
    assert params["vocabulary"] == sum(len(v.vocabulary_) for v in
                                       (model.pipeline.named_steps["tfidf"].transformer_list[i][1] for i in (0, 1)))
    assert not hasattr(model.pipeline.named_steps["tfidf"].transformer_list[1][1], "stop_words_")


def test_json_params_names_objects_instead_of_pickling_them():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    est = Pipeline([("f", FunctionTransformer(np.log1p)), ("c", team_pipeline.logistic())])
    got = json_params(est)
    assert got["f__func"] == "numpy.log1p"
    assert got["c"] == "Pipeline" and got["c__clf__C"] == 20.0
    assert json.loads(json.dumps(got)) == got


def test_an_estimator_without_predict_proba_is_calibrated_and_says_so():
    model = fit(labelled_frame(10, seed=1), pipeline=SVC, seed=0)
    assert type(model.pipeline).__name__ == "CalibratedClassifierCV"
    assert model.params["calibration"] == {
        "wrapper": "CalibratedClassifierCV", "method": "sigmoid", "cv_folds": 3, "ensemble": False,
        "why": "Pipeline has no predict_proba; Retrainer's confidence is Platt scaling fitted on 3-fold "
               "cross-validated decision values, serving one copy of the estimator fitted on all rows",
    }
    assert model.params["pipeline_params"]["clf"] == "LinearSVC"
    proba = model.pipeline.predict_proba(["where is my parcel", "i want my money back"])
    assert proba.shape == (2, 20) and np.allclose(proba.sum(axis=1), 1.0)
    assert list(model.pipeline.predict(["where is my parcel"])) == ["track_order"]


def test_a_label_with_one_row_cannot_be_calibrated():
    frame = pd.concat([labelled_frame(5, seed=1), pd.DataFrame({"text": ["lonely"], "label": ["solo"]})])
    with pytest.raises(PipelineError, match="label 'solo' has 1: label more examples of it"):
        fit(frame, pipeline=SVC)


# -- a team's factory, the whole cycle ----------------------------------------------------------------------


@pytest.mark.slow
def test_team_factory_end_to_end_retrain_gate_deploy_hot_reload_predict_rollback(settings, clock, tmp_path):
    team = settings.replace(pipeline=LOGISTIC)
    ctx = Context.open(team, clock=clock)
    path = tmp_path / "labelled.csv"
    labelled_frame(40, seed=1).to_csv(path, index=False)
    assert import_file(ctx, path, labeled=True).labels == 800
    first = run_cycle(ctx, trigger="manual")
    assert (first.status, first.candidate, first.champion, first.deployed) == ("accepted", "v0001", None, True)
    row = get_model(ctx.db, "v0001")
    assert row["params"]["pipeline"] == LOGISTIC and row["params"]["pipeline_kind"] == "factory"
    assert row["params"]["pipeline_params"]["clf__C"] == 20.0

    with Classifier(settings=team) as clf:
        assert clf.version == "v0001"
        p = clf.predict("can you track my order")
        assert (p.label, p.version) == ("track_order", "v0001")

        # A change of pipeline is an ordinary candidate: the gate judges it against the factory's champion.
        svc = Context.open(team.replace(pipeline=SVC), clock=clock)
        second = run_cycle(svc, trigger="manual")
        assert (second.candidate, second.champion) == ("v0002", "v0001")
        assert (second.status, second.deployed) == ("accepted", True), second.reason
        assert wait_for_version(clf, "v0002") == "v0002"  # hot reload, no restart
        p = clf.predict("i want my money back")
        assert (p.label, p.version) == ("request_refund", "v0002") and 0 < p.confidence <= 1
        status = system_status(svc)
        assert status["active"]["version"] == "v0002"
        assert status["active"]["pipeline"] == SVC
        assert status["active"]["calibration"]["wrapper"] == "CalibratedClassifierCV"
        assert status["active"]["pipeline_params"]["clf"] == "LinearSVC"
        assert json.loads(json.dumps(status, default=str))["active"]["sklearn_version"] == registry.SKLEARN_VERSION

        back = rollback(svc, to="v0001", why="test")
        assert back.deployed is True
        assert wait_for_version(clf, "v0001") == "v0001"
        assert clf.predict("can you track my order").label == "track_order"


# -- unspaced scripts and long texts -------------------------------------------------------------------------

CJK = {
    "track_order": ("我的包裹在哪里", "订单什么时候到", "快递到哪了", "荷物はどこですか", "注文はいつ届きますか", "配達状況を知りたい"),
    "request_refund": ("我要退款", "请把钱退给我", "退货退款怎么办", "返金してください", "お金を返してほしい", "払い戻しをお願いします"),
    "reset_password": ("忘记密码了", "密码怎么重置", "登录不了要改密码", "パスワードを忘れました", "パスワードを再設定したい", "ログインできないのでパスワードを変えたい"),
}
OPENERS = ("", "你好，", "请问", "麻烦问一下，", "すみません、", "こんにちは、")
CLOSERS = ("", "？", "。", "！", "呢", "ね")
# Unseen at training time: new openers and closers around the same meaning.
HELD_OUT = {
    "track_order": ("喂，我的包裹在哪里啊", "あの、荷物はどこですか？", "想知道订单什么时候到"),
    "request_refund": ("喂，我要退款啊", "あの、返金してください", "能不能请把钱退给我"),
    "reset_password": ("喂，忘记密码了啊", "あの、パスワードを忘れました", "想知道密码怎么重置"),
}


def cjk_frame() -> pd.DataFrame:
    rows = [(o + core + c, label) for label, cores in CJK.items() for core in cores for o in OPENERS for c in CLOSERS]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.mark.parametrize("pipeline, right", [("char", 9), ("word+char", 9), ("word", 5)])
def test_short_cjk_texts_are_classified_after_a_retrain(settings, clock, tmp_path, pipeline, right):
    ctx = Context.open(settings.replace(pipeline=pipeline), clock=clock)
    path = tmp_path / "cjk.csv"
    cjk_frame().to_csv(path, index=False)
    assert import_file(ctx, path, labeled=True).labels == 648
    result = run_cycle(ctx, trigger="manual")
    assert result.status == "accepted", result.reason
    with Classifier(settings=ctx.settings, log_queries=False, background=False) as clf:
        got = {text: clf.predict(text).label for texts in HELD_OUT.values() for text in texts}
    want = {text: label for label, texts in HELD_OUT.items() for text in texts}
    # The default (char) and word+char read characters: all 9. The word preset sees an unspaced sentence as one token, unknown unless
    # punctuation happens to cut it where the training texts were cut ("あの、荷物はどこですか？" -> "荷物はどこですか").
    assert sum(got[t] == want[t] for t in want) == right, got


def test_a_20000_character_labelled_text_is_imported_and_trained_on(ctx, tmp_path):
    article = " ".join(f"The quarterly shipment report, section {i}: parcels, couriers and delivery windows." for i in range(240))
    article = (article + " ")[:20_000]
    assert len(article) == 20_000
    frame = pd.concat([labelled_frame(20, seed=1), pd.DataFrame({"text": [article], "label": ["shipping_report"]})],
                      ignore_index=True)
    path = tmp_path / "with-article.csv"
    frame.to_csv(path, index=False)
    report = import_file(ctx, path, labeled=True)
    assert (report.labels, report.rejected) == (401, 0)
    result = run_cycle(ctx, trigger="manual")
    assert result.status == "accepted", result.reason
    from store.retrains import get_retrain

    funnel = get_retrain(ctx.db, result.retrain_id)
    assert funnel["malformed"] == 0
    model = get_model(ctx.db, result.candidate)
    assert "shipping_report" in model["labels"]
    with Classifier(settings=ctx.settings, log_queries=False, background=False) as clf:
        assert clf.predict(article).label == "shipping_report"
