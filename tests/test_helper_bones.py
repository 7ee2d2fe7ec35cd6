"""Helper bones: chain-end leaves and pole targets are found by name and left empty by the runtime."""
from __future__ import annotations

import numpy as np

from backend.features.helper_bones import helper_bones, without_helpers
from backend.inference.predictor import Predictor
from conftest import make_capsule_chain


def named_chain(names: list[str], deform: list[bool] | None = None):
    rig = make_capsule_chain(len(names), with_weights=False)
    rig.joint_names = list(names)
    if deform is not None:
        rig.is_deform = np.array(deform)
    return rig


def test_which_bones_are_helpers():
    rig = named_chain(["Hips", "Spine", "Head", "Head_end"])
    assert helper_bones(rig).tolist() == [False, False, False, True]
    # an "_end" bone with a child is a real bone; names are matched case-insensitively
    rig = named_chain(["Root", "Tail_end", "Tail.END"])
    assert helper_bones(rig).tolist() == [False, False, True]
    rig = named_chain(["Bip01", "Bip01 L Finger0", "Bip01 L Finger0Nub"])
    assert helper_bones(rig).tolist() == [False, False, True]
    # pole targets anywhere in the chain; a non-deform bone is never reported; "Legend" is no "_end"
    rig = named_chain(["Root", "PoleTarget.L", "Legend"], deform=[True, True, True])
    assert helper_bones(rig).tolist() == [False, True, False]
    rig = named_chain(["Root", "Knee_pole_vector", "Foot_end"], deform=[True, True, False])
    assert helper_bones(rig).tolist() == [False, True, False]


def test_without_helpers_clears_only_their_deform_flag():
    rig = named_chain(["Hips", "Spine", "Spine_end"])
    out, cleared = without_helpers(rig)
    assert cleared.tolist() == [False, False, True]
    assert out.is_deform.tolist() == [True, True, False] and rig.is_deform.all()  # input untouched
    # a rig made only of helpers keeps them: something must carry the skin
    only = named_chain(["A_end"])
    same, none = without_helpers(only)
    assert same is only and not none.any()


def test_runtime_leaves_helpers_empty_and_can_be_told_not_to():
    rig = named_chain(["bone_0", "bone_1", "bone_2", "bone_2_end"])
    skip = Predictor(mode="heat").predict(rig)
    keep = Predictor(mode="heat", skip_helpers=False).predict(rig)
    assert skip.info["helper_bones_skipped"] == ["bone_2_end"] and keep.info["helper_bones_skipped"] == []
    assert skip.weights[:, 3].max() == 0.0 and keep.weights[:, 3].max() > 0.5
    np.testing.assert_allclose(skip.weights.sum(axis=1), 1.0, atol=1e-5)
    # where the helper had the tip, the last real bone takes over
    tip = rig.vertices[:, 2] > 2.9
    assert skip.weights[tip, 2].min() > 0.5
    # the same as skinning the rig whose helper is not a deform bone
    plain = rig.copy()
    plain.is_deform[3] = False
    np.testing.assert_allclose(skip.weights, Predictor(mode="heat").predict(plain).weights, atol=1e-6)


def test_evaluation_methods_for_both_ways(tmp_path):
    from backend.evaluation.baselines import make_method
    from conftest import export_tiny_model

    rig = named_chain(["bone_0", "bone_1", "bone_2", "bone_2_end"])
    _, heat = make_method("heat")
    label, heat_skip = make_method("heat:skip_helpers=1")
    assert label == "heat:skip_helpers=1"
    assert np.asarray(heat(rig))[:, 3].max() > 0.5 and np.asarray(heat_skip(rig))[:, 3].max() == 0.0
    path = export_tiny_model(tmp_path / "m.onnx", k_bones=3)
    (l_skip, skip), (l_all, every) = make_method(f"model:{path}"), make_method(f"model-all-bones:{path}")
    assert (l_skip, l_all) == ("model:m", "model-all-bones:m")
    assert skip(rig)[:, 3].max() == 0.0 and every(rig)[:, 3].max() > 0.0
