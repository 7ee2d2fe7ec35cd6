"""Fine-tune the generator on artists' corrections, check it, and publish a new model version.

Training mixes two kinds of steps in an order fixed by (seed, epoch): correction batches (the
corrected rigs, every vertex the artist changed weighted ``changed_weight`` times the rest) and
replay batches from the original train split, so that ``replay_share`` of the steps revisit the
old characters (:func:`epoch_plan`). The loss is the trainer's L_sup with per-vertex weights
(backend.training.losses.weighted_supervised_loss) + ``stages.stage3_const`` * L_const. A state
checkpoint is written atomically after every epoch (and every ``run.checkpoint_every_steps``):
``resume`` continues a killed run with the same result.

Before publishing, the old (base) and new generators are scored on the weights users get: their
output through the run-time settings of the model in use, which the new version keeps, scored by
the evaluation's metrics (backend.training.runtime_score), on the validation split and on the
corrections (optionally held out in turn). A new model whose validation per-vertex L1 rose by more
than ``tolerance`` is refused. Publishing (backend.training.publish) writes
``autoskin-vN.{pth,onnx,md,json}`` into the models folder and, unless told not to, makes it the
model in use.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.inference import model_store
from backend.inference.runtime_settings import RuntimeSettings
from backend.io.npz import load_npz
from backend.models.checkpoint import load_generator_checkpoint, save_generator, save_torch
from backend.models.generator import Generator
from backend.rig import RigError
from backend.training.adapt import torch_net
from backend.training.checkpoint import load_state, rng_state, set_rng_state
from backend.training.config import RESUME_FREE, TrainConfig, config_diff
from backend.training.corrections import Correction, CorrectionSet, vertex_loss_weights
from backend.training.data import (FeatureStore, Sample, collate_samples, connected_crop, crop_sample, epoch_batches,
                                   list_rigs)
from backend.training.distributed import pick_device
from backend.training.losses import physical_loss, weighted_supervised_loss
from backend.training.publish import fmt, publish, settings_in_use
from backend.training.runtime_score import EvalRig, score
from backend.training.schedule import warmup_cosine

REFUSED = 3  # exit code of a refused model


@dataclass
class FinetuneOptions:
    """What the ``finetune`` command controls besides the TrainConfig (optim/loss/data/run sections)."""

    epochs: int = 20
    replay_share: float = 0.5  # fraction of the steps that replay the original train split
    changed_weight: float = 5.0  # loss weight of a vertex the artist changed (others: 1)
    changed_threshold: float = 0.05  # L1(row corrected - row predicted) above this = changed
    tolerance: float = 0.02  # largest allowed rise of the validation per-vertex L1
    holdout_eval: bool = False  # also fine-tune once per held-out fold and score the held-out corrections
    folds: int = 5  # folds of the held-out evaluation when there are more corrections than this
    export_method: str = "auto"  # ONNX exporter (backend.export.onnx_export)
    activate: bool = True  # make the published version the model in use
    kill_after_steps: int = 0  # testing aid: stop abruptly after this many steps (simulates a crash)


@dataclass
class Item:
    """One rig to train on: its sample (features + candidate targets) and (V,) float32 row weights."""

    name: str
    sample: Sample
    row_weight: np.ndarray


@dataclass
class FinetuneResult:
    """decision: "published", "refused", "evaluated" (dry run) or "interrupted"."""

    decision: str
    metrics: dict = field(default_factory=dict)
    version: Optional[int] = None
    paths: dict = field(default_factory=dict)
    message: str = ""


# --------------------------------------------------------------------------------------- schedule
def replay_batch_count(correction_batches: int, share: float) -> int:
    """Replay batches per epoch so that they make ``share`` of the steps: round(n * share / (1 - share))."""
    if not 0.0 <= share < 1.0:
        raise RigError(f"--replay-share must be within [0, 1), got {share}")
    return int(round(correction_batches * share / (1.0 - share)))


def epoch_plan(correction_sizes: list[int], replay_sizes: list[int], budget: int, share: float, seed: int,
               epoch: int) -> list[tuple[str, list[int]]]:
    """The steps of ``epoch``: ("c", correction indices) and ("r", replay indices) batches, each packed
    up to ``budget`` vertices, interleaved in an order fixed by (seed, epoch)."""
    corr = epoch_batches(correction_sizes, budget, seed, epoch, stream=21)
    n_r = replay_batch_count(len(corr), share) if replay_sizes else 0
    rep_all = epoch_batches(replay_sizes, budget, seed, epoch, stream=22) if n_r else []
    steps = [("c", b) for b in corr] + [("r", rep_all[i % len(rep_all)]) for i in range(n_r)]
    order = np.random.default_rng([seed, epoch, 23]).permutation(len(steps))
    return [steps[i] for i in order]


def npz_vertex_count(path: Path) -> int:
    """V of a rig file without decoding anything but its ``vertices`` array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return int(data["vertices"].shape[0])
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise RigError(f"{path}: not a readable rig file ({exc})") from None


