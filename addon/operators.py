"""The Auto Skin operator: selected meshes + armature -> one vertex group per deform bone,
Armature modifier and parenting (a drop-in for Ctrl+P > With Automatic Weights).

Order of work: read the scene, predict, combine with the kept weights -- all before anything is
written; then write with a snapshot and restore it if writing fails. One undo step.
"""
from __future__ import annotations

import os
import time
import warnings

import bpy
import numpy as np

from backend.rig import RigError

from . import apply, combine, export_corrections, preferences
from .gather import SkinTarget, UsageError, read_target

_PREDICTORS: dict = {}


class RuntimeMissing(RigError):
    """onnxruntime (or scipy) cannot be imported in this Blender."""


def _import_predictor():
    try:
        from backend.inference.predictor import Predictor
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").split(".")[0] == "backend":
            raise RuntimeMissing(f"Auto Skin: its runtime modules cannot be imported ({exc}); disable and enable "
                                 f"the add-on, or reinstall the extension") from None
        raise RuntimeMissing(
            f"Auto Skin: the runtime cannot be imported ({exc}). onnxruntime and scipy come with the "
            f"extension build for your platform: reinstall the matching zip") from None
    return Predictor


def get_predictor(mode: str, model_file: str, device: str, prior_blend: float | None = None,
                  skip_helpers: bool = True, rigid_pieces: bool = False, sharpen: float | None = None):
    """A cached ``Predictor`` for (mode, model file and its mtime, device, prior blend, helper skipping,
    rigid pieces, sharpening);
    raises RigError subclasses. ``prior_blend`` / ``sharpen`` None: the value stored in the model."""
    learned = mode == "LEARNED"
    prior_blend = prior_blend if learned else None
    sharpen = sharpen if learned else None
    if learned and not os.path.isfile(model_file):
        raise UsageError(f"Auto Skin: model file not found: {model_file}. Choose one in the options or the "
                         f"add-on preferences, or use the Geodesic mode (no model needed)")
    key = (mode, model_file if learned else "", os.path.getmtime(model_file) if learned else 0.0, device, prior_blend,
           bool(skip_helpers), bool(rigid_pieces), sharpen)
    if key not in _PREDICTORS:
        Predictor = _import_predictor()
        _PREDICTORS.clear()
        _PREDICTORS[key] = Predictor(model_path=model_file if learned else None, mode=mode.lower(),
                                     device=device.lower(), prior_blend=prior_blend,
                                     skip_helpers=bool(skip_helpers), rigid_pieces=bool(rigid_pieces),
                                     sharpen=sharpen)
    return _PREDICTORS[key]


class _Progress:
    """window_manager progress that does nothing in background mode."""

    def __init__(self, context):
        self.wm = None if bpy.app.background else context.window_manager

    def __enter__(self):
        if self.wm is not None:
            self.wm.progress_begin(0, 100)
        return self

    def update(self, value: int) -> None:
        if self.wm is not None:
            self.wm.progress_update(value)

    def __exit__(self, *exc):
        if self.wm is not None:
            self.wm.progress_end()
        return False


