"""Hardening of training: safe resume states, early stopping in every stage, signals, checkpoint
cadence, logs after a resume, corrupt unlabelled files. Tiny rigs and widths."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.rig import RigError
from backend.models.checkpoint import load_generator_checkpoint, save_torch
from backend.training.checkpoint import load_state, rng_state, set_rng_state


class RunsCode:
    """Pickles to a call of os.system: loading it with full pickle would run the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_state_holding_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "state.pt"
    torch.save({"G": {"w": torch.zeros(2)}, "payload": RunsCode(marker)}, path)
    with pytest.raises(RigError, match="refused") as err:
        load_state(path)
    assert not marker.exists()
    assert "\n" not in str(err.value)
    with pytest.raises(RigError, match="refused"):
        load_generator_checkpoint(path)
    assert not marker.exists()


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    save_torch({"rng": rng_state()}, tmp_path / "state.pt")
    expected = (random.random(), np.random.rand(), float(torch.rand(1)), np.random.randn())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(load_state(tmp_path / "state.pt")["rng"])
    assert (random.random(), np.random.rand(), float(torch.rand(1)), np.random.randn()) == expected


def test_unreadable_states_give_one_line(tmp_path):
    text = tmp_path / "state.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(RigError, match="not a readable checkpoint") as err:
        load_state(text)
    assert "\n" not in str(err.value)


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    from backend.io import atomic

    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", record)
    target = tmp_path / "out" / "state.pt"
    save_torch({"x": torch.ones(3)}, target)
    assert any(Path(p).name.startswith(".state.pt.") for p in synced)  # the temporary file, before the rename
    assert str(target.parent) in synced  # then the folder entry
    assert torch.equal(load_state(target)["x"], torch.ones(3))


