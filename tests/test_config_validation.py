"""Every training config value is range-checked once, when the config is built, with a message
naming the key and its allowed range."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from backend.rig import RigError
from backend.training.config import TrainConfig, load_config
from backend.training.config_rules import RULES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override, message", [
    ("optim.clip=-1", r"optim\.clip must be a finite number > 0; got -1\.0"),
    ("optim.clip=0", r"optim\.clip must be a finite number > 0"),
    ('run.amp="fp8"', r"run\.amp must be one of 'bf16', 'fp16', 'off'; got 'fp8'"),
    ("loss.gp_weight=nan", r"loss\.gp_weight must be a finite number >= 0; got nan"),
    ("loss.adv_s=inf", r"loss\.adv_s must be a finite number >= 0"),
    ("stages.stage2_epochs=-3", r"stages\.stage2_epochs must be a finite number >= 0; got -3"),
    ("data.vertex_budget=0", r"data\.vertex_budget must be a finite number >= 1; got 0"),
    ("optim.lr_g=-1e-4", r"optim\.lr_g must be a finite number > 0"),
    ("stages.stage3_lr=0", r"stages\.stage3_lr must be a finite number > 0"),
    ("optim.betas=[0.5]", r"optim\.betas must be two numbers in \[0, 1\)"),
    ("optim.betas=[0.5, 1.5]", r"optim\.betas must be two numbers"),
    ('run.device="tpu"', r"run\.device must be one of 'auto', 'cpu', 'cuda' \(or cuda:\\d\+\); got 'tpu'"),
    ("stages.patience=0", r"stages\.patience must be a finite number >= 1; got 0"),
    ("stages.patience=-2", r"stages\.patience must be"),
    ("data.labeled_fraction=1.5", r"data\.labeled_fraction must be in \[0, 1\]"),
    ("data.augment_detach_copies=1.5", r"data\.augment_detach_copies must be in \[0, 1\]"),
    ('features.distance="manhattan"', r"features\.distance must be one of 'geodesic', 'euclidean'"),
    ("run.seed=-1", r"run\.seed must be in \[0, 4\.29497e\+09\]"),
    ("model.hidden=0", r"model\.hidden must be a finite number >= 1"),
])
def test_out_of_range_values_are_refused_naming_the_key(override, message):
    with pytest.raises(RigError, match=message) as err:
        load_config(None, [override])
    assert str(err.value).startswith("<defaults>: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["optim.clip=0.5", 'run.device="cuda:1"', 'run.amp="off"', "stages.patience=1",
                                      "optim.betas=[0.0, 0.999]", "stages.stage3_epochs=0", "run.seed=0"])
def test_values_in_range_pass(override):
    load_config(None, [override])


def test_every_shipped_config_passes():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        load_config(path)


def test_every_key_but_the_switches_has_a_rule():
    cfg = TrainConfig()
    for section in fields(cfg):
        sub = getattr(cfg, section.name)
        for f in fields(sub):
            if isinstance(getattr(sub, f.name), bool):
                continue  # true/false: checked by type
            assert f.name in RULES.get(section.name, {}), f"{section.name}.{f.name} has no rule in config_rules.RULES"


@pytest.mark.parametrize("args, message", [
    (["finetune", "--corrections", "c", "--data", "d", "--set", "optim.lr_g=-1"], "optim.lr_g must be"),
    (["finetune", "--corrections", "c", "--data", "d", "--set", "optim.betas=[0.9]"], "optim.betas must be"),
    (["finetune", "--corrections", "c", "--data", "d", "--tolerance", "-1"], "--tolerance: must be"),
    (["finetune", "--corrections", "c", "--data", "d", "--epochs", "0"], "--epochs: must be"),
    (["finetune", "--corrections", "c", "--data", "d", "--replay-share", "1.5"], "--replay-share: must be"),
    (["train", "--data", "d", "--out", "o", "--set", "run.device=tpu"], "run.device must be"),
])
def test_the_commands_refuse_bad_values_in_one_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "backend", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written
