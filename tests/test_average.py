"""backend.training.average / `python -m backend average`: parameter means of generator checkpoints."""
from __future__ import annotations

import pytest
import torch

from backend.__main__ import main
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training.average import average_generators
from backend.training.checkpoint import load_generator_checkpoint, save_generator


def write_generator(path, seed: int, hidden: int = 16, parent_candidate: bool = True):
    torch.manual_seed(seed)
    g = Generator(hidden=hidden, fused=8)
    fcfg = FeatureConfig(k_bones=4, distance="euclidean", parent_candidate=parent_candidate).__dict__
    save_generator(path, g.state_dict(), g.config, dict(fcfg), FEATURE_VERSION, {"best_score": 0.1 * seed})
    return g


def test_average_is_the_parameter_mean(tmp_path):
    gens = [write_generator(tmp_path / f"g{i}.pt", seed=i) for i in range(3)]
    out = average_generators([tmp_path / f"g{i}.pt" for i in range(3)], tmp_path / "soup.pt")
    model, ckpt = load_generator_checkpoint(out)
    for name, value in model.state_dict().items():
        expected = sum(g.state_dict()[name] for g in gens) / 3
        torch.testing.assert_close(value, expected)
    assert not torch.equal(model.state_dict()["scorer.0.weight"], gens[0].state_dict()["scorer.0.weight"])
    assert ckpt["feature_config"]["parent_candidate"] is True
    members = ckpt["train_summary"]["averaged"]
    assert [m["path"] for m in members] == [str(tmp_path / f"g{i}.pt") for i in range(3)]
    assert all(len(m["sha256"]) == 64 for m in members) and members[2]["best_score"] == pytest.approx(0.2)


def test_average_refuses_other_architectures_and_features(tmp_path):
    write_generator(tmp_path / "a.pt", seed=0)
    write_generator(tmp_path / "wide.pt", seed=1, hidden=24)
    write_generator(tmp_path / "plain.pt", seed=2, parent_candidate=False)
    with pytest.raises(RigError, match=r"config differs .*\['hidden'\]"):
        average_generators([tmp_path / "a.pt", tmp_path / "wide.pt"], tmp_path / "x.pt")
    with pytest.raises(RigError, match=r"feature_config differs .*\['parent_candidate'\]"):
        average_generators([tmp_path / "a.pt", tmp_path / "plain.pt"], tmp_path / "x.pt")
    with pytest.raises(RigError, match="at least two"):
        average_generators([tmp_path / "a.pt"], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_average_cli(tmp_path, capsys):
    for i in range(2):
        write_generator(tmp_path / f"g{i}.pt", seed=i)
    assert main(["average", str(tmp_path / "g0.pt"), str(tmp_path / "g1.pt"), "--out", str(tmp_path / "s.pt")]) == 0
    assert "mean of 2 generators" in capsys.readouterr().out
    load_generator_checkpoint(tmp_path / "s.pt")
    assert main(["average", str(tmp_path / "g0.pt"), str(tmp_path / "none.pt"), "--out", str(tmp_path / "t.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err and not (tmp_path / "t.pt").exists()
