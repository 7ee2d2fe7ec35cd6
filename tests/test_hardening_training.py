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
