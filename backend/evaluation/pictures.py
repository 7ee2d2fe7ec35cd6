"""Pictures for judging skin weights at a glance (matplotlib, headless Agg).

``rig_pictures`` writes two PNGs for a rig: ``<rig>_weights.png`` (rows: dominant-bone colouring
and weight heat maps of a few bones; columns: ground truth | method A | method B ...) and
``<rig>_poses.png`` (the character in random poses skinned by each method, coloured by the distance
to the ground-truth skinning). Meshes are drawn in orthographic projection with flat shading.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.evaluation.deformation import (bbox_diagonal, global_transforms, linear_blend_skinning,
                                            random_local_rotations)
from backend.io.atomic import atomic_path
from backend.rig import Rig

EMPTY_ROW_TOL = 1e-6
UNWEIGHTED_RGB = np.array([0.05, 0.05, 0.05])


def view_axes(points: np.ndarray) -> tuple[int, int, int]:
    """(horizontal, vertical, depth) axis indices: look along the thinnest bbox axis, Z up when possible."""
    ext = np.ptp(np.asarray(points, dtype=np.float64), axis=0)
    depth = int(np.argmin(ext))
    rest = [a for a in range(3) if a != depth]
    vertical = 2 if depth != 2 else max(rest, key=lambda a: ext[a])
    horizontal = [a for a in rest if a != vertical][0]
    return horizontal, vertical, depth


def draw_mesh(ax, vertices: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray,
              axes: tuple[int, int, int], limits: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Flat-shaded orthographic drawing: vertices (V, 3), faces (F, 3), face_rgb (F, 3) in [0, 1]."""
    from matplotlib.collections import PolyCollection

    h, v, d = axes
    x = np.asarray(vertices, dtype=np.float64)
    tri = x[faces]  # (F, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    shade = 0.35 + 0.65 * np.abs(n[:, d])
    order = np.argsort(tri[:, :, d].mean(axis=1))  # far (small depth) first; we look from +depth
    rgb = np.clip(face_rgb * shade[:, None], 0.0, 1.0)[order]
    poly = tri[order][:, :, [h, v]]
    ax.add_collection(PolyCollection(poly, facecolors=rgb, edgecolors=rgb, linewidths=0.2))
    lo, hi = limits if limits is not None else (x[:, [h, v]].min(0), x[:, [h, v]].max(0))
    pad = 0.03 * float(np.max(hi - lo) + 1e-9)
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def bone_palette(n: int) -> np.ndarray:
    """(n, 3) distinct colours: tab20 then hsv steps."""
    import matplotlib

    base = np.asarray(matplotlib.colormaps["tab20"].colors)[:, :3]
    if n <= len(base):
        return base[:n]
    extra = matplotlib.colormaps["hsv"](np.linspace(0, 1, n - len(base), endpoint=False))[:, :3]
    return np.concatenate([base, 0.6 * extra + 0.2])


