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

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch

from backend.features.pipeline import FEATURE_VERSION
from backend.io.atomic import atomic_path
from backend.models.checkpoint import save_generator, save_torch, state_dict_finite, warm_start
from backend.models.critic import Critic
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training import distributed as dd
from backend.training.checkpoint import load_state, rng_state, set_rng_state
from backend.training.config import TrainConfig, config_diff
from backend.training.config_rules import check_training
from backend.training.data import Batch, epoch_batches
from backend.training.plots import write_plots
from backend.training.run_data import prepare_features, run_data
from backend.training.runlog import RunLog
from backend.training.signals import StopRequest
from backend.training.updates import Updates
from backend.training.validation import dominant_bones, validate


class Trainer:
    """Build with a config, a data folder (with train/ and val/) and a run folder; call :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, resume: bool = False,
                 progress: bool = True, tensorboard: bool = True, plots: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.device = dd.pick_device(cfg.run.device)
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

        check_training(cfg)
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.out.parent / "cache"
        self.data = run_data(cfg, data_dir, cache)
        self.store, self.train_l, self.train_u, self.val = (self.data.store, self.data.train_l, self.data.train_u,
                                                            self.data.val)

        self.log = RunLog(self.out, self.main, tensorboard)
        self.updates = Updates(cfg, self.G, self.Ds, self.Du, self.device, self.dist, self.event)
        self.pos = {"stage": 1, "epoch": 0, "batch": 0, "step": 0}
        self.best_score = math.inf
        self.bad_epochs = 0
        self.history: dict[str, list] = {"step": [], "epoch": []}
        self.events = 0
        self.resumed = False
        self.stop = StopRequest()  # SIGTERM: save the state and end at the next step
        self.saved_at = time.time()  # when state.pt was last written (run.checkpoint_every_minutes)
        self._u_batches: dict[int, list] = {}
        if resume:
            self._resume()

    # ------------------------------------------------------------------ stages
    def stage_epochs(self, stage: int) -> int:
        s = self.cfg.stages
        return {1: s.stage1_epochs, 2: s.stage2_epochs, 3: s.stage3_epochs}[stage]

    def stage_active(self, stage: int) -> bool:
        return self.stage_epochs(stage) > 0

    def stage1_const(self) -> float:
        return self.cfg.stages.stage1_const

    def steps_per_epoch(self) -> int:
        return max(len(epoch_batches(self.train_l.sizes(), self.cfg.data.vertex_budget, self.cfg.run.seed, 0,
                                     0, self.dist.rank, self.dist.world)), 1)

    def build_optimizers(self, stage: int) -> None:
        """Fresh optimisers and schedules of ``stage`` over its epochs."""
        self.updates.build(stage, self.stage_epochs(stage) * self.steps_per_epoch())

    # ------------------------------------------------------------------ steps (backend.training.updates)
    def generate(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.updates.generate(tensors)

    def apply(self, name: str, model: torch.nn.Module, loss: torch.Tensor, batch: Batch) -> float:
        return self.updates.apply(name, model, loss, batch)

    def supervised_step(self, L: Batch, const_weight: float) -> dict[str, float]:
        return self.updates.supervised_step(L, const_weight)

    def joint_step(self, L: Batch, U: Optional[Batch]) -> dict[str, float]:
        return self.updates.joint_step(L, U, self.pos["step"])

    def event(self, what: str, **info: Any) -> None:
        """Log an event at the current position (and print it when showing progress)."""
        self.events += 1
        rec = {"kind": "event", "event": what, **self.pos, **info}
        self.log.write(rec)
        if self.main and self.progress:
            print(f"[{what}] stage {self.pos['stage']} epoch {self.pos['epoch']} step {self.pos['step']} "
                  f"batch {info.get('batch')}: {info}", flush=True)

    def validate(self) -> dict[str, float]:
        """Val MSE, cosine, smoothness and score over all val rigs (backend.training.validation)."""
        return validate(self.G, self.generate, self.val, self.cfg, self.dist, self.device)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        up = self.updates.state()
        return {
            "config": self.cfg.to_dict(),
            "feature_version": FEATURE_VERSION,
            "pos": dict(self.pos),
            "G": self.G.state_dict(), "Ds": self.Ds.state_dict(), "Du": self.Du.state_dict(),
            "opts": up["opts"], "scheds": up["scheds"], "scaler": up["scaler"],
            "best_score": self.best_score, "bad_epochs": self.bad_epochs,
            "history": self.history, "norms": up["norms"],
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
        due = bool(minutes) and time.time() - self.saved_at >= 60 * minutes
        flags = [float(self.stop.requested is not None), float(due)]
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
        self.updates.load(st)
        self.best_score, self.bad_epochs = st["best_score"], st["bad_epochs"]
        self.history = st["history"]
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
        self.updates.clear()
        return stage

    # ------------------------------------------------------------------ main loop
    def prepare_data(self) -> None:
        """Compute this rank's share of the feature cache, then load everything; unusable unlabelled
        rigs are left out and reported (backend.training.run_data.prepare_features)."""
        prepare_features(self.data, self.dist, self.progress, self.event)

    def reset_unlabeled_batches(self) -> None:
        self._u_batches = {}

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
        self.reset_unlabeled_batches()
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
            if not self.updates.opts or set(self.updates.opts) != ({"g", "ds", "du"} if stage == 2 else {"g"}):
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
                    rec = {"kind": "step", **self.pos, "lr_g": self.updates.scheds["g"].get_last_lr()[0], **rec}
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
                if (stage == 1 and metrics["val_mse"] < cfg.stages.stage1_mse
                        and metrics["val_cos"] > cfg.stages.stage1_cos):
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

    def plot(self) -> None:
        """losses.png, grad_norms.png and weights.png (the first ``data.plot_rigs`` val rigs) in plots/."""
        k = min(self.cfg.data.plot_rigs, len(self.val))
        maps = dominant_bones(self.G, self.generate, self.val, k, self.cfg.run.seed, self.device) if k else []
        write_plots(self.history, self.out / "plots", maps)
