"""The ``predict`` (folder) and ``skin`` (one file) commands."""
from __future__ import annotations

import numpy as np
import pytest

from backend.__main__ import main
from backend.features.pipeline import FeatureConfig
from backend.inference.session import clear_cache
from backend.io.npz import load_npz, rig_arrays, save_npz
from conftest import export_tiny_model, make_capsule_chain


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
    clear_cache()
    return path


@pytest.fixture
def rig_folder(tmp_path):
    """Three good rigs (one with a non-deform bone, one without weights, one with bad weights that
    must be ignored) and one broken file."""
    d = tmp_path / "in"
    a = make_capsule_chain(3, name="a")
    a.is_deform = np.array([True, False, True])
    a.weights = None
    save_npz(a, d / "a.npz")
    save_npz(make_capsule_chain(5, with_weights=False), d / "b.npz")
    c = make_capsule_chain(2)
    arrays = rig_arrays(c)
    arrays["weights"] = np.full((3, 7), -1.0, np.float32)  # wrong shape and negative: ignored
    np.savez(d / "c.npz", **arrays)
    (d / "broken.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (d / "notes.txt").write_text("not a rig")
    return d


def test_predict_folder_with_a_broken_file(model_path, rig_folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(rig_folder), str(out), "--model", str(model_path), "--threads", "2"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "broken.npz" in err and "3 written" in err and "1 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz", "c.npz"]
    for name, J in (("a.npz", 3), ("b.npz", 5), ("c.npz", 2)):
        with np.load(out / name, allow_pickle=False) as f:
            assert f.files == ["weights"]
            w = f["weights"]
        V = load_npz(rig_folder / name, validate=False).num_vertices
        assert w.shape == (V, J) and w.dtype == np.float32
        assert np.allclose(w.sum(axis=1), 1.0, atol=1e-5) and (w >= 0).all()
        assert (np.count_nonzero(w, axis=1) <= 4).all()
    with np.load(out / "a.npz") as f:
        assert (f["weights"][:, 1] == 0).all()  # non-deform bone


def test_predict_geodesic_mode_and_limits(rig_folder, tmp_path):
    out = tmp_path / "geo"
    (rig_folder / "broken.npz").unlink()
    assert main(["predict", str(rig_folder), str(out), "--mode", "geodesic", "--max-influences", "1"]) == 0
    with np.load(out / "b.npz") as f:
        w = f["weights"]
    assert (np.count_nonzero(w, axis=1) == 1).all()


def test_predict_exit_codes(model_path, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), str(tmp_path / "o"), "--model", str(model_path)]) == 1
    assert main(["predict", str(tmp_path / "absent"), str(tmp_path / "o"), "--model", str(model_path)]) == 2
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.npz").write_bytes(b"")
    assert main(["predict", str(only_bad), str(tmp_path / "o2"), "--model", str(model_path)]) == 1
    assert not (tmp_path / "o2" / "x.npz").exists()
    # a missing model: clear message, no output
    rc = main(["predict", str(only_bad), str(tmp_path / "o3"), "--model", str(tmp_path / "none.onnx")])
    assert rc == 2 and "geodesic" in capsys.readouterr().err


def test_skin_npz(model_path, tmp_path, capsys):
    src = tmp_path / "rig.npz"
    save_npz(make_capsule_chain(4), src)
    dst = tmp_path / "skinned.npz"
    assert main(["skin", str(src), str(dst), "--model", str(model_path), "--max-influences", "2",
                 "--smooth", "2", "--diffuse", "1"]) == 0
    out = load_npz(dst)
    ref = load_npz(src)
    assert np.array_equal(out.vertices, ref.vertices) and out.joint_names == ref.joint_names
    assert out.weights.shape == (out.num_vertices, 4)
    assert (np.count_nonzero(out.weights, axis=1) <= 2).all()
    assert not np.allclose(out.weights, ref.weights)  # predicted, not copied
    assert "CPUExecutionProvider" in capsys.readouterr().out
    assert main(["skin", str(src), str(tmp_path / "x.obj"), "--mode", "geodesic"]) == 2
    assert main(["skin", str(tmp_path / "nope.npz"), str(dst), "--mode", "geodesic"]) == 2


def test_skin_glb_to_blend(model_path, tmp_path):
    pytest.importorskip("bpy")
    from backend.blender.files import export_rig, load_rig_file

    src = export_rig(make_capsule_chain(3), tmp_path / "in.glb")
    dst = tmp_path / "out.blend"
    assert main(["skin", str(src), str(dst), "--model", str(model_path), "--max-influences", "2"]) == 0
    back = load_rig_file(dst)
    assert back.weights.shape == (back.num_vertices, 3)
    assert np.allclose(back.weights.sum(axis=1), 1.0, atol=1e-4)
    assert (np.count_nonzero(back.weights > 1e-6, axis=1) <= 2).all()
    # the vertex groups carry this model's prediction for the same mesh
    from backend.inference.predictor import Predictor

    ref = Predictor(model_path).predict(load_rig_file(src, require_weights=False), max_influences=2)
    assert np.abs(back.weights - ref.weights).max() < 1e-3


def test_prior_blend_option(model_path, tmp_path, capsys):
    """--prior-blend 0 gives the model's prior (post-processed); a value outside [0, 1] is refused."""
    from backend.features.pipeline import compute_features
    from backend.inference.postprocess import postprocess

    rig = make_capsule_chain(4, with_weights=False)
    src = tmp_path / "rig.npz"
    save_npz(rig, src)
    outs = {}
    for b in ("0", "1"):
        dst = tmp_path / f"b{b}.npz"
        assert main(["skin", str(src), str(dst), "--model", str(model_path), "--prior-blend", b]) == 0
        outs[b] = load_npz(dst).weights
    feats = compute_features(rig, FeatureConfig(k_bones=4, distance="euclidean"))
    np.testing.assert_allclose(outs["0"], postprocess(feats.to_dense(feats.prior), rig.faces), atol=1e-5)
    assert not np.allclose(outs["0"], outs["1"], atol=1e-3)
    with pytest.raises(SystemExit) as exc:
        main(["skin", str(src), str(tmp_path / "x.npz"), "--model", str(model_path), "--prior-blend", "1.5"])
    assert exc.value.code == 2 and "[0, 1]" in capsys.readouterr().err


def test_keep_helper_bones_option(tmp_path):
    """By default a chain-end leaf bone stays empty; --keep-helper-bones skins it like any bone."""
    rig = make_capsule_chain(4, with_weights=False)
    rig.joint_names[-1] = "bone_2_end"
    src = tmp_path / "rig.npz"
    save_npz(rig, src)
    got = {}
    for flag in ([], ["--keep-helper-bones"]):
        dst = tmp_path / f"out{len(flag)}.npz"
        assert main(["skin", str(src), str(dst), "--mode", "heat", *flag]) == 0
        got[len(flag)] = load_npz(dst).weights
    assert got[0][:, 3].max() == 0.0 and got[1][:, 3].max() > 0.5
    np.testing.assert_allclose(got[0].sum(axis=1), 1.0, atol=1e-5)
