"""Runtime: Predictor (learned / geodesic), metadata checks, provider choice and CUDA fallback,
session cache, default model path, large-mesh simplification."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from backend.features.pipeline import FeatureConfig
from backend.inference import model_meta as mm
from backend.inference import predictor as predictor_mod
from backend.inference import session as session_mod
from backend.inference.model_meta import ModelError
from backend.inference.predictor import Predictor
from backend.rig import RigError, make_rig
from conftest import export_tiny_model, make_capsule_chain, rewrite_meta

FCFG = FeatureConfig(k_bones=4, distance="euclidean")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(autouse=True)
def fresh_cache():
    session_mod.clear_cache()
    yield
    session_mod.clear_cache()


def rig_with_control_bone():
    """Capsule chain of 3 bones plus a non-deform IK-like bone off to the side."""
    base = make_capsule_chain(3, with_weights=False)
    joints = np.concatenate([base.joints, [[1.0, 0.0, 3.0]]])
    tails = np.concatenate([base.tails, [[1.0, 0.0, 3.5]]])
    return make_rig(base.vertices, base.faces, joints, np.array([-1, 0, 1, -1]), tails=tails,
                    is_deform=np.array([True, True, True, False]), name="ctrl")


def test_learned_prediction(model_path):
    rig = rig_with_control_bone()
    pred = Predictor(model_path, threads=2).predict(rig, max_influences=2, prune=0.01)
    w = pred.weights
    assert w.shape == (rig.num_vertices, 4) and w.dtype == np.float32
    assert (w[:, 3] == 0).all()  # non-deform column
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert (np.count_nonzero(w, axis=1) <= 2).all()
    assert pred.provider == "CPUExecutionProvider" and pred.mode == "learned" and pred.seconds > 0
    assert pred.info["feature_config"]["distance"] == "euclidean"
    assert pred.info["model_version"].startswith("g-")
    # deterministic and independent of the rig's own (ignored) weights
    again = Predictor(model_path, threads=2).predict(rig.with_weights(np.full((rig.num_vertices, 4), 0.25)),
                                                     max_influences=2, prune=0.01)
    np.testing.assert_allclose(again.weights, w, atol=1e-6)


def test_prediction_is_invariant_to_placement_and_units(model_path):
    rig = make_capsule_chain(4, with_weights=False)
    moved = rig.copy()
    moved.vertices = rig.vertices * 100.0 + np.float32([5, -3, 2])
    moved.joints = rig.joints * 100.0 + np.float32([5, -3, 2])
    moved.tails = rig.tails * 100.0 + np.float32([5, -3, 2])
    p = Predictor(model_path)
    np.testing.assert_allclose(p.predict(moved).weights, p.predict(rig).weights, atol=1e-4)


def test_geodesic_mode_needs_no_model(tmp_path, monkeypatch):
    monkeypatch.setenv(predictor_mod.MODEL_ENV, str(tmp_path / "absent.onnx"))
    rig = rig_with_control_bone()
    pred = Predictor(mode="geodesic").predict(rig, max_influences=3)
    assert pred.provider == "numpy" and pred.mode == "geodesic"
    assert (pred.weights[:, 3] == 0).all() and np.allclose(pred.weights.sum(axis=1), 1.0, atol=1e-5)
    # vertices near the bottom belong to bone 0, near the top to bone 2
    z = rig.vertices[:, 2]
    assert pred.weights[np.argmin(z)].argmax() == 0 and pred.weights[np.argmax(z)].argmax() == 2


def test_missing_model_names_file_and_geodesic(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "autoskin.onnx"
    with pytest.raises(ModelError) as exc:
        Predictor(missing)
    assert str(missing) in str(exc.value) and "geodesic" in str(exc.value)
    monkeypatch.setenv(predictor_mod.MODEL_ENV, str(missing))
    with pytest.raises(RigError, match="nowhere"):
        Predictor()
    with pytest.raises(ValueError):
        Predictor(mode="magic")


def test_default_model_path(model_path, monkeypatch):
    monkeypatch.delenv(predictor_mod.MODEL_ENV, raising=False)
    assert predictor_mod.default_model_path() == predictor_mod.DEFAULT_MODEL
    assert predictor_mod.DEFAULT_MODEL.parent.name == "models"
    assert (predictor_mod.DEFAULT_MODEL.parents[1] / "backend" / "inference" / "predictor.py").is_file()
    monkeypatch.setenv(predictor_mod.MODEL_ENV, str(model_path))
    assert Predictor().model_path == model_path


@pytest.mark.parametrize("key,value,message", [
    (mm.KEY_FEATURE_VERSION, "autoskin-features-0", "do not match"),
    (mm.KEY_FEATURE_HASH, "0123456789abcdef", "do not match"),
    (mm.KEY_FEATURE_CONFIG, '{"k_bones": 4, "new_option": 1}', "new_option"),
    (mm.KEY_FORMAT, None, "not an Auto Skin model"),
])
def test_metadata_mismatch_is_refused(model_path, tmp_path, key, value, message):
    bad = rewrite_meta(model_path, tmp_path / "bad.onnx", **{key: value})
    with pytest.raises(ModelError, match=message) as exc:
        Predictor(bad)
    assert str(bad) in str(exc.value)


def test_unreadable_model(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="junk.onnx"):
        Predictor(bad)


def test_sessions_are_cached(model_path):
    a, b = Predictor(model_path, threads=1), Predictor(model_path, threads=1)
    assert a.model is b.model
    c = Predictor(model_path, threads=2)
    assert c.model is not a.model


def test_cuda_failure_falls_back_to_cpu(model_path, monkeypatch):
    monkeypatch.setattr(session_mod, "available_providers", lambda: [session_mod.CUDA, session_mod.CPU])
    real = session_mod._make_session
    calls = []

    def fake(path, providers, threads):
        calls.append(list(providers))
        if session_mod.CUDA in providers:
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")
        return real(path, providers, threads)

    monkeypatch.setattr(session_mod, "_make_session", fake)
    with pytest.warns(RuntimeWarning, match="CUDA execution provider failed"):
        p = Predictor(model_path, device="auto")
    assert calls == [[session_mod.CUDA, session_mod.CPU], [session_mod.CPU]]
    assert p.provider == session_mod.CPU
    pred = p.predict(make_capsule_chain(2, with_weights=False))
    assert pred.provider == session_mod.CPU and np.allclose(pred.weights.sum(axis=1), 1.0, atol=1e-5)


def test_cuda_silently_missing_warns(model_path, monkeypatch):
    # onnxruntime lists CUDA but the session comes up on the CPU only (e.g. no driver)
    monkeypatch.setattr(session_mod, "available_providers", lambda: [session_mod.CUDA, session_mod.CPU])
    real = session_mod._make_session
    monkeypatch.setattr(session_mod, "_make_session",
                        lambda path, providers, threads: real(path, [session_mod.CPU], threads))
    with pytest.warns(RuntimeWarning, match="did not load"):
        p = Predictor(model_path, device="cuda")
    assert p.provider == session_mod.CPU


def test_provider_choice(monkeypatch):
    monkeypatch.setattr(session_mod, "available_providers", lambda: [session_mod.CPU])
    assert session_mod.wanted_providers("auto") == [session_mod.CPU]
    with pytest.warns(RuntimeWarning, match="no CUDAExecutionProvider"):
        assert session_mod.wanted_providers("cuda") == [session_mod.CPU]
    monkeypatch.setattr(session_mod, "available_providers", lambda: [session_mod.CUDA, session_mod.CPU])
    assert session_mod.wanted_providers("auto") == [session_mod.CUDA, session_mod.CPU]
    assert session_mod.wanted_providers("cpu") == [session_mod.CPU]
    with pytest.raises(ValueError):
        session_mod.wanted_providers("tpu")


def test_cpu_device_never_warns(model_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor(model_path, device="cpu").provider == session_mod.CPU


def test_large_mesh_goes_through_simplification(model_path):
    pytest.importorskip("backend.features.simplify")
    rig = make_capsule_chain(3, segments=24, rings=40, with_weights=False)
    full = Predictor(model_path, vertex_budget=0).predict(rig)
    small = Predictor(model_path, vertex_budget=300).predict(rig)
    assert full.info["simplified_to"] is None
    assert small.info["simplified_to"] is not None and small.info["simplified_to"] <= 400
    assert small.weights.shape == full.weights.shape
    assert np.allclose(small.weights.sum(axis=1), 1.0, atol=1e-5)
    assert (np.count_nonzero(small.weights, axis=1) <= 4).all()
    # the transferred weights follow the full prediction closely on this smooth shape
    assert np.abs(small.weights - full.weights).mean() < 0.05


def test_bad_rig_is_refused(model_path):
    rig = make_capsule_chain(2, with_weights=False)
    rig.vertices[0, 0] = np.nan
    with pytest.raises(RigError, match="NaN"):
        Predictor(model_path).predict(rig)


def test_cuda_run_failure_switches_to_cpu(model_path):
    p = Predictor(model_path, device="cpu")
    cpu_session = p.model.session

    class FailingCuda:
        def run(self, *args, **kwargs):
            raise RuntimeError("CUDA error: out of memory")

    p.model.session, p.model.provider = FailingCuda(), session_mod.CUDA
    rig = make_capsule_chain(2, with_weights=False)
    with pytest.warns(RuntimeWarning, match="CUDA run failed"):
        pred = p.predict(rig)
    assert pred.provider == session_mod.CPU and p.model.session is not cpu_session
    np.testing.assert_allclose(pred.weights, Predictor(model_path, threads=1).predict(rig).weights, atol=1e-5)
    # a CPU failure is not hidden
    p.model.session, p.model.provider = FailingCuda(), session_mod.CPU
    with pytest.raises(RuntimeError, match="out of memory"):
        p.predict(rig)


def test_heat_mode_needs_no_model_and_weights_every_vertex():
    """mode='heat': model-free heat diffusion; rows sum to 1, at most k influences, non-deform columns zero."""
    from backend.inference.predictor import Predictor
    from conftest import make_capsule_chain

    rig = make_capsule_chain(3, with_weights=False)
    rig.is_deform[2] = False
    pred = Predictor(mode="heat").predict(rig, max_influences=2)
    w = pred.weights
    assert pred.mode == "heat" and pred.provider == "numpy"
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert (w[:, 2] == 0).all() and ((w > 0).sum(axis=1) <= 2).all()
    bottom = rig.vertices[:, 2] < 0.3
    assert (w[bottom, 0] > 0.9).all()  # the first bone owns the bottom of the chain


def test_prior_blend_mixes_generator_and_prior(model_path, tmp_path):
    """The stored prior_blend mixes G's output with its prior input; 0 gives the prior exactly."""
    from backend.features.pipeline import compute_features

    rig = make_capsule_chain(4, with_weights=False)
    assert Predictor(model_path).model.info.settings.prior_blend == 1.0  # exported default
    feats = compute_features(rig, FCFG)
    prior = feats.to_dense(feats.prior)
    w_gen, info = Predictor(model_path).raw_weights(rig)
    assert info["prior_blend"] == 1.0 and not np.allclose(w_gen, prior, atol=1e-3)
    w_prior, _ = Predictor(model_path, prior_blend=0.0).raw_weights(rig)
    np.testing.assert_allclose(w_prior, prior, atol=1e-6)
    stored = rewrite_meta(model_path, tmp_path / "blend.onnx", **{mm.KEY_PRIOR_BLEND: "0.25"})
    w_mix, info = Predictor(stored).raw_weights(rig)
    assert info["prior_blend"] == 0.25
    np.testing.assert_allclose(w_mix, 0.25 * w_gen + 0.75 * prior, atol=1e-5)
    np.testing.assert_allclose(w_mix.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "lots"])
