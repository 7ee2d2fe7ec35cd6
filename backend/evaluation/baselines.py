"""Skinning methods to evaluate, in a registry: each maps a Rig (weights removed) to (V, J) weights.

Spec strings name a method and an optional argument: ``nearest``, ``envelope``, ``envelope:0.03``,
``geodesic``, ``boneheat``, ``model:PATH.onnx``. New methods plug in with :func:`register`.
A method returns (V, J) float32 weights, or (weights, info dict) to report extra facts
(bone heat reports its silent failures that way).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np

from backend.features.geometry import point_segment_distance
from backend.rig import Rig, RigError

MethodResult = Union[np.ndarray, tuple[np.ndarray, dict]]
MethodFn = Callable[[Rig], MethodResult]
Factory = Callable[[Union[str, None]], MethodFn]

#: default envelope temperature as a fraction of the mesh bounding-box diagonal
ENVELOPE_TEMPERATURE = 0.01

_REGISTRY: dict[str, Factory] = {}


class MethodUnavailable(RigError):
    """A method cannot run here (its module has not landed, its model file is missing...)."""


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(arg) -> method`` under ``name``."""
    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory
    return deco


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def method_label(spec: str) -> str:
    """The label of method ``name[:arg]`` in results and tables (a model method: its file's stem)."""
    name, _, arg = spec.strip().partition(":")
    return f"{name}:{Path(arg).stem}" if name in _MODEL_METHODS and arg else spec.strip()


def make_method(spec: str) -> tuple[str, MethodFn]:
    """Parse ``name[:arg]`` and build the method; returns (label for tables, method).

    Raises MethodUnavailable with the reason when it cannot run."""
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    if name not in _REGISTRY:
        raise MethodUnavailable(f"unknown method {name!r}; known: {', '.join(available_methods())}")
    fn = _REGISTRY[name](arg or None)
    return method_label(spec), fn


