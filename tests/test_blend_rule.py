"""The per-rig blend rule (inference/blend_rule.py): piece shares, the rule, its fit, the runtime and
the export / blend-sweep commands."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.evaluation.blend import BlendSummary, fit_piece_rule, rule_l1
from backend.features.pieces import small_piece_share
from backend.inference import model_meta as mm
from backend.inference.blend_rule import PieceBlendRule
from backend.inference.predictor import Predictor
from backend.io.npz import save_npz
from backend.rig import make_rig
from conftest import export_tiny_model, make_capsule_chain, rewrite_meta


def square(x0: float, size: float, z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x0, 0, z], [x0 + size, 0, z], [x0 + size, size, z], [x0, size, z]], np.float64)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def with_plates(rig, count: int):
    """``rig`` plus ``count`` separate square plates (area 0.25 each) along its bones."""
    verts, faces = [rig.vertices], [rig.faces]
    n = len(rig.vertices)
    for i in range(count):
        v, f = square(0.35, 0.5, z=0.2 + 0.6 * i)
        verts.append(v.astype(np.float32))
        faces.append(f + n)
        n += 4
    return make_rig(np.concatenate(verts), np.concatenate(faces), rig.joints, rig.parents, rig.tails,
                    rig.joint_names, rig.is_deform)


def test_small_piece_share_known_answers():
    big_v, big_f = square(0.0, 10.0)  # area 100
    parts = [square(20.0 + 2 * i, 1.0) for i in range(3)]  # three pieces of area 1 (under 5 % each)
    v = np.concatenate([big_v] + [p[0] for p in parts])
    f = np.concatenate([big_f] + [p[1] + 4 * (i + 1) for i, p in enumerate(parts)])
    assert small_piece_share(v, f) == pytest.approx(3 / 103)
    assert small_piece_share(big_v, big_f) == 0.0
    assert small_piece_share(v, f, small=0.005) == 0.0  # 1/103 is not under 0.5 %
    assert small_piece_share(np.zeros((3, 3)), np.array([[0, 1, 2]])) == 0.0  # no area at all


def test_rule_values_rounding_and_validation():
    rule = PieceBlendRule(low=0.2, high=1.0, saturation=0.1)
    assert [rule.blend_for_share(s) for s in (0.0, 0.05, 0.1, 0.7)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    assert rule.blend_for_share(0.033) == pytest.approx(0.45)  # 0.464 rounded to the 0.05 grid
    assert PieceBlendRule.from_dict(json.loads(json.dumps(rule.as_dict()))) == rule
    for bad, msg in [({"low": 1.5}, "low"), ({"saturation": 0.0}, "saturation"), ({"kind": "other"}, "kind"),
                     ({"colour": 1}, "unknown"), ({"high": True}, "number")]:
        with pytest.raises(ValueError, match=msg):
            PieceBlendRule.from_dict({**rule.as_dict(), **bad})


def test_fit_recovers_the_blend_each_kind_of_rig_wants():
    blends = np.round(np.arange(1.0, -1e-9, -0.05), 2)
    shares = np.array([0.0, 0.0, 0.3, 0.6])
    # closed bodies are best at 0.2, assembled models at 1.0 (L1 grows with the distance to the best)
    want = np.where(shares > 0, 1.0, 0.2)
    l1 = 0.3 + np.abs(blends[None, :] - want[:, None])
    s = BlendSummary(blends=blends, means={"l1": l1.mean(0)}, l1=l1, se=np.zeros(len(blends)), best=1.0,
                     chosen=0.5, rigs=["a", "b", "c", "d"], piece_share=shares)
    rule, per_set = fit_piece_rule([s])
    assert (rule.low, rule.high) == pytest.approx((0.2, 1.0)) and rule.saturation <= 0.3
    assert per_set == pytest.approx([0.3]) and rule_l1(s, rule) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="multiple of 0.05"):
        fit_piece_rule([BlendSummary(blends=blends[::2], means={}, l1=l1[:, ::2], se=np.zeros(11), best=1.0,
                                     chosen=1.0, rigs=list("abcd"), piece_share=shares)])


@pytest.fixture(scope="module")
def rule_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("rule_model")
    plain = export_tiny_model(d / "tiny.onnx", seed=4)
    rule = json.dumps(PieceBlendRule(low=0.2, high=1.0, saturation=0.1).as_dict())
    return plain, rewrite_meta(plain, d / "rule.onnx", **{mm.KEY_PRIOR_BLEND: "0.5", mm.KEY_PRIOR_BLEND_RULE: rule})


def test_runtime_blends_by_the_rule(rule_model, tmp_path):
    plain, with_rule = rule_model
    body = make_capsule_chain(3, with_weights=False)
    parts = with_plates(body, 4)
    pred = Predictor(with_rule)
    assert pred.model.info.settings.prior_blend_rule == PieceBlendRule(low=0.2, high=1.0, saturation=0.1)
    one, many = pred.predict(body), pred.predict(parts)
    assert one.info["small_piece_share"] == 0.0 and one.info["prior_blend"] == pytest.approx(0.2)
    assert many.info["small_piece_share"] > 0.1 and many.info["prior_blend"] == pytest.approx(1.0)
    # the same weights as a fixed blend, and a caller's blend wins over the rule
    np.testing.assert_allclose(one.weights, Predictor(plain, prior_blend=0.2).predict(body).weights, atol=1e-6)
    np.testing.assert_allclose(many.weights, Predictor(plain, prior_blend=1.0).predict(parts).weights, atol=1e-6)
    assert Predictor(with_rule, prior_blend=0.7).predict(body).info["prior_blend"] == pytest.approx(0.7)
    assert Predictor(plain).predict(parts).info["prior_blend"] == 1.0 and "small_piece_share" not in \
        Predictor(plain).predict(parts).info
    # a malformed rule is refused with the key's name
    bad_rule = json.dumps({"kind": "small-pieces", "low": 2, "high": 1, "saturation": 0.1})
    rewrite_meta(with_rule, tmp_path / "bad.onnx", **{mm.KEY_PRIOR_BLEND_RULE: bad_rule})
    with pytest.raises(mm.ModelError, match="prior_blend_rule"):
        Predictor(tmp_path / "bad.onnx")


def tiny_checkpoint(path):
    """A seeded random generator checkpoint (hidden = fused = 8, 4 Euclidean candidates) at ``path``."""
    torch = pytest.importorskip("torch")
    from backend.models.checkpoint import checkpoint_dict
    from backend.features.pipeline import FeatureConfig
    from backend.models.generator import Generator

    torch.manual_seed(0)
    torch.save(checkpoint_dict(Generator(hidden=8, fused=8), FeatureConfig(k_bones=4, distance="euclidean")), path)
    return path


def export_cli(checkpoint, out, *flags: str) -> subprocess.CompletedProcess:
    """``python -m backend export CHECKPOINT OUT FLAGS...`` in a subprocess (output captured)."""
    return subprocess.run([sys.executable, "-m", "backend", "export", str(checkpoint), str(out), *flags],
                          capture_output=True, text=True)


def test_runtime_sharpens_by_the_model(rule_model, tmp_path):
    from backend.inference.postprocess import postprocess

    ckpt = tiny_checkpoint(tmp_path / "g.pt")
    ok = export_cli(ckpt, tmp_path / "s.onnx", "--sharpen", "1.4", "--smooth", "2")
    assert ok.returncode == 0, ok.stderr
    rig = make_capsule_chain(4, with_weights=False)
    sharp = Predictor(tmp_path / "s.onnx")
    assert sharp.model.info.settings.sharpen == pytest.approx(1.4) and sharp.sharpen == pytest.approx(1.4)
    assert sharp.model.info.settings.smooth == 2
    raw = Predictor(tmp_path / "s.onnx", sharpen=1.0).predict(rig, max_influences=0, prune=0.0, smooth=0).weights
    got = sharp.predict(rig)
    assert got.info["sharpen"] == pytest.approx(1.4) and got.info["smooth"] == 2
    np.testing.assert_allclose(got.weights, postprocess(raw, rig.faces, allowed=rig.is_deform, sharpen=1.4, smooth=2),
                               atol=1e-6)
    assert not np.allclose(got.weights, postprocess(raw, rig.faces, allowed=rig.is_deform), atol=1e-4)
    # a caller's smoothing wins; the model-free modes do not smooth unless asked
    no_smooth = sharp.predict(rig, smooth=0)
    assert no_smooth.info["smooth"] == 0
    np.testing.assert_allclose(no_smooth.weights, postprocess(raw, rig.faces, allowed=rig.is_deform, sharpen=1.4),
                               atol=1e-6)
    assert Predictor(mode="geodesic").predict(rig).info["smooth"] == 0
    # a caller's power wins; the model-free modes are never sharpened
    assert Predictor(tmp_path / "s.onnx", sharpen=1.0).predict(rig).info["sharpen"] == 1.0
    assert Predictor(mode="geodesic").sharpen == 1.0
    with pytest.raises(ValueError, match="sharpen"):
        Predictor(tmp_path / "s.onnx", sharpen=0.5)
    for flag, value in (("--sharpen", "0.5"), ("--smooth", "30"), ("--smooth", "1.5")):
        bad = export_cli(ckpt, tmp_path / "b.onnx", flag, value)
        assert bad.returncode == 2 and flag in bad.stderr and not (tmp_path / "b.onnx").exists()
    # a model whose stored power is out of range is refused with the key's name
    for key, value in ((mm.KEY_SHARPEN, "0.2"), (mm.KEY_SMOOTH, "-1"), (mm.KEY_SMOOTH, "two")):
        rewrite_meta(tmp_path / "s.onnx", tmp_path / "bad.onnx", **{key: value})
        with pytest.raises(mm.ModelError, match=key):
            Predictor(tmp_path / "bad.onnx")


def test_runtime_diffuses_by_the_model(tmp_path):
    from backend.inference.postprocess import postprocess

    ckpt = tiny_checkpoint(tmp_path / "g.pt")
    ok = export_cli(ckpt, tmp_path / "d.onnx", "--sharpen", "1.5", "--diffuse", "2")
    assert ok.returncode == 0, ok.stderr
    assert "diffuse 2 %" in ok.stdout
    rig = make_capsule_chain(4, with_weights=False)
    model = Predictor(tmp_path / "d.onnx")
    assert model.model.info.settings.diffuse == pytest.approx(2.0) and model.model.info.as_dict()["diffuse"] == 2.0
    raw = Predictor(tmp_path / "d.onnx", sharpen=1.0).predict(rig, max_influences=0, prune=0.0, diffuse=0).weights
    got = model.predict(rig)
    assert got.info["diffuse"] == pytest.approx(2.0)
    expect = postprocess(raw, rig.faces, allowed=rig.is_deform, sharpen=1.5, diffuse=2.0, vertices=rig.vertices)
    np.testing.assert_allclose(got.weights, expect, atol=1e-6)
    assert not np.allclose(got.weights, postprocess(raw, rig.faces, allowed=rig.is_deform, sharpen=1.5), atol=1e-4)
    # a caller's setting wins; the model-free modes do not diffuse unless asked
    none = model.predict(rig, diffuse=0.0)
    assert none.info["diffuse"] == 0.0
    np.testing.assert_allclose(none.weights, postprocess(raw, rig.faces, allowed=rig.is_deform, sharpen=1.5), atol=1e-6)
    assert Predictor(mode="geodesic").predict(rig).info["diffuse"] == 0.0
    with pytest.raises(ValueError, match="diffuse"):
        model.predict(rig, diffuse=9.0)
    bad = export_cli(ckpt, tmp_path / "b.onnx", "--diffuse", "6")
    assert bad.returncode == 2 and "--diffuse" in bad.stderr and not (tmp_path / "b.onnx").exists()
    for value in ("-1", "lots"):
        rewrite_meta(tmp_path / "d.onnx", tmp_path / "bad.onnx", **{mm.KEY_DIFFUSE: value})
        with pytest.raises(mm.ModelError, match=mm.KEY_DIFFUSE):
            Predictor(tmp_path / "bad.onnx")


def test_blend_sweep_fits_a_rule_and_export_ships_it(rule_model, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "g.pt")
    plain, _ = rule_model
    data = tmp_path / "rigs"
    data.mkdir()
    for n in (3, 4):
        save_npz(make_capsule_chain(n), data / f"chain{n}.npz")
    out = tmp_path / "sweep.json"
    run = subprocess.run([sys.executable, "-m", "backend", "blend-sweep", str(plain), str(data), "--fit-rule",
                          "--threads", "1", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    res = json.loads(out.read_text())
    assert len(res["blends"]) == 21 and res["piece_share"] == [0.0, 0.0]
    rule = PieceBlendRule.from_dict(res["piece_rule"])
    # one-piece rigs only: the rule's low end is the best fixed blend on them
    assert rule.low == pytest.approx(res["best"]) and res["piece_rule_l1"][0] == pytest.approx(min(res["means"]["l1"]))
    ok = export_cli(ckpt, tmp_path / "m.onnx", "--prior-blend-rule", str(out))
    assert ok.returncode == 0, ok.stderr
    assert Predictor(tmp_path / "m.onnx").model.info.settings.prior_blend_rule == rule
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "small-pieces", "low": 0.2}))
    bad = export_cli(ckpt, tmp_path / "n.onnx", "--prior-blend-rule", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "--prior-blend-rule" in bad.stderr and not (tmp_path / "n.onnx").exists()
