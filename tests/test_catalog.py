"""core.catalog: `active` means the app's active model for every command; listing what a user has."""

from __future__ import annotations

import pytest

from core.catalog import expand_spec, list_models
from core.errors import ModelError
from core.modeldir import write_model_dir
from core.settings import get_settings
from core.store import Store


def _model(path, kind="recognizer"):
    return write_model_dir(path, {"kind": kind, "engine": "crnn", "name": path.name}, lambda tmp: None)


def test_active_without_a_store_is_a_clear_error_that_creates_nothing(inkscribe_home):
    with pytest.raises(ModelError, match="no active recognizer"):
        expand_spec("active", "recognizer")
    assert not get_settings().db_path.exists()


def test_active_names_the_active_models_directory(inkscribe_home, tmp_path):
    store = Store()
    model = _model(tmp_path / "mine")
    store.register_model("recognizer", "mine", model, activate=True)
    assert expand_spec("active", "recognizer") == str(model)
    assert expand_spec("default", "recognizer") == "default"
    with pytest.raises(ModelError, match="no active detector"):
        expand_spec("active", "detector", store)
    model.rename(tmp_path / "moved")
    with pytest.raises(ModelError, match="missing"):
        expand_spec("active", "recognizer", store)


def test_list_models_has_the_defaults_then_the_stores_own(inkscribe_home, tmp_path):
    store = Store()
    model = _model(tmp_path / "mine")
    mid = store.register_model("recognizer", "mine", model, metrics={"holdout_cer": 0.07}, activate=True)
    rows = list_models(store)
    assert [(r["kind"], r["id"], r["active"]) for r in rows] == [
        ("recognizer", None, False), ("recognizer", mid, True), ("detector", None, True)]
    assert rows[1]["holdout_cer"] == 0.07 and rows[0]["path"].endswith("recognizer-handwriting")


def test_the_detector_setting_names_what_default_means(inkscribe_home, monkeypatch):
    from core.detect import resolve_detector_spec
    from core.settings import reset_settings

    monkeypatch.setenv("INKSCRIBE_DETECTOR", "classical")
    reset_settings()
    assert resolve_detector_spec("default") == "classical"
    monkeypatch.delenv("INKSCRIBE_DETECTOR")
    reset_settings()
    assert resolve_detector_spec("default").endswith("detector-yolo")

