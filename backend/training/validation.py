"""Scores of the generator on the validation rigs: the early-stopping figures and the plotted weight maps."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from backend.training import distributed as dd
from backend.training.config import TrainConfig
from backend.training.data import RigSet, epoch_batches
from backend.training.losses import blend_with_prior, deformation_loss, smoothness_loss, supervised_loss

#: G on a batch's tensors -> (V, K) float32 weights.
Generate = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


@torch.no_grad()
def validate(G: torch.nn.Module, generate: Generate, val: RigSet, cfg: TrainConfig, dist: dd.DistInfo,
             device: torch.device) -> dict[str, float]:
    """Val MSE, cosine and smoothness (and deformation loss when the rigs are posed) over all val rigs,
    sharded over ranks and summed; ``val_score`` is the early-stopping score. G is left in train mode."""
    G.eval()
    sums = torch.zeros(8, dtype=torch.float64)
    # every val rig exactly once over all ranks (no padding: only the sums below are collective)
    batches = epoch_batches(val.sizes(), cfg.data.vertex_budget, cfg.run.seed, 0, 2)
    for idx in batches[dist.rank::dist.world]:
        t = val.batch(idx, cfg.run.seed, 0).to(device).tensors
        w = generate(t) * t["pair_mask"]
        m = t["pair_mask"] & t["row_valid"][:, None]
        _, mse, cos = supervised_loss(w, t["target"], t["pair_mask"], t["row_valid"])
        n_m, n_r = float(m.sum()), float(t["row_valid"].sum())
        sm = smoothness_loss(w, t["cand"], t["neighbors"], t["pair_mask"])
        n_v = float(t["neighbors"].numel())
        dfm, n_d = 0.0, 0.0
        if "displacement" in t:  # per-vertex mean (not rig-balanced), like the other val figures
            dfm = _f(deformation_loss(blend_with_prior(w, t), t["target"], t["displacement"], t["pair_mask"],
                                      t["row_valid"]))
            n_d = n_r
        sums += torch.tensor([_f(mse) * n_m, n_m, _f(cos) * n_r, n_r, _f(sm) * n_v, n_v, dfm * n_d, n_d],
                             dtype=torch.float64)
    sums = dd.all_sum(sums, dist)
    G.train()
    mse = float(sums[0] / max(sums[1], 1))
    smooth = float(sums[4] / max(sums[5], 1))
    out = {"val_mse": mse, "val_cos": float(sums[2] / max(sums[3], 1)), "val_smooth": smooth,
           "val_score": mse + cfg.stages.score_smooth * smooth}
    if sums[7] > 0:
        out["val_deform"] = float(sums[6] / sums[7])
        out["val_score"] += cfg.stages.score_deform * out["val_deform"]
    return out


@torch.no_grad()
def dominant_bones(G: torch.nn.Module, generate: Generate, val: RigSet, count: int, seed: int,
                   device: torch.device) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, (V, 3) positions, (V,) G's dominant bone, (V,) the true dominant bone) of the first
    ``count`` validation rigs, for the weight-map plot. G is left in train mode."""
    out = []
    G.eval()
    for i in range(count):
        b = val.batch([i], seed, 0).to(device)
        w = (generate(b.tensors) * b["pair_mask"]).cpu().numpy()
        cand = b["cand"].cpu().numpy()
        rows = np.arange(len(cand))
        out.append((b.names[0], b["vertex_feat"][:, :3].cpu().numpy(), cand[rows, w.argmax(1)],
                    cand[rows, b["target"].cpu().numpy().argmax(1)]))
    G.train()
    return out
