"""backend.models.ensemble / backend.training.ensemble / `python -m backend ensemble`: prediction means."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.__main__ import main
from backend.export.onnx_export import example_inputs, export_generator, torch_forward
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.models.ensemble import GeneratorEnsemble
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training.average import average_generators
from backend.models.checkpoint import load_generator_checkpoint, save_generator
from backend.training.ensemble import ensemble_generators

FCFG = FeatureConfig(k_bones=4, distance="euclidean", parent_candidate=True)


def write_generator(path, seed: int, hidden: int = 16, pair_attention: int = 0, fcfg: FeatureConfig = FCFG,
                    summary: dict | None = None):
    torch.manual_seed(seed)
    g = Generator(hidden=hidden, fused=8, pair_attention=pair_attention, context_layers=1 if pair_attention else 0)
    with torch.no_grad():  # open the identity-start layers so that they change the output
        for name, p in g.named_parameters():
            if "gate" in name or name.startswith("attention.out"):
                p.normal_(0.0, 0.3)
    save_generator(path, g.state_dict(), g.config, dict(fcfg.__dict__), FEATURE_VERSION,
                   {"best_score": seed} if summary is None else summary)
    return g.eval()


def test_ensemble_is_the_weighted_mean_of_predictions(tmp_path):
    a = write_generator(tmp_path / "a.pt", seed=0)
    # members may differ in shape; a training run's best_generator.pt names its score val_score
    b = write_generator(tmp_path / "b.pt", seed=1, hidden=24, pair_attention=2, summary={"val_score": 0.027})
    out = ensemble_generators([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "e.pt", weights=[1.0, 3.0])
    model, ckpt = load_generator_checkpoint(out)
    assert isinstance(model, GeneratorEnsemble) and ckpt["config"]["shares"] == [0.25, 0.75]
    x = example_inputs(40, 5, 7, 4, seed=3)
    x["prior"][:3, -1] = 0.0  # padded candidates stay at exactly 0
    wa, wb, we = torch_forward(a, x), torch_forward(b, x), torch_forward(model, x)
    assert not np.allclose(wa, wb, atol=1e-3)
    np.testing.assert_allclose(we, 0.25 * wa + 0.75 * wb, atol=1e-6)
    np.testing.assert_allclose(we.sum(axis=1), 1.0, atol=1e-5)
    assert (we >= 0).all() and (we[:3, -1] == 0).all()
    assert [m["weight"] for m in ckpt["train_summary"]["ensemble"]] == [0.25, 0.75]
    assert [m["best_score"] for m in ckpt["train_summary"]["ensemble"]] == [0.0, 0.027]
    assert ckpt["feature_config"]["parent_candidate"] is True


def test_an_ensemble_member_contributes_its_own_members(tmp_path):
    gens = [write_generator(tmp_path / f"g{i}.pt", seed=i) for i in range(3)]
    ensemble_generators([tmp_path / "g0.pt", tmp_path / "g1.pt"], tmp_path / "e01.pt")
    out = ensemble_generators([tmp_path / "e01.pt", tmp_path / "g2.pt"], tmp_path / "e.pt", weights=[2.0, 1.0])
    model, ckpt = load_generator_checkpoint(out)
    assert ckpt["config"]["shares"] == pytest.approx([1 / 3, 1 / 3, 1 / 3]) and len(model.members) == 3
    x = example_inputs(30, 4, 6, 4, seed=5)
    mean = sum(torch_forward(g, x) for g in gens) / 3
    np.testing.assert_allclose(torch_forward(model, x), mean, atol=1e-6)


def test_ensemble_refuses_bad_members_and_writes_nothing(tmp_path, capsys):
    write_generator(tmp_path / "a.pt", seed=0)
    write_generator(tmp_path / "b.pt", seed=1)
    write_generator(tmp_path / "plain.pt", seed=2, fcfg=FeatureConfig(k_bones=4, distance="euclidean"))
    with pytest.raises(RigError, match=r"feature_config differs .*parent_candidate"):
        ensemble_generators([tmp_path / "a.pt", tmp_path / "plain.pt"], tmp_path / "x.pt")
    with pytest.raises(RigError, match="at least two"):
        ensemble_generators([tmp_path / "a.pt"], tmp_path / "x.pt")
    with pytest.raises(RigError, match="one positive weight per checkpoint"):
        ensemble_generators([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "x.pt", weights=[1.0, 0.0])
    assert main(["ensemble", str(tmp_path / "a.pt"), str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    assert main(["ensemble", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "e.pt")]) == 0
    assert "an ensemble of 2 generators" in capsys.readouterr().out
    # an ensemble cannot be parameter-averaged or warm-started from: the message says what to do instead
    with pytest.raises(RigError, match="an ensemble; average its members"):
        average_generators([tmp_path / "e.pt", tmp_path / "a.pt"], tmp_path / "x.pt")
    from backend.models.checkpoint import warm_start

    with pytest.raises(RigError, match="warm-start from one of its members"):
        warm_start(Generator(hidden=16, fused=8), tmp_path / "e.pt", {"hidden": 16})


def test_ensemble_exports_to_onnx_with_parity(tmp_path):
    import onnxruntime as ort

    write_generator(tmp_path / "a.pt", seed=0)
    write_generator(tmp_path / "b.pt", seed=1, pair_attention=2)
    model, ckpt = load_generator_checkpoint(ensemble_generators([tmp_path / "a.pt", tmp_path / "b.pt"],
                                                                tmp_path / "e.pt"))
    res = export_generator(model, tmp_path / "e.onnx", FCFG, train_summary=ckpt["train_summary"])
    assert res.max_abs_diff <= 1e-5 and not {"ScatterND", "ScatterElements"} & set(res.op_types)
    sess = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    x = example_inputs(123, 6, 9, 4, seed=11)
    np.testing.assert_allclose(sess.run(None, x)[0], torch_forward(model, x), atol=1e-5)
