"""Blender's own bone heat weighting ("Parent with Automatic Weights") run headless on a Rig.

A baseline and a fallback: the mesh and armature are built from the rig's arrays in a scratch
scene, ``parent_set(type='ARMATURE_AUTO')`` computes the weights, and everything is removed again
so that many rigs can be processed in one process.
"""
from __future__ import annotations

import time

import bpy
import numpy as np

from backend.blender.scene import build_armature, build_mesh_data, read_vertex_group_weights, remove_objects
from backend.rig import Rig, RigError, sanitize_weights


def bone_heat_weights(rig: Rig) -> tuple[np.ndarray, dict]:
    """Bone heat weights of the deform bones of ``rig``.

    Returns ((V, J) float32 weights over all rig bones (non-deform columns zero; rows normalised
    where nonzero, all-zero rows where Blender silently failed to reach a vertex), info dict with
    ``unweighted_vertices`` int, ``seconds`` float (all of it: building the scene, the operator,
    reading the groups back), ``operator_seconds`` float (the ``parent_set`` call alone, what a user
    waits for), ``failed`` bool, ``message`` str).

    Heat weighting depends on scale (Blender's internal distance thresholds are absolute): the rig
    is used in the world coordinates given, as a Blender user would apply it at their scale.
    """
    if rig.num_vertices == 0 or len(rig.faces) == 0:
        raise RigError(f"{rig.name}: bone heat needs a mesh with faces")
    t0 = time.perf_counter()
    scene = bpy.data.scenes.new("autoskin_boneheat")
    window_scene = bpy.context.window.scene if bpy.context.window else None
    mesh_obj = arm_obj = None
    message = ""
    failed = False
    try:
        if bpy.context.window:
            bpy.context.window.scene = scene
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            arm_obj, bone_names = build_armature(rig, "autoskin_heat_armature", scene.collection)
            mesh_obj = bpy.data.objects.new("autoskin_heat", build_mesh_data("autoskin_heat", rig.vertices, rig.faces))
            scene.collection.objects.link(mesh_obj)
            view_layer = scene.view_layers[0]
            for o in view_layer.objects:
                o.select_set(False)
            mesh_obj.select_set(True)
            arm_obj.select_set(True)
            view_layer.objects.active = arm_obj
            t_op = time.perf_counter()
            try:
                result = bpy.ops.object.parent_set(type="ARMATURE_AUTO")
            except RuntimeError as exc:
                failed, message = True, str(exc).strip()
                result = {"CANCELLED"}
            op_seconds = time.perf_counter() - t_op
            if "FINISHED" not in result and not message:
                failed, message = True, f"parent_set returned {sorted(result)}"
            index = {n: j for j, n in enumerate(bone_names)}
            g2b = np.array([index.get(g.name, -1) for g in mesh_obj.vertex_groups], dtype=np.int64)
            raw = read_vertex_group_weights(mesh_obj.data, g2b, rig.num_bones)
    finally:
        remove_objects([mesh_obj, arm_obj])
        if bpy.context.window and window_scene is not None:
            bpy.context.window.scene = window_scene
        bpy.data.scenes.remove(scene)
    if failed:
        raw = np.zeros((rig.num_vertices, rig.num_bones), dtype=np.float32)
    raw[:, ~rig.is_deform] = 0.0
    weights, empty = sanitize_weights(raw)
    unweighted = int(empty.sum())
    if unweighted and not failed:
        failed = unweighted == rig.num_vertices
        message = (f"bone heat found no solution for {unweighted} of {rig.num_vertices} vertices"
                   + (" (all of them)" if failed else ""))
    info = {"unweighted_vertices": unweighted, "seconds": time.perf_counter() - t0, "failed": failed,
            "message": message, "operator_seconds": op_seconds}
    return weights, info