class AUTOSKIN_OT_auto_skin(bpy.types.Operator):
    """Skin the selected meshes to the active armature with Auto Skin (learned or geodesic weights)"""

    bl_idname = "autoskin.auto_skin"
    bl_label = "Auto Skin"
    bl_options = {"REGISTER", "UNDO"}
    __annotations__ = preferences.option_properties(operator=True)

    def _options(self, context) -> dict:
        """Operator values; options not set by the caller come from the preferences."""
        prefs = preferences.get_preferences(context)
        preferences.migrate(prefs)
        out = {}
        for name in preferences.OPTION_NAMES:
            if prefs is not None and not self.properties.is_property_set(name):
                setattr(self, name, getattr(prefs, name))
            out[name] = getattr(self, name)
        return out

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        for name in preferences.OPTION_NAMES:
            if name in preferences.LEARNED_ONLY and self.mode != "LEARNED":
                continue
            layout.prop(self, name, text=preferences.option_label(self.properties, name))

    def execute(self, context):
        opt = self._options(context)
        t0 = time.perf_counter()
        with _Progress(context) as progress:
            try:
                target = read_target(context, opt["only_selected_bones"], opt["respect_locked"],
                                     opt["only_selected_vertices"])
                progress.update(10)
                blend, sharpen, smooth, diffuse = (preferences.override(name, opt[name]) for name in
                                                   ("network_share", "sharpness", "smoothing", "diffusion"))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    predictor = get_predictor(opt["mode"], preferences.model_path(opt["model_path"]),
                                              opt["device"], blend, opt["skip_helper_bones"], opt["rigid_pieces"],
                                              sharpen)
                    progress.update(20)
                    pred = predictor.predict(target.rig, max_influences=opt["max_influences"],
                                             prune=opt["prune_threshold"],
                                             smooth=None if smooth is None else int(smooth),
                                             diffuse=diffuse)
                target.warnings.extend(device_warnings(caught))
                progress.update(80)
                final, columns, written = combine_for_target(target, pred.weights, opt)
            except RigError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            except Exception as exc:  # noqa: BLE001 - nothing is written yet; tell the user why
                self.report({"ERROR"}, f"Auto Skin failed: {type(exc).__name__}: {exc}")
                return {"CANCELLED"}
            version = str(pred.info.get("model_version", "geodesic" if opt["mode"] == "GEODESIC" else "unknown"))
            records = _records(target, final, written, version)
            snaps = [apply.snapshot(o, _pred_keys()) for o in target.meshes]
            try:
                apply.write_result(target.meshes, target.arm, target.bone_names, target.free, columns,
                                   target.counts)
                for obj, (record, record_version) in zip(target.meshes, records):
                    export_corrections.store_prediction(obj, record, target.bone_names, record_version)
            except Exception as exc:  # noqa: BLE001 - undo our partial writing, then report
                for snap in snaps:
                    apply.restore(snap)
                self.report({"ERROR"}, f"Auto Skin: writing the weights failed, nothing was changed "
                                       f"({type(exc).__name__}: {exc})")
                return {"CANCELLED"}
            progress.update(100)
        written = int(written.sum())
        skipped = len(pred.info.get("helper_bones_skipped", []))
        helpers = f" ({skipped} helper bones left empty)" if skipped else ""
        rigid = pred.info.get("rigid_pieces", 0)
        helpers += f" ({rigid} separate parts made rigid)" if rigid else ""
        mix = settings_note(pred.info, opt["mode"] == "LEARNED")
        self.report({"INFO"}, f"Auto Skin: {written}/{target.rig.num_vertices} vertices, {int(target.free.sum())} "
                              f"bones{helpers}, {opt['mode'].lower()}{mix} on {pred.provider}, "
                              f"{time.perf_counter() - t0:.2f} s")
        for w in target.warnings:  # after the summary: the status bar shows the last report
            self.report({"WARNING"}, w)
        return {"FINISHED"}


def device_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The runtime's fallbacks from CUDA to the CPU among recorded warnings, as status lines (the
    runtime warns when it opens a session; sessions are cached, so once per model and device)."""
    out = []
    for rec in caught:
        text = str(rec.message)
        line = f"Auto Skin: {text}"
        if issubclass(rec.category, RuntimeWarning) and "running on the CPU" in text and line not in out:
            out.append(line)
    return out


def settings_note(info: dict, learned: bool) -> str:
    """' (network share 0.80, sharpness 1.5, diffusion 0.5 %)' for the status line: the mix and the
    clean-up a prediction used (``Prediction.info``), each only when it applies; '' when none does."""
    share = info.get("prior_blend")
    sharp = info.get("sharpen", 1.0) if learned else 1.0
    spread = info.get("diffuse", 0.0)
    parts = ([f"network share {share:.2f}"] if share is not None else []) + (
        [f"sharpness {sharp:g}"] if sharp != 1.0 else []) + ([f"diffusion {spread:g} %"] if spread else [])
    return f" ({', '.join(parts)})" if parts else ""


def combine_for_target(target, predicted: np.ndarray, opt: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(final (V, J) deform weights after writing, (V, Jf) columns to write for the free bones,
    (V,) bool rows written)."""
    kept = target.raw * target.kept[None, :]
    new = combine.fill_remainder(predicted, kept, target.free, opt["max_influences"])
    deform_raw = target.raw * target.deform[None, :]
    written = combine.rows_to_write(
        target.rig.num_vertices, target.selected if opt["only_selected_vertices"] else None, deform_raw)
    columns = combine.compose(target.raw[:, target.free], new[:, target.free], written)
    final = deform_raw.copy()
    final[:, target.free] = columns
    return final.astype(np.float32), columns, written


def _records(target: SkinTarget, final: np.ndarray, written: np.ndarray,
             version: str) -> list[tuple[np.ndarray, str]]:
    """Per mesh, (the (V_i, J) record of what Auto Skin wrote, its model versions) after this run: the
    cells written now replace the mesh's earlier record, the other cells keep it."""
    out, start = [], 0
    for obj, n in zip(target.meshes, target.counts):
        rows = slice(start, start + n)
        start += n
        previous = export_corrections.load_prediction(obj, target.bone_names)
        record = combine.prediction_record(previous, final[rows], written[rows], target.free)
        everything = bool(written[rows].all() and target.free[target.deform].all())
        old = "" if previous is None or everything else str(obj.get(export_corrections.KEY_VERSION, ""))
        out.append((record, export_corrections.merge_versions(old, version)))
    return out


def _pred_keys() -> list:
    return [export_corrections.PREFIX + k for k in ("rows", "cols", "vals", "bones", "shape")] + [
        export_corrections.KEY_VERSION]
