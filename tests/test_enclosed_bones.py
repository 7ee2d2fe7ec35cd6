"""backend.inference.enclosed_bones: a separate piece that encloses exactly one bone's midpoint goes to
that bone; the setting travels in the model's metadata, the Predictor applies it and the fine-tuning
scorer gives the same weights."""
from __future__ import annotations

import numpy as np
import pytest

from backend.inference.enclosed_bones import enclosed_bones, enclosed_points, give_to_bones
from backend.rig import make_rig
from conftest import box_robot, cube, export_tiny_model, rewrite_meta


def wrong_weights(rig) -> np.ndarray:
    """Every vertex on the parent of its box's bone (what the network does on such mobs), softened."""
    w = np.full((rig.num_vertices, 3), 0.1, np.float32)
    w[np.arange(rig.num_vertices), np.maximum(rig.weights.argmax(axis=1) - 1, 0)] = 0.8
    return w


def test_each_box_goes_to_the_one_bone_it_encloses():
    rig, m = box_robot()
    w = wrong_weights(rig)
    bone_of, bones = enclosed_bones(rig.vertices, rig.faces, rig.joints, rig.tails, np.ones(3, bool), 0.9)
    out = give_to_bones(w, bone_of)
    assert sorted(bones) == [0, 1, 2]
    for j in range(3):
        np.testing.assert_array_equal(out[m[f"box{j}"]], np.tile(np.eye(3, dtype=np.float32)[j], (8, 1)))
    # the eye holds no bone and the long box two: both stay as they were
    for name in ("eye", "long"):
        np.testing.assert_array_equal(out[m[name]], w[m[name]])
    assert out.dtype == np.float32 and w[0, 0] == pytest.approx(0.8)  # the input is not changed in place


def test_share_limit_disallowed_bones_and_off():
    rig, m = box_robot()
    w = wrong_weights(rig)
    args = (rig.vertices, rig.faces, rig.joints, rig.tails)
    # each side-0.8 box holds 3.84 / 27.1 = 14 % of the surface: a limit of 10 % leaves all of them
    for share in (0.10, 0.0):
        bone_of, bones = enclosed_bones(*args, np.ones(3, bool), share)
        assert bones == [] and np.all(bone_of == -1)
    # bone 1 may not carry weight (a helper bone): box1 encloses no allowed bone, the long box one (bone 0)
    bone_of, bones = enclosed_bones(*args, np.array([1, 0, 1], bool), 0.9)
    out = give_to_bones(w, bone_of)
    assert sorted(bones) == [0, 0, 2]
    np.testing.assert_array_equal(out[m["box1"]], w[m["box1"]])
    assert np.all(out[m["long"], 0] == 1.0)
    # one piece: nothing to separate
    one = make_rig(*cube([0, 0, 0.5], 0.8), rig.joints[:1], np.array([-1]), tails=rig.tails[:1])
    assert enclosed_bones(one.vertices, one.faces, one.joints, one.tails, np.ones(1, bool), 1.0)[1] == []


def test_the_hull_not_the_bounding_box_decides():
    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    points = np.array([[0.8, 0.8, 0.8], [0.1, 0.1, 0.1], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # (0.8, 0.8, 0.8) lies in the bounding box but outside the tetrahedron; a corner counts as inside
    assert enclosed_points(tet, points).tolist() == [1, 3]
    flat = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64)  # a quad encloses nothing
    assert enclosed_points(flat, np.array([[0.5, 0.5, 0.0]])).tolist() == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("enclosed") / "tiny.onnx", k_bones=3)


def test_the_predictor_applies_the_models_setting(tiny_model, tmp_path):
    from backend.inference.predictor import Predictor

    rig, m = box_robot()
    on = rewrite_meta(tiny_model, tmp_path / "on.onnx", enclosing_pieces="0.9")
    pred = Predictor(on, threads=1).predict(rig)
    assert pred.info["enclosed_pieces"] == 3 and pred.info["enclosing_pieces"] == 0.9
    for j in range(3):
        assert np.all(pred.weights[m[f"box{j}"], j] == 1.0)
    for each in Predictor(on, threads=1).predict_blends(rig, [None, 0.5]):  # found once, given to every blend
        assert each.info["enclosed_pieces"] == 3 and np.all(each.weights[m["box2"], 2] == 1.0)
    off = Predictor(tiny_model, threads=1).predict(rig)
    assert "enclosed_pieces" not in off.info
    assert not np.all(off.weights[m["box1"], 1] == 1.0)  # a random network does not find it by itself
    # a caller's override turns it off; the model-free modes never apply it
    assert "enclosed_pieces" not in Predictor(on, threads=1, overrides={"enclosing_pieces": 0.0}).predict(rig).info
    assert Predictor(mode="geodesic").settings.enclosing_pieces == 0.0


