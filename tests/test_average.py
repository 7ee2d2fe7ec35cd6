"""backend.training.average / `python -m backend average`: parameter means of generator checkpoints."""
from __future__ import annotations

import pytest
import torch

from backend.__main__ import main
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training.average import average_generators
from backend.models.checkpoint import load_generator_checkpoint, save_generator


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
    with pytest.raises(SystemExit):
        main(["average", str(tmp_path / "g0.pt"), str(tmp_path / "g1.pt"), "--weights", "1,x",
              "--out", str(tmp_path / "u.pt")])
    assert "comma-separated numbers" in capsys.readouterr().err and not (tmp_path / "u.pt").exists()
    load_generator_checkpoint(tmp_path / "s.pt")
    assert main(["average", str(tmp_path / "g0.pt"), str(tmp_path / "none.pt"), "--out", str(tmp_path / "t.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err and not (tmp_path / "t.pt").exists()


def test_weighted_average(tmp_path):
    gens = [write_generator(tmp_path / f"g{i}.pt", seed=i) for i in range(2)]
    out = average_generators([tmp_path / "g0.pt", tmp_path / "g1.pt"], tmp_path / "w.pt", weights=[1.0, 3.0])
    model, ckpt = load_generator_checkpoint(out)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, 0.25 * gens[0].state_dict()[name] + 0.75 * gens[1].state_dict()[name])
    assert [m["weight"] for m in ckpt["train_summary"]["averaged"]] == [0.25, 0.75]
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(RigError, match="one non-negative weight per checkpoint"):
            average_generators([tmp_path / "g0.pt", tmp_path / "g1.pt"], tmp_path / "x.pt", weights=bad)
    assert not (tmp_path / "x.pt").exists()


def test_average_with_a_grown_generator_interpolates_the_functions(tmp_path):
    from backend.export.onnx_export import example_inputs, torch_forward

    base = write_generator(tmp_path / "base.pt", seed=0)
    torch.manual_seed(5)
    grown = Generator(hidden=16, fused=8, context_layers=1, pair_attention=2)
    grown.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():  # as if trained on: every parameter moved, the growth layers opened
        for p in grown.parameters():
            p.add_(0.05 * torch.randn_like(p))
        grown.context[0].gate.fill_(0.8)
    fcfg = load_generator_checkpoint(tmp_path / "base.pt")[1]["feature_config"]
    save_generator(tmp_path / "grown.pt", grown.state_dict(), grown.config, fcfg, FEATURE_VERSION, {})
    pair = [tmp_path / "base.pt", tmp_path / "grown.pt"]
    inputs = example_inputs(40, 4, 5, 3, seed=2)
    ends = []
    for w in ([1.0, 0.0], [0.0, 1.0]):
        model, ckpt = load_generator_checkpoint(average_generators(pair, tmp_path / f"e{w[0]}.pt", weights=w))
        assert ckpt["config"]["pair_attention"] == 2 and ckpt["config"]["context_layers"] == 1
        ends.append(torch_forward(model, inputs))
    torch.testing.assert_close(torch.from_numpy(ends[0]), torch.from_numpy(torch_forward(base.eval(), inputs)),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.from_numpy(ends[1]), torch.from_numpy(torch_forward(grown.eval(), inputs)),
                               atol=1e-6, rtol=0)
    half, _ = load_generator_checkpoint(average_generators(pair, tmp_path / "half.pt"))
    sd, gs, bs = half.state_dict(), grown.state_dict(), base.state_dict()
    torch.testing.assert_close(sd["context.0.gate"], 0.5 * gs["context.0.gate"])  # the base adds its zero
    torch.testing.assert_close(sd["attention.out.weight"], 0.5 * gs["attention.out.weight"])
    torch.testing.assert_close(sd["attention.qkv.weight"], gs["attention.qkv.weight"])  # only the grown one has it
    torch.testing.assert_close(sd["scorer.0.weight"], 0.5 * (gs["scorer.0.weight"] + bs["scorer.0.weight"]))
    # a grown generator cannot be averaged with one grown another way
    other = Generator(hidden=16, fused=8, pair_attention=4)
    save_generator(tmp_path / "other.pt", other.state_dict(), other.config, fcfg, FEATURE_VERSION, {})
    with pytest.raises(RigError, match=r"grown.pt: its config differs from .*other.pt's in \['context_layers'\]"):
        average_generators([tmp_path / "grown.pt", tmp_path / "other.pt"], tmp_path / "x.pt")
