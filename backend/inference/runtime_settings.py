"""The post-network settings of a prediction as one object, :class:`RuntimeSettings`.

A model stores its own choice of most of them in its metadata (``prior_blend`` and its per-rig rule
``prior_blend_rule``, ``sharpen``, ``smooth``, ``diffuse``, ``geodesic_share``, ``enclosing_pieces``: the keys of
backend.inference.model_meta); ``prune`` is the runtime's own default. The metadata is read once,
into ``ModelInfo.settings`` (model_meta.read_runtime_settings); a caller's choices (command-line
options, the add-on's options) are applied with :meth:`RuntimeSettings.with_overrides`, the one place
that checks them.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Mapping

from backend.inference.blend_rule import PieceBlendRule
from backend.inference.postprocess import DEFAULT_PRUNE, MAX_DIFFUSE, MAX_SMOOTH, SHARPEN_RANGE


@dataclass(frozen=True)
class Range:
    """The values a setting accepts: [low, high] (``open_high``: [low, high)); ``whole``: whole numbers
    only; ``unit``: what the number measures, said after the range in errors."""

    low: float
    high: float
    whole: bool = False
    open_high: bool = False
    unit: str = ""

    def __contains__(self, value: float) -> bool:
        below = value < self.high if self.open_high else value <= self.high
        return math.isfinite(value) and self.low <= value and below

    def text(self) -> str:
        """'in [0, 1]', 'a whole number in [0, 20]', 'in [0, 1)', with the unit when there is one."""
        span = f"in [{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        return ("a whole number " if self.whole else "") + span + (f" {self.unit}" if self.unit else "")


#: The values each setting accepts (the same for a model's metadata and for a caller's override).
RANGES: dict[str, Range] = {
    "prior_blend": Range(0.0, 1.0),
    "sharpen": Range(*SHARPEN_RANGE),
    "smooth": Range(0, MAX_SMOOTH, whole=True),
    "diffuse": Range(0.0, MAX_DIFFUSE, unit="% of the character's size"),
    "geodesic_share": Range(0.0, 1.0),
    "enclosing_pieces": Range(0.0, 1.0, unit="of the surface"),
    "prune": Range(0.0, 1.0, open_high=True),
}


def checked(name: str, value: object) -> float | int:
    """``value`` as setting ``name`` takes it (int for whole-number settings, else float); ValueError,
    one line naming the setting and its range, for anything else."""
    rng = RANGES[name]
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and rng.whole:
        ok = float(value).is_integer()
    if not ok or value not in rng:
        raise ValueError(f"{name} must be {rng.text()}, got {value!r}")
    return int(value) if rng.whole else float(value)


@dataclass(frozen=True)
class RuntimeSettings:
    """What the runtime does after the network, in this order (backend.inference.predictor):

    - ``prior_blend`` b in [0, 1]: the weights are b x the network's output + (1 - b) x the prior it
      was given; ``prior_blend_rule`` (a PieceBlendRule, or None) sets b per rig instead;
    - ``geodesic_share`` s in [0, 1]: then (1 - s) x those + s x the geodesic falloff over the candidates;
    - the clean-up (backend.inference.postprocess.postprocess): ``smooth`` Laplacian iterations,
      heat diffusion with a reach of ``diffuse`` % of the character's size, the power ``sharpen``,
      the influence limit, and fading out weights below ``prune``;
    - ``enclosing_pieces`` e in [0, 1]: every separate piece under e of the surface whose convex hull
      encloses the midpoint of exactly one deform bone goes to that bone alone
      (backend.inference.enclosed_bones; 0: none).

    The defaults are those of a model that stores none of them: the network alone, no clean-up but
    the default prune. The model-free modes use :meth:`model_free`.
    """

    prior_blend: float = 1.0
    prior_blend_rule: PieceBlendRule | None = None
    sharpen: float = 1.0
    smooth: int = 0
    diffuse: float = 0.0
    geodesic_share: float = 0.0
    enclosing_pieces: float = 0.0
    prune: float = DEFAULT_PRUNE

    #: The settings a model's metadata stores (``prune`` is the runtime's own).
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("prior_blend", "prior_blend_rule", "sharpen", "smooth", "diffuse",
                                             "geodesic_share", "enclosing_pieces")
    #: The settings that only mean something with a network (the model-free modes keep them neutral).
    LEARNED_ONLY: ClassVar[tuple[str, ...]] = ("prior_blend", "prior_blend_rule", "sharpen", "geodesic_share",
                                               "enclosing_pieces")

    def __post_init__(self) -> None:
        for name in RANGES:
            object.__setattr__(self, name, checked(name, getattr(self, name)))
        if self.prior_blend_rule is not None and not isinstance(self.prior_blend_rule, PieceBlendRule):
            raise ValueError(f"prior_blend_rule must be a PieceBlendRule or None, got {self.prior_blend_rule!r}")

    def with_overrides(self, **values: float | int | None) -> "RuntimeSettings":
        """These settings with a caller's ``values`` (None: keep this one) -> new settings. A fixed
        ``prior_blend`` replaces the per-rig rule. ValueError, one line, for an unknown name or a value
        out of its range (RANGES)."""
        known = [f.name for f in fields(self) if f.name != "prior_blend_rule"]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown run-time settings {unknown}; known: {', '.join(known)}")
        given = {k: checked(k, v) for k, v in values.items() if v is not None}
        if "prior_blend" in given:
            given["prior_blend_rule"] = None
        return replace(self, **given) if given else self

    def model_free(self) -> "RuntimeSettings":
        """These settings for the model-free modes: the network's settings neutral (no blend, no
        sharpening, no geodesic share, no enclosing pieces), the clean-up kept."""
        return replace(self, prior_blend=1.0, prior_blend_rule=None, sharpen=1.0, geodesic_share=0.0,
                       enclosing_pieces=0.0)

    def blend_for_share(self, share: float | None) -> float:
        """The network's share b for a rig with ``share`` of its surface in small separate pieces:
        the per-rig rule's when there is one (``share`` is then needed), else the fixed blend."""
        if self.prior_blend_rule is None:
            return self.prior_blend
        if share is None:
            raise ValueError("the per-rig blend rule needs the rig's small-piece share")
        return self.prior_blend_rule.blend_for_share(share)

    def model_values(self) -> dict:
        """The settings a model stores, by name (MODEL_KEYS; the rule as a PieceBlendRule or None)."""
        return {k: getattr(self, k) for k in self.MODEL_KEYS}

    def stored_values(self) -> dict:
        """:meth:`model_values` as plain values (``export_generator``'s arguments, the keys of model
        cards and reports): the per-rig rule as its dict."""
        rule = self.prior_blend_rule
        return dict(self.model_values(), prior_blend_rule=rule.as_dict() if rule is not None else None)


def overrides_from(values: Mapping[str, object]) -> dict:
    """The run-time settings among ``values`` (e.g. ``vars()`` of parsed options), those not None:
    what :meth:`RuntimeSettings.with_overrides` takes."""
    names = [f.name for f in fields(RuntimeSettings) if f.name != "prior_blend_rule"]
    return {k: values[k] for k in names if values.get(k) is not None}
