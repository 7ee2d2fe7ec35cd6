"""RuntimeSettings: read once from a model's metadata, overridden by a caller in one checked place,
and what the predictor and the command line make of it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from backend.inference import model_meta as mm
from backend.inference.blend_rule import PieceBlendRule
from backend.inference.postprocess import DEFAULT_PRUNE
from backend.inference.predictor import Predictor
from backend.inference.runtime_settings import RuntimeSettings, overrides_from
from conftest import export_tiny_model, make_capsule_chain, rewrite_meta

RULE = PieceBlendRule(low=0.2, high=1.0, saturation=0.1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_defaults_are_a_model_that_stores_nothing():
    s = mm.read_runtime_settings({}, "empty")
    assert s == RuntimeSettings()
    assert (s.prior_blend, s.prior_blend_rule, s.sharpen, s.smooth, s.diffuse, s.geodesic_share, s.prune) == (
        1.0, None, 1.0, 0, 0.0, 0.0, DEFAULT_PRUNE)
    assert mm.read_runtime_settings({}, "empty").model_values() == {
        "prior_blend": 1.0, "prior_blend_rule": None, "sharpen": 1.0, "smooth": 0, "diffuse": 0.0,
        "geodesic_share": 0.0, "enclosing_pieces": 0.0}


def test_metadata_is_read_into_one_object():
    meta = {mm.KEY_PRIOR_BLEND: "0.4", mm.KEY_SHARPEN: "1.5", mm.KEY_SMOOTH: "2", mm.KEY_DIFFUSE: "0.5",
            mm.KEY_GEODESIC_SHARE: "0.25", mm.KEY_ENCLOSING_PIECES: "0.15",
            mm.KEY_PRIOR_BLEND_RULE: '{"kind": "small-pieces", "low": 0.2, "high": 1.0, "saturation": 0.1}'}
    s = mm.read_runtime_settings(meta, "m.onnx")
    assert (s.prior_blend, s.prior_blend_rule, s.sharpen, s.smooth, s.diffuse, s.geodesic_share,
            s.enclosing_pieces) == (0.4, RULE, 1.5, 2, 0.5, 0.25, 0.15)
    assert isinstance(s.smooth, int) and isinstance(s.sharpen, float)
    with pytest.raises(mm.ModelError, match=r"m\.onnx: smooth metadata must be a whole number in \[0, 20\]"):
        mm.read_runtime_settings({mm.KEY_SMOOTH: "1.5"}, "m.onnx")
    with pytest.raises(mm.ModelError, match=r"m\.onnx: enclosing_pieces metadata must be a number in \[0, 1\]"):
        mm.read_runtime_settings({mm.KEY_ENCLOSING_PIECES: "1.5"}, "m.onnx")


def test_overrides_are_checked_in_one_place():
    base = RuntimeSettings(prior_blend=0.4, prior_blend_rule=RULE, sharpen=1.5)
    assert base.with_overrides() is base and base.with_overrides(sharpen=None, smooth=None) is base
    s = base.with_overrides(sharpen=2, smooth=3, diffuse=1, prune=0.0)
    assert (s.sharpen, s.smooth, s.diffuse, s.prune, s.prior_blend_rule) == (2.0, 3, 1.0, 0.0, RULE)
    assert type(s.sharpen) is float and type(s.smooth) is int
    fixed = base.with_overrides(prior_blend=0.7)  # a fixed blend replaces the per-rig rule
    assert fixed.prior_blend == 0.7 and fixed.prior_blend_rule is None
    assert base.blend_for_share(0.0) == pytest.approx(0.2) and fixed.blend_for_share(0.0) == 0.7
    bad = {"prior_blend": (1.5, r"prior_blend must be in \[0, 1\], got 1\.5"),
           "sharpen": (0.5, r"sharpen must be in \[1, 10\], got 0\.5"),
           "smooth": (1.5, r"smooth must be a whole number in \[0, 20\], got 1\.5"),
           "diffuse": (9.0, r"diffuse must be in \[0, 5\] % of the character's size, got 9\.0"),
           "geodesic_share": (-0.1, r"geodesic_share must be in \[0, 1\], got -0\.1"),
           "enclosing_pieces": (2.0, r"enclosing_pieces must be in \[0, 1\] of the surface, got 2\.0"),
           "prune": (1.0, r"prune must be in \[0, 1\), got 1\.0")}
    for name, (value, message) in bad.items():
        with pytest.raises(ValueError, match=message) as err:
            base.with_overrides(**{name: value})
        assert "\n" not in str(err.value)
    for value in (float("nan"), True, "2"):
        with pytest.raises(ValueError, match="sharpen must be"):
            base.with_overrides(sharpen=value)
    with pytest.raises(ValueError, match=r"unknown run-time settings \['sharpness'\]"):
        base.with_overrides(sharpness=2.0)
    with pytest.raises(ValueError, match="diffuse must be"):
        RuntimeSettings(diffuse=-1.0)


def test_model_free_keeps_only_the_clean_up():
    s = RuntimeSettings(prior_blend=0.3, prior_blend_rule=RULE, sharpen=2.0, smooth=2, diffuse=0.5,
                        geodesic_share=0.5, enclosing_pieces=0.2, prune=0.1).model_free()
    assert s == RuntimeSettings(smooth=2, diffuse=0.5, prune=0.1)


def test_overrides_from_options():
    opts = {"prior_blend": None, "sharpen": 1.5, "smooth": None, "diffuse": 0.0, "prune": 0.05, "mode": "learned"}
    assert overrides_from(opts) == {"sharpen": 1.5, "diffuse": 0.0, "prune": 0.05}


def test_predictor_settings_are_the_models_with_the_callers(model_path, tmp_path):
    stored = rewrite_meta(model_path, tmp_path / "s.onnx", **{mm.KEY_SHARPEN: "1.5", mm.KEY_DIFFUSE: "0.5"})
    p = Predictor(stored)
    assert p.settings == p.model.info.settings == RuntimeSettings(sharpen=1.5, diffuse=0.5)
    q = Predictor(stored, prior_blend=0.2, overrides={"smooth": 1, "diffuse": None, "prune": 0.1})
    assert q.settings == RuntimeSettings(prior_blend=0.2, sharpen=1.5, smooth=1, diffuse=0.5, prune=0.1)
    rig = make_capsule_chain(3, with_weights=False)
    info = q.predict(rig).info
    assert (info["prior_blend"], info["sharpen"], info["smooth"], info["diffuse"]) == (0.2, 1.5, 1, 0.5)
    # a call's own values win for that call only
    assert q.predict(rig, smooth=0, diffuse=0.0).info["smooth"] == 0 and q.settings.smooth == 1
    # model-free: the network's settings stay neutral, the clean-up is the caller's
    geo = Predictor(mode="geodesic", sharpen=2.0, overrides={"diffuse": 0.5})
    assert geo.settings == RuntimeSettings(diffuse=0.5) and geo.sharpen == 1.0
    with pytest.raises(ValueError, match="smooth must be"):
        Predictor(stored, overrides={"smooth": 99})
    with pytest.raises(ValueError, match="unknown run-time settings"):
        Predictor(stored, overrides={"blend": 0.5})


def test_cli_refuses_a_setting_out_of_range_before_any_work(tmp_path):
    rig = tmp_path / "r.npz"
    proc = subprocess.run([sys.executable, "-m", "backend", "skin", str(rig), str(tmp_path / "o.npz"),
                           "--mode", "geodesic", "--prune", "1.0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--prune: must be in [0, 1), got 1.0" in proc.stderr
