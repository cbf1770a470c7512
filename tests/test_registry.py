"""Tests for engine.registry: atomic files, saving and verifying models, the active pointer."""

import hashlib
import json
import os

import numpy as np
import pytest
import sklearn
import sklearn.base

from engine import registry
from engine.errors import InputError, ModelLoadError
from engine.registry import ActivePointer, ModelRef
from engine.training import fit
from tests.conftest import labelled_frame

TEXTS = ["where is my parcel", "i want a refund for the blender", "reset my password please", "are you open on sunday"]


@pytest.fixture(scope="module")
def model():
    """A real fitted pipeline (5 examples per intent), shared read-only by the tests of this module."""
    return fit(labelled_frame(5, seed=3), seed=0).pipeline


@pytest.fixture
def models_dir(tmp_path):
    return tmp_path / "models"


def ref(version: str, sha: str = "0" * 64) -> ModelRef:
    return ModelRef(version, sha, sklearn.__version__, ("a", "b"))


# --- atomic_write ----------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces_without_leaving_temp_files(tmp_path):
    path = tmp_path / "deep" / "ACTIVE.json"
    registry.atomic_write(path, b"first")
    inode = path.stat().st_ino
    registry.atomic_write(path, b"second, longer content")
    assert path.read_bytes() == b"second, longer content"
    assert os.listdir(path.parent) == ["ACTIVE.json"]
    assert path.stat().st_ino != inode  # a new file moved into place, not an in-place rewrite


def test_atomic_write_failure_keeps_the_old_content_and_no_temp_file(tmp_path):
    path = tmp_path / "ACTIVE.json"
    registry.atomic_write(path, b"old")
    with pytest.raises(TypeError):
        registry.atomic_write(path, "not bytes")  # fails while writing the temp file
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ACTIVE.json"]


# --- version names ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v0001", "v0042", "v123456789"], ids=["v0001", "v0042", "nine-digits"])
def test_valid_versions(version):
    assert registry.check_version(version) == version


@pytest.mark.parametrize(
    "version",
    ["../etc/passwd", "v1", "v0001.joblib", "v0001.pkl", "", None, "v0001\n", "V0001", "v1234567890", "v\u0661\u0662\u0663\u0664",
     "v0001/../../x", 1],
    ids=["traversal", "short", "with-suffix", "with-pkl-suffix", "empty", "none", "trailing-newline", "capital", "ten-digits",
         "arabic-digits", "slash", "int"],
)
def test_invalid_versions_are_refused_everywhere(models_dir, version):
    message = r"is not a model version: versions look like v0007"
    with pytest.raises(InputError, match=message):
        registry.check_version(version)
    with pytest.raises(InputError, match=message):
        registry.model_file(models_dir, version)
    with pytest.raises(InputError, match=message):
        registry.load_model(models_dir, version, sha256="0" * 64, sklearn_version=sklearn.__version__)


def test_version_numbers_and_names():
    assert [registry.version_name(n) for n in (1, 42, 12345)] == ["v0001", "v0042", "v12345"]
    assert registry.version_number("v0042") == 42


def test_model_file_is_inside_the_registry(models_dir):
    models_dir.mkdir()
    path = registry.model_file(models_dir, "v0003")
    assert (path.parent, path.stem) == (models_dir.resolve(), "v0003")


# --- save and load ------------------------------------------------------------------------------


def test_save_then_load_gives_the_same_model(models_dir, model):
    saved = registry.save_model(models_dir, "v0001", model)
    path = registry.model_file(models_dir, "v0001")
    data = path.read_bytes()
    assert saved == registry.SavedModel("v0001", path.name, hashlib.sha256(data).hexdigest(), len(data),
                                        sklearn.__version__)
    assert os.listdir(models_dir) == [path.name]  # no temp file left behind
    loaded = registry.load_model(models_dir, "v0001", sha256=saved.sha256, sklearn_version=saved.sklearn_version)
    assert loaded is not model
    assert np.array_equal(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))
    assert list(loaded.predict(TEXTS)) == list(model.predict(TEXTS))


@pytest.mark.parametrize("offset", [0, 100, -1], ids=["first-byte", "middle", "last-byte"])
def test_a_flipped_byte_fails_the_checksum(models_dir, model, offset):
    saved = registry.save_model(models_dir, "v0001", model)
    path = registry.model_file(models_dir, "v0001")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"^model v0001: checksum mismatch \(file [0-9a-f]{12}…, registry "
                                             + saved.sha256[:12] + r"…\): the file was changed or damaged"):
        registry.load_model(models_dir, "v0001", sha256=saved.sha256, sklearn_version=saved.sklearn_version)


def test_recorded_sklearn_version_mismatch_without_a_fingerprint_is_refused(models_dir, model):
    saved = registry.save_model(models_dir, "v0001", model)
    with pytest.raises(ModelLoadError, match=rf"^model v0001 was pickled by scikit-learn 0\.24\.2, this process has "
                                             rf"{sklearn.__version__}, and no fingerprint was recorded to verify it"):
        registry.load_model(models_dir, "v0001", sha256=saved.sha256, sklearn_version="0.24.2")


