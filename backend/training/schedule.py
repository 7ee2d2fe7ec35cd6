"""The learning-rate schedule and the optimisers of a training stage."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from backend.training.config import OptimConfig


def warmup_cosine(warmup: int, total: int, base_lr: float, min_lr: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/warmup to 1 over ``warmup`` steps, then cosine down to min_lr/base_lr at
    ``total``."""
    floor = min(min_lr / base_lr, 1.0) if base_lr > 0 else 0.0

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(total - warmup, 1)
        p = min(max(step - warmup, 0) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return f


def stage_optimizers(groups: dict[str, tuple[nn.Module, float]], optim: OptimConfig, total: int
                     ) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.optim.lr_scheduler.LambdaLR]]:
    """AdamW and its warm-up + cosine schedule over ``total`` steps for each ``name: (model, lr)``."""
    opts, scheds = {}, {}
    for name, (model, lr) in groups.items():
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
        opts[name] = opt
        lr_lambda = warmup_cosine(optim.warmup_steps, total, lr, optim.min_lr)
        scheds[name] = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    return opts, scheds
