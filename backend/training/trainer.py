"""Staged SS-WGAN training of the generator G with critics D_s (paired) and D_u (unpaired).

Stage 1: supervised pre-training of G (L_sup + stage1_const * L_const) until the validation MSE
and cosine reach their thresholds, or stage1_epochs. Stage 2: joint training; each step updates
D_s once, D_u once, then G once with L_total. Stage 3 (optional): fine-tune G on labelled data
(L_sup + 0.1 L_const) at a low learning rate. Every stage: AdamW, linear warm-up then cosine decay,
gradient clipping, early stopping on val MSE + score_smooth * val smoothness (+ score_deform * val
deformation loss). With ``loss.deform`` > 0 every stage adds that weight times the deformation loss
(training/poses.py) to G's supervised term.

Determinism: batch order comes from (seed, epoch); the noise of a step (gradient-penalty mixing,
consistency perturbation) from a generator seeded by (seed, rank, step). A checkpoint holds the
models, optimisers, schedulers, RNG states and the position (stage, epoch, batch), so ``resume``
reproduces an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import math
import statistics
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from backend.features.pipeline import FEATURE_VERSION
from backend.models.critic import Critic
from backend.models.checkpoint import save_generator, save_torch, state_dict_finite, warm_start
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training import distributed as dd
from backend.io.atomic import atomic_path
from backend.training.checkpoint import load_state, rng_state, set_rng_state
from backend.training.config import TrainConfig, config_from_dict
from backend.training.signals import StopRequest
from backend.training.data import Batch, FeatureStore, RigSet, epoch_batches, list_rigs, split_labeled
from backend.training.losses import (consistency_loss, deformation_loss, gradient_penalty, perturb_inputs,
                                     physical_loss, pooled_pairs, rig_balance_weights, smoothness_loss,
                                     supervised_loss, total_loss, wgan_critic_loss, wgan_generator_loss)

#: Config keys that may differ between a run and its resumption.
RESUME_FREE = {("run", "kill_after_steps"), ("run", "threads"), ("run", "device"), ("run", "checkpoint_every_steps"),
               ("run", "checkpoint_every_minutes"),
               ("runtime", "prior_blend"), ("runtime", "sharpen"), ("runtime", "diffuse")}


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def blend_with_prior(w: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """(V, K) runtime mix b_v * w + (1 - b_v) * prior when the batch carries per-vertex blends
    ``blend`` (V,), else ``w``. Both inputs sum to 1 over the candidates, so the mix does too."""
    b = tensors.get("blend")
    if b is None:
        return w
    b = b.to(w.dtype)[:, None]
    return b * w + (1.0 - b) * tensors["prior"].to(w.dtype)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def warmup_cosine(warmup: int, total: int, base_lr: float, min_lr: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/warmup to 1 over ``warmup`` steps, then cosine down to min_lr/base_lr at ``total``."""
    floor = min(min_lr / base_lr, 1.0) if base_lr > 0 else 0.0

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(total - warmup, 1)
        p = min(max(step - warmup, 0) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return f


def config_diff(a: dict, b: dict) -> list[str]:
    out = []
    for sec in sorted(set(a) | set(b)):
        for key in sorted(set(a.get(sec, {})) | set(b.get(sec, {}))):
            if (sec, key) in RESUME_FREE:
                continue
            if a.get(sec, {}).get(key) != b.get(sec, {}).get(key):
                out.append(f"{sec}.{key}: {a.get(sec, {}).get(key)!r} != {b.get(sec, {}).get(key)!r}")
    return out


class RunLog:
    """Rank-0 JSONL log + TensorBoard scalars (a no-op on other ranks)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb_dir = out / "tb"
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.tb_dir))

    def rewind(self, step: int) -> None:
        """Forget what was logged after ``step`` (a resumed run logs those steps again): the JSONL
        records of later steps are dropped, and TensorBoard purges its later scalars."""
        if not self.enabled:
            return
        if self.path.is_file():
            kept = [ln for ln in self.path.read_text().splitlines(keepends=True)
                    if ln.strip() and json.loads(ln).get("step", 0) <= step]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(kept))
        if self.tb is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb.close()
            self.tb = SummaryWriter(str(self.tb_dir), purge_step=step + 1)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None and "step" in record:
            prefix = record.get("kind", "x")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "stage"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


class Trainer:
    """Build with a config, a data folder (with train/ and val/) and a run folder; call :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, resume: bool = False,
                 progress: bool = True, tensorboard: bool = True, plots: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.device = pick_device(cfg.run.device)
        self.dist = dd.setup(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.dist.local_rank)
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.progress = progress and self.dist.is_main
        self.make_plots = plots
        self.main = self.dist.is_main
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        dd.barrier(self.dist)

        torch.manual_seed(cfg.run.seed)
        self.G = Generator(**cfg.generator_kwargs()).to(self.device)
        if cfg.run.init_generator:
            warm_start(self.G, cfg.run.init_generator, cfg.generator_kwargs())
        self.Ds = Critic(cfg.model.critic_hidden).to(self.device)
        self.Du = Critic(cfg.model.critic_hidden).to(self.device)
        for m in (self.G, self.Ds, self.Du):
            dd.broadcast_module(m, self.dist)

        data_dir = Path(data_dir)
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.out.parent / "cache"
        from backend.features.augment import AugmentConfig

        self.store = FeatureStore(cache, cfg.feature_config(), AugmentConfig(remesh=cfg.data.augment_remesh,
                                                                           detach=cfg.data.augment_detach,
                                                                           detach_copies=cfg.data.augment_detach_copies),
                                  skip_helpers=cfg.data.skip_helper_bones)
        train = list_rigs(data_dir / "train")
        flags = split_labeled(len(train), cfg.data.labeled_fraction, cfg.run.seed)
        lab = [p for p, f in zip(train, flags) if f]
        unl = [p for p, f in zip(train, flags) if not f]
        for folder in cfg.data.unlabeled_dirs:
            unl += list_rigs(folder)
        if not lab:
            raise RigError(f"{data_dir / 'train'}: no labelled rigs to train on (labeled_fraction={cfg.data.labeled_fraction})")
        av = cfg.data.augment_variants
        if cfg.loss.deform < 0 or (cfg.loss.deform > 0 and (cfg.loss.deform_poses < 1 or cfg.loss.deform_power <= 0)):
            raise RigError(f"loss.deform must be >= 0 with loss.deform_poses >= 1 and loss.deform_power > 0, got "
                           f"{cfg.loss.deform}, {cfg.loss.deform_poses} and {cfg.loss.deform_power}")
        if cfg.stages.score_deform and not cfg.loss.deform:
            raise RigError("stages.score_deform needs loss.deform > 0 (the val rigs are posed only then)")
        poses = cfg.loss.deform_poses if cfg.loss.deform > 0 else 0
        rule = None
        if cfg.loss.deform_blend_rule:
            if not cfg.loss.deform:
                raise RigError("loss.deform_blend_rule needs loss.deform > 0")
            from backend.inference.blend_rule import load_rule_file

            try:
                rule = load_rule_file(cfg.loss.deform_blend_rule)
            except ValueError as exc:
                raise RigError(f"loss.deform_blend_rule: {exc}") from None
        weights = None
        if cfg.data.domain_balance > 0:
            from backend.training.folds import domain_weights

            listing = data_dir / "domains.json"
            if not listing.is_file():
                raise RigError(f"data.domain_balance needs {listing} (a fold view: python -m backend data-view --folds)")
            weights = domain_weights([p.name for p in lab], json.loads(listing.read_text()), cfg.data.domain_balance)
        self.train_l = RigSet(lab, [True] * len(lab), self.store, cfg.data.max_vertices, av, poses, rule,
                              weights=weights)
        self.train_u = RigSet(unl, [False] * len(unl), self.store, cfg.data.max_vertices, 0)
        val = list_rigs(data_dir / "val")
        self.val = RigSet(val, [True] * len(val), self.store, 10**9, 0, poses, rule, memo=True)

        self.log = RunLog(self.out, self.main, tensorboard)
        self.amp_dtype = None
        if self.device.type == "cuda" and cfg.run.amp in ("bf16", "fp16"):
            self.amp_dtype = torch.bfloat16 if cfg.run.amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.checkpointing = self.device.type == "cuda" and cfg.run.activation_checkpointing

        self.pos = {"stage": 1, "epoch": 0, "batch": 0, "step": 0}
        self.best_score = math.inf
        self.bad_epochs = 0
        self.history: dict[str, list] = {"step": [], "epoch": []}
        self.norms: dict[str, deque] = {k: deque(maxlen=50) for k in ("g", "ds", "du")}
        self.events = 0
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.scheds: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.resumed = False
        self.stop = StopRequest()  # SIGTERM: save the state and end at the next step
        self.saved_at = time.time()  # when state.pt was last written (run.checkpoint_every_minutes)
        if resume:
            self._resume()

    # ------------------------------------------------------------------ setup per stage
    def stage_epochs(self, stage: int) -> int:
        s = self.cfg.stages
        return {1: s.stage1_epochs, 2: s.stage2_epochs, 3: s.stage3_epochs}[stage]

    def steps_per_epoch(self) -> int:
        return max(len(epoch_batches(self.train_l.sizes(), self.cfg.data.vertex_budget, self.cfg.run.seed, 0,
                                     0, self.dist.rank, self.dist.world)), 1)

    def build_optimizers(self, stage: int) -> None:
        o = self.cfg.optim
        total = self.stage_epochs(stage) * self.steps_per_epoch()
        lr_g = self.cfg.stages.stage3_lr if stage == 3 else o.lr_g
        groups = {"g": (self.G, lr_g)}
        if stage == 2:
            groups.update(ds=(self.Ds, o.lr_d), du=(self.Du, o.lr_d))
        self.opts, self.scheds = {}, {}
        self.norms = {k: deque(maxlen=50) for k in ("g", "ds", "du")}  # spike reference restarts with the stage
        for name, (model, lr) in groups.items():
            opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
            self.opts[name] = opt
            self.scheds[name] = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(o.warmup_steps, total, lr, o.min_lr))

    # ------------------------------------------------------------------ forward helpers
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

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

    def generate(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """G on a batch dict -> (V, K) float32 (autocast / activation checkpointing on CUDA)."""
        args = (tensors["vertex_feat"], tensors["neighbors"], tensors["bone_feat"], tensors["cand"],
                tensors["pair_feat"], tensors["prior"])
        with self.autocast():
            if self.checkpointing and self.G.training:
                w = torch.utils.checkpoint.checkpoint(self.G, *args, use_reentrant=False)
            else:
                w = self.G(*args)
        return w.float()

    def step_generator(self, which: int) -> torch.Generator:
        """The noise source of the current step (seeded by seed, rank, step, which)."""
        g = torch.Generator()
        g.manual_seed(((self.cfg.run.seed * 1_000_003 + self.dist.rank) * 10_000_019 + self.pos["step"]) * 7 + which)
        return g

    # ------------------------------------------------------------------ optimisation
    def apply(self, name: str, model: torch.nn.Module, loss: torch.Tensor, batch: Batch) -> float:
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
                self.event("grad_spike", model=name, norm=norm, median=statistics.median(hist), batch=batch.names)
            hist.append(norm)
        else:
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()
            self.event("nonfinite_skipped", model=name, norm=norm, loss=_f(loss), batch=batch.names)
        self.scheds[name].step()
        return norm

    def event(self, what: str, **info: Any) -> None:
        self.events += 1
        rec = {"kind": "event", "event": what, **self.pos, **info}
        self.log.write(rec)
        if self.main and self.progress:
            print(f"[{what}] stage {self.pos['stage']} epoch {self.pos['epoch']} step {self.pos['step']} "
                  f"batch {info.get('batch')}: {info}", flush=True)

    def real_weights(self, batch: Batch, fake: torch.Tensor) -> torch.Tensor:
        """True candidate weights; rows without a usable target copy the fake row (no signal there)."""
        return torch.where(batch["row_valid"][:, None], batch["target"], fake.detach())

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

    def joint_step(self, L: Batch, U: Optional[Batch]) -> dict[str, float]:
        """Stage 2: D_s once, D_u once (when there is unlabelled data), then G once with L_total."""
        c, ab = self.cfg.loss, self.cfg.ablation
        lt = L.tensors
        ut = U.tensors if U is not None else None
        w_l = self.generate(lt)
        w_u = self.generate(ut) if ut is not None else None
        real_l = self.real_weights(L, w_l)
        rec: dict[str, float] = {}
        adversarial = ab.adversarial and (c.adv_s > 0 or c.adv_u > 0)
        if adversarial:
            gen = self.step_generator(1)
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
                gen = self.step_generator(2)
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

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Val MSE, cosine and smoothness over all val rigs (sharded over ranks, summed)."""
        self.G.eval()
        sums = torch.zeros(8, dtype=torch.float64)
        # every val rig exactly once over all ranks (no padding: only the sums below are collective)
        batches = epoch_batches(self.val.sizes(), self.cfg.data.vertex_budget, self.cfg.run.seed, 0, 2)
        for idx in batches[self.dist.rank::self.dist.world]:
            t = self.val.batch(idx, self.cfg.run.seed, 0).to(self.device).tensors
            w = self.generate(t) * t["pair_mask"]
            m = t["pair_mask"] & t["row_valid"][:, None]
            _, mse, cos = supervised_loss(w, t["target"], t["pair_mask"], t["row_valid"])
            n_m, n_r = float(m.sum()), float(t["row_valid"].sum())
            sm = smoothness_loss(w, t["cand"], t["neighbors"], t["pair_mask"])
            n_v = float(t["neighbors"].numel())
            dfm, n_d = 0.0, 0.0
            if "displacement" in t:  # per-vertex mean (not rig-balanced), like the other val figures
                dfm, n_d = _f(deformation_loss(blend_with_prior(w, t), t["target"], t["displacement"], t["pair_mask"], t["row_valid"])), n_r
            sums += torch.tensor([_f(mse) * n_m, n_m, _f(cos) * n_r, n_r, _f(sm) * n_v, n_v, dfm * n_d, n_d],
                                 dtype=torch.float64)
        sums = dd.all_sum(sums, self.dist)
        self.G.train()
        mse = float(sums[0] / max(sums[1], 1))
        smooth = float(sums[4] / max(sums[5], 1))
        out = {"val_mse": mse, "val_cos": float(sums[2] / max(sums[3], 1)), "val_smooth": smooth,
               "val_score": mse + self.cfg.stages.score_smooth * smooth}
        if sums[7] > 0:
            out["val_deform"] = float(sums[6] / sums[7])
            out["val_score"] += self.cfg.stages.score_deform * out["val_deform"]
        return out

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "feature_version": FEATURE_VERSION,
            "pos": dict(self.pos),
            "G": self.G.state_dict(), "Ds": self.Ds.state_dict(), "Du": self.Du.state_dict(),
            "opts": {k: o.state_dict() for k, o in self.opts.items()},
            "scheds": {k: s.state_dict() for k, s in self.scheds.items()},
            "scaler": self.scaler.state_dict(),
            "best_score": self.best_score, "bad_epochs": self.bad_epochs,
            "history": self.history, "norms": {k: list(v) for k, v in self.norms.items()},
            "rng": rng_state(),
        }

    def save_state(self) -> None:
        """Rank 0 writes ``state.pt`` atomically, never with non-finite weights."""
        if self.main:
            if not all(state_dict_finite(m.state_dict()) for m in (self.G, self.Ds, self.Du)):
                self.event("checkpoint_refused_nonfinite")
            else:
                save_torch(self.state(), self.out / "state.pt")
        dd.barrier(self.dist)
        self.saved_at = time.time()

    def step_flags(self) -> tuple[bool, bool]:
        """(a stop was requested by SIGTERM, a timed checkpoint is due), the same on every rank."""
        minutes = self.cfg.run.checkpoint_every_minutes
        flags = [float(self.stop.requested is not None), float(bool(minutes) and time.time() - self.saved_at >= 60 * minutes)]
        if self.dist.world > 1:
            flags = dd.all_sum(torch.tensor(flags, dtype=torch.float64, device=self.device), self.dist).tolist()
        return flags[0] > 0, flags[1] > 0

    def _resume(self) -> None:
        st = load_state(self.out / "state.pt")
        diff = config_diff(st["config"], self.cfg.to_dict())
        if diff:
            raise RigError(f"{self.out / 'state.pt'}: the config differs from the checkpoint's ({'; '.join(diff)})")
        if st["feature_version"] != FEATURE_VERSION:
            raise RigError(f"{self.out / 'state.pt'}: features {st['feature_version']} != {FEATURE_VERSION}")
        self.G.load_state_dict(st["G"])
        self.Ds.load_state_dict(st["Ds"])
        self.Du.load_state_dict(st["Du"])
        self.pos = dict(st["pos"])
        self.log.rewind(self.pos["step"])
        if st["opts"]:  # empty between stages: fit() builds the next stage's fresh optimisers
            self.build_optimizers(self.pos["stage"])
            for k, o in self.opts.items():
                o.load_state_dict(st["opts"][k])
            for k, s in self.scheds.items():
                s.load_state_dict(st["scheds"][k])
        self.scaler.load_state_dict(st["scaler"])
        self.best_score, self.bad_epochs = st["best_score"], st["bad_epochs"]
        self.history = st["history"]
        self.norms = {k: deque(v, maxlen=50) for k, v in st["norms"].items()}
        set_rng_state(st["rng"])
        self.resumed = True
        self.log.write({"kind": "event", "event": "resumed", **self.pos})

    def save_best(self, metrics: dict[str, float]) -> None:
        if self.main:
            summary = {**metrics, "stage": self.pos["stage"], "epoch": self.pos["epoch"], "step": self.pos["step"]}
            try:
                save_generator(self.out / "best_generator.pt", self.G.state_dict(), self.cfg.generator_kwargs(),
                               asdict(self.cfg.feature_config()), FEATURE_VERSION, summary)
            except RigError as exc:
                self.event("best_refused", reason=str(exc))

    def snapshot_stage_best(self, stage: int) -> None:
        """Keep the best generator so far as best_stage{N}_generator.pt when stage N ends (for ablations:
        the stage-1 snapshot is the supervised + physical model, before any adversarial training)."""
        best = self.out / "best_generator.pt"
        if self.main and best.is_file():
            with atomic_path(self.out / f"best_stage{stage}_generator.pt") as tmp:
                shutil.copyfile(best, tmp)

    def advance_stage(self, stage: int) -> int:
        """End ``stage``: keep its best generator, start the next stage with fresh optimisers."""
        self.snapshot_stage_best(stage)
        stage += 1
        self.pos.update(stage=stage, epoch=0, batch=0)
        self.bad_epochs = 0
        self.opts, self.scheds = {}, {}
        return stage

    # ------------------------------------------------------------------ main loop
    def prepare_data(self) -> None:
        """Compute this rank's share of the feature cache, then load everything. An unlabelled rig
        that cannot be read or featurised is left out and reported (event ``unlabeled_skipped``), as
        predict and evaluate skip bad files; labelled and validation rigs must all be usable."""
        for rs in (self.train_l, self.val):
            rs.prepare(self.dist.rank, self.dist.world, self.progress)
        self.prepare_unlabeled(self.dist.rank, self.dist.world, drop=False)
        dd.barrier(self.dist)
        for rs in (self.train_l, self.val):
            rs.prepare(0, 1, False)
        self.prepare_unlabeled(0, 1, drop=True)

    def prepare_unlabeled(self, rank: int, world: int, drop: bool) -> None:
        """Features of unlabelled rig i on rank i % world; with ``drop`` (every rank, all rigs, the
        same decisions) the rigs that fail are removed from the set and reported."""
        keep = []
        for i, path in enumerate(self.train_u.paths):
            if i % world == rank:
                try:
                    self.train_u.store.arrays(path, 0)
                except Exception as exc:  # noqa: BLE001 -- one bad unlabelled file must not stop training
                    if drop:
                        self.event("unlabeled_skipped", file=str(path), reason=f"{type(exc).__name__}: {exc}")
                    continue
            keep.append(path)
        if drop:
            self.train_u.paths, self.train_u.labeled = keep, [False] * len(keep)

    def stage_active(self, stage: int) -> bool:
        return self.stage_epochs(stage) > 0

    def unlabeled_batch(self, epoch: int, i: int) -> Optional[Batch]:
        if len(self.train_u) == 0:
            return None
        batches = self._u_batches.get(epoch)
        if batches is None:
            batches = epoch_batches(self.train_u.sizes(), self.cfg.data.vertex_budget, self.cfg.run.seed, epoch, 1,
                                    self.dist.rank, self.dist.world)
            self._u_batches = {epoch: batches}
        return self.train_u.batch(batches[i % len(batches)], self.cfg.run.seed, epoch + 10_000).to(self.device)

    def fit(self) -> dict[str, Any]:
        """Run (or continue) the stages; returns a summary (also written to summary.json when the run
        ends). SIGTERM saves the state at the end of the current step and ends the run (``stopped``)."""
        with self.stop:
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.prepare_data()
        self._u_batches: dict[int, list] = {}
        self.G.train(), self.Ds.train(), self.Du.train()
        if self.main:
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
            self.log.write({"kind": "start", "labeled": len(self.train_l), "unlabeled": len(self.train_u),
                            "val": len(self.val), "world": self.dist.world, "device": str(self.device),
                            "resumed": self.resumed, **self.pos})
        t0 = time.time()
        killed = stopped = False
        sizes = self.train_l.sizes()
        stage = self.pos["stage"]
        while stage <= 3 and not killed:
            if not self.stage_active(stage):
                stage += 1
                self.pos.update(stage=stage, epoch=0, batch=0)
                continue
            if not self.opts or set(self.opts) != ({"g", "ds", "du"} if stage == 2 else {"g"}):
                self.build_optimizers(stage)
            stop_stage = False
            while not stop_stage and self.pos["epoch"] < self.stage_epochs(stage):
                epoch = self.pos["epoch"]
                batches = epoch_batches(sizes, cfg.data.vertex_budget, cfg.run.seed, epoch + 1000 * stage, 0,
                                        self.dist.rank, self.dist.world)
                it = range(self.pos["batch"], len(batches))
                bar = None
                if self.progress:
                    from tqdm import tqdm

                    bar = tqdm(it, desc=f"stage {stage} epoch {epoch}", unit="batch", leave=False)
                    it = bar
                for bi in it:
                    L = self.train_l.batch(batches[bi], cfg.run.seed, epoch + 1000 * stage).to(self.device)
                    if stage == 2:
                        rec = self.joint_step(L, self.unlabeled_batch(epoch + 1000 * stage, bi))
                    elif stage == 1:
                        rec = self.supervised_step(L, self.stage1_const())
                    else:
                        rec = self.supervised_step(L, cfg.stages.stage3_const)
                    self.pos["step"] += 1
                    self.pos["batch"] = bi + 1
                    rec = {"kind": "step", **self.pos, "lr_g": self.scheds["g"].get_last_lr()[0], **rec}
                    self.history["step"].append(rec)
                    self.log.write(rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", mse=f"{rec['mse']:.4f}")
                    stopped, due = self.step_flags()
                    if stopped or due or (cfg.run.checkpoint_every_steps
                                          and self.pos["step"] % cfg.run.checkpoint_every_steps == 0):
                        self.save_state()
                    if stopped:
                        self.event("stopped", signal=self.stop.requested or "SIGTERM (another rank)")
                        killed = True
                        break
                    if cfg.run.kill_after_steps and self.pos["step"] >= cfg.run.kill_after_steps:
                        killed = True
                        break
                if bar is not None:
                    bar.close()
                if killed:
                    break
                metrics = self.validate()
                improved = metrics["val_score"] < self.best_score - 1e-9
                if improved:
                    self.best_score = metrics["val_score"]
                    self.bad_epochs = 0
                    self.save_best(metrics)
                else:
                    self.bad_epochs += 1
                rec = {"kind": "epoch", **self.pos, **metrics, "best_score": self.best_score,
                       "seconds": time.time() - t0}
                self.history["epoch"].append(rec)
                self.log.write(rec)
                if self.progress:
                    print(f"stage {stage} epoch {epoch}: val mse {metrics['val_mse']:.5f} cos {metrics['val_cos']:.4f} "
                          f"smooth {metrics['val_smooth']:.5f}{' *' if improved else ''}", flush=True)
                if stage == 1 and metrics["val_mse"] < cfg.stages.stage1_mse and metrics["val_cos"] > cfg.stages.stage1_cos:
                    stop_stage = True
                if self.bad_epochs >= cfg.stages.patience:
                    self.event("early_stop", patience=cfg.stages.patience)
                    stop_stage = True
                self.pos.update(epoch=epoch + 1, batch=0)
                if stop_stage:
                    stage = self.advance_stage(stage)
                self.save_state()
                if self.main and self.make_plots and cfg.run.plot_every and (epoch + 1) % cfg.run.plot_every == 0:
                    self.plot()
            if not stop_stage and not killed:
                stage = self.advance_stage(stage)
                self.save_state()
        summary = {"killed": killed and not stopped, "stopped": stopped, "best_score": self.best_score,
                   "steps": self.pos["step"], "events": self.events,
                   "seconds": time.time() - t0, "world": self.dist.world, "replicas_in_sync": self.replicas_in_sync(),
                   "last_epoch": self.history["epoch"][-1] if self.history["epoch"] else None}
        if self.main and not killed:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
            if self.make_plots:
                self.plot()
        self.log.close()
        return summary

    def replicas_in_sync(self) -> bool:
        """All ranks hold the same parameters (compares a checksum of every model across ranks)."""
        sums = torch.stack([torch.cat([p.detach().double().reshape(-1).cpu() for p in m.parameters()]).abs().sum()
                            for m in (self.G, self.Ds, self.Du)])
        total = dd.all_sum(sums, self.dist)
        return bool(torch.allclose(total, sums * self.dist.world, rtol=1e-12, atol=0))

    def stage1_const(self) -> float:
        return self.cfg.stages.stage1_const

    def plot(self) -> None:
        from backend.training.plots import write_plots

        write_plots(self, self.out / "plots")

    # ------------------------------------------------------------------ benchmark
    def benchmark(self, max_batches: int = 0) -> dict[str, float]:
        """Seconds per epoch of stage-1 and stage-2 steps on the train split (features precomputed
        first, not timed). ``max_batches`` > 0 times only that many batches per stage and
        extrapolates to the epoch by vertex count."""
        t = time.time()
        self.prepare_data()
        out: dict[str, float] = {"feature_seconds": time.time() - t}
        self._u_batches = {}
        sizes = self.train_l.sizes()
        batches = epoch_batches(sizes, self.cfg.data.vertex_budget, self.cfg.run.seed, 0)
        if max_batches > 0:
            batches = batches[:max_batches]
        done = sum(sizes[i] for b in batches for i in b)
        out.update(train_rigs=len(sizes), train_vertices=sum(sizes), timed_batches=len(batches), timed_vertices=done)
        for stage in (1, 2):
            self.build_optimizers(stage)
            t = time.time()
            for bi, idx in enumerate(batches):
                L = self.train_l.batch(idx, self.cfg.run.seed, 0).to(self.device)
                if stage == 1:
                    self.supervised_step(L, self.stage1_const())
                else:
                    self.joint_step(L, self.unlabeled_batch(0, bi))
            sec = time.time() - t
            out[f"stage{stage}_seconds_timed"] = sec
            out[f"stage{stage}_seconds_per_epoch"] = sec * sum(sizes) / max(done, 1)
        t = time.time()
        self.validate()
        out["validate_seconds"] = time.time() - t
        return out
