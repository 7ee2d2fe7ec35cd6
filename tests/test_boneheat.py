"""Blender's bone heat (ARMATURE_AUTO) run headless on arrays."""
from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from backend.blender.boneheat import bone_heat_weights  # noqa: E402
from backend.rig import make_rig  # noqa: E402

pytestmark = pytest.mark.blender


def test_bone_heat_on_capsule_chain(small_rig):
    rig = small_rig(n_bones=3)
    n_objects, n_meshes, n_scenes = len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.scenes)
    w, info = bone_heat_weights(rig.without_weights())
    assert w.shape == (rig.num_vertices, 3) and w.dtype == np.float32
    assert not info["failed"] and info["unweighted_vertices"] == 0 and info["seconds"] > 0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    assert (w >= 0).all()
    assert (w.max(0) > 0.5).all()  # every bone is used, and dominates somewhere
    # vertices around the middle of a bone belong mostly to that bone
    z = rig.vertices[:, 2]
    for j in range(3):
        mid = np.abs(z - (j + 0.5)) < 0.15
        assert w[mid, j].mean() > 0.8
    # nothing is left behind in the session
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.scenes)) == (n_objects, n_meshes, n_scenes)
    assert len([a for a in bpy.data.armatures if a.users == 0]) == 0


def test_bone_heat_skips_control_bones_and_repeats(small_rig):
    base = small_rig(n_bones=2)
    # a non-deform control bone sitting inside the mesh must get no weight
    joints = np.concatenate([base.joints, [[0.0, 0.0, 1.0]]])
    tails = np.concatenate([base.tails, [[0.0, 0.1, 1.0]]])
    rig = make_rig(base.vertices, base.faces, joints, [-1, 0, 0], tails=tails, is_deform=[True, True, False])
    w1, info1 = bone_heat_weights(rig)
    w2, info2 = bone_heat_weights(rig)
    assert not info1["failed"] and not info2["failed"]
    assert (w1[:, 2] == 0).all() and (w1[:, :2].max(0) > 0.5).all()
    np.testing.assert_allclose(w1, w2, atol=1e-6)  # deterministic, independent of earlier calls


def test_bone_heat_columns_follow_rig_order(small_rig):
    rig = small_rig(n_bones=4).without_weights()
    perm = [3, 1, 0, 2]  # children listed before parents
    inv = np.argsort(perm)
    shuffled = make_rig(rig.vertices, rig.faces, rig.joints[perm],
                        np.where(rig.parents[perm] >= 0, inv[rig.parents[perm]], -1), tails=rig.tails[perm],
                        joint_names=[rig.joint_names[p] for p in perm])
    w, _ = bone_heat_weights(rig)
    ws, _ = bone_heat_weights(shuffled)
    np.testing.assert_allclose(ws, w[:, perm], atol=1e-5)