def dominant_face_colors(weights: np.ndarray, faces: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(F, 3): colour of the bone with the largest mean corner weight; near black if a corner has no weight."""
    w = np.asarray(weights, dtype=np.float64)
    fw = w[faces].mean(axis=1)
    rgb = palette[np.argmax(fw, axis=1)]
    empty = (w.sum(axis=1) <= EMPTY_ROW_TOL)[faces].any(axis=1)
    rgb[empty] = UNWEIGHTED_RGB
    return rgb


def scalar_face_colors(values: np.ndarray, faces: np.ndarray, cmap: str, vmax: float) -> np.ndarray:
    """(F, 3) colours of the mean corner value (values (V,)) through ``cmap`` on [0, vmax]."""
    import matplotlib

    fv = np.asarray(values, dtype=np.float64)[faces].mean(axis=1) / max(vmax, 1e-12)
    return matplotlib.colormaps[cmap](np.clip(fv, 0, 1))[:, :3]


def error_face_colors(err: np.ndarray, faces: np.ndarray, vmax: float) -> np.ndarray:
    """(F, 3): light grey blended to red by the mean corner error (err (V,)) over [0, vmax]."""
    a = np.clip(np.asarray(err, dtype=np.float64)[faces].mean(axis=1) / max(vmax, 1e-12), 0, 1)[:, None]
    return (1 - a) * np.array([0.85, 0.85, 0.85]) + a * np.array([0.85, 0.0, 0.0])


def pick_bones(truth: np.ndarray, deform: np.ndarray, k: int = 3) -> list[int]:
    """Up to k deform bones with the most blended (0.05 < w < 0.95) ground-truth vertices."""
    w = np.asarray(truth)[:, deform]
    score = ((w > 0.05) & (w < 0.95)).sum(axis=0) + 1e-3 * (w > 0.05).sum(axis=0)
    return [int(deform[i]) for i in np.argsort(-score, kind="stable")[:k] if score[i] > 0]


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
        tmp.chmod(0o644)
    return path


def weights_figure(rig: Rig, preds: dict[str, np.ndarray], path: str | Path, n_heat: int = 3,
                   truth_label: str = "ground truth") -> Path:
    """Rows: dominant bone, then heat maps of ``n_heat`` bones; columns: ``rig.weights`` (titled
    ``truth_label``), then each method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backend.evaluation.metrics import l1_per_vertex, restrict

    cols = {truth_label: rig.weights, **preds}
    deform = rig.deform_indices
    palette = np.zeros((rig.num_bones, 3))
    palette[deform] = bone_palette(len(deform))
    bones = pick_bones(rig.weights, deform, n_heat)
    axes = view_axes(rig.vertices)
    faces = np.asarray(rig.faces, dtype=np.int64)
    nrow, ncol = 1 + len(bones), len(cols)
    fig, axs = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.2 * nrow), squeeze=False)
    for c, (label, w) in enumerate(cols.items()):
        title = label
        if label != truth_label:
            t, p, _ = restrict(rig.weights, w, rig.is_deform)
            unw = int((p.sum(axis=1) <= EMPTY_ROW_TOL).sum())
            title += f"\nL1 {l1_per_vertex(t, p):.3f}" + (f", {unw} unweighted" if unw else "")
        draw_mesh(axs[0, c], rig.vertices, faces, dominant_face_colors(w, faces, palette), axes)
        axs[0, c].set_title(title, fontsize=9)
        for r, b in enumerate(bones, start=1):
            draw_mesh(axs[r, c], rig.vertices, faces, scalar_face_colors(w[:, b], faces, "inferno", 1.0), axes)
            if c == 0:
                axs[r, c].set_ylabel(f"weight of\n{rig.joint_names[b]}", fontsize=8)
    axs[0, 0].set_ylabel("dominant bone\n(black: unweighted)", fontsize=8)
    fig.suptitle(f"{Path(rig.name).stem}: skin weights (heat: 0 black .. 1 yellow)", fontsize=10)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def poses_figure(rig: Rig, preds: dict[str, np.ndarray], path: str | Path, num_poses: int = 3,
                 max_angle_deg: float = 30.0, seed: int = 0, truth_label: str = "ground truth") -> Path:
    """Rows: random poses; columns: ground truth (dominant-bone colours, posed skeleton) then each method
    coloured by vertex distance to the ground-truth skinning (grey 0 .. red >= 3% of the bbox diagonal)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = {truth_label: rig.weights, **preds}
    deform = rig.deform_indices
    palette = np.zeros((rig.num_bones, 3))
    palette[deform] = bone_palette(len(deform))
    faces = np.asarray(rig.faces, dtype=np.int64)
    diag = bbox_diagonal(rig.vertices)
    vmax = 3.0
    rots = random_local_rotations(rig.num_bones, num_poses, max_angle_deg, seed)
    axes = view_axes(rig.vertices)
    fig, axs = plt.subplots(num_poses, len(cols), figsize=(3.2 * len(cols), 3.2 * num_poses), squeeze=False)
    x = np.asarray(rig.vertices, dtype=np.float64)
    for r, rot in enumerate(rots):
        A, b = global_transforms(rig.joints, rig.parents, rot, rig.name)
        posed = {k: linear_blend_skinning(x, np.asarray(w)[:, deform], A[deform], b[deform]) for k, w in cols.items()}
        allp = np.concatenate(list(posed.values()))
        h, v, _ = axes
        limits = (allp[:, [h, v]].min(0), allp[:, [h, v]].max(0))
        for c, (label, p) in enumerate(posed.items()):
            ax = axs[r, c]
            if label == truth_label:
                draw_mesh(ax, p, faces, dominant_face_colors(rig.weights, faces, palette), axes, limits)
                heads = np.einsum("jab,jb->ja", A, rig.joints) + b
                tails = np.einsum("jab,jb->ja", A, rig.tails) + b
                for j in deform:
                    ax.plot([heads[j, h], tails[j, h]], [heads[j, v], tails[j, v]], color="k", lw=1.0)
            else:
                err = 100.0 * np.linalg.norm(p - posed[truth_label], axis=1) / diag
                draw_mesh(ax, p, faces, error_face_colors(err, faces, vmax), axes, limits)
                label = f"{label}\nmean {err.mean():.2f}%, max {err.max():.1f}%"
            if r == 0 or label != truth_label:
                ax.set_title(label if r == 0 or label != truth_label else "", fontsize=9)
        axs[r, 0].set_ylabel(f"pose {r + 1}", fontsize=8)
    fig.suptitle(f"{Path(rig.name).stem}: random poses (colour: distance to ground truth, "
                 f"grey 0 .. red >= {vmax:g}% of the bbox diagonal)", fontsize=10)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def rig_pictures(rig: Rig, preds: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Write ``<rig>_weights.png`` and ``<rig>_poses.png`` into out_dir; returns their paths."""
    out = Path(out_dir)
    stem = Path(rig.name).stem
    return [weights_figure(rig, preds, out / f"{stem}_weights.png"),
            poses_figure(rig, preds, out / f"{stem}_poses.png")]
