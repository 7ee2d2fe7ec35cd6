"""Auto Skin's computation as a job that reports progress in real steps and can be cancelled.

The job gets the arrays read from the scene (``gather.SkinTarget``) and returns the arrays to write;
it never touches bpy data, so the operator can run it in a worker thread while Blender stays
responsive, show its progress in the status bar and the cursor, and stop it when the user presses
Esc. Reading the scene and writing the groups stay on Blender's main thread, so a cancelled job
leaves the scene exactly as it was.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from backend.inference.progress import Cancelled

from . import combine

#: Percent of the whole run at which each part starts: reading the scene, the prediction
#: (backend.inference.progress.STAGES maps its steps into this span), merging with the kept weights,
#: writing the vertex groups.
READ, PREDICT, COMBINE, WRITE = 0.0, 5.0, 88.0, 92.0

#: Status-bar words for the runtime's stages and the add-on's own.
LABELS = {
    "reading": "reading the scene",
    "checking": "checking the mesh",
    "simplifying": "simplifying",
    "features": "features and priors",
    "network": "network",
    "transfer": "transfer to every vertex",
    "post-processing": "post-processing",
    "combining": "combining with kept weights",
    "writing": "writing vertex groups",
}


@dataclass
class JobResult:
    """What the job computed: the prediction, final (V, J) deform weights after writing, (V, Jf)
    columns to write for the free bones, (V,) bool rows written, and warning lines for the report."""

    pred: object
    final: np.ndarray
    columns: np.ndarray
    written: np.ndarray
    warnings: list = field(default_factory=list)


def combine_for_target(target, predicted: np.ndarray, opt: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(final (V, J) deform weights after writing, (V, Jf) columns to write for the free bones,
    (V,) bool rows written)."""
    kept = target.raw * target.kept[None, :]
    new = combine.fill_remainder(predicted, kept, target.free, opt["max_influences"])
    deform_raw = target.raw * target.deform[None, :]
    written = combine.rows_to_write(
        target.rig.num_vertices, target.selected if opt["only_selected_vertices"] else None, deform_raw)
    columns = combine.compose(target.raw[:, target.free], new[:, target.free], written)
    final = deform_raw
    final[:, target.free] = columns
    return final.astype(np.float32, copy=False), columns, written


def device_warnings(caught: list) -> list[str]:
    """The runtime's fallbacks from CUDA to the CPU among recorded warnings, as status lines (the
    runtime warns when it opens a session; sessions are cached, so once per model and device)."""
    out = []
    for rec in caught:
        text = str(rec.message)
        line = f"Auto Skin: {text}"
        if issubclass(rec.category, RuntimeWarning) and "running on the CPU" in text and line not in out:
            out.append(line)
    return out


class SkinJob:
    """Predict and merge for one ``SkinTarget``; :meth:`run` in any thread, :meth:`cancel` from another.

    ``predictor`` carries the run-time settings (``Predictor.settings``); ``opt`` the operator's
    options (the influence limit and what to write). ``stage`` / ``percent`` tell how far it is (read
    them from the main thread); after :attr:`done` is set, exactly one of ``result``, ``error`` or
    ``cancelled`` holds the outcome. ``on_progress``: also called with (stage, percent) at every step,
    in the job's thread.
    """

    def __init__(self, target, predictor, opt: dict, on_progress: Optional[Callable[[str, float], None]] = None):
        self.target, self.predictor, self.opt = target, predictor, opt
        self.on_progress = on_progress
        self.stage, self.percent = "reading", READ
        self.result: Optional[JobResult] = None
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.done = threading.Event()
        self.started = time.perf_counter()
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next step (the prediction checks between its steps)."""
        self._stop.set()

    def _step(self, stage: str, percent: float) -> None:
        if self._stop.is_set():
            raise Cancelled()
        self.stage, self.percent = stage, float(percent)
        if self.on_progress is not None:
            self.on_progress(stage, self.percent)

    def _predicted(self, stage: str, fraction: float) -> None:
        self._step(stage, PREDICT + (COMBINE - PREDICT) * fraction)

    def status(self) -> str:
        """One status-bar line: the step, the percent done and how to cancel."""
        return (f"Auto Skin: {LABELS.get(self.stage, self.stage)} ({self.percent:.0f} %), "
                f"{time.perf_counter() - self.started:.0f} s - Esc to cancel")

    def run(self) -> None:
        """Predict, merge with the kept weights; sets ``result``, ``error`` or ``cancelled``."""
        try:
            # catch_warnings swaps the process-wide hook: while a job runs in its thread, warnings
            # raised on the main thread are recorded here too (device_warnings keeps only the
            # runtime's CUDA fallback)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._step("checking", PREDICT)
                pred = self.predictor.predict(self.target.rig, max_influences=self.opt["max_influences"],
                                              progress=self._predicted)
            self._step("combining", COMBINE)
            final, columns, written = combine_for_target(self.target, pred.weights, self.opt)
            self._step("writing", WRITE)
            self.result = JobResult(pred, final, columns, written, device_warnings(caught))
        except Cancelled:
            self.cancelled = True
        except BaseException as exc:  # noqa: BLE001 - handed to the operator, which reports it
            self.error = exc
        finally:
            self.done.set()

    def start(self) -> threading.Thread:
        """Run the job in a daemon thread (a cancelled job's thread ends at its next step)."""
        thread = threading.Thread(target=self.run, name="autoskin-job", daemon=True)
        thread.start()
        return thread
