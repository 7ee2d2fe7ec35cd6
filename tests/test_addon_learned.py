"""The add-on's learned mode, its settings, export of corrected weights, model versions and the
zip run alone: the extension installed into real Blender (bpy, headless), with the fixtures and
helpers of ``test_addon``.
"""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from backend.blender.scene import build_objects  # noqa: E402
from backend.io.npz import load_npz  # noqa: E402
from conftest import run_fresh_blender  # noqa: E402
from test_addon import (PKG, ROOT, addon, fresh, make_scene, run, select, tiny_model,  # noqa: E402,F401
                        weights, world_vertices, zip_path)


# ----------------------------------------------------------------------------- learned mode, export
def skin_each(mesh, arm, names: list[str], variants: dict[str, dict], **common) -> dict[str, np.ndarray]:
    """Auto Skin once per variant (its extra operator arguments) on top of ``common``; each must finish.
    -> {variant: (V, J) weights of ``names``}."""
    got = {}
    for key, kw in variants.items():
        select(mesh, arm)
        res, msg = run(**common, **kw)
        assert res == {"FINISHED"}, msg
        got[key] = weights(mesh, names)
    return got


def test_learned_mode_with_tiny_model(fresh, tmp_path):
    path = tiny_model(tmp_path, seed=0)
    mesh, arm, rig = make_scene(3)
    res, msg = run(mode="LEARNED", model_path=str(path), device="CPU", max_influences=2)
    assert res == {"FINISHED"}, msg
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert (w > 0).sum(axis=1).max() <= 2
    assert mesh[sys.modules[PKG + ".export_corrections"].KEY_VERSION] != "geodesic"


def test_network_share_overrides_the_model_blend(fresh, tmp_path):
    """Network Share 0 gives the model's heat prior, as the runtime computes it; the default keeps the model's mix."""
    path = tiny_model(tmp_path, seed=1)
    from backend.inference.predictor import Predictor

    mesh, arm, rig = make_scene(3)
    names = ["bone_0", "bone_1", "bone_2"]
    got = skin_each(mesh, arm, names, {"model": {}, "prior": {"network_share": 0.0}, "net": {"network_share": 1.0}},
                    mode="LEARNED", model_path=str(path), device="CPU", max_influences=0, prune_threshold=0.0)
    np.testing.assert_allclose(got["model"], got["net"], atol=1e-6)  # the tiny model stores blend 1
    expected = Predictor(path, prior_blend=0.0, device="cpu").predict(rig, max_influences=0, prune=0.0).weights
    np.testing.assert_allclose(got["prior"], expected, atol=1e-3)
    assert np.abs(got["prior"] - got["net"]).max() > 1e-2


def test_sharpness_overrides_the_model_setting(fresh, tmp_path):
    """Sharpness P gives the runtime's weights at power P; the default keeps the model's (1 for the tiny model)."""
    path = tiny_model(tmp_path, seed=1)
    from backend.inference.predictor import Predictor

    mesh, arm, rig = make_scene(3)
    names = ["bone_0", "bone_1", "bone_2"]
    got = skin_each(mesh, arm, names, {"model": {}, "one": {"sharpness": 1.0}, "sharp": {"sharpness": 3.0}},
                    mode="LEARNED", model_path=str(path), device="CPU", max_influences=0, prune_threshold=0.0)
    np.testing.assert_allclose(got["model"], got["one"], atol=1e-6)
    expected = Predictor(path, sharpen=3.0, device="cpu").predict(rig, max_influences=0, prune=0.0).weights
    np.testing.assert_allclose(got["sharp"], expected, atol=1e-3)
    # sharper: every vertex's largest weight grows (or stays), and the weights moved
    assert (got["sharp"].max(axis=1) >= got["one"].max(axis=1) - 1e-5).all()
    assert np.abs(got["sharp"] - got["one"]).max() > 1e-2


