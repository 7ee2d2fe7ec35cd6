"""Artists' corrections exported by the add-on: read, check, de-duplicate, mark the changed vertices.

A correction file is a rig ``.npz`` (``backend.io.npz`` layout) whose ``weights`` are the weights
the artist settled on, plus what the add-on stores beside them (``addon/export_corrections.py``):
``predicted_weights`` (V, J) float32 -- what Auto Skin wrote before the artist edited it --,
``model_version`` (str) and ``source_file`` (str). numpy only (no torch).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from backend.io.npz import load_npz
from backend.rig import Rig, RigError

#: |row sum - 1| above this (for a row with weight) means the weights are not normalised.
SUM_TOL = 1e-3
#: default: a vertex counts as changed when sum_j |w_corrected - w_predicted| exceeds this.
CHANGED_THRESHOLD = 0.05
#: the arrays that identify a correction (two files with equal arrays are duplicates).
HASHED = ("vertices", "faces", "joints", "parents", "weights")


@dataclass
class Correction:
    """One usable correction.

    rig: the rig with the corrected (V, J) float32 weights; predicted: (V, J) float32 or None when
    the export carried no prediction; changed: (V,) bool vertices the artist changed (all False
    without a prediction); content_hash: sha256 hex of the rig + weights arrays.
    """

    path: Path
    rig: Rig
    predicted: Optional[np.ndarray]
    changed: np.ndarray
    content_hash: str
    model_version: str = ""
    source_file: str = ""

    @property
    def num_changed(self) -> int:
        return int(self.changed.sum())

    def card_entry(self) -> dict:
        """What a model card records about this correction."""
        return {"file": self.path.name, "sha256": self.content_hash, "vertices": self.rig.num_vertices,
                "bones": self.rig.num_bones, "changed_vertices": self.num_changed,
                "has_prediction": self.predicted is not None, "model_version": self.model_version,
                "source_file": self.source_file}


@dataclass
class CorrectionSet:
    """The outcome of reading a folder: usable corrections, refused files (path, reason) and
    duplicates (path, path of the file it repeats)."""

    accepted: list[Correction] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)

    def report_lines(self) -> list[str]:
        out = [f"{len(self.accepted)} correction(s) accepted, {len(self.rejected)} refused, "
               f"{len(self.duplicates)} duplicate(s) skipped"]
        for c in self.accepted:
            pred = f"{c.num_changed} changed vertices" if c.predicted is not None else "no stored prediction"
            out.append(f"  ok   {c.path.name}: {c.rig.num_vertices} vertices, {c.rig.num_bones} bones, {pred}")
        for p, why in self.rejected:
            out.append(f"  bad  {p.name}: {why}")
        for p, first in self.duplicates:
            out.append(f"  dup  {p.name}: same rig and weights as {first.name}")
        return out


def content_hash(rig: Rig) -> str:
    """sha256 hex over the vertices, faces, joints, parents, bone names and weights (shape, dtype, bytes)."""
    h = hashlib.sha256()
    arrays = {"vertices": rig.vertices, "faces": rig.faces, "joints": rig.joints, "parents": rig.parents,
              "weights": rig.weights if rig.weights is not None else np.zeros((0,), np.float32)}
    for key in HASHED:
        arr = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    h.update("\n".join(rig.joint_names).encode())
    return h.hexdigest()


def changed_vertices(corrected: np.ndarray, predicted: np.ndarray, threshold: float = CHANGED_THRESHOLD
                     ) -> np.ndarray:
    """(V,) bool: sum_j |corrected[v] - predicted[v]| > threshold. Both (V, J)."""
    return np.abs(np.asarray(corrected, np.float64) - np.asarray(predicted, np.float64)).sum(axis=1) > threshold


def vertex_loss_weights(changed: np.ndarray, changed_weight: float) -> np.ndarray:
    """(V,) float32 loss weight per vertex: ``changed_weight`` where changed, 1 elsewhere."""
    return np.where(np.asarray(changed, bool), np.float32(changed_weight), np.float32(1.0)).astype(np.float32)


def _text(value) -> str:
    arr = np.asarray(value)
    return str(arr.reshape(-1)[0]) if arr.size else ""


def check_correction(path: str | Path, threshold: float = CHANGED_THRESHOLD, sum_tol: float = SUM_TOL) -> Correction:
    """Read and check one correction file; RigError naming the file and the problem if it is unusable.

    Checks: readable rig (shapes, finite, hierarchy), weights present and non-negative, every row
    summing to 1 or 0, weight on at least one deform bone, no weight on non-deform bones, unique
    bone names, and a ``predicted_weights`` array of the same (V, J) shape when present.
    """
    path = Path(path)
    rig = load_npz(path)  # RigError for unreadable / malformed files
    if rig.weights is None:
        raise RigError(f"{path}: has no 'weights' array (not a corrected-weights export)")
    w = rig.weights
    if len(set(rig.joint_names)) != len(rig.joint_names):
        dup = sorted({n for n in rig.joint_names if rig.joint_names.count(n) > 1})
        raise RigError(f"{path}: bone names repeat ({', '.join(dup[:5])}); cannot tell the bones apart")
    sums = w.sum(axis=1)
    weighted = sums > 1e-6
    if not weighted.any():
        raise RigError(f"{path}: every vertex has zero weight")
    bad = np.flatnonzero(weighted & (np.abs(sums - 1.0) > sum_tol))
    if len(bad):
        raise RigError(f"{path}: weights are not normalised: {len(bad)} vertices sum to "
                       f"{float(sums[bad].min()):.4g}..{float(sums[bad].max()):.4g} instead of 1 "
                       f"(vertex {int(bad[0])} first)")
    off = ~rig.is_deform
    if off.any() and (w[:, off] > 1e-6).any():
        j = int(np.flatnonzero(off & (w > 1e-6).any(axis=0))[0])
        raise RigError(f"{path}: non-deform bone {rig.joint_names[j]!r} carries weight")
    pred = rig.extra.pop("predicted_weights", None)
    changed = np.zeros(rig.num_vertices, bool)
    if pred is not None:
        pred = np.asarray(pred)
        if pred.shape != w.shape:
            raise RigError(f"{path}: predicted_weights have shape {pred.shape}, the weights {w.shape}")
        if not np.issubdtype(pred.dtype, np.floating) or not np.all(np.isfinite(pred)):
            raise RigError(f"{path}: predicted_weights are not finite numbers")
        pred = pred.astype(np.float32)
        changed = changed_vertices(w, pred, threshold)
    version = _text(rig.extra.pop("model_version", ""))
    source = _text(rig.extra.pop("source_file", ""))
    return Correction(path=path, rig=rig, predicted=pred, changed=changed, content_hash=content_hash(rig),
                      model_version=version, source_file=source)


def list_correction_files(folder: str | Path) -> list[Path]:
    """Sorted ``*.npz`` files of ``folder`` (RigError if it is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RigError(f"{folder}: no such corrections folder")
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


def read_corrections(folder: str | Path, threshold: float = CHANGED_THRESHOLD) -> CorrectionSet:
    """Check every ``.npz`` of ``folder``; broken files are refused with the reason, and a file whose
    rig + weights repeat an earlier one (by :func:`content_hash`, files in name order) is skipped."""
    out = CorrectionSet()
    seen: dict[str, Path] = {}
    for path in list_correction_files(folder):
        try:
            c = check_correction(path, threshold)
        except RigError as exc:
            msg = str(exc)
            prefix = f"{path}: "
            out.rejected.append((path, msg[len(prefix):] if msg.startswith(prefix) else msg))
            continue
        if c.content_hash in seen:
            out.duplicates.append((path, seen[c.content_hash]))
            continue
        seen[c.content_hash] = path
        out.accepted.append(c)
    return out
