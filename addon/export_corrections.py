"""Remember what Auto Skin predicted for a mesh, and export the user's corrected weights as training data.

The prediction is stored on the mesh object itself (custom properties, sparse, float32), so it
survives saving and reopening the .blend: ``autoskin_pred_rows`` / ``_cols`` (int32),
``autoskin_pred_vals`` (float32), ``autoskin_pred_bones`` (bone names joined by newlines),
``autoskin_pred_shape`` ([V, J]) and ``autoskin_model_version``.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import bpy
import numpy as np
from bpy.props import StringProperty

from backend.io.atomic import unique_path
from backend.io.npz import save_npz
from backend.rig import RigError, validate_rig

from . import preferences
from .gather import UsageError, pick_objects, pre_armature_vertices

PREFIX = "autoskin_pred_"
KEY_VERSION = "autoskin_model_version"


def store_prediction(obj: bpy.types.Object, weights: np.ndarray, bone_names: Sequence[str], model_version: str) -> None:
    """Keep (V, J) predicted weights of ``obj`` (J = ``bone_names``) on the object, sparse."""
    w = np.asarray(weights, np.float32)
    rows, cols = np.nonzero(w)
    values = {
        PREFIX + "rows": rows.astype(np.int32),
        PREFIX + "cols": cols.astype(np.int32),
        PREFIX + "vals": w[rows, cols].astype(np.float32),
        PREFIX + "bones": "\n".join(bone_names),
        PREFIX + "shape": np.array(w.shape, dtype=np.int32),
        KEY_VERSION: str(model_version),
    }
    for key, val in values.items():
        # Blender 5.0 writes a buffer into an existing array property of another length in place
        # (heap corruption): always drop the old property first.
        if key in obj:
            del obj[key]
        obj[key] = val


def merge_versions(old: str, new: str) -> str:
    """The model versions of a record that keeps cells written by ``old`` (comma-separated, '' for
    none) and adds cells written by ``new``: 'v1,v2'; ``new`` alone when nothing older is kept."""
    seen = [v for v in old.split(",") if v]
    return ",".join(seen + [new] if new not in seen else seen)


def load_prediction(obj: bpy.types.Object, bone_names: Sequence[str]) -> Optional[np.ndarray]:
    """(V, len(bone_names)) float32 stored prediction re-ordered to ``bone_names`` (bones it did not
    know get zeros), or None when there is none or it no longer fits the mesh."""
    keys = [PREFIX + k for k in ("rows", "cols", "vals", "bones", "shape")]
    if any(k not in obj for k in keys):
        return None
    V, J = (int(x) for x in np.asarray(obj[PREFIX + "shape"]))
    if V != len(obj.data.vertices):
        return None
    stored_names = str(obj[PREFIX + "bones"]).split("\n")
    if len(stored_names) != J:
        return None
    rows = np.frombuffer(obj[PREFIX + "rows"], dtype=np.int32)
    cols = np.frombuffer(obj[PREFIX + "cols"], dtype=np.int32)
    vals = np.frombuffer(obj[PREFIX + "vals"], dtype=np.float32)
    if not (len(rows) == len(cols) == len(vals)):
        return None
    index = {n: j for j, n in enumerate(bone_names)}
    remap = np.array([index.get(n, -1) for n in stored_names], dtype=np.int64)
    out = np.zeros((V, len(bone_names)), dtype=np.float32)
    keep = remap[cols] >= 0
    out[rows[keep], remap[cols[keep]]] = vals[keep]
    return out


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "rig"


def export_corrections(context, directory: str) -> tuple[str, bool]:
    """Write the selected meshes + armature + current weights (+ stored prediction) as a new .npz
    in ``directory``; returns (path, prediction included). Never overwrites a file."""
    from backend.blender.scene import read_rig

    arm, meshes = pick_objects(context)
    rig = read_rig(meshes, arm, evaluated_before_armature=False, validate=False)
    rig.vertices = np.concatenate(pre_armature_vertices(context, meshes, arm, []))
    if rig.weights is None or not rig.weights.any():
        raise UsageError(f"Export: {', '.join(o.name for o in meshes)} carry no weights of "
                         f"'{arm.name}' deform bones; nothing to export")
    preds = [load_prediction(o, rig.joint_names) for o in meshes]
    source = os.path.basename(bpy.data.filepath) or "unsaved.blend"
    extra = {"source_file": np.array(source)}
    versions = sorted({str(o.get(KEY_VERSION, "")) for o in meshes} - {""})
    have_pred = all(p is not None for p in preds)
    if have_pred:
        extra["predicted_weights"] = np.concatenate(preds)
    extra["model_version"] = np.array(",".join(versions) if have_pred else "")
    stem = _safe_stem(os.path.splitext(source)[0]) + "_" + _safe_stem(arm.name)
    rig.name = stem
    validate_rig(rig)
    path = unique_path(os.path.join(directory, stem + ".npz"))
    save_npz(rig, path, **extra)
    return str(path), have_pred


class AUTOSKIN_OT_export_corrections(bpy.types.Operator):
    """Save the selected mesh(es), armature and current weights as a training file for fine-tuning"""

    bl_idname = "autoskin.export_corrections"
    bl_label = "Export Corrected Weights"
    bl_options = {"REGISTER"}

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="", options={"SKIP_SAVE"},
                              description="Target folder (empty: the one set in the preferences)")

    def execute(self, context):
        folder = bpy.path.abspath(self.directory) if self.directory else preferences.export_dir(
            preferences.get_preferences(context))
        try:
            path, with_pred = export_corrections(context, folder)
        except (RigError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001 - a one-line report, never a traceback
            self.report({"ERROR"}, f"Export failed: {type(exc).__name__}: {exc}")
            return {"CANCELLED"}
        note = "with" if with_pred else "without (run Auto Skin first to record one)"
        self.report({"INFO"}, f"Exported {path} {note} the model's prediction")
        return {"FINISHED"}
