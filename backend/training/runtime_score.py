"""A generator scored on what users get: the runtime's weights, by the evaluation's metrics.

Fine-tuning's gate and its held-out figures use this scorer, so a version is accepted or refused
on the weights the published model would give. The generator's output goes through the run-time
settings the version will carry (a :class:`backend.inference.runtime_settings.RuntimeSettings`:
the model in use's, :func:`backend.training.publish.settings_in_use`): prior blend or per-rig blend
rule, geodesic share, smoothing, diffusion, sharpening, then the runtime's influence limit and
prune and its enclosing pieces (backend.inference.predictor), by the code ``adapt`` uses
(:func:`backend.training.style.rig_outputs`, :func:`backend.training.style.full_weights`). The
weights are scored against the rig's true weights by
:func:`backend.evaluation.runner.evaluate_weights` (``python -m backend evaluate``'s metrics).

The features are the rig's at full resolution with helper bones left out (the training feature
cache); the runtime predicts a mesh above its vertex budget (10 000 vertices) on a simplified copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from backend.evaluation.metrics import l1_per_vertex, restrict
from backend.evaluation.runner import evaluate_weights
from backend.features.pipeline import RigFeatures
from backend.inference.postprocess import DEFAULT_PRUNE
from backend.inference.runtime_settings import RuntimeSettings
from backend.rig import Rig
from backend.training.style import NetFn, RigCase, StyleSettings, enclosed_of, full_weights, rig_outputs


@dataclass
class EvalRig:
    """A rig to score: ``rig`` with its true weights, ``feats`` the generator inputs of the rig with
    its helper bones left out, optional (V,) bool ``focus`` rows (the vertices an artist changed)."""

    name: str
    rig: Rig
    feats: RigFeatures
    focus: Optional[np.ndarray] = None


def rig_blend(settings: RuntimeSettings, rig: Rig) -> float:
    """The generator's share in ``rig``'s weights: the per-rig rule's when the settings hold one, else
    the fixed blend (as Predictor.blend_for)."""
    rule = settings.prior_blend_rule
    return settings.blend_for_share(rule.share(rig) if rule is not None else None)


def runtime_style(settings: RuntimeSettings) -> tuple[StyleSettings, int]:
    """(the post-network settings with the blend left to each rig, smoothing iterations); ValueError
    for a prune other than the runtime's default, which backend.training.style applies."""
    if settings.prune != DEFAULT_PRUNE:
        raise ValueError(f"the runtime scorer prunes at {DEFAULT_PRUNE}, got settings with prune {settings.prune}")
    return StyleSettings(None, settings.sharpen, settings.diffuse, settings.geodesic_share), settings.smooth


def runtime_weights(net: NetFn, r: EvalRig, settings: RuntimeSettings) -> np.ndarray:
    """(V, J) float32 weights the runtime gives ``r.rig`` with network ``net`` under ``settings``."""
    from backend.features.helper_bones import without_helpers

    style, smooth = runtime_style(settings)
    base = without_helpers(r.rig)[0]
    case = RigCase(r.rig, base, r.feats, None, rig_blend(settings, r.rig),
                   enclosed=enclosed_of(base, settings.enclosing_pieces))
    # one scored row and pose: rig_outputs' fitting rows are not used here
    return full_weights(rig_outputs(case, net, [style.diffuse], smooth, rows=1, poses=1), style)


def score(net: NetFn, rigs: list[EvalRig], settings: RuntimeSettings, progress: bool = False,
          desc: str = "evaluate") -> dict[str, float]:
    """Means over ``rigs`` of the runtime weights' metrics: {"l1": per-vertex L1, "deform_mean":
    mean deformation error (% of the diagonal), "l1_focus": per-vertex L1 over each rig's focus rows
    (NaN when no rig has any), "rigs": count}."""
    it = rigs
    if progress:
        from tqdm import tqdm

        it = tqdm(rigs, desc=desc, unit="rig", leave=False)
    l1, deform, focus = [], [], []
    for r in it:
        pred = runtime_weights(net, r, settings)
        row = evaluate_weights(r.rig, pred)
        l1.append(row["l1"])
        deform.append(row["deform_mean"])
        if r.focus is not None:
            t, p, kept = restrict(r.rig.weights, pred, r.rig.is_deform)
            sel = r.focus[kept]
            if sel.any():
                focus.append(l1_per_vertex(t[sel], p[sel]))
    return {"l1": _mean(l1), "deform_mean": _mean(deform), "l1_focus": _mean(focus), "rigs": len(rigs)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
