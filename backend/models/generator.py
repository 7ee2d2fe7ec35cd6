"""Generator G: mesh graph layers + per-(vertex, candidate bone) scoring -> (V, K) weights.

Works for any number of bones: bones enter only through the per-pair gather ``bone_h[cand]``,
so permuting the bones (and relabelling ``cand``) permutes nothing in the output's meaning.
Only gathers, matmuls and reductions: exports to ONNX without any scatter op.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from backend.features.pipeline import BONE_POSITION_COLUMNS, FB, FP, FV, VERTEX_POSITION_COLUMNS


class NeighborSAGE(nn.Module):
    """GraphSAGE layer over a fixed-size neighbourhood table: h' = act(W_self h + W_nbr mean_n h[nbr])."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.lin_self = nn.Linear(c_in, c_out)
        self.lin_nbr = nn.Linear(c_in, c_out, bias=False)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, h: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """h (V, C_in), neighbors (V, N) int64 -> (V, C_out)."""
        agg = h[neighbors].mean(dim=1)
        return F.gelu(self.norm(self.lin_self(h) + self.lin_nbr(agg)))


class GatedSAGE(nn.Module):
    """A residual GraphSAGE layer whose output enters through a learned gate that starts at 0:
    h' = h + gate * NeighborSAGE(h). A generator grown by such layers computes exactly what it did
    before them until training opens the gates (warm starts keep their function)."""

    def __init__(self, c: int):
        super().__init__()
        self.layer = NeighborSAGE(c, c)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """h (V, C), neighbors (V, N) int64 -> (V, C)."""
        return h + self.gate * self.layer(h, neighbors)


