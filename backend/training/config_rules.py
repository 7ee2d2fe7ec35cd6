"""The allowed value of every training config key, checked once when a config is built, and the
settings that only make sense together, checked when training starts.

Booleans are checked by type alone (``config._coerce``); every other key has a rule here, so a
value out of range is refused with a message naming the key and its range before any work.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from backend.inference.postprocess import MAX_DIFFUSE, SHARPEN_RANGE
from backend.rig import RigError

INF = math.inf


@dataclass(frozen=True)
class Range:
    """A finite number in [low, high]; ``open_low`` / ``open_high`` exclude that end (NaN and inf never pass)."""

    low: float = -INF
    high: float = INF
    open_low: bool = False
    open_high: bool = False

    def ok(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def text(self) -> str:
        if self.low == -INF and self.high == INF:
            return "a finite number"
        if self.high == INF:
            return f"a finite number {'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings, or a string matching ``pattern`` (a regular expression)."""

    values: tuple[str, ...]
    pattern: str = ""

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and (value in self.values
                                           or bool(self.pattern and re.fullmatch(self.pattern, value)))

    def text(self) -> str:
        extra = f" (or {self.pattern})" if self.pattern else ""
        return "one of " + ", ".join(repr(v) for v in self.values) + extra


@dataclass(frozen=True)
class Check:
    """Any test ``ok(value)`` described as ``text``."""

    test: Callable[[Any], bool]
    description: str

    def ok(self, value: Any) -> bool:
        return bool(self.test(value))

    def text(self) -> str:
        return self.description


ANY_TEXT = Check(lambda v: isinstance(v, str), "a string")
POSITIVE = Range(0.0, INF, open_low=True, open_high=True)
NON_NEGATIVE = Range(0.0, INF, open_high=True)
COUNT = Range(0, INF)  # a whole number >= 0 (the type is checked by _coerce)
AT_LEAST_ONE = Range(1, INF)
PROBABILITY = Range(0.0, 1.0)
FINITE = Range()
SEED = Range(0, 2**32 - 1)


def _betas(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in value))


RULES: dict[str, dict[str, Range | Choice | Check]] = {
    "model": dict(hidden=AT_LEAST_ONE, fused=AT_LEAST_ONE, prior_gain=FINITE,
                  prior_floor=Range(0.0, 1.0, open_low=True, open_high=True), context_layers=COUNT,
                  pair_attention=COUNT, critic_hidden=AT_LEAST_ONE),
    "features": dict(k_bones=AT_LEAST_ONE, n_neighbors=AT_LEAST_ONE, geodesic_resolution=Range(8, 1024),
                     distance=Choice(("geodesic", "euclidean")), prior=Choice(("geodesic", "heat"))),
    "data": dict(vertex_budget=AT_LEAST_ONE, max_vertices=AT_LEAST_ONE, labeled_fraction=PROBABILITY,
                 unlabeled_dirs=Check(lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
                                      "a list of folder names"),
                 augment_variants=COUNT, augment_remesh=PROBABILITY, augment_detach=PROBABILITY,
                 augment_detach_copies=PROBABILITY, cache_dir=ANY_TEXT, plot_rigs=COUNT,
                 synth_unlabeled=COUNT, synth_seed=SEED, domain_balance=PROBABILITY),
    "loss": dict(sup=NON_NEGATIVE, adv_s=NON_NEGATIVE, adv_u=NON_NEGATIVE, cons=NON_NEGATIVE, const=NON_NEGATIVE,
                 cos_lambda=NON_NEGATIVE, ce=NON_NEGATIVE, gp_weight=NON_NEGATIVE, drift=NON_NEGATIVE,
                 cons_sigma=NON_NEGATIVE, smooth=NON_NEGATIVE, locality=NON_NEGATIVE, deform=NON_NEGATIVE,
                 deform_poses=AT_LEAST_ONE, deform_power=POSITIVE, deform_blend_rule=ANY_TEXT),
    "optim": dict(lr_g=POSITIVE, lr_d=POSITIVE, weight_decay=NON_NEGATIVE,
                  betas=Check(_betas, "two numbers in [0, 1), e.g. [0.5, 0.9]"), warmup_steps=COUNT,
                  min_lr=NON_NEGATIVE, clip=POSITIVE),
    "stages": dict(stage1_epochs=COUNT, stage1_mse=NON_NEGATIVE, stage1_cos=Range(-1.0, 1.0),
                   stage1_const=NON_NEGATIVE, stage2_epochs=COUNT, stage3_epochs=COUNT, stage3_lr=POSITIVE,
                   stage3_const=NON_NEGATIVE, patience=AT_LEAST_ONE, score_smooth=NON_NEGATIVE,
                   score_deform=NON_NEGATIVE),
    "run": dict(seed=SEED, device=Choice(("auto", "cpu", "cuda"), r"cuda:\d+"),
                amp=Choice(("bf16", "fp16", "off")), cpu_amp=Choice(("off", "bf16")), checkpoint_every_steps=COUNT,
                checkpoint_every_minutes=NON_NEGATIVE, plot_every=COUNT,
                spike_factor=POSITIVE, threads=COUNT, kill_after_steps=COUNT, init_generator=ANY_TEXT),
    "runtime": dict(prior_blend=PROBABILITY, sharpen=Range(*SHARPEN_RANGE), diffuse=Range(0.0, MAX_DIFFUSE),
                    enclosing_pieces=PROBABILITY),
}


def check_values(cfg: Any, source: str) -> None:
    """RigError naming ``source``, the first key out of range and its allowed range."""
    for section, rules in RULES.items():
        sub = getattr(cfg, section, None)
        for key, rule in rules.items():
            if not hasattr(sub, key):  # a key this version of the config does not have
                continue
            value = getattr(sub, key)
            if not rule.ok(value):
                raise RigError(f"{source}: {section}.{key} must be {rule.text()}; got {value!r}")


def check_training(cfg: Any) -> None:
    """RigError naming the settings of a TrainConfig that a training run cannot use together."""
    loss = cfg.loss
    if loss.deform < 0 or (loss.deform > 0 and (loss.deform_poses < 1 or loss.deform_power <= 0)):
        raise RigError(f"loss.deform must be >= 0 with loss.deform_poses >= 1 and loss.deform_power > 0, got "
                       f"{loss.deform}, {loss.deform_poses} and {loss.deform_power}")
    if cfg.stages.score_deform and not loss.deform:
        raise RigError("stages.score_deform needs loss.deform > 0 (the val rigs are posed only then)")
    if loss.deform_blend_rule and not loss.deform:
        raise RigError("loss.deform_blend_rule needs loss.deform > 0")