# ---------------------------------------------------------------- the training loop
@pytest.fixture(scope="module")
def rigs(tmp_path_factory) -> Path:
    from backend.io.npz import save_npz
    from conftest import make_capsule_chain

    root = tmp_path_factory.mktemp("rigs")
    for split, n in (("train", 3), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            rig = make_capsule_chain(n_bones=2 + i % 2, length=2.0 + 0.3 * i, segments=8, rings=8, name=f"{split}{i}")
            save_npz(rig, root / split / f"{split}_{i}.npz")
    return root


def flat_validation(trainer) -> None:
    """Every validation scores the same: the first epoch improves, every later one does not."""
    trainer.validate = lambda: {"val_mse": 0.5, "val_cos": 0.5, "val_smooth": 0.0, "val_score": 0.5}


def test_early_stopping_in_stage_3_ends_the_run_with_a_summary(tmp_path, rigs):
    from test_training import tiny_config

    from backend.training.trainer import Trainer

    cfg = tiny_config(tmp_path, stages=dict(stage1_epochs=1, stage2_epochs=0, stage3_epochs=4, patience=1))
    tr = Trainer(cfg, rigs, tmp_path / "run", progress=False, tensorboard=False, plots=False)
    flat_validation(tr)
    summary = tr.fit()
    epochs = [(r["stage"], r["epoch"]) for r in tr.history["epoch"]]
    assert epochs == [(1, 0), (3, 0)]  # stage 3 stopped after its first epoch without improvement
    assert (tmp_path / "run" / "summary.json").is_file() and not summary["killed"]


def test_a_state_written_with_numpy_rng_arrays_still_resumes(tmp_path):
    np.random.seed(7)
    torch.save({"rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}},
               tmp_path / "state.pt")
    expected = np.random.rand()
    np.random.seed(0)
    set_rng_state(load_state(tmp_path / "state.pt")["rng"])
    assert np.random.rand() == expected


def log_steps(run: Path) -> list[int]:
    import json

    return [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["kind"] == "step"]


ONE_RIG_PER_STEP = dict(data=dict(vertex_budget=100))  # 3 train rigs: 3 steps per epoch


def test_sigterm_saves_the_state_mid_epoch_and_the_run_resumes(tmp_path, rigs, monkeypatch):
    import signal

    from test_training import tiny_config

    from backend.training.trainer import Trainer

    cfg = tiny_config(tmp_path, **ONE_RIG_PER_STEP)
    tr = Trainer(cfg, rigs, tmp_path / "run", progress=False, tensorboard=False, plots=False)
    step = tr.supervised_step

    def step_then_term(*a, **kw):
        rec = step(*a, **kw)
        if tr.pos["step"] == 1:  # the signal arrives during step 2
            os.kill(os.getpid(), signal.SIGTERM)
        return rec

    monkeypatch.setattr(tr, "supervised_step", step_then_term)
    summary = tr.fit()
    assert summary["stopped"] and not summary["killed"] and summary["steps"] == 2
    assert not (tmp_path / "run" / "summary.json").exists()
    assert load_state(tmp_path / "run" / "state.pt")["pos"] == {"stage": 1, "epoch": 0, "batch": 2, "step": 2}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after fit
    done = Trainer(cfg, rigs, tmp_path / "run", resume=True, progress=False, tensorboard=False, plots=False).fit()
    assert not done["stopped"] and done["steps"] == 6
    assert log_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]


def test_a_timed_checkpoint_is_written_mid_epoch(tmp_path, rigs):
    from test_training import tiny_config

    from backend.training.trainer import Trainer

    cfg = tiny_config(tmp_path, **ONE_RIG_PER_STEP, run=dict(checkpoint_every_minutes=1e-9, kill_after_steps=2))
    assert Trainer(cfg, rigs, tmp_path / "run", progress=False, tensorboard=False, plots=False).fit()["killed"]
    assert load_state(tmp_path / "run" / "state.pt")["pos"]["batch"] == 2  # before the first epoch ended


def test_a_resumed_run_logs_each_step_once(tmp_path, rigs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_training import tiny_config

    from backend.training.trainer import Trainer

    base = dict(ONE_RIG_PER_STEP, run=dict(checkpoint_every_minutes=0))
    killed = tiny_config(tmp_path, **ONE_RIG_PER_STEP, run=dict(checkpoint_every_minutes=0, kill_after_steps=5))
    Trainer(killed, rigs, tmp_path / "run", progress=False, plots=False).fit()  # state at step 3, log up to 5
    assert log_steps(tmp_path / "run") == [1, 2, 3, 4, 5]
    Trainer(tiny_config(tmp_path, **base), rigs, tmp_path / "run", resume=True, progress=False, plots=False).fit()
    assert log_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("step/loss")] == [1, 2, 3, 4, 5, 6]


def test_a_corrupt_unlabelled_file_is_skipped_and_reported(tmp_path, rigs):
    import json
    import shutil

    from test_training import tiny_config

    from backend.training.trainer import Trainer

    unl = tmp_path / "unlabelled"
    unl.mkdir()
    shutil.copy(rigs / "train" / "train_0.npz", unl / "good.npz")
    (unl / "broken.npz").write_text("not a rig")
    cfg = tiny_config(tmp_path, data=dict(unlabeled_dirs=[str(unl)]), stages=dict(stage1_epochs=1, stage2_epochs=1))
    tr = Trainer(cfg, rigs, tmp_path / "run", progress=False, tensorboard=False, plots=False)
    summary = tr.fit()
    assert not summary["killed"] and [p.name for p in tr.train_u.paths] == ["good.npz"]
    events = [r for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines())
              if r.get("event") == "unlabeled_skipped"]
    assert (len(events) == 1 and events[0]["file"].endswith("broken.npz")
            and "not an .npz archive" in events[0]["reason"])


def test_a_sigterm_during_a_recipe_training_ends_the_job_before_any_export(tmp_path, rigs, monkeypatch):
    """cv / recipe chain training -> export -> evaluation: a stopped training must not be exported."""
    import signal

    from test_training import tiny_config

    from backend.training import steps
    from backend.training.trainer import Trainer

    cfg = tiny_config(tmp_path, **ONE_RIG_PER_STEP)
    step = Trainer.supervised_step

    def step_then_term(self, *a, **kw):
        rec = step(self, *a, **kw)
        if self.pos["step"] == 1 and not self.stop.requested:
            os.kill(os.getpid(), signal.SIGTERM)
        return rec

    monkeypatch.setattr(Trainer, "supervised_step", step_then_term)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best_generator.pt").write_bytes(b"an earlier best")  # as a resumed run has
    with pytest.raises(SystemExit) as err:
        steps.ensure_trained(cfg, rigs, run)
    assert err.value.code == 143
    assert not (run / "summary.json").exists()
    monkeypatch.setattr(Trainer, "supervised_step", step)
    best = steps.ensure_trained(cfg, rigs, run)
    assert (run / "summary.json").is_file() and best == run / "best_generator.pt"
    assert log_steps(run) == [1, 2, 3, 4, 5, 6]
