"""The Auto Skin operator: selected meshes + armature -> one vertex group per deform bone,
Armature modifier and parenting (a drop-in for Ctrl+P > With Automatic Weights).

Order of work: read the scene, predict, combine with the kept weights -- all before anything is
written; then write with a snapshot and restore it if writing fails. One undo step. From the UI
the prediction runs in a worker thread (``job.SkinJob``) with its steps shown in the status bar
and the cursor, and Esc cancels it before anything is written.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Optional

import bpy
import numpy as np

from backend.rig import RigError

from . import _bootstrap, apply, combine, export_corrections, preferences
from .gather import SkinTarget, UsageError, read_target
from .job import WRITE, SkinJob, combine_for_target, device_warnings  # noqa: F401 - re-exported

#: Seconds between progress updates while a job runs (modal operator).
TIMER_STEP = 0.1

_PREDICTORS: dict = {}


class RuntimeMissing(RigError):
    """onnxruntime (or scipy) cannot be imported in this Blender."""


def _import_predictor():
    try:
        from backend.inference.predictor import Predictor
    except ImportError as exc:
        name, runtime = getattr(exc, "name", None) or "", _bootstrap.runtime_package()
        if name == runtime or name.startswith(runtime + "."):
            raise RuntimeMissing(f"Auto Skin: its runtime modules cannot be imported ({exc}); disable and enable "
                                 f"the add-on, or reinstall the extension") from None
        raise RuntimeMissing(
            f"Auto Skin: the runtime cannot be imported ({exc}). onnxruntime and scipy come with the "
            f"extension build for your platform: reinstall the matching zip") from None
    return Predictor


def get_predictor(mode: str, model_file: str, device: str, overrides: dict | None = None,
                  skip_helpers: bool = True, rigid_pieces: bool = False):
    """A cached ``Predictor`` for (mode, model file and its mtime, device, run-time settings, helper
    skipping, rigid pieces); raises RigError subclasses. ``overrides``: the user's run-time settings
    (``preferences.runtime_overrides``), applied over the model's own by the predictor
    (``RuntimeSettings.with_overrides``)."""
    learned = mode == "LEARNED"
    overrides = dict(overrides or {})
    if learned and not os.path.isfile(model_file):
        raise UsageError(f"Auto Skin: model file not found: {model_file}. Choose one in the options or the "
                         f"add-on preferences, or use the Geodesic mode (no model needed)")
    key = (mode, model_file if learned else "", os.path.getmtime(model_file) if learned else 0.0, device,
           tuple(sorted(overrides.items())), bool(skip_helpers), bool(rigid_pieces))
    if key not in _PREDICTORS:
        Predictor = _import_predictor()
        _PREDICTORS.clear()
        _PREDICTORS[key] = Predictor(model_path=model_file if learned else None, mode=mode.lower(),
                                     device=device.lower(), skip_helpers=bool(skip_helpers),
                                     rigid_pieces=bool(rigid_pieces), overrides=overrides)
    return _PREDICTORS[key]


class _Progress:
    """Blender's progress display for a run: the cursor's percent (``window_manager.progress_*``) and
    a status-bar line; both do nothing in background mode (no window)."""

    def __init__(self, context):
        window = None if bpy.app.background else context.window
        self.wm = context.window_manager if window is not None else None
        self.workspace = context.workspace if window is not None else None

    def __enter__(self):
        if self.wm is not None:
            self.wm.progress_begin(0, 100)
        return self

    def update(self, value: float, text: str = "") -> None:
        if self.wm is not None:
            self.wm.progress_update(int(value))
        if self.workspace is not None and text:
            self.workspace.status_text_set(text)

    def __exit__(self, *exc):
        if self.wm is not None:
            self.wm.progress_end()
        if self.workspace is not None:
            self.workspace.status_text_set(None)
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

    def _prepare(self, context) -> Optional[SkinJob]:
        """Read the scene and open the model (main thread): a job ready to run, or None after an
        error report. Nothing in the scene changes."""
        started = time.perf_counter()
        opt = self._options(context)
        try:
            target = read_target(context, opt["only_selected_bones"], opt["respect_locked"],
                                 opt["only_selected_vertices"])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                predictor = get_predictor(opt["mode"], preferences.model_path(opt["model_path"]), opt["device"],
                                          preferences.runtime_overrides(opt), opt["skip_helper_bones"],
                                          opt["rigid_pieces"])
            target.warnings.extend(device_warnings(caught))
        except RigError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - nothing is written yet; tell the user why
            self.report({"ERROR"}, f"Auto Skin failed: {type(exc).__name__}: {exc}")
            return None
        job = SkinJob(target, predictor, opt)
        job.started = started
        return job

    def execute(self, context):
        """Run to the end within this call (scripts, the redo panel, background mode)."""
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        with _Progress(context) as progress:
            job.on_progress = lambda stage, percent: progress.update(percent)
            job.run()
            return self._finish(job, progress)

    def invoke(self, context, event):
        """From the UI: predict in a worker thread with the steps in the status bar; Esc cancels and
        leaves the scene as it was. Without a window (background mode) this is :meth:`execute`."""
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        self._job = job
        self._progress = _Progress(context).__enter__()
        self._progress.update(job.percent, job.status())
        self._timer = context.window_manager.event_timer_add(TIMER_STEP, window=context.window)
        job.start()
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        """Esc cancels; each tick of the timer shows the progress, and writes the job's result once it
        is done. Other events are held back while the job runs, so the scene cannot change under it."""
        job = self._job
        if event.type == "ESC":
            job.cancel()
            self._end_modal(context)
            self.report({"WARNING"}, "Auto Skin cancelled; nothing was changed")
            return {"CANCELLED"}
        if not job.done.is_set():
            self._progress.update(job.percent, job.status())
            return {"RUNNING_MODAL"}
        progress = self._progress
        self._end_modal(context, close_progress=False)
        try:
            return self._finish(job, progress)
        finally:
            progress.__exit__(None, None, None)

    def _end_modal(self, context, close_progress: bool = True) -> None:
        """Remove the timer and (``close_progress``) the progress display of a modal run."""
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if close_progress and getattr(self, "_progress", None) is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def _finish(self, job: SkinJob, progress: _Progress) -> set:
        """Report a failed or cancelled job, else write its result (all or nothing) and report."""
        if job.cancelled:
            self.report({"WARNING"}, "Auto Skin cancelled; nothing was changed")
            return {"CANCELLED"}
        if job.error is not None:
            exc = job.error
            self.report({"ERROR"}, str(exc) if isinstance(exc, RigError)
                        else f"Auto Skin failed: {type(exc).__name__}: {exc}")
            return {"CANCELLED"}
        target, opt, res = job.target, job.opt, job.result
        pred = res.pred
        target.warnings.extend(res.warnings)
        progress.update(WRITE, f"Auto Skin: writing vertex groups ({WRITE:.0f} %)")
        try:
            changed = [o.name for o, n in zip(target.meshes, target.counts) if len(o.data.vertices) != n]
        except ReferenceError:
            changed = ["a removed mesh"]
        if changed:
            self.report({"ERROR"}, f"Auto Skin: {', '.join(changed)} changed while predicting; nothing was written")
            return {"CANCELLED"}
        version = str(pred.info.get("model_version", "geodesic" if opt["mode"] == "GEODESIC" else "unknown"))
        records = _records(target, res.final, res.written, version)
        # the scene has not changed since it was read (a modal run holds every event back)
        members = target.members if len(target.members) == len(target.meshes) else None
        snaps = [apply.snapshot(o, _pred_keys(), None if members is None else members[i])
                 for i, o in enumerate(target.meshes)]
        try:
            apply.write_result(target.meshes, target.arm, target.bone_names, target.free, res.columns,
                               target.counts, members=members)
            for obj, (record, record_version) in zip(target.meshes, records):
                export_corrections.store_prediction(obj, record, target.bone_names, record_version)
        except Exception as exc:  # noqa: BLE001 - undo our partial writing, then report
            for snap in snaps:
                apply.restore(snap)
            self.report({"ERROR"}, f"Auto Skin: writing the weights failed, nothing was changed "
                                   f"({type(exc).__name__}: {exc})")
            return {"CANCELLED"}
        progress.update(100)
        written = int(res.written.sum())
        skipped = len(pred.info.get("helper_bones_skipped", []))
        helpers = f" ({skipped} helper bones left empty)" if skipped else ""
        rigid = pred.info.get("rigid_pieces", 0)
        helpers += f" ({rigid} separate parts made rigid)" if rigid else ""
        enclosed = pred.info.get("enclosed_pieces", 0)
        helpers += f" ({enclosed} separate parts given to the bone they enclose)" if enclosed else ""
        mix = settings_note(pred.info, opt["mode"] == "LEARNED")
        self.report({"INFO"}, f"Auto Skin: {written}/{target.rig.num_vertices} vertices, {int(target.free.sum())} "
                              f"bones{helpers}, {opt['mode'].lower()}{mix} on {pred.provider}, "
                              f"{time.perf_counter() - job.started:.2f} s")
        for w in target.warnings:  # after the summary: the status bar shows the last report
            self.report({"WARNING"}, w)
        return {"FINISHED"}


def settings_note(info: dict, learned: bool) -> str:
    """' (network share 0.80, sharpness 1.5, diffusion 0.5 %)' for the status line: the mix and the
    clean-up a prediction used (``Prediction.info``), each only when it applies; '' when none does."""
    share = info.get("prior_blend")
    sharp = info.get("sharpen", 1.0) if learned else 1.0
    spread = info.get("diffuse", 0.0)
    parts = ([f"network share {share:.2f}"] if share is not None else []) + (
        [f"sharpness {sharp:g}"] if sharp != 1.0 else []) + ([f"diffusion {spread:g} %"] if spread else [])
    return f" ({', '.join(parts)})" if parts else ""


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
