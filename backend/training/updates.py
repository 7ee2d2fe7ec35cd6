"""The optimisation of one batch: G's forward pass, each stage's loss, and the guarded optimiser steps.

Stages 1 and 3 (:meth:`Updates.supervised_step`): L_sup + const_weight * L_const (+ ``loss.deform`` *
L_deform). Stage 2 (:meth:`Updates.joint_step`): D_s once, D_u once, then G once with L_total. Every
optimiser step backpropagates, averages the gradients over ranks, clips them and is skipped (and
reported) when the loss or the gradient norm is not finite; a norm far above the running median is
reported as a spike.
"""
from __future__ import annotations

import contextlib
import math
import statistics
from collections import deque
from typing import Any, Callable, Optional

import torch
from torch import nn

from backend.training import distributed as dd
from backend.training.config import TrainConfig
from backend.training.data import Batch
from backend.training.losses import (blend_with_prior, consistency_loss, deformation_loss, gradient_penalty,
                                     perturb_inputs, physical_loss, pooled_pairs, rig_balance_weights,
                                     supervised_loss, total_loss, wgan_critic_loss, wgan_generator_loss)
from backend.training.schedule import stage_optimizers

#: Gradient norms kept per model for the spike reference.
NORM_HISTORY = 50


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


class Updates:
    """The models, optimisers and mixed-precision state of a run, and the step of each stage.

    ``report(event, **info)`` records an event (a skipped non-finite step, a gradient spike).
    """

    def __init__(self, cfg: TrainConfig, G: nn.Module, Ds: nn.Module, Du: nn.Module, device: torch.device,
                 dist: dd.DistInfo, report: Callable[..., None]):
        self.cfg = cfg
        self.G, self.Ds, self.Du = G, Ds, Du
        self.dist = dist
        self.report = report
        self.amp_dtype = None
        self.amp_device = device.type
        if device.type == "cuda" and cfg.run.amp in ("bf16", "fp16"):
            self.amp_dtype = torch.bfloat16 if cfg.run.amp == "bf16" else torch.float16
        elif device.type == "cpu" and cfg.run.cpu_amp == "bf16":
            self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.checkpointing = device.type == "cuda" and cfg.run.activation_checkpointing
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.scheds: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.norms: dict[str, deque] = {k: deque(maxlen=NORM_HISTORY) for k in ("g", "ds", "du")}

    # ------------------------------------------------------------------ optimisers
    def build(self, stage: int, total: int) -> None:
        """Fresh optimisers of ``stage`` (G alone, or G and both critics in stage 2) over ``total`` steps."""
        o = self.cfg.optim
        lr_g = self.cfg.stages.stage3_lr if stage == 3 else o.lr_g
        groups = {"g": (self.G, lr_g)}
        if stage == 2:
            groups.update(ds=(self.Ds, o.lr_d), du=(self.Du, o.lr_d))
        self.norms = {k: deque(maxlen=NORM_HISTORY) for k in ("g", "ds", "du")}  # spike reference restarts
        self.opts, self.scheds = stage_optimizers(groups, o, total)

    def clear(self) -> None:
        """No optimisers (between stages: the next stage builds its own)."""
        self.opts, self.scheds = {}, {}

    def state(self) -> dict[str, Any]:
        """Optimiser, scheduler, gradient-scaler and spike-reference states (tensors, numbers, lists, dicts)."""
        return {"opts": {k: o.state_dict() for k, o in self.opts.items()},
                "scheds": {k: s.state_dict() for k, s in self.scheds.items()},
                "scaler": self.scaler.state_dict(), "norms": {k: list(v) for k, v in self.norms.items()}}

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` into the optimisers already built."""
        for k, o in self.opts.items():
            o.load_state_dict(state["opts"][k])
        for k, s in self.scheds.items():
            s.load_state_dict(state["scheds"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.norms = {k: deque(v, maxlen=NORM_HISTORY) for k, v in state["norms"].items()}

    # ------------------------------------------------------------------ forward helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast of G's forward (CUDA: ``run.amp``; CPU: ``run.cpu_amp``), else nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.amp_device, dtype=self.amp_dtype)

    def generate(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """G on a batch dict -> (V, K) float32 (autocast as :meth:`autocast`; activation checkpointing on CUDA)."""
        args = (tensors["vertex_feat"], tensors["neighbors"], tensors["bone_feat"], tensors["cand"],
                tensors["pair_feat"], tensors["prior"])
        with self.autocast():
            if self.checkpointing and self.G.training:
                w = torch.utils.checkpoint.checkpoint(self.G, *args, use_reentrant=False)
            else:
                w = self.G(*args)
        return w.float()

    def row_weight(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(V,) per-row weights of L_sup: with ``loss.rig_balance`` every rig of a batch counts once, times
        each rig's domain weight where ``data.domain_balance`` is on; None when both are off."""
        w = rig_balance_weights(tensors["vertex_graph"], tensors["row_valid"]) if self.cfg.loss.rig_balance else None
        if "rig_weight" in tensors:  # domain balance (data.domain_balance)
            w = tensors["rig_weight"] if w is None else w * tensors["rig_weight"]
        return w

    def deform_loss(self, w: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_deform of G's (V, K) weights on a labelled batch, rows weighted like L_sup; with
        ``loss.deform_blend_rule`` of the runtime's mix b * G + (1 - b) * prior instead."""
        w = blend_with_prior(w, tensors)
        return deformation_loss(w, tensors["target"], tensors["displacement"], tensors["pair_mask"],
                                tensors["row_valid"], self.row_weight(tensors), power=self.cfg.loss.deform_power)

    def step_generator(self, step: int, which: int) -> torch.Generator:
        """The noise source of step ``step`` (seeded by seed, rank, step, which)."""
        g = torch.Generator()
        g.manual_seed(((self.cfg.run.seed * 1_000_003 + self.dist.rank) * 10_000_019 + step) * 7 + which)
        return g

    @staticmethod
    def real_weights(batch: Batch, fake: torch.Tensor) -> torch.Tensor:
        """True candidate weights; rows without a usable target copy the fake row (no signal there)."""
        return torch.where(batch["row_valid"][:, None], batch["target"], fake.detach())

    # ------------------------------------------------------------------ optimisation
    def apply(self, name: str, model: nn.Module, loss: torch.Tensor, batch: Batch) -> float:
        """Backward, all-reduce, clip, and step ``name``'s optimiser unless the loss or gradient is
        non-finite (then the step is skipped and reported). Returns the pre-clip gradient norm."""
        opt = self.opts[name]
        opt.zero_grad(set_to_none=True)
        scaler = self.scaler if name == "g" else None
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(opt)
        dd.average_gradients(model, self.dist)
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.optim.clip))
        finite = math.isfinite(norm) and bool(torch.isfinite(loss.detach()).item())
        if finite:
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            hist = self.norms[name]
            if len(hist) >= 10 and norm > self.cfg.run.spike_factor * max(statistics.median(hist), 1e-8):
                self.report("grad_spike", model=name, norm=norm, median=statistics.median(hist), batch=batch.names)
            hist.append(norm)
        else:
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()
            self.report("nonfinite_skipped", model=name, norm=norm, loss=_f(loss), batch=batch.names)
        self.scheds[name].step()
        return norm

    def supervised_step(self, L: Batch, const_weight: float) -> dict[str, float]:
        """Stages 1 and 3: L_sup + const_weight * L_const on one labelled batch."""
        c = self.cfg.loss
        t = L.tensors
        w = self.generate(t)
        sup, mse, cos = supervised_loss(w, t["target"], t["pair_mask"], t["row_valid"], c.cos_lambda, c.ce,
                                        self.row_weight(t))
        loss = sup
        rec = {"sup": _f(sup), "mse": _f(mse), "cos": _f(cos)}
        if c.deform > 0:
            dfm = self.deform_loss(w, t)
            loss = loss + c.deform * dfm
            rec["deform"] = _f(dfm)
        if self.cfg.ablation.physical and const_weight > 0:
            phys, sm, loc = physical_loss(w, t, c.smooth, c.locality)
            loss = loss + const_weight * phys
            rec.update(const=_f(phys), smooth=_f(sm), locality=_f(loc))
        rec["loss"] = _f(loss)
        rec["grad_g"] = self.apply("g", self.G, loss, L)
        return rec

    def joint_step(self, L: Batch, U: Optional[Batch], step: int) -> dict[str, float]:
        """Stage 2: D_s once, D_u once (when there is unlabelled data), then G once with L_total;
        ``step`` seeds the step's noise."""
        c, ab = self.cfg.loss, self.cfg.ablation
        lt = L.tensors
        ut = U.tensors if U is not None else None
        w_l = self.generate(lt)
        w_u = self.generate(ut) if ut is not None else None
        real_l = self.real_weights(L, w_l)
        rec: dict[str, float] = {}
        adversarial = ab.adversarial and (c.adv_s > 0 or c.adv_u > 0)
        if adversarial:
            gen = self.step_generator(step, 1)
            # D_s: (mesh, skeleton, true weights) vs (same mesh, skeleton, G's weights)
            d_real = self.Ds(real_l, lt, L.num_graphs)
            d_fake = self.Ds(w_l.detach(), lt, L.num_graphs)
            gp = gradient_penalty(lambda x: self.Ds(x, lt, L.num_graphs), real_l, w_l.detach(), lt["vertex_graph"],
                                  L.num_graphs, c.gp_weight, gen)
            loss_ds = wgan_critic_loss(d_real, d_fake, c.drift) + gp
            rec.update(ds_loss=_f(loss_ds), ds_gp=_f(gp), ds_gap=_f(d_real.mean() - d_fake.mean()))
            rec["grad_ds"] = self.apply("ds", self.Ds, loss_ds, L)
            if w_u is not None:
                # D_u: G's weights on unlabelled meshes vs true weights of labelled meshes (unpaired);
                # gradient penalty on the pooled embedding, between rigs paired by position.
                p_real = self.Du.encode(real_l, lt, L.num_graphs)
                p_fake = self.Du.encode(w_u.detach(), ut, U.num_graphs)
                du_real, du_fake = self.Du.score(p_real), self.Du.score(p_fake)
                a, b = pooled_pairs(p_real.detach(), p_fake.detach())
                gp_u = gradient_penalty(self.Du.score, a, b, torch.arange(a.shape[0], device=a.device), a.shape[0],
                                        c.gp_weight, gen)
                loss_du = wgan_critic_loss(du_real, du_fake, c.drift) + gp_u
                rec.update(du_loss=_f(loss_du), du_gp=_f(gp_u), du_gap=_f(du_real.mean() - du_fake.mean()))
                rec["grad_du"] = self.apply("du", self.Du, loss_du, L)
        # G
        terms: dict[str, torch.Tensor] = {}
        sup, mse, cos = supervised_loss(w_l, lt["target"], lt["pair_mask"], lt["row_valid"], c.cos_lambda, c.ce,
                                        self.row_weight(lt))
        terms["sup"] = sup
        if c.deform > 0:
            terms["deform"] = self.deform_loss(w_l, lt)
        rec.update(mse=_f(mse), cos=_f(cos))
        critics = (self.Ds, self.Du)
        for m in critics:
            m.requires_grad_(False)
        try:
            if adversarial:
                terms["adv_s"] = wgan_generator_loss(self.Ds(w_l, lt, L.num_graphs))
                if w_u is not None:
                    terms["adv_u"] = wgan_generator_loss(self.Du(w_u, ut, U.num_graphs))
            if ab.consistency and c.cons > 0:
                gen = self.step_generator(step, 2)
                cons = [consistency_loss(w_l, self.generate(perturb_inputs(lt, c.cons_sigma, gen)), lt["pair_mask"])]
                if w_u is not None:
                    cons.append(consistency_loss(w_u, self.generate(perturb_inputs(ut, c.cons_sigma, gen)),
                                                 ut["pair_mask"]))
                terms["cons"] = sum(cons) / len(cons)
            if ab.physical and c.const > 0:
                phys = [physical_loss(w_l, lt, c.smooth, c.locality)[0]]
                if w_u is not None:
                    phys.append(physical_loss(w_u, ut, c.smooth, c.locality)[0])
                terms["const"] = sum(phys) / len(phys)
            weights = {"sup": c.sup, "adv_s": c.adv_s, "adv_u": c.adv_u, "cons": c.cons, "const": c.const,
                       "deform": c.deform}
            loss = total_loss(terms, weights)
            rec.update({k: _f(v) for k, v in terms.items()})
            rec["loss"] = _f(loss)
            rec["grad_g"] = self.apply("g", self.G, loss, L)
        finally:
            for m in critics:
                m.requires_grad_(True)
        return rec