@pytest.mark.parametrize("key, stored, unset, call", [
    ("smooth", "3", {"smoothing": 0}, {"smooth": 0}),
    ("diffuse", "2.0", {"diffusion": 0.0}, {"diffuse": 0.0}),
])
def test_clean_up_follows_the_model_unless_set(fresh, tmp_path, key, stored, unset, call):
    """A model that stores smoothing 3 (diffusion 2 %) is smoothed (diffused) so by default;
    Smoothing 0 (Diffusion 0) turns it off, with the runtime's own weights in both cases."""
    from backend.inference.predictor import Predictor
    from conftest import rewrite_meta

    path = rewrite_meta(tiny_model(tmp_path, seed=2), tmp_path / f"{key}.onnx", **{key: stored})
    mesh, arm, rig = make_scene(3)
    names = ["bone_0", "bone_1", "bone_2"]
    got = {}
    for name, kw in (("model", {}), ("off", unset)):
        select(mesh, arm)
        res, msg = run(mode="LEARNED", model_path=str(path), device="CPU", max_influences=0, prune_threshold=0.0, **kw)
        assert res == {"FINISHED"}, msg
        got[name] = weights(mesh, names)
    pred = Predictor(path, device="cpu")
    np.testing.assert_allclose(got["model"], pred.predict(rig, max_influences=0, prune=0.0).weights, atol=1e-3)
    np.testing.assert_allclose(got["off"], pred.predict(rig, max_influences=0, prune=0.0, **call).weights, atol=1e-3)
    assert np.abs(got["model"] - got["off"]).max() > 1e-3


def test_status_line_names_the_settings_used(fresh, tmp_path):
    from backend.inference.predictor import Predictor
    from conftest import rewrite_meta

    path = rewrite_meta(tiny_model(tmp_path, seed=2), tmp_path / "diffuse.onnx", diffuse="2.0")
    rig = make_scene(3)[2]
    note = fresh.operators.settings_note
    info = Predictor(path, device="cpu").predict(rig).info
    assert note(info, learned=True) == " (network share 1.00, diffusion 2 %)"
    assert note(dict(info, sharpen=1.5, diffuse=0.0), learned=True) == " (network share 1.00, sharpness 1.5)"
    assert note(Predictor(mode="heat").predict(rig).info, learned=False) == ""


@pytest.mark.parametrize("mode", ["HEAT", "GEODESIC"])
def test_helper_bones_stay_empty_unless_asked(fresh, mode):
    """A chain-end leaf bone (``*_end``) marked Deform gets no weight by default; with Skip Helper
    Bones off it is skinned like any bone."""
    mesh, arm, rig = make_scene(4, last_name="bone_2_end")
    names = ["bone_0", "bone_1", "bone_2", "bone_2_end"]
    res, msg = run(mode=mode)
    assert res == {"FINISHED"}, msg
    w = weights(mesh, names)
    assert w[:, 3].max() == 0.0
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert w[rig.vertices[:, 2] > 2.9, 2].min() > 0.5  # the tip goes to the last real bone
    select(mesh, arm)
    res, msg = run(mode=mode, skip_helper_bones=False)
    assert res == {"FINISHED"}, msg
    assert weights(mesh, names)[rig.vertices[:, 2] > 2.9, 3].min() > 0.5


def test_export_corrected_weights(fresh, tmp_path):
    mesh, arm, rig = make_scene(3)
    assert run()[0] == {"FINISHED"}
    predicted = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    # the artist corrects the tip: all on bone_2
    tip = np.flatnonzero(rig.vertices[:, 2] > 2.5).tolist()
    for name in ("bone_0", "bone_1"):
        mesh.vertex_groups[name].remove(tip)
    mesh.vertex_groups["bone_2"].add(tip, 1.0, "REPLACE")
    paths = []
    for _ in range(2):
        assert bpy.ops.autoskin.export_corrections(directory=str(tmp_path)) == {"FINISHED"}
        paths = sorted(tmp_path.glob("*.npz"))
    assert len(paths) == 2  # the second export did not overwrite the first
    exported = load_npz(paths[0])
    assert exported.joint_names == ["bone_0", "bone_1", "bone_2"]
    np.testing.assert_allclose(exported.vertices, rig.vertices, atol=1e-5)
    assert np.all(exported.weights[tip] == np.array([0, 0, 1], np.float32))
    np.testing.assert_allclose(exported.extra["predicted_weights"], predicted, atol=1e-6)
    assert str(exported.extra["model_version"]) == "geodesic"
    assert str(exported.extra["source_file"]) == "unsaved.blend"
    # the preferences choose the folder when the operator is not told one
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.export_dir = str(tmp_path / "from_prefs")
    try:
        assert bpy.ops.autoskin.export_corrections() == {"FINISHED"}
    finally:
        prefs.export_dir = ""
    assert len(list((tmp_path / "from_prefs").glob("*.npz"))) == 1


