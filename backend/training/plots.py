"""PNG plots of a run (matplotlib Agg): loss curves, gradient norms, validation weight maps."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from backend.io.atomic import atomic_path

#: One rig of the weight-map plot: name, (V, 3) positions, (V,) predicted and (V,) true dominant bone.
WeightMap = tuple[str, np.ndarray, np.ndarray, np.ndarray]

LOSS_KEYS = ("loss", "sup", "mse", "adv_s", "adv_u", "cons", "const", "ds_loss", "du_loss")
NORM_KEYS = ("grad_g", "grad_ds", "grad_du")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records holding ``key``."""
    pts = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


def plot_curves(history: dict[str, list], path: Path, keys: tuple[str, ...], title: str, log: bool = False,
                val: bool = False) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in keys:
        x, y = series(history["step"], k)
        if len(x):
            ax.plot(x, y, label=k, lw=0.8)
    if val:
        for k in ("val_mse", "val_smooth"):
            x, y = series(history["epoch"], k)
            if len(x):
                ax.plot(x, y, "o-", label=k, lw=1.5, ms=3)
    if log:
        ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def dominant_colors(bone: np.ndarray) -> np.ndarray:
    """(V,) bone ids -> (V, 4) RGBA from a cyclic 20-colour table."""
    plt = _figure()
    return plt.get_cmap("tab20")(bone % 20)


def plot_weight_maps(names: list[str], points: list[np.ndarray], pred: list[np.ndarray], true: list[np.ndarray],
                     path: Path) -> None:
    """Front views (x, z of the canonical frame) of rigs coloured by the dominant bone, predicted vs true."""
    plt = _figure()
    n = len(names)
    fig, axes = plt.subplots(n, 2, figsize=(7, 3.2 * n), squeeze=False)
    for r in range(n):
        for c, (bones, label) in enumerate(((pred[r], "G"), (true[r], "true"))):
            ax = axes[r, c]
            p = points[r]
            ax.scatter(p[:, 0], p[:, 2], c=dominant_colors(bones), s=1.5, linewidths=0)
            ax.set_aspect("equal")
            ax.set_axis_off()
            ax.set_title(f"{names[r]} ({label})", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_plots(history: dict[str, list], folder: Path, maps: Sequence[WeightMap] = ()) -> None:
    """losses.png and grad_norms.png of the step and epoch records ``history``; weights.png of ``maps``
    (none: no weights.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(history, folder / "losses.png", LOSS_KEYS, "training losses", log=True, val=True)
    plot_curves(history, folder / "grad_norms.png", NORM_KEYS, "gradient norms (pre-clip)", log=True)
    if maps:
        names, points, pred, true = (list(x) for x in zip(*maps))
        plot_weight_maps(names, points, pred, true, folder / "weights.png")