def _deform_distances(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """((V, Jd) float32 vertex-to-deform-bone-segment distances, (Jd,) bone indices)."""
    cols = rig.deform_indices
    dist, _ = point_segment_distance(rig.vertices, rig.joints[cols], rig.tails[cols])
    return dist, cols


def nearest_bone_weights(rig: Rig) -> np.ndarray:
    """(V, J) float32 hard weights: each vertex fully on its nearest deform bone segment."""
    dist, cols = _deform_distances(rig)
    w = np.zeros((rig.num_vertices, rig.num_bones), np.float32)
    w[np.arange(rig.num_vertices), cols[np.argmin(dist, axis=1)]] = 1.0
    return w


def envelope_weights(rig: Rig, temperature: float = ENVELOPE_TEMPERATURE) -> np.ndarray:
    """(V, J) float32 softmax over deform bones of -d_vj / (temperature * bbox diagonal)."""
    from backend.evaluation.deformation import bbox_diagonal

    if temperature <= 0:
        raise ValueError(f"envelope temperature must be positive, got {temperature}")
    dist, cols = _deform_distances(rig)
    tau = temperature * bbox_diagonal(rig.vertices)
    z = -(dist.astype(np.float64) - dist.min(axis=1, keepdims=True)) / tau
    e = np.exp(z)
    w = np.zeros((rig.num_vertices, rig.num_bones), np.float32)
    w[:, cols] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return w


@register("nearest")
def _nearest_factory(arg: str | None) -> MethodFn:
    if arg:
        raise MethodUnavailable(f"nearest takes no argument (got {arg!r})")
    return nearest_bone_weights


@register("envelope")
def _envelope_factory(arg: str | None) -> MethodFn:
    try:
        t = ENVELOPE_TEMPERATURE if arg is None else float(arg)
    except ValueError:
        raise MethodUnavailable(f"envelope:{arg}: the argument must be a temperature (fraction of the bbox "
                                f"diagonal)") from None
    if t <= 0:
        raise MethodUnavailable(f"envelope:{arg}: the temperature must be positive")
    return lambda rig: envelope_weights(rig, t)


@register("geodesic")
def _geodesic_factory(arg: str | None) -> MethodFn:
    try:
        from backend.features.geodesic import geodesic_prior_weights
    except ImportError as exc:
        raise MethodUnavailable(f"geodesic: backend/features/geodesic.py is not available ({exc})") from None
    return lambda rig: geodesic_prior_weights(rig)


def fill_unweighted(rig: Rig, weights: np.ndarray) -> np.ndarray:
    """(V, J) weights with every all-zero row given the weights of the nearest weighted vertex
    (Blender's bone heat silently leaves vertices it cannot reach unweighted; a rigger paints
    them from their neighbours). Without any weighted vertex the nearest deform bone takes them."""
    w = np.asarray(weights, np.float32).copy()
    empty = w.sum(axis=1) <= 0
    if not empty.any():
        return w
    if empty.all():
        return nearest_bone_weights(rig)
    from scipy.spatial import cKDTree

    donors = np.flatnonzero(~empty)
    _, nearest = cKDTree(rig.vertices[donors]).query(rig.vertices[empty])
    w[empty] = w[donors[nearest]]
    return w


@register("boneheat")
def _boneheat_factory(arg: str | None) -> MethodFn:
    """``boneheat`` or ``boneheat:fill`` (vertices Blender left unweighted take their nearest
    weighted neighbour's weights)."""
    if arg not in (None, "fill"):
        raise MethodUnavailable(f"boneheat:{arg}: the only setting is 'fill'")
    fill = arg == "fill"
    try:
        from backend.blender.boneheat import bone_heat_weights
    except ImportError as exc:
        raise MethodUnavailable(f"boneheat: backend/blender/boneheat.py (Blender bone heat) is not available "
                                f"({exc})") from None

    def run(rig: Rig) -> MethodResult:
        w, info = bone_heat_weights(rig)
        if fill:
            w = fill_unweighted(rig, w)
        return w, {"boneheat_unweighted": int(info.get("unweighted_vertices", 0)),
                   "boneheat_failed": bool(info.get("failed", False)),
                "boneheat_message": str(info.get("message", ""))}
    return run


def _model_method(arg: str | None, name: str, skip_helpers: bool, rigid_pieces: bool = False) -> MethodFn:
    if not arg:
        raise MethodUnavailable(f"{name}: give the model file, e.g. {name}:runs/best.onnx")
    path = Path(arg)
    if not path.is_file():
        raise MethodUnavailable(f"{name}: {path}: no such file")
    if path.suffix.lower() != ".onnx":
        raise MethodUnavailable(f"{name}: {path}: only exported .onnx models are evaluated; export the checkpoint "
                                f"first")
    try:
        from backend.inference.predictor import Predictor
    except ImportError as exc:
        raise MethodUnavailable(f"{name}: backend/inference/predictor.py is not available ({exc})") from None
    try:
        predictor = Predictor(path, skip_helpers=skip_helpers, rigid_pieces=rigid_pieces)
    except RigError:
        raise
    except Exception as exc:  # a corrupt or incompatible model file
        raise MethodUnavailable(f"{name}: {path}: cannot load the model ({type(exc).__name__}: {exc})") from None
    return lambda rig: np.asarray(predictor.predict(rig).weights, dtype=np.float32)


@register("model")
def _model_factory(arg: str | None) -> MethodFn:
    """The runtime as shipped: helper bones (``*_end`` chain ends, pole targets) are left empty."""
    return _model_method(arg, "model", skip_helpers=True)


@register("model-all-bones")
def _model_all_bones_factory(arg: str | None) -> MethodFn:
    """The runtime with every deform bone a candidate (ablation of backend.features.helper_bones)."""
    return _model_method(arg, "model-all-bones", skip_helpers=False)


@register("model-rigid")
def _model_rigid_factory(arg: str | None) -> MethodFn:
    """The runtime with its rigid-pieces option on (backend.inference.rigid_pieces)."""
    return _model_method(arg, "model-rigid", skip_helpers=True, rigid_pieces=True)


#: methods whose argument is a model file (labelled by the file's stem in tables)
_MODEL_METHODS = ("model", "model-all-bones", "model-rigid")


@register("heat")
def _heat_factory(arg: str | None) -> MethodFn:
    """``heat`` or ``heat:c=2,prune=0,facing=0,visibility=euclidean,smooth=2,window=1.25,skip_helpers=1``
    (backend/features/heat.py; skip_helpers=1 leaves helper bones empty like the runtime's Heat mode)."""
    try:
        from backend.features.heat import VISIBILITY, heat_prior_weights
    except ImportError as exc:
        raise MethodUnavailable(f"heat: backend/features/heat.py is not available ({exc})") from None
    kw: dict = {}
    skip = False
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        key, _, val = item.partition("=")
        key, val = key.strip(), val.strip()
        try:
            if key in ("c", "window", "prune"):
                kw[key] = float(val)
            elif key == "facing" and val in ("0", "1"):
                kw["facing"] = val == "1"
            elif key == "smooth":
                kw["smooth_iters"] = int(val)
            elif key == "visibility" and val in VISIBILITY:
                kw["visibility"] = val
            elif key == "skip_helpers" and val in ("0", "1"):
                skip = val == "1"
            else:
                raise ValueError
        except ValueError:
            raise MethodUnavailable(f"heat:{arg}: bad setting {item!r}; use c=FLOAT, window=FLOAT, prune=FLOAT, "
                                    f"facing=0|1, smooth=INT, "
                                    f"visibility={'|'.join(VISIBILITY)}, skip_helpers=0|1") from None
    if not skip:
        return lambda rig: heat_prior_weights(rig, **kw)
    from backend.features.helper_bones import without_helpers

    return lambda rig: heat_prior_weights(without_helpers(rig)[0], **kw)