def test_export_without_weights_reports(fresh, tmp_path):
    make_scene(3)
    with pytest.raises(RuntimeError, match="carry no weights"):
        bpy.ops.autoskin.export_corrections(directory=str(tmp_path))
    assert not list(tmp_path.glob("*.npz"))


# ----------------------------------------------------------------------------- the zip alone
def test_installed_zip_runs_its_vendored_backend(zip_path, tmp_path):
    """A fresh Blender process without the repository on sys.path: the add-on imports the
    runtime copy inside the extension, as its own subpackage (never as ``backend``), and skins a mesh."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, json
        import bpy, numpy as np
        assert not any(os.path.isdir(os.path.join(p, "backend")) for p in sys.path if p), "repo on sys.path"
        path_before = list(sys.path)
        bpy.ops.extensions.package_install_files(repo="user_default", filepath={str(zip_path)!r},
                                                 enable_on_install=True)
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
        mesh = bpy.context.object
        bpy.ops.object.armature_add(location=(0, 0, -0.5))
        arm = bpy.context.object
        mesh.select_set(True)
        print(bpy.ops.autoskin.auto_skin(mode="GEODESIC"))
        print(json.dumps({{"runtime": sys.modules[{PKG + ".runtime.inference.predictor"!r}].__file__,
                          "backend_imported": any(n.split(".")[0] == "backend" for n in sys.modules),
                          "path_added": [p for p in sys.path if p not in path_before and "autoskin" in p],
                          "groups": [g.name for g in mesh.vertex_groups], "parent": mesh.parent.name}}))
    """))
    info = run_fresh_blender(script, tmp_path, timeout=120)
    assert "/extensions/user_default/autoskin/runtime/inference/predictor.py" in info["runtime"]
    assert not info["backend_imported"] and info["path_added"] == []
    assert info["groups"] == ["Bone"] and info["parent"] == "Armature"