def test_the_fine_tuning_scorer_gives_the_runtime_weights(tmp_path):
    """runtime_score scores what the Predictor gives, enclosing pieces included."""
    torch = pytest.importorskip("torch")
    from backend.export.onnx_export import export_generator
    from backend.features.pipeline import FeatureConfig, compute_features
    from backend.inference.predictor import Predictor
    from backend.models.generator import Generator
    from backend.training.adapt import torch_net
    from backend.training.runtime_score import EvalRig, runtime_weights

    torch.manual_seed(0)
    G = Generator(hidden=8, fused=8).eval()
    fc = FeatureConfig(k_bones=3, distance="euclidean")
    path = export_generator(G, tmp_path / "m.onnx", fc, method="torchscript", sharpen=2.0,
                            enclosing_pieces=0.9).path
    rig, m = box_robot()
    predictor = Predictor(path, threads=1)
    settings = predictor.model.info.settings
    assert (settings.enclosing_pieces, settings.sharpen) == (0.9, 2.0)
    got = runtime_weights(torch_net(G), EvalRig("r", rig, compute_features(rig.without_weights(), fc)), settings)
    want = predictor.predict(rig).weights
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.all(got[m["box2"], 2] == 1.0)


def test_export_and_skin_commands_take_the_setting(tmp_path, capsys):
    """`export --enclosing-pieces` stores it; `skin` uses the model's, `--enclosing-pieces 0` turns it off,
    and a value out of range is refused in one line before any work."""
    pytest.importorskip("torch")
    from backend.__main__ import main
    from backend.io.npz import load_npz, save_npz
    from test_blend_rule import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "g.pt")
    model = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), str(model), "--enclosing-pieces", "0.9", "--method", "torchscript"]) == 0
    assert "enclosing pieces 0.9" in capsys.readouterr().out
    rig, m = box_robot()
    save_npz(rig, tmp_path / "robot.npz")
    got = {}
    for key, flags in (("model", []), ("off", ["--enclosing-pieces", "0"])):
        assert main(["skin", str(tmp_path / "robot.npz"), str(tmp_path / f"{key}.npz"), "--model", str(model),
                     *flags]) == 0
        got[key] = load_npz(tmp_path / f"{key}.npz").weights
    assert all(np.all(got["model"][m[f"box{j}"], j] == 1.0) for j in range(3))
    assert not np.all(got["off"][m["box1"], 1] == 1.0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        main(["skin", str(tmp_path / "robot.npz"), str(tmp_path / "bad.npz"), "--model", str(model),
              "--enclosing-pieces", "2"])
    assert err.value.code == 2 and "--enclosing-pieces" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()


def test_the_style_fit_scores_the_runtime_weights_enclosing_pieces_included(tiny_model, tmp_path):
    """adapt's refit (backend.training.style) sees the rule: the whole rig's weights equal the Predictor's,
    and the scored rows carry the same one-hot rows."""
    from backend.inference.predictor import Predictor
    from backend.training.style import apply_rows, full_weights, model_settings, onnx_net, prepare_case, \
        rig_outputs

    rig, m = box_robot()
    predictor = Predictor(rewrite_meta(tiny_model, tmp_path / "on.onnx", enclosing_pieces="0.9"), threads=1)
    case = prepare_case(rig, predictor)
    assert sorted(set(case.enclosed[m["box1"]])) == [1] and np.all(case.enclosed[m["eye"]] == -1)
    style, smooth = model_settings(predictor)
    out = rig_outputs(case, onnx_net(predictor), [style.diffuse], smooth, rows=10_000)
    np.testing.assert_allclose(full_weights(out, style), predictor.predict(rig).weights, atol=1e-4)
    rows = apply_rows(out, style)
    boxed = np.flatnonzero(case.enclosed[out.rows] >= 0)
    assert len(boxed) == 24 and np.all(rows[boxed, case.enclosed[out.rows][boxed]] == 1.0)
    plain = prepare_case(rig, Predictor(tiny_model, threads=1))
    assert plain.enclosed is None