class CandidateAttention(nn.Module):
    """Self-attention among the K candidate bones of each vertex, residual, output projection zero at start.

    Each pair's code sees the codes of the vertex's other candidates, so a pair can be scored against
    its rivals (the nearest bone's parent, its child, the bone across a gap) rather than alone. Padded
    candidates (``valid`` False) are never attended to. x (V, K, C), valid (V, K) bool -> (V, K, C).
    """

    def __init__(self, c: int, heads: int, dim: int = 64):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"candidate attention needs heads >= 1 dividing dim={dim}, got {heads}")
        self.heads, self.dim = heads, dim
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * dim)
        self.out = nn.Linear(dim, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        v, k, _ = x.shape
        h, d = self.heads, self.dim // self.heads
        qkv = self.qkv(self.norm(x)).reshape(v, k, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, V, H, K, d)
        logits = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * (d ** -0.5)  # (V, H, K, K)
        logits = torch.where(valid[:, None, None, :], logits, torch.full_like(logits, -1e4))
        o = torch.matmul(logits.softmax(dim=-1), qkv[2])  # (V, H, K, d)
        return x + self.out(o.permute(0, 2, 1, 3).reshape(v, k, self.dim))


#: Generator settings that grow it by layers starting as the identity (GatedSAGE, CandidateAttention),
#: with the prefix of the parameters each adds; absent from a config = 0.
GROWTH = {"context_layers": "context.", "pair_attention": "attention."}


def is_identity_start(name: str) -> bool:
    """True for the parameters whose zero makes a growth layer the identity (a GatedSAGE gate, the
    candidate attention's output projection): a generator without the layer equals one with the
    layer and these parameters at 0, whatever its other parameters hold."""
    parts = name.split(".")
    return (parts[0] == "context" and parts[-1] == "gate") or name.startswith("attention.out.")


def mlp(sizes: list[int], last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """G(vertex_feat, neighbors, bone_feat, cand, pair_feat, prior) -> (V, K) weights, >= 0, rows sum to 1.

    vertex_feat (V, FV) -> MLP -> 2 GraphSAGE layers -> (V, hidden); bone_feat (Jd, FB) -> MLP -> (Jd, hidden);
    fused per pair by 1x1 layers -> (V, K, fused) ; shared MLP fused -> 256 -> 128 -> 1 scores each pair;
    Softplus of (score + prior_gain * log max(prior, prior_floor)), then L1 normalisation over the K candidates.
    ``relative_inputs`` zeroes the absolute-position columns of vertex_feat and bone_feat (where a part sits
    in the character's frame), so the scores depend only on shape and on vertex-to-bone relations.
    ``context_layers`` adds that many gated residual GraphSAGE layers (a wider view of the mesh) and
    ``pair_attention`` (heads, 0 = none) an attention step among each vertex's candidates before
    scoring; both start as the identity, so a trained generator can be grown by them and warm-started.
    """

    def __init__(self, hidden: int = 256, fused: int = 512, fv: int = FV, fb: int = FB, fp: int = FP,
                 use_prior: bool = True, prior_gain: float = 0.3, prior_floor: float = 1e-4,
                 relative_inputs: bool = False, context_layers: int = 0, pair_attention: int = 0):
        super().__init__()
        self.config = dict(hidden=hidden, fused=fused, fv=fv, fb=fb, fp=fp, use_prior=use_prior,
                           prior_gain=prior_gain, prior_floor=prior_floor, relative_inputs=relative_inputs)
        # growth options enter the config only when used, so older checkpoints' configs stay equal
        if context_layers:
            self.config["context_layers"] = int(context_layers)
        if pair_attention:
            self.config["pair_attention"] = int(pair_attention)
        vmask, bmask = torch.ones(fv), torch.ones(fb)
        if relative_inputs:
            vmask[list(VERTEX_POSITION_COLUMNS)] = 0.0
            bmask[list(BONE_POSITION_COLUMNS)] = 0.0
        # derived from the config, so not stored in checkpoints
        self.register_buffer("vertex_mask", vmask, persistent=False)
        self.register_buffer("bone_mask", bmask, persistent=False)
        self.relative_inputs = relative_inputs
        self.vertex_in = mlp([fv, 128, 128], last_act=True)
        self.sage1 = NeighborSAGE(128, hidden)
        self.sage2 = NeighborSAGE(hidden, hidden)
        self.context = nn.ModuleList(GatedSAGE(hidden) for _ in range(int(context_layers)))
        self.bone_in = mlp([fb, 128, hidden], last_act=True)
        self.fuse_v = nn.Linear(hidden, fused)
        self.fuse_b = nn.Linear(hidden, fused, bias=False)
        self.fuse_p = nn.Linear(fp, fused, bias=False)
        self.attention = CandidateAttention(fused, int(pair_attention)) if pair_attention else None
        self.scorer = mlp([fused, 256, 128, 1])
        self.use_prior = use_prior
        # A small initial gain and a floor keep the prior's log from pushing candidates so far into
        # Softplus's flat tail that their gradient vanishes (the prior is sharp: (d_min/d)^16).
        self.prior_gain = nn.Parameter(torch.tensor(float(prior_gain)))
        self.prior_floor = float(prior_floor)

    def forward(self, vertex_feat: torch.Tensor, neighbors: torch.Tensor, bone_feat: torch.Tensor,
                cand: torch.Tensor, pair_feat: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        if self.relative_inputs:
            vertex_feat = vertex_feat * self.vertex_mask
            bone_feat = bone_feat * self.bone_mask
        h = self.vertex_in(vertex_feat)
        h = self.sage1(h, neighbors)
        h = self.sage2(h, neighbors)  # (V, hidden)
        for layer in self.context:
            h = layer(h, neighbors)
        b = self.bone_in(bone_feat)  # (Jd, hidden)
        fused = self.fuse_v(h)[:, None, :] + self.fuse_b(b)[cand] + self.fuse_p(pair_feat)  # (V, K, fused)
        if self.attention is not None:
            fused = self.attention(fused, prior > 0)
        score = self.scorer(F.gelu(fused)).squeeze(-1)  # (V, K)
        if self.use_prior:
            score = score + self.prior_gain * torch.log(prior.clamp_min(self.prior_floor))
        # candidates with no prior at all (padding of rigs with fewer bones than K) get exactly 0
        w = F.softplus(score) * (prior > 0).to(score.dtype)
        return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)