def test_another_backend_module_does_not_break_auto_skin(zip_path, tmp_path):
    """Another add-on's top-level ``backend`` package, on sys.path and imported before Auto Skin is
    enabled (its ``backend.rig`` has no RigError), neither hides Auto Skin's runtime nor is replaced by
    it: Auto Skin (Learned and Geodesic) and Export run on the zip's own runtime."""
    other = tmp_path / "other_addon" / "backend"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("NAME = 'another add-on'\n")
    (other / "rig.py").write_text("RIG = 'not the Auto Skin runtime'\n")
    (other / "inference").mkdir()
    (other / "inference" / "__init__.py").write_text("raise ImportError('another add-on: no inference here')\n")
    model = ROOT / "models" / "autoskin.onnx"
    script = tmp_path / "clash.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(other.parent)!r})
        import backend, backend.rig
        assert backend.NAME == "another add-on"
        import bpy
        bpy.ops.extensions.package_install_files(repo="user_default", filepath={str(zip_path)!r},
                                                 enable_on_install=True)
        out = {{"enabled": {PKG!r} in bpy.context.preferences.addons}}
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
        mesh = bpy.context.object
        bpy.ops.object.armature_add(location=(0, 0, -0.5))
        mesh.select_set(True)
        out["geodesic"] = sorted(bpy.ops.autoskin.auto_skin(mode="GEODESIC"))
        out["learned"] = (sorted(bpy.ops.autoskin.auto_skin(mode="LEARNED", model_path={str(model)!r}, device="CPU"))
                          if os.path.isfile({str(model)!r}) else ["FINISHED"])
        out["groups"] = [g.name for g in mesh.vertex_groups]
        out["export"] = sorted(bpy.ops.autoskin.export_corrections(directory={str(tmp_path / "out")!r}))
        out["backend_kept"] = sys.modules["backend"] is backend and sys.modules["backend.rig"] is backend.rig
        out["other_modules"] = sorted(n for n in sys.modules if n.split(".")[0] == "backend")
        out["runtime"] = sys.modules[{PKG + ".runtime.rig"!r}].__file__
        print(json.dumps(out))
    """))
    out = run_fresh_blender(script, tmp_path, timeout=180)
    assert out["enabled"] and out["geodesic"] == ["FINISHED"] and out["learned"] == ["FINISHED"]
    assert out["groups"] == ["Bone"] and out["export"] == ["FINISHED"]
    assert out["backend_kept"] and out["other_modules"] == ["backend", "backend.rig"]
    assert "/extensions/user_default/autoskin/runtime/rig.py" in out["runtime"]


def test_preferences_choose_a_model_version(fresh, tmp_path):
    """The models folder that finetune publishes into: Newest and a chosen version resolve to their files."""
    for n in (1, 2):
        (tmp_path / f"autoskin-v{n}.onnx").write_bytes(b"onnx")
        (tmp_path / f"autoskin-v{n}.json").write_text(json.dumps({"created": f"2026-01-0{n}", "corrections": []}))
    (tmp_path / "autoskin-v3.onnx").write_bytes(b"partial")  # no card: incomplete, never offered
    prefs = bpy.context.preferences.addons[PKG].preferences
    pref_mod = sys.modules[PKG + ".preferences"]
    boot = sys.modules[PKG + "._bootstrap"]
    try:
        prefs.models_dir = str(tmp_path)
        offered = [item[0] for item in pref_mod._version_items(prefs, bpy.context)]
        assert offered == ["BUNDLED", "NEWEST", "V1", "V2"]
        prefs.model_version = "NEWEST"
        assert pref_mod.model_path("") == str(tmp_path / "autoskin-v2.onnx")
        prefs.model_version = "V1"
        assert pref_mod.model_path("") == str(tmp_path / "autoskin-v1.onnx")
        assert pref_mod.model_path(str(tmp_path / "x.onnx")) == str(tmp_path / "x.onnx")  # a file given wins
        prefs.model_version = "BUNDLED"
        assert pref_mod.model_path("") == boot.default_model_path()
    finally:
        prefs.model_version = "BUNDLED"
        prefs.models_dir = ""


def test_auto_skin_heat_mode(fresh):
    """The model-free Heat mode from the operator: one group per deform bone, rows sum to 1."""
    mesh, arm, rig = make_scene(3)
    res, msg = run(mode="HEAT", max_influences=3)
    assert res == {"FINISHED"}, msg
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert ((w > 0).sum(axis=1) <= 3).all()


def test_rigid_separate_parts_option(fresh, tmp_path):
    """Rigid Separate Parts puts the small separate cube beside bone_2 on bone_2 alone, as the runtime's
    option does; off (the default) it keeps the prior's blend; the body is the same either way."""
    from conftest import make_chain_with_eye

    path = tiny_model(tmp_path, seed=2)
    rig, eye = make_chain_with_eye(eye_z=2.1)
    mesh, arm = build_objects(rig, with_weights=False)
    mesh.modifiers.clear()
    mesh.parent = None
    names = ["bone_0", "bone_1", "bone_2"]
    got = {}
    for flag in (False, True):
        select(mesh, arm)
        res, msg = run(mode="LEARNED", model_path=str(path), device="CPU", network_share=0.0, rigid_pieces=flag)
        assert res == {"FINISHED"}, msg
        got[flag] = weights(mesh, names)
    np.testing.assert_array_equal(got[True][eye], np.tile([0.0, 0.0, 1.0], (int(eye.sum()), 1)))
    assert got[False][eye, 2].min() < 0.99
    np.testing.assert_allclose(got[True][~eye], got[False][~eye], atol=1e-6)


def test_enclosing_parts_follows_the_model_unless_set(fresh, tmp_path):
    """A model that stores enclosing pieces 0.9 gives each box of a box-built robot to the bone inside it,
    as the runtime does; Enclosing Parts 0 turns it off."""
    from backend.inference.predictor import Predictor
    from conftest import rewrite_meta
    from conftest import box_robot

    path = rewrite_meta(tiny_model(tmp_path, seed=2), tmp_path / "enclosing.onnx", enclosing_pieces="0.9")
    rig, masks = box_robot()
    mesh, arm = build_objects(rig, with_weights=False)
    mesh.modifiers.clear()
    mesh.parent = None
    got = skin_each(mesh, arm, list(rig.joint_names), {"model": {}, "off": {"enclosing_parts": 0.0}},
                    mode="LEARNED", model_path=str(path), device="CPU")
    for j in range(3):
        np.testing.assert_array_equal(got["model"][masks[f"box{j}"]], np.tile(np.eye(3)[j], (8, 1)))
    np.testing.assert_allclose(got["model"], Predictor(path, device="cpu").predict(rig).weights, atol=1e-3)
    assert not np.all(got["off"][masks["box1"], 1] == 1.0)
