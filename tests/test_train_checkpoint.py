"""Checkpoint and resume: a run resumes only with its own settings, and a broken file only costs a restart."""

from __future__ import annotations

import pytest

from core.train.checkpoint import Checkpoint, RunState, snapshot


@pytest.fixture
def net():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optim.step()  # the optimizer has state worth restoring
    return model, optim


def _fresh(seed: int):
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


def test_a_saved_run_resumes_with_its_weights_optimizer_progress_best_and_fallback(tmp_path, net):
    import torch

    model, optim = net
    signature = {"base": "english_g2", "seed": 0, "recipe": {"lr": 1e-3}, "alphabet_added": ["→"]}
    state = RunState(step=7, epoch=1, elapsed=12.5, best_cer=0.2, base_cer=0.4, history=[{"step": 5, "val_cer": 0.2}],
                     longest_step_s=0.3)
    (tmp_path / "m.work").mkdir()
    base = snapshot(_fresh(2)[0])
    Checkpoint(tmp_path / "m.work", signature).save(model, optim, state, snapshot(model), base)
    said: list[dict] = []
    again, again_optim = _fresh(1)
    restored, best, fallback = Checkpoint(tmp_path / "m.work", dict(signature)).restore(again, again_optim, True,
                                                                                        said.append)
    assert restored == state and said == [{"message": "resumed from step 7 (12 s trained)"}]
    assert torch.equal(again.weight, model.weight) and torch.equal(best["weight"], model.weight)
    assert torch.equal(fallback["weight"], base["weight"]) and not torch.equal(fallback["weight"], model.weight)
    assert again_optim.state_dict()["state"][0]["step"] == optim.state_dict()["state"][0]["step"]


def test_other_settings_a_broken_file_or_no_resume_start_over(tmp_path, net):
    model, optim = net
    work = tmp_path / "m.work"
    work.mkdir()
    Checkpoint(work, {"seed": 0}).save(model, optim, RunState(step=3), None)
    said: list[dict] = []
    state, best, fallback = Checkpoint(work, {"seed": 1}).restore(*_fresh(1), True, said.append)
    assert state == RunState() and best is None and fallback is None and "different settings" in said[0]["message"]
    (work / "checkpoint.pt").write_bytes(b"not a checkpoint")
    state, _, _ = Checkpoint(work, {"seed": 0}).restore(*_fresh(1), True, said.append)
    assert state == RunState() and "different settings" in said[1]["message"]
    Checkpoint(work, {"seed": 0}).restore(*_fresh(1), False, said.append)  # no resume: the old work is wiped
    assert work.is_dir() and not any(work.iterdir()) and len(said) == 2
    Checkpoint(work, {"seed": 0}).discard()
    assert not work.exists()


def test_progress_of_an_older_run_loads_and_times_its_steps():
    state = RunState.from_dict({"step": 4, "elapsed_steps": 2.0, "unknown_key": 1})
    assert state.step == 4 and state.step_seconds() == 0.5  # the mean until steps are timed one by one
    state.longest_step_s = 0.9
    assert state.step_seconds() == 0.9 and RunState().step_seconds() == 0.0
