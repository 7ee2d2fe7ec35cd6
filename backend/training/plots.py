"""PNG plots of a run (matplotlib Agg): loss curves, gradient norms, validation weight maps."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.io.atomic import atomic_path

if TYPE_CHECKING:
    from backend.training.trainer import Trainer

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


def write_plots(trainer: "Trainer", folder: Path) -> None:
    """losses.png, grad_norms.png and weights.png (first ``data.plot_rigs`` validation rigs)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(trainer.history, folder / "losses.png", LOSS_KEYS, "training losses", log=True, val=True)
    plot_curves(trainer.history, folder / "grad_norms.png", NORM_KEYS, "gradient norms (pre-clip)", log=True)
    k = min(trainer.cfg.data.plot_rigs, len(trainer.val))
    if k == 0:
        return
    names, pts, pred, true = [], [], [], []
    trainer.G.eval()
    with torch.no_grad():
        for i in range(k):
            b = trainer.val.batch([i], trainer.cfg.run.seed, 0).to(trainer.device)
            w = (trainer.generate(b.tensors) * b["pair_mask"]).cpu().numpy()
            cand = b["cand"].cpu().numpy()
            rows = np.arange(len(cand))
            names.append(b.names[0])
            pts.append(b["vertex_feat"][:, :3].cpu().numpy())
            pred.append(cand[rows, w.argmax(1)])
            true.append(cand[rows, b["target"].cpu().numpy().argmax(1)])
    trainer.G.train()
    plot_weight_maps(names, pts, pred, true, folder / "weights.png")
