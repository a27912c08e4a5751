"""core.finetune: one train → score → register → activate flow for the app's job and `inkscribe train --from-store`."""

from __future__ import annotations

import json

import pytest
from test_jobs import _fake_trainer
from test_review import FakeRecognizer, install_fakes, make_doc

from core import jobs
from core.cli import main
from core.finetune import finetune_recognizer
from core.modeldir import write_model_dir
from core.store import Store


@pytest.fixture
def store(inkscribe_home):
    s = Store(inkscribe_home)
    for n in range(5):
        make_doc(s, f"d{n}.pdf", pages=1, lines=4, confirm=True, text="same")
    for r in s.confirmed_lines():
        s.update_line(r["id"], text="same words")
    yield s
    s.close()


def _model(path):
    return write_model_dir(path, {"kind": "recognizer", "engine": "crnn", "name": path.name}, lambda tmp: None)


def test_a_model_better_than_its_base_but_worse_than_the_active_one_is_not_activated(store, monkeypatch, tmp_path):
    _fake_trainer(monkeypatch, [])
    active = _model(tmp_path / "active-model")
    active_id = store.register_model("recognizer", "mine", active, activate=True)
    new_dir = tmp_path / "new-model"
    install_fakes(monkeypatch, {"default": FakeRecognizer("wrong"), str(active): FakeRecognizer("same words"),
                                str(new_dir): FakeRecognizer("same wordz")})
    result = finetune_recognizer(store, tmp_path / "work", new_dir, base="default", max_minutes=0.1)
    assert result["base_holdout"]["cer"] > result["new_holdout"]["cer"] > result["active_holdout"]["cer"] == 0.0
    assert not result["activated"] and "kept the active model" in result["note"]
    assert store.active_model("recognizer")["id"] == active_id
    new = store.model(result["model_id"])
    assert json.loads(new["metrics"])["active_holdout_cer"] == 0.0  # the Models page can show why


def test_a_model_better_than_the_active_one_is_activated(store, monkeypatch, tmp_path):
    _fake_trainer(monkeypatch, [])
    active = _model(tmp_path / "active-model")
    store.register_model("recognizer", "mine", active, activate=True)
    new_dir = tmp_path / "new-model"
    install_fakes(monkeypatch, {"default": FakeRecognizer("wrong"), str(active): FakeRecognizer("same wordz"),
                                str(new_dir): FakeRecognizer("same words")})
    result = finetune_recognizer(store, tmp_path / "work", new_dir, base=str(active), max_minutes=0.1)
    assert result["activated"] and store.active_model("recognizer")["id"] == result["model_id"]


def test_cli_train_from_store_registers_what_the_app_lists(store, monkeypatch, inkscribe_home, capsys):
    calls: list = []
    _fake_trainer(monkeypatch, calls)
    out = inkscribe_home / "models" / "recognizer-v1"
    install_fakes(monkeypatch, {"default": FakeRecognizer("wrong"), str(out): FakeRecognizer("same words")})
    assert main(["train", "--from-store", "--max-minutes", "0.1"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["activated"] and result["model_dir"] == str(out)
    assert "base recognizer: default" in captured.err  # says what it loaded
    (row,) = store.models("recognizer")
    assert row["path"] == str(out) and row["active"]
    assert calls[0]["lines"] == result["lines_used"]  # the same held-out split as the app's job

    # `active` now names it, for every command that takes a model
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"#{row['id']} * recognizer-v1" in " ".join(listing.split())


def test_the_job_and_the_cli_run_the_same_flow(store, monkeypatch):
    seen = []
    monkeypatch.setattr("core.finetune.finetune_recognizer", lambda *a, **k: seen.append(k) or {"model_id": 1})
    job_id = jobs.start_job(store, "train-recognizer", {"base": "default", "max_minutes": 0.5}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 0
    assert seen[0]["base"] == "default" and seen[0]["max_minutes"] == 0.5 and seen[0]["origin"] == f"job {job_id}"
