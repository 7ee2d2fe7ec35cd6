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
from backend.training.checkpoint import load_generator_checkpoint, load_state, rng_state, save_torch, set_rng_state


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
