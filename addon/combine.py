"""Merge a prediction with the weights the user keeps (locked groups, unselected bones) and
choose which vertex rows get written. Pure numpy; no bpy.

Vocabulary (J = every bone of the armature, in ``arm.data.bones`` order):

* free bones: deform bones whose groups Auto Skin rewrites;
* kept bones: deform bones whose groups stay exactly as they are (locked groups when "respect
  locked" is on, unselected bones when "only selected bones" is on);
* non-deform bones never get weight and their groups (like every unrelated group) are untouched.
"""
from __future__ import annotations

import numpy as np

from backend.inference.postprocess import limit_influences, normalize_rows

#: A row whose kept weights leave less than this gives the free bones nothing: what is left is the
#: rounding of float32 weights that already sum to 1 (Blender's Armature modifier divides each
#: vertex by its weight sum, so it deforms nothing), and writing it would add dust-sized weights that
#: game exporters count as influences.
REMAINDER_TOLERANCE = 1e-4


def fill_remainder(predicted: np.ndarray, kept: np.ndarray, free: np.ndarray, max_influences: int) -> np.ndarray:
    """Weights of the free bones, scaled to fill what the kept bones leave of each row.

    predicted: (V, J) rows summing to 1 over the free bones (the runtime's output).
    kept: (V, J) raw weights of the kept bones (zero in the other columns); they stay exactly.
    free: (J,) bool.
    max_influences: limit on non-zero weights per final row, kept + free (0: unlimited); a row whose
    kept bones already use the whole budget gets no free weight.
    Returns (V, J) float32, zero outside ``free``; row sums = clip(1 - kept row sum, 0, 1), and 0
    where that is below :data:`REMAINDER_TOLERANCE`.
    """
    predicted = np.asarray(predicted)
    kept = np.asarray(kept)
    free = np.asarray(free, bool)
    if predicted.shape != kept.shape or predicted.shape[1] != free.shape[0]:
        raise ValueError(f"shapes differ: predicted {predicted.shape}, kept {kept.shape}, free {free.shape}")
    V = predicted.shape[0]
    p = np.clip(predicted[:, free].astype(np.float64), 0.0, None)  # (V, Jf)
    kept = np.clip(kept[:, ~free].astype(np.float64), 0.0, None)  # (V, J - Jf)
    remainder = np.clip(1.0 - kept.sum(axis=1), 0.0, 1.0)
    remainder[remainder < REMAINDER_TOLERANCE] = 0.0
    out_free = np.zeros_like(p)
    has = p.sum(axis=1) > 0.0
    if max_influences > 0:
        budget = max_influences - np.count_nonzero(kept > 0.0, axis=1)
    else:
        budget = np.full(V, 0, dtype=np.int64)  # 0 means unlimited for limit_influences
    del kept
    for b in np.unique(budget):
        rows = np.flatnonzero((budget == b) & has)
        if not len(rows):
            continue
        if max_influences > 0 and b <= 0:
            continue  # the kept bones use every allowed influence
        sub = p if len(rows) == V else p[rows]
        if b <= 0 or np.count_nonzero(sub, axis=1).max() <= b:
            # no row holds more than b bones: the limit keeps every weight and only renormalises
            limited = normalize_rows(sub)
        else:
            limited = limit_influences(sub, int(b))
        if len(rows) == V:
            out_free = limited
        else:
            out_free[rows] = limited
    out_free *= remainder[:, None]
    out = np.zeros(predicted.shape, np.float32)
    out[:, free] = out_free
    return out


def rows_to_write(num_vertices: int, selected: np.ndarray | None, deform_weight: np.ndarray) -> np.ndarray:
    """(V,) bool rows Auto Skin writes: all when ``selected`` is None, else the selected vertices
    plus every vertex without any deform weight (so no vertex is left unweighted).

    selected: (V,) bool or None; deform_weight: (V, J) raw weights of all deform bones.
    """
    if selected is None:
        return np.ones(num_vertices, dtype=bool)
    selected = np.asarray(selected, bool).reshape(-1)
    if selected.shape[0] != num_vertices:
        raise ValueError(f"selection has {selected.shape[0]} entries for {num_vertices} vertices")
    empty = np.asarray(deform_weight).sum(axis=1) <= 0.0
    return selected | empty


def compose(old_free: np.ndarray, new_free: np.ndarray, write: np.ndarray) -> np.ndarray:
    """(V, J) free-bone columns to store: ``new_free`` on written rows, ``old_free`` elsewhere."""
    return np.where(np.asarray(write, bool)[:, None], new_free, old_free).astype(np.float32)


def prediction_record(previous: np.ndarray | None, final: np.ndarray, written: np.ndarray,
                      free: np.ndarray) -> np.ndarray:
    """(V, J) float32 record of what Auto Skin itself wrote, kept for the export of corrections.

    The cells written now (free bones on ``written`` rows) take ``final``; every other cell keeps the
    ``previous`` record, so a partial re-run never hides the artist's fixes elsewhere. Without a
    previous record the current weights (``final``) stand for it.
    """
    final = np.asarray(final, np.float32)
    if previous is None:
        return final.copy()
    out = np.array(previous, dtype=np.float32)
    if out.shape != final.shape:
        raise ValueError(f"shapes differ: previous record {out.shape}, weights {final.shape}")
    cells = np.asarray(written, bool)[:, None] & np.asarray(free, bool)[None, :]
    out[cells] = final[cells]
    return out
