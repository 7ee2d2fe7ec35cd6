"""Timing of a training run's steps (``train --benchmark``): seconds per epoch of each stage."""
from __future__ import annotations

import time

from backend.training.data import epoch_batches
from backend.training.trainer import Trainer


def benchmark(trainer: Trainer, max_batches: int = 0) -> dict[str, float]:
    """Seconds per epoch of stage-1 and stage-2 steps on the train split (features precomputed
    first, not timed). ``max_batches`` > 0 times only that many batches per stage and
    extrapolates to the epoch by vertex count."""
    cfg = trainer.cfg
    t = time.time()
    trainer.prepare_data()
    out: dict[str, float] = {"feature_seconds": time.time() - t}
    trainer.reset_unlabeled_batches()
    sizes = trainer.train_l.sizes()
    batches = epoch_batches(sizes, cfg.data.vertex_budget, cfg.run.seed, 0)
    if max_batches > 0:
        batches = batches[:max_batches]
    done = sum(sizes[i] for b in batches for i in b)
    out.update(train_rigs=len(sizes), train_vertices=sum(sizes), timed_batches=len(batches), timed_vertices=done)
    for stage in (1, 2):
        trainer.build_optimizers(stage)
        t = time.time()
        for bi, idx in enumerate(batches):
            L = trainer.train_l.batch(idx, cfg.run.seed, 0).to(trainer.device)
            if stage == 1:
                trainer.supervised_step(L, trainer.stage1_const())
            else:
                trainer.joint_step(L, trainer.unlabeled_batch(0, bi))
        sec = time.time() - t
        out[f"stage{stage}_seconds_timed"] = sec
        out[f"stage{stage}_seconds_per_epoch"] = sec * sum(sizes) / max(done, 1)
    t = time.time()
    trainer.validate()
    out["validate_seconds"] = time.time() - t
    return out
