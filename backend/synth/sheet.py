"""Contact sheet: a grid of creatures drawn as a lit translucent mesh with the bones on top."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from backend.io.atomic import atomic_path
from backend.rig import Rig


def _draw(ax, rig: Rig, max_faces: int) -> None:
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    v = rig.vertices.astype(np.float64)
    f = rig.faces
    if len(f) > max_faces:  # keep a spatially even subset: every k-th face
        f = f[:: int(np.ceil(len(f) / max_faces))]
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    light = np.array([-0.4, -0.7, 0.6]) / np.linalg.norm([-0.4, -0.7, 0.6])
    shade = 0.35 + 0.65 * np.clip(n @ light, 0, 1)
    base = np.array([0.55, 0.7, 0.9])
    colors = np.concatenate([shade[:, None] * base[None, :], np.full((len(f), 1), 0.5)], axis=1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors="none"))
    segs = np.stack([rig.joints, rig.tails], axis=1).astype(np.float64)
    col = np.where(rig.is_deform[:, None], [[0.85, 0.1, 0.1, 1.0]], [[0.1, 0.6, 0.1, 1.0]])
    ax.add_collection3d(Line3DCollection(segs, colors=col, linewidths=0.9, zorder=10))
    ax.scatter(*rig.joints.T.astype(np.float64), s=1.5, c="k", depthshade=False, zorder=11)
    pts = np.concatenate([v, rig.joints])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    c, r = (lo + hi) / 2, float((hi - lo).max()) / 2
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-60)
    ax.set_axis_off()
    kind = str(rig.extra.get("kind", ""))
    variant = str(rig.extra.get("variant", ""))
    ax.set_title(f"{kind} ({variant})\nV={rig.num_vertices} J={rig.num_bones}", fontsize=7, pad=0)


def contact_sheet(rigs: Iterable[Rig], path: str | Path, columns: int = 5, max_faces: int = 25000,
                  dpi: int = 110) -> Path:
    """Render ``rigs`` in a grid (``columns`` wide) to a PNG at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rigs = list(rigs)
    rows = max(1, int(np.ceil(len(rigs) / columns)))
    fig = plt.figure(figsize=(columns * 2.6, rows * 2.7))
    for i, rig in enumerate(rigs):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        _draw(ax, rig, max_faces)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.97, wspace=0.02, hspace=0.12)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