def test_bad_prior_blend_is_refused(model_path, tmp_path, value):
    bad = rewrite_meta(model_path, tmp_path / "bad_blend.onnx", **{mm.KEY_PRIOR_BLEND: value})
    with pytest.raises(ModelError, match="prior_blend"):
        Predictor(bad)
    with pytest.raises(ValueError, match="prior_blend"):
        Predictor(model_path, prior_blend=2.0)


@pytest.mark.parametrize("budget", [0, 300])
def test_predict_blends_equals_one_predictor_per_blend(model_path, budget):
    """predict_blends runs features and network once; each result matches its own predictor,
    also through simplification."""
    rig = make_capsule_chain(3, segments=24, rings=40, with_weights=False)
    blends = [1.0, 0.4, 0.0, None]
    many = Predictor(model_path, vertex_budget=budget, prior_blend=0.7).predict_blends(rig, blends)
    for b, pred in zip(blends, many):
        one = Predictor(model_path, vertex_budget=budget, prior_blend=0.7 if b is None else b).predict(rig)
        np.testing.assert_allclose(pred.weights, one.weights, atol=1e-6)
        assert pred.info["prior_blend"] == (0.7 if b is None else b)
    assert not np.allclose(many[0].weights, many[2].weights, atol=1e-3)
    with pytest.raises(ValueError, match="prior_blend"):
        Predictor(model_path).predict_blends(rig, [1.5])
