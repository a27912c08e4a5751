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


def test_self_training_is_on_by_default_only_where_it_was_measured_to_help():
    from core.finetune import MIN_POOL_LINES, self_training_helps

    assert self_training_helps(250, 3_300)  # the measured case (docs/decisions/0010-self-training.md)
    assert self_training_helps(MIN_POOL_LINES, MIN_POOL_LINES) and self_training_helps(0, MIN_POOL_LINES)
    assert not self_training_helps(10, MIN_POOL_LINES - 1)  # too few unlabelled lines
    assert not self_training_helps(3_300, 250)  # fewer unlabelled lines than confirmed ones


def test_without_self_training_the_trainer_gets_no_pool_and_the_reason_is_kept(store, monkeypatch, tmp_path):
    calls: list = []
    _fake_trainer(monkeypatch, calls)
    make_doc(store, "unchecked.pdf", pages=1, lines=3)
    new_dir = tmp_path / "new-model"
    install_fakes(monkeypatch, {"default": FakeRecognizer("wrong"), str(new_dir): FakeRecognizer("same words"),
                                str(tmp_path / "m2"): FakeRecognizer("same words")})
    events: list = []
    result = finetune_recognizer(store, tmp_path / "work", new_dir, max_minutes=0.1, progress=events.append)
    assert "self_train" not in calls[0] and "pool" not in calls[0]
    assert "by default it needs at least 200" in result["self_training"]["off"]  # 3 unconfirmed lines: off by default
    assert any(e.get("message", "").startswith("self-training off") for e in events)
    trained_on = json.loads(store.model(result["model_id"])["trained_on"])
    assert trained_on["self_training"] == result["self_training"]
    forced = finetune_recognizer(store, tmp_path / "work2", tmp_path / "m2", max_minutes=0.1, self_train=False)
    assert forced["self_training"] == {"off": "turned off for this run"} and "self_train" not in calls[1]


def test_self_training_asked_for_with_no_unconfirmed_lines_trains_without_it(store, monkeypatch, tmp_path):
    calls: list = []
    _fake_trainer(monkeypatch, calls)
    new_dir = tmp_path / "new-model"
    install_fakes(monkeypatch, {"default": FakeRecognizer("wrong"), str(new_dir): FakeRecognizer("same words")})
    result = finetune_recognizer(store, tmp_path / "work", new_dir, max_minutes=0.1, self_train=True)
    assert "no unconfirmed lines" in result["self_training"]["off"] and "self_train" not in calls[0]


def test_self_training_from_the_store_learns_from_the_unconfirmed_lines_outside_the_holdout(store, tmp_path):
    from core import dataset

    make_doc(store, "unchecked.pdf", pages=2, lines=3, text="guess")  # 6 unconfirmed lines on 2 training pages
    dataset.assign_holdout(store)
    held_page = dataset.holdout_lines(store)[0]["page_id"]
    store.add_line(held_page, [(30, 10), (300, 10), (300, 60), (30, 60)], "held guess")  # never read: held out
    recipe = {"augment": 0, "patience": 1000, "batch_size": 8, "lr": 1e-3, "max_steps": 2, "val_every_steps": 2}
    out = tmp_path / "st-model"
    result = finetune_recognizer(store, tmp_path / "work", out, base="english_g2", max_minutes=1.0, self_train=True,
                                 options={"recipe": recipe})
    stats = result["self_training"]
    assert stats["pool_lines"] == 6 and stats["pool_pages"] == 2 and stats["read"] <= 6
    assert json.loads((out / "inkscribe.json").read_text())["self_training"] == stats
    assert json.loads(store.model(result["model_id"])["trained_on"])["self_training"] == stats


def test_the_job_passes_the_apps_self_training_choice(store, monkeypatch):
    seen = []
    monkeypatch.setattr("core.finetune.finetune_recognizer", lambda *a, **k: seen.append(k) or {"model_id": 1})
    for choice in (True, False, None):
        params = {"base": "default", "max_minutes": 0.5, **({} if choice is None else {"self_train": choice})}
        job_id = jobs.start_job(store, "train-recognizer", params, spawn=False)
        assert jobs.run_job(job_id, store=store) == 0
    assert [k["self_train"] for k in seen] == [True, False, None]