def test_pickle_from_another_sklearn_is_refused(models_dir, model, monkeypatch):
    """A file whose pickled estimators say another scikit-learn made them (InconsistentVersionWarning),
    although the registry recorded this process's version for it."""
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")  # what BaseEstimator.__getstate__ records
    saved = registry.save_model(models_dir, "v0001", model)
    monkeypatch.undo()
    assert saved.sklearn_version == sklearn.__version__
    with pytest.raises(ModelLoadError, match=rf"^model v0001 was pickled by scikit-learn 1\.0\.2, this process has "
                                             rf"{sklearn.__version__}, and no fingerprint was recorded to verify it"):
        registry.load_model(models_dir, "v0001", sha256=saved.sha256, sklearn_version=saved.sklearn_version)


def test_a_file_that_is_not_a_pickle_is_refused(models_dir):
    models_dir.mkdir()
    data = b"not a pickle at all"
    registry.model_file(models_dir, "v0001").write_bytes(data)
    with pytest.raises(ModelLoadError, match=r"^model v0001: the file could not be unpickled \("):
        registry.load_model(models_dir, "v0001", sha256=hashlib.sha256(data).hexdigest(),
                            sklearn_version=sklearn.__version__)


def test_missing_file(models_dir):
    models_dir.mkdir()
    path = registry.model_file(models_dir, "v0009")
    with pytest.raises(ModelLoadError, match=rf"^model v0009: file {path} is missing$"):
        registry.load_model(models_dir, "v0009", sha256="0" * 64, sklearn_version=sklearn.__version__)


# --- the active pointer ---------------------------------------------------------------------------


def test_no_pointer_means_nothing_deployed(models_dir):
    assert registry.read_active(models_dir) is None
    assert registry.active_stamp(models_dir) is None


def test_point_to_builds_history_newest_first_without_duplicates(models_dir):
    steps = ["v0001", "v0002", "v0003", "v0001", "v0002"]
    pointers = [registry.point_to(models_dir, ref(v), deployed_at=f"2026-03-0{i + 1}T00:00:00") for i, v in enumerate(steps)]
    assert [(p.active.version, [h.version for h in p.history]) for p in pointers] == [
        ("v0001", []),
        ("v0002", ["v0001"]),
        ("v0003", ["v0002", "v0001"]),
        ("v0001", ["v0003", "v0002"]),
        ("v0002", ["v0001", "v0003"]),
    ]
    on_disk = registry.read_active(models_dir)
    assert on_disk == pointers[-1]
    assert on_disk.deployed_at == "2026-03-05T00:00:00"
    assert on_disk.active.labels == ("a", "b")
    assert sorted(os.listdir(models_dir)) == ["ACTIVE.json"]


def test_history_is_capped(models_dir):
    for n in range(1, registry.HISTORY_LENGTH + 6):
        pointer = registry.point_to(models_dir, ref(registry.version_name(n)), deployed_at="2026-03-04T12:00:00")
    assert pointer.active.version == "v0055"
    assert len(pointer.history) == registry.HISTORY_LENGTH == 50
    assert (pointer.history[0].version, pointer.history[-1].version) == ("v0054", "v0005")


def test_pointer_json_round_trip():
    pointer = ActivePointer(ref("v0002", "ab" * 32), "2026-03-04T12:00:00", (ref("v0001", "cd" * 32),))
    assert ActivePointer.from_json(pointer.to_json()) == pointer


def test_active_stamp_changes_when_the_pointer_is_rewritten(models_dir):
    registry.point_to(models_dir, ref("v0001"), deployed_at="2026-03-04T12:00:00")
    before = registry.active_stamp(models_dir)
    registry.write_active(models_dir, registry.read_active(models_dir))  # same content, new file
    assert registry.active_stamp(models_dir) != before


GOOD = {"version": "v0001", "sha256": "0" * 64, "sklearn_version": "1.9.1"}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"{}",
        json.dumps({"active": "v0001", "deployed_at": "x"}).encode(),
        json.dumps({"active": {"version": "v0001"}, "deployed_at": "x"}).encode(),
        json.dumps({"active": GOOD}).encode(),
        json.dumps({"active": GOOD, "deployed_at": "x", "history": None}).encode(),
        json.dumps({"active": {**GOOD, "version": "../../etc/passwd"}, "deployed_at": "x"}).encode(),
        json.dumps({"active": GOOD, "deployed_at": "x", "history": [{**GOOD, "version": 7}]}).encode(),
    ],
    ids=["truncated", "empty", "binary", "list", "no-keys", "active-is-a-string", "ref-missing-fields",
         "no-deployed-at", "history-null", "active-path", "history-int-version"],
)
def test_a_damaged_pointer_is_refused(models_dir, content):
    models_dir.mkdir()
    (models_dir / "ACTIVE.json").write_bytes(content)
    with pytest.raises(ModelLoadError, match=r"ACTIVE\.json is damaged \(.*\): the worker rewrites it from the store at its next start"):
        registry.read_active(models_dir)