# --------------------------------------------------------------------------------------- model i/o
def load_base(path: str | Path) -> tuple[Generator, dict]:
    """(generator on CPU in eval mode, checkpoint dict) of the base checkpoint; refuses one made with
    other feature code."""
    model, ckpt = load_generator_checkpoint(path)
    if ckpt.get("feature_version") != FEATURE_VERSION:
        raise RigError(f"{path}: trained with features {ckpt.get('feature_version')!r}, the installed code is "
                       f"{FEATURE_VERSION!r}; fine-tune a model trained with this code")
    return model, ckpt


def batch_tensors(items: list[Item], device: torch.device) -> dict[str, torch.Tensor]:
    """Collated inputs + targets + ``row_weight`` (V_total,) of ``items`` on ``device``."""
    b = collate_samples([it.sample for it in items])
    t = dict(b.tensors)
    t["row_weight"] = torch.from_numpy(np.concatenate([it.row_weight for it in items]).astype(np.float32))
    return {k: v.to(device) for k, v in t.items()}


def forward(G: Generator, t: dict[str, torch.Tensor]) -> torch.Tensor:
    return G(t["vertex_feat"], t["neighbors"], t["bone_feat"], t["cand"], t["pair_feat"], t["prior"])


# --------------------------------------------------------------------------------------- the run
class Finetuner:
    """Data, base model and training loop of one fine-tuning run (folder ``out``)."""

    def __init__(self, cfg: TrainConfig, base: str | Path, corrections: CorrectionSet, data_dir: str | Path,
                 out: str | Path, options: FinetuneOptions, progress: bool = True):
        self.cfg = cfg
        self.opt = options
        self.base_path = Path(base)
        self.out = Path(out)
        self.progress = progress
        self.corrections = corrections.accepted
        if not self.corrections:
            raise RigError("no usable correction to learn from")
        self.base, self.ckpt = load_base(self.base_path)
        self.base_sha = model_store.file_sha256(self.base_path)
        self.feature_config = FeatureConfig(**self.ckpt["feature_config"])
        self.device = pick_device(cfg.run.device)
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.out.parent / "cache"
        # the candidates the runtime uses by default: helper bones left out (backend.features.helper_bones)
        self.store = FeatureStore(cache, self.feature_config, skip_helpers=True)
        data_dir = Path(data_dir)
        self.val_paths = list_rigs(data_dir / "val")
        self.train_paths = list_rigs(data_dir / "train") if options.replay_share > 0 else []

    # ------------------------------------------------------------------ data
    def correction_item(self, c: Correction) -> Item:
        s = self.store.sample(c.path)
        return Item(c.path.name, s, vertex_loss_weights(c.changed, self.opt.changed_weight))

    def correction_eval(self, c: Correction) -> EvalRig:
        return EvalRig(c.path.name, c.rig, self.store.sample(c.path).features(), c.changed if c.changed.any() else None)

    def val_rigs(self) -> list[EvalRig]:
        out = []
        it = self.val_paths
        if self.progress:
            from tqdm import tqdm

            it = tqdm(it, desc="validation features", unit="rig", leave=False)
        for p in it:
            rig = load_npz(p)
            if rig.weights is None:
                raise RigError(f"{p}: a validation rig without weights")
            out.append(EvalRig(p.name, rig, self.store.sample(p).features()))
        return out

    def replay_item(self, i: int, epoch: int) -> Item:
        path = self.train_paths[i]
        s = self.store.sample(path)
        if s.num_vertices > self.cfg.data.max_vertices:
            s = crop_sample(s, connected_crop(s.neighbors, self.cfg.data.max_vertices,
                                              np.random.default_rng([self.cfg.run.seed, epoch, i, 29])))
        return Item(path.name, s, np.ones(s.num_vertices, np.float32))

    # ------------------------------------------------------------------ identity / resume
    def identity(self, corrections: list[Correction]) -> dict[str, Any]:
        """What a resumable state must match: base, corrections, options and config."""
        cfg = {sec: {k: v for k, v in vals.items() if (sec, k) not in RESUME_FREE}
               for sec, vals in self.cfg.to_dict().items()}
        opts = {k: v for k, v in asdict(self.opt).items() if k in ("epochs", "replay_share", "changed_weight",
                                                                    "changed_threshold")}
        return {"base_sha256": self.base_sha, "corrections": sorted(c.content_hash for c in corrections),
                "options": opts, "config": cfg}

    # ------------------------------------------------------------------ training
    def train(self, corrections: list[Correction], state_path: Optional[Path], resume: bool = False,
              desc: str = "fine-tune") -> tuple[Generator, dict]:
        """Fine-tune a copy of the base on ``corrections`` (+ replay). Returns (generator, info with
        steps, seconds, interrupted, last losses). ``state_path`` None: no state checkpoints."""
        cfg, opt = self.cfg, self.opt
        G = copy.deepcopy(self.base).to(self.device)
        G.train()
        items = [self.correction_item(c) for c in corrections]
        corr_sizes = [it.sample.num_vertices for it in items]
        rep_sizes = [min(npz_vertex_count(p), cfg.data.max_vertices) for p in self.train_paths]
        plans = [epoch_plan(corr_sizes, rep_sizes, cfg.data.vertex_budget, opt.replay_share, cfg.run.seed, e)
                 for e in range(opt.epochs)]
        total = max(sum(len(p) for p in plans), 1)
        o = cfg.optim
        optim = torch.optim.AdamW(G.parameters(), lr=o.lr_g, betas=tuple(o.betas), weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(optim, warmup_cosine(min(o.warmup_steps, total // 10), total,
                                                                       o.lr_g, o.min_lr))
        pos = {"epoch": 0, "batch": 0, "step": 0}
        history: list[dict] = []
        ident = self.identity(corrections)
        if resume and state_path is not None and state_path.is_file():
            st = load_state(state_path)
            if st.get("identity") != ident:
                diff = [k for k in ident if st.get("identity", {}).get(k) != ident[k]]
                if "config" in diff:
                    diff += config_diff(st["identity"]["config"], ident["config"])
                raise RigError(f"{state_path}: was made for another fine-tuning run (differs in {', '.join(diff)}); "
                               f"use another --out or drop --resume")
            G.load_state_dict(st["G"])
            optim.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            pos, history = dict(st["pos"]), list(st["history"])
            set_rng_state(st["rng"])

        def save() -> None:
            if state_path is not None:
                save_torch({"identity": ident, "G": G.state_dict(), "opt": optim.state_dict(),
                            "sched": sched.state_dict(), "pos": dict(pos), "history": history, "rng": rng_state()},
                           state_path)

        t0 = time.time()
        interrupted = False
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=pos["step"], desc=desc, unit="step", leave=False)
        c = cfg.loss
        while pos["epoch"] < opt.epochs and not interrupted:
            plan = plans[pos["epoch"]]
            for bi in range(pos["batch"], len(plan)):
                kind, idx = plan[bi]
                batch = [items[i] for i in idx] if kind == "c" else [self.replay_item(i, pos["epoch"]) for i in idx]
                t = batch_tensors(batch, self.device)
                w = forward(G, t).float()
                loss, mse, cos = weighted_supervised_loss(w, t["target"], t["pair_mask"], t["row_valid"],
                                                          t["row_weight"], c.cos_lambda)
                if cfg.ablation.physical and cfg.stages.stage3_const > 0:
                    loss = loss + cfg.stages.stage3_const * physical_loss(w, t, c.smooth, c.locality)[0]
                optim.zero_grad(set_to_none=True)
                if torch.isfinite(loss):
                    loss.backward()
                    norm = float(torch.nn.utils.clip_grad_norm_(G.parameters(), o.clip))
                    if math.isfinite(norm):
                        optim.step()
                sched.step()
                pos["step"] += 1
                pos["batch"] = bi + 1
                history.append({"step": pos["step"], "epoch": pos["epoch"], "kind": kind, "loss": float(loss.detach()),
                                "mse": float(mse.detach())})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(kind=kind, loss=f"{float(loss.detach()):.4f}")
                if cfg.run.checkpoint_every_steps and pos["step"] % cfg.run.checkpoint_every_steps == 0:
                    save()
                if opt.kill_after_steps and pos["step"] >= opt.kill_after_steps:
                    interrupted = True
                    break
            if interrupted:
                break
            pos.update(epoch=pos["epoch"] + 1, batch=0)
            save()
        if bar is not None:
            bar.close()
        G.eval()
        return G.cpu(), {"steps": pos["step"], "total_steps": total, "seconds": time.time() - t0,
                         "interrupted": interrupted, "last": history[-1] if history else None}

    # ------------------------------------------------------------------ held-out evaluation
    def holdout(self, settings: RuntimeSettings) -> dict[str, Any]:
        """Fine-tune once per fold without its corrections and score them (old vs new) under the
        run-time ``settings``."""
        n = len(self.corrections)
        if n < 2:
            return {"skipped": "needs at least 2 corrections"}
        k = min(n, max(self.opt.folds, 2))
        fold_of = np.arange(n) % k
        rows = []
        for f in range(k):
            held = [c for c, g in zip(self.corrections, fold_of) if g == f]
            rest = [c for c, g in zip(self.corrections, fold_of) if g != f]
            G, _ = self.train(rest, None, desc=f"held-out fold {f + 1}/{k}")
            rigs = [self.correction_eval(c) for c in held]
            old, new = runtime_score(self.base, rigs, settings), runtime_score(G, rigs, settings)
            rows.append({"held_out": [c.path.name for c in held], "old_l1": old["l1"], "new_l1": new["l1"],
                         "old_l1_changed": old["l1_focus"], "new_l1_changed": new["l1_focus"]})
        return {"folds": rows, "old_l1": float(np.mean([r["old_l1"] for r in rows])),
                "new_l1": float(np.mean([r["new_l1"] for r in rows]))}


def runtime_score(G: Generator, rigs: list[EvalRig], settings: RuntimeSettings, progress: bool = False,
                  desc: str = "evaluate") -> dict[str, float]:
    """backend.training.runtime_score.score of generator ``G`` (on the CPU, in eval mode)."""
    return score(torch_net(G.cpu().eval()), rigs, settings, progress, desc)


def run_finetune(cfg: TrainConfig, corrections: CorrectionSet, data_dir: str | Path, out: str | Path,
                 models_dir: str | Path, base: Optional[str | Path] = None,
                 options: FinetuneOptions = FinetuneOptions(), resume: bool = False, dry_run: bool = False,
                 progress: bool = True, log=print) -> FinetuneResult:
    """The whole loop: fine-tune, score old vs new on the runtime's weights, refuse or publish. Writes
    ``out/report.json``."""
    models_dir = Path(models_dir)
    settings = settings_in_use(models_dir)  # scored with and kept by the new version
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_path = Path(base) if base is not None else model_store.current_checkpoint(models_dir)
    base_version = model_store.current_model(models_dir) if base is None else None
    ft = Finetuner(cfg, base_path, corrections, data_dir, out, options, progress)
    log(f"base: {base_path}" + (f" (version {base_version.name})" if base_version else ""))
    G, info = ft.train(ft.corrections, out / "state.pt", resume=resume)
    if info["interrupted"]:
        return FinetuneResult("interrupted", {"training": info}, message=f"stopped after {info['steps']} steps")
    save_generator(out / "finetuned_generator.pt", G.state_dict(), ft.ckpt["config"], ft.ckpt["feature_config"],
                   FEATURE_VERSION, {"steps": info["steps"]})
    val = ft.val_rigs()
    corr = [ft.correction_eval(c) for c in ft.corrections]
    metrics: dict[str, Any] = {
        "val_old": runtime_score(ft.base, val, settings, progress, "validation, old"),
        "val_new": runtime_score(G, val, settings, progress, "validation, new"),
        "corr_old": runtime_score(ft.base, corr, settings), "corr_new": runtime_score(G, corr, settings),
        "training": info,
    }
    metrics["val_delta"] = metrics["val_new"]["l1"] - metrics["val_old"]["l1"]
    if options.holdout_eval:
        metrics["holdout"] = ft.holdout(settings)
    val_old, val_new, corr_old, corr_new = (metrics[k] for k in ("val_old", "val_new", "corr_old", "corr_new"))
    log(f"validation per-vertex L1 of the runtime's weights: old {fmt(val_old['l1'])} -> new {fmt(val_new['l1'])} "
        f"({metrics['val_delta']:+.4f}, tolerance {options.tolerance})")
    log(f"corrections per-vertex L1: old {fmt(corr_old['l1'])} -> new {fmt(corr_new['l1'])}; "
        f"changed vertices: old {fmt(corr_old['l1_focus'])} -> new {fmt(corr_new['l1_focus'])}")
    if "holdout" in metrics and "folds" in metrics["holdout"]:
        h = metrics["holdout"]
        log(f"held-out corrections per-vertex L1: old {fmt(h['old_l1'])} -> new {fmt(h['new_l1'])}")
    report = {"base": str(base_path), "metrics": metrics, "options": asdict(options),
              "runtime_settings": settings.stored_values()}
    if metrics["val_delta"] > options.tolerance:
        msg = (f"refused: the fine-tuned model is worse on validation by {metrics['val_delta']:.4f} per-vertex L1 "
               f"({fmt(val_old['l1'])} -> {fmt(val_new['l1'])}), more than the tolerance "
               f"{options.tolerance}; nothing was published (candidate kept in {out / 'finetuned_generator.pt'})")
        result = FinetuneResult("refused", metrics, message=msg)
    elif dry_run:
        result = FinetuneResult("evaluated", metrics, message="dry run: within tolerance, nothing published")
    else:
        card = {
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "base": {"checkpoint": str(base_path), "sha256": ft.base_sha,
                     "version": base_version.version if base_version else None,
                     "model_version": base_version.card.get("model_version") if base_version else None},
            "corrections": [c.card_entry() for c in ft.corrections],
            "skipped": corrections.report_lines()[1:] if (corrections.rejected or corrections.duplicates) else [],
            "options": asdict(options), "config": cfg.to_dict(), "metrics": metrics,
            "training": info, "feature_config": ft.ckpt["feature_config"], "model_config": ft.ckpt["config"],
        }
        card["skipped"] = [s.strip() for s in card["skipped"] if not s.strip().startswith("ok")]
        mv = publish(models_dir, G, ft.ckpt, card, options.export_method, options.activate, settings)
        result = FinetuneResult("published", metrics, version=mv.version,
                                paths={"onnx": str(mv.onnx), "card": str(mv.card_path),
                                       "checkpoint": str(mv.checkpoint)},
                                message=f"published {mv.onnx}" + (" (now in use)" if options.activate else ""))
    report.update(decision=result.decision, version=result.version, paths=result.paths, message=result.message)
    model_store.write_json_atomic(out / "report.json", report)
    return result
