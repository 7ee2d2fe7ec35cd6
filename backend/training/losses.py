"""Loss terms of the SS-WGAN, each a pure function of tensors.

Shapes: w / target (V, K) candidate weights, mask (V, K) bool (False on padded candidates),
row_valid (V,) bool (the vertex has true weight on its candidates), cand (V, K) bone ids,
neighbors (V, N), graph (V,) rig id per vertex.

L_total = a L_sup + b L_adv_s + c L_adv_u + d L_cons + e L_const  (see :func:`total_loss`).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from backend.models.critic import neighbor_candidate_weights


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (pred - target)^2 over the entries where ``mask`` is True (a float mask weights them)."""
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def row_cosine(pred: torch.Tensor, target: torch.Tensor, row_valid: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over valid rows of cos(pred_v, target_v) (float ``row_valid``: weighted mean)."""
    cos = (pred * target).sum(1) / (pred.norm(dim=1) * target.norm(dim=1)).clamp_min(eps)
    m = row_valid.to(pred.dtype)
    return (cos * m).sum() / m.sum().clamp_min(1.0)


def row_cross_entropy(pred: torch.Tensor, target: torch.Tensor, row_valid: torch.Tensor,
                      eps: float = 1e-6) -> torch.Tensor:
    """Mean over valid rows of -sum_k target_k log(pred_k + eps) (target rows sum to 1; float ``row_valid``:
    weighted)."""
    ce = -(target * torch.log(pred + eps)).sum(1)
    m = row_valid.to(pred.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def rig_balance_weights(graph: torch.Tensor, row_valid: torch.Tensor) -> torch.Tensor:
    """(V,) row weights giving every rig in a batch the same total weight: 1 / (valid rows of its rig).

    graph: (V,) int64 rig id per vertex; row_valid: (V,) bool. Without it a batch's per-vertex
    means let a 6000-vertex character outweigh a 300-vertex animal twenty times."""
    valid = row_valid.to(torch.float32)
    n_rigs = int(graph.max().item()) + 1 if graph.numel() else 0
    counts = torch.zeros(n_rigs, dtype=valid.dtype, device=valid.device).scatter_add_(0, graph, valid)
    return valid / counts.clamp_min(1.0)[graph]


def supervised_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, row_valid: torch.Tensor,
                    cos_lambda: float = 0.1, ce_lambda: float = 0.0,
                    row_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_sup = MSE(pred, target) - cos_lambda * mean row cosine [+ ce_lambda * row cross-entropy],
    over valid rows and real candidates.

    The cross-entropy term is our addition (off by default): MSE on weights that sum to 1 gives
    small gradients to the bones that should win; the shipped configuration turns it on.
    row_weight: optional (V,) float weights of the rows in every mean (e.g. :func:`rig_balance_weights`).
    Returns (loss, mse, cosine)."""
    rw = row_valid.to(pred.dtype)
    if row_weight is not None:
        rw = rw * row_weight.to(pred.dtype)
    m = mask.to(pred.dtype) * rw[:, None]
    pred = pred * mask.to(pred.dtype)
    mse = masked_mse(pred, target, m)
    cos = row_cosine(pred, target, rw)
    loss = mse - cos_lambda * cos
    if ce_lambda:
        loss = loss + ce_lambda * row_cross_entropy(pred, target * mask.to(target.dtype), rw)
    return loss, mse, cos


def weighted_supervised_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, row_valid: torch.Tensor,
                             row_weight: torch.Tensor, cos_lambda: float = 0.1
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_sup with per-vertex weights (fine-tuning and adaptation weight the vertices an artist changed):
    weighted MSE over real candidates - cos_lambda * weighted mean row cosine. pred/target/mask (V, K),
    row_valid (V,) bool, row_weight (V,) float. With all weights 1 it equals :func:`supervised_loss`.
    Returns (loss, mse, cosine)."""
    m = (mask & row_valid[:, None]).to(pred.dtype)
    pred = pred * mask.to(pred.dtype)
    rw = row_weight.to(pred.dtype) * row_valid.to(pred.dtype)
    sq = ((pred - target) ** 2 * m).sum(1)
    mse = (rw * sq).sum() / (rw * m.sum(1)).sum().clamp_min(1e-8)
    cos = (pred * target).sum(1) / (pred.norm(dim=1) * target.norm(dim=1)).clamp_min(1e-8)
    cos = (rw * cos).sum() / rw.sum().clamp_min(1e-8)
    return mse - cos_lambda * cos, mse, cos


def deformation_loss(pred: torch.Tensor, target: torch.Tensor, displacement: torch.Tensor, mask: torch.Tensor,
                     row_valid: torch.Tensor, row_weight: torch.Tensor | None = None,
                     eps: float = 1e-4, power: float = 1.0) -> torch.Tensor:
    """Mean over valid rows and poses of |sum_k (pred_vk - target_vk) disp_pvk| ** power, the
    distance in % of the bounding-box diagonal between the vertex posed with the predicted and with
    the true weights (power 1: the evaluation's deformation error; power 2 weighs far-off vertices more).

    displacement (P, V, K, 3) from ``backend.training.poses.candidate_displacements``; for power 1
    the norm is smoothed (sqrt(|d|^2 + eps^2) - eps) so that its gradient stays finite at 0.
    row_weight: optional (V,) float weights of the rows (e.g. :func:`rig_balance_weights`)."""
    m = mask.to(pred.dtype)
    err = (pred - target) * m  # (V, K)
    d = 100.0 * torch.einsum("vk,pvkc->pvc", err, displacement.to(pred.dtype))  # (P, V, 3) in %
    sq = (d * d).sum(-1)
    if power == 1.0:
        e = 100.0 * eps
        dist = (torch.sqrt(sq + e * e) - e).mean(0)  # (V,)
    else:
        dist = sq.pow(0.5 * power).mean(0)
    rw = row_valid.to(pred.dtype)
    if row_weight is not None:
        rw = rw * row_weight.to(pred.dtype)
    return (dist * rw).sum() / rw.sum().clamp_min(1e-12)


def blend_with_prior(w: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(V, K) runtime mix b_v * w + (1 - b_v) * prior when the batch carries per-vertex blends
    ``blend`` (V,), else ``w``. Both inputs sum to 1 over the candidates, so the mix does too."""
    b = tensors.get("blend")
    if b is None:
        return w
    b = b.to(w.dtype)[:, None]
    return b * w + (1.0 - b) * tensors["prior"].to(w.dtype)


def smoothness_loss(w: torch.Tensor, cand: torch.Tensor, neighbors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over (vertex, neighbour) of the squared dense difference sum_b (w_v,b - w_n,b)^2,
    computed exactly from candidate lists: |w_v|^2 + |w_n|^2 - 2 <w_v, w_n at v's bones>."""
    w = w * mask.to(w.dtype)
    at = neighbor_candidate_weights(w, cand, neighbors) * mask[:, None, :].to(w.dtype)  # (V, N, K)
    sq = (w * w).sum(1)  # (V,)
    d2 = sq[:, None] + sq[neighbors] - 2.0 * (w[:, None, :] * at).sum(-1)
    return d2.clamp_min(0.0).mean()


def locality_loss(w: torch.Tensor, pair_feat: torch.Tensor, mask: torch.Tensor, dist_index: int = 0) -> torch.Tensor:
    """Mean over vertices of sum_k w_k d(v, bone_k)^2 with d the segment distance pair feature."""
    d = pair_feat[..., dist_index]
    return (w * mask.to(w.dtype) * d * d).sum(1).mean()


def physical_loss(w: torch.Tensor, batch: Mapping[str, torch.Tensor], smooth: float = 1.0,
                  locality: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_const = smooth * smoothness + locality * joint locality. Returns (loss, smoothness, locality)."""
    s = smoothness_loss(w, batch["cand"], batch["neighbors"], batch["pair_mask"])
    loc = locality_loss(w, batch["pair_feat"], batch["pair_mask"])
    return smooth * s + locality * loc, s, loc


def consistency_loss(w_clean: torch.Tensor, w_noisy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_cons: MSE between G on a sample (treated as the target, no gradient) and G on a
    perturbed copy, over real candidates."""
    return masked_mse(w_noisy, w_clean.detach(), mask)


def perturb_inputs(batch: Mapping[str, torch.Tensor], sigma: float, generator: torch.Generator | None = None
                   ) -> dict[str, torch.Tensor]:
    """A copy of the batch with N(0, sigma^2) noise on vertex_feat and pair_feat (indices untouched)."""
    out = dict(batch)
    for key in ("vertex_feat", "pair_feat"):
        x = batch[key]
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        out[key] = x + sigma * noise
    return out


def wgan_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor, drift: float = 0.0) -> torch.Tensor:
    """mean D(fake) - mean D(real) (+ drift * mean D(real)^2); the critic minimises it."""
    return d_fake.mean() - d_real.mean() + drift * (d_real ** 2).mean()


def wgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """-mean D(fake); the generator minimises it."""
    return -d_fake.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     graph: torch.Tensor, num_graphs: int, weight: float = 10.0,
                     generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: weight * mean_g (|grad_x D(x_hat)|_g - 1)^2 with x_hat = e_g real + (1 - e_g) fake.

    real, fake (R, ...) rows grouped into ``num_graphs`` samples by ``graph`` (R,); one e_g ~ U(0, 1)
    per sample (or given ``eps`` (num_graphs,)); the gradient norm is taken over each sample's rows.
    ``critic`` maps x_hat to (num_graphs,) scores.
    """
    if eps is None:
        eps = torch.rand(num_graphs, generator=generator, device="cpu").to(real.device, real.dtype)
    e = eps[graph].reshape((-1,) + (1,) * (real.dim() - 1))
    x_hat = (e * real.detach() + (1.0 - e) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    sq = grad.new_zeros(num_graphs).index_add(0, graph, grad.pow(2).reshape(grad.shape[0], -1).sum(1))
    norm = torch.sqrt(sq + 1e-12)
    return weight * ((norm - 1.0) ** 2).mean()


def pooled_pairs(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair the rows of two pooled embeddings (Br, C), (Bf, C) of different rigs by cycling the
    shorter one: -> two (max(Br, Bf), C) tensors (for the unpaired critic's gradient penalty)."""
    n = max(real.shape[0], fake.shape[0])
    i = torch.arange(n, device=real.device)
    return real[i % real.shape[0]], fake[i % fake.shape[0]]


DEFAULT_WEIGHTS = {"sup": 1.0, "adv_s": 0.1, "adv_u": 0.1, "cons": 0.05, "const": 0.05}


def total_loss(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> torch.Tensor:
    """sum_t weights[t] * terms[t] over the terms present (a missing or zero-weight term is skipped)."""
    out = None
    for name, value in terms.items():
        wgt = float(weights.get(name, 0.0))
        if wgt == 0.0:
            continue
        out = wgt * value if out is None else out + wgt * value
    if out is None:
        raise ValueError("total_loss: no term with a non-zero weight")
    return out
