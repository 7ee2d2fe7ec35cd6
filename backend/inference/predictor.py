"""``Predictor``: rig -> (V, J) skin weights with the learned model (ONNX) or the geodesic prior.

numpy + scipy + onnxruntime only (no torch). Pipeline: canonical frame + features with the
model's stored feature config, the ONNX session, candidates -> all bones, post-processing.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from backend.inference.geometry_checks import check_geometry
from backend.inference.model_meta import ModelError
from backend.features.topology import MeshTopology
from backend.inference.postprocess import postprocess
from backend.inference.progress import ProgressFn, report, within
from backend.inference.enclosed_bones import enclosed_bones, give_to_bones
from backend.inference.rigid_pieces import rigid_pieces
from backend.inference.runtime_settings import RuntimeSettings, checked
from backend.inference.session import LoadedModel, default_threads, get_session
from backend.rig import Rig, validate_rig

#: The shipped model, relative to the repository root.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "autoskin.onnx"
MODEL_ENV = "AUTOSKIN_MODEL"
MODES = ("learned", "geodesic", "heat")
DEFAULT_VERTEX_BUDGET = 10_000


def default_model_path() -> Path:
    """``$AUTOSKIN_MODEL`` when set, else ``models/autoskin.onnx`` at the repository root."""
    env = os.environ.get(MODEL_ENV)
    return Path(env).expanduser() if env else DEFAULT_MODEL


@dataclass
class Prediction:
    """weights: (V, J) float32 over all rig bones (zero columns for non-deform bones), rows sum to 1;
    provider: what computed them ("CPUExecutionProvider", "CUDAExecutionProvider" or "numpy" for
    the geodesic mode); seconds: wall time of :meth:`Predictor.predict`."""

    weights: np.ndarray
    provider: str
    seconds: float
    mode: str
    info: dict = field(default_factory=dict)


def _simplifier():
    """(simplify_rig, transfer_to_rig) from backend.features.simplify, or None when absent."""
    try:
        from backend.features.simplify import simplify_rig, transfer_to_rig
    except ImportError:
        return None
    return simplify_rig, transfer_to_rig


class Predictor:
    """Skin weights for rigs; the ONNX session is created once (and cached per file across predictors).

    model_path: .onnx file (default :func:`default_model_path`); mode: "learned", or the model-free
    "geodesic" (volumetric geodesic falloff) or "heat" (heat diffusion, features/heat.py); device: "auto" | "cpu" | "cuda";
    threads: onnxruntime intra-op
    threads (None: ``$AUTOSKIN_THREADS`` or onnxruntime's default); vertex_budget: meshes with more
    vertices are predicted on a simplified copy and transferred back (when simplification exists);
    skip_helpers: leave the conventional no-skin bones empty (``*_end`` chain ends, pole targets:
    backend.features.helper_bones); rigid_pieces: learned mode, put each small separate piece on one
    bone when the network and the geometry agree on it (backend.inference.rigid_pieces; off by default:
    it helps mechanical models and hurts characters whose separate fins or legs are painted smoothly).

    The post-network settings are one :class:`RuntimeSettings`, ``self.settings``: the model's own
    (``ModelInfo.settings``; for the model-free modes the defaults, with the network's settings neutral)
    with the caller's ``overrides`` (names of RuntimeSettings' fields -> values, None: the model's own),
    checked by :meth:`RuntimeSettings.with_overrides`. ``prior_blend`` and ``sharpen`` are short for
    those two overrides.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, mode: str = "learned", device: str = "auto",
                 threads: int | None = None, vertex_budget: int = DEFAULT_VERTEX_BUDGET,
                 geodesic_resolution: int = 64, prior_blend: float | None = None, skip_helpers: bool = True,
                 rigid_pieces: bool = False, sharpen: float | None = None,
                 overrides: Mapping[str, float | int | None] | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        user = dict(overrides or {})
        user.update({k: v for k, v in (("prior_blend", prior_blend), ("sharpen", sharpen)) if v is not None})
        overridden = RuntimeSettings().with_overrides(**user)  # checks the values before a model is opened
        self.skip_helpers = bool(skip_helpers)
        self.rigid_pieces = bool(rigid_pieces)
        self.mode = mode
        self.device = device
        self.threads = threads if threads is not None else default_threads()
        self.vertex_budget = int(vertex_budget)
        self.geodesic_resolution = int(geodesic_resolution)
        self.model: LoadedModel | None = None
        self.model_path: Path | None = None
        if mode == "learned":
            path = Path(model_path).expanduser() if model_path is not None else default_model_path()
            if not path.is_file():
                raise ModelError(f"{path}: model file not found; the learned mode needs an exported model "
                                 f"(`python -m backend export CKPT {path}`, or set {MODEL_ENV}); "
                                 f"mode='geodesic' works without one")
            self.model_path = path
            self.model = get_session(path, device, self.threads)
        #: The run-time settings this predictor applies (see the class docstring).
        self.settings = (self.model.info.settings.with_overrides(**user) if self.model is not None
                         else overridden.model_free())

    @property
    def sharpen(self) -> float:
        """The sharpening power this predictor applies: the caller's, else the model's, 1.0 without a model."""
        return self.settings.sharpen

    @property
    def provider(self) -> str:
        return self.model.provider if self.model is not None else "numpy"

    def raw_weights(self, rig: Rig) -> tuple[np.ndarray, dict]:
        """(V, J) float32 weights before post-processing, and timing info."""
        ws, info = self._raw_for_blends(rig, [self.blend_for(rig)])
        return ws[0], info

    def blend_for(self, rig: Rig, blend: float | None = None, piece_share: float | None = None) -> float:
        """The generator's share for ``rig``: ``blend`` if given, else the settings' (the caller's fixed
        blend, else the model's per-rig rule (backend.inference.blend_rule; ``piece_share``: the rig's
        small-piece share when already known), else the model's fixed blend); 1.0 for the model-free
        modes, which ignore it."""
        if self.model is None:
            return 1.0
        if blend is not None:
            return self._blend(blend)
        rule = self.settings.prior_blend_rule
        if rule is not None and piece_share is None:
            piece_share = rule.share(rig)
        return self.settings.blend_for_share(piece_share)

    def _raw_for_blends(self, rig: Rig, blends: Sequence[float | None],
                        progress: ProgressFn | None = None) -> tuple[list[np.ndarray], dict]:
        """One (V, J) float32 raw weight matrix per prior blend (None: this predictor's, else the
        model's); the features and the network run once. The model-free modes ignore the blends.
        progress: told when the features and the network start (see backend.inference.progress)."""
        info: dict = {}
        report(progress, "features")
        if self.model is None:  # model-free modes
            t0 = time.perf_counter()
            if self.mode == "heat":
                from backend.features.heat import heat_prior_weights

                w = heat_prior_weights(rig, resolution=self.geodesic_resolution)
            else:
                from backend.features.geodesic import geodesic_prior_weights

                w = geodesic_prior_weights(rig, resolution=self.geodesic_resolution)
            info["prior_seconds"] = time.perf_counter() - t0
            return [np.asarray(w, np.float32)] * len(blends), info
        from backend.features.pipeline import compute_features

        t0 = time.perf_counter()
        feats = compute_features(rig, self.model.info.feature_config)
        t1 = time.perf_counter()
        report(progress, "network")
        w_vk = self.model.run(feats.model_inputs())
        t2 = time.perf_counter()
        if w_vk.shape != feats.cand.shape or not np.all(np.isfinite(w_vk)):
            raise ModelError(f"{self.model_path}: the model returned {w_vk.shape} weights "
                             f"(finite: {bool(np.all(np.isfinite(w_vk)))}) for {feats.cand.shape} candidates")
        out = []
        share = self.settings.geodesic_share
        if share > 0.0:
            from backend.features.geodesic import geodesic_weights
            from backend.inference.model_meta import DISTANCE_COLUMN

            falloff = geodesic_weights(feats.pair_feat[:, :, DISTANCE_COLUMN])
        for b in blends:
            blend = self._blend(b)
            # every row sums to 1 over the candidates, so the mixes do too
            w = w_vk if blend >= 1.0 else blend * w_vk + (1.0 - blend) * feats.prior
            if share > 0.0:
                w = (1.0 - share) * w + share * falloff
            out.append(feats.to_dense(w))
        info["prior_blend"] = self._blend(blends[0]) if len(blends) == 1 else None
        info.update(feature_seconds=t1 - t0, model_seconds=t2 - t1)
        return out, info

    def _blend(self, blend: float | None) -> float:
        """The share of the network in the learned weights: ``blend`` (checked), else the settings' fixed blend."""
        if blend is None:
            return self.settings.prior_blend
        return checked("prior_blend", blend)

    def predict(self, rig: Rig, max_influences: int = 4, prune: float | None = None,
                smooth: int | None = None, diffuse: float | None = None,
                progress: ProgressFn | None = None) -> Prediction:
        """Skin ``rig`` (its weights are ignored) -> :class:`Prediction`.

        max_influences: at most this many bones per vertex (0 = no limit), cut continuously;
        prune: weights below this fade out; smooth: Laplacian iterations over the mesh edges; diffuse:
        heat diffusion over the surface, reach in % of the character's size (these three: overrides of
        ``self.settings`` for this call, None: its own); progress: ``progress(stage, fraction)`` between
        the steps, which may raise (backend.inference.progress.Cancelled) to stop the run.
        """
        return self.predict_blends(rig, [None], max_influences, prune, smooth, diffuse, progress)[0]

    def predict_blends(self, rig: Rig, blends: Sequence[float | None], max_influences: int = 4,
                       prune: float | None = None, smooth: int | None = None,
                       diffuse: float | None = None, progress: ProgressFn | None = None) -> list[Prediction]:
        """:meth:`predict` once per prior blend (None: the settings' own), computing the features and
        running the network only once; ``seconds`` of each counts that shared work. The mesh's edges
        and pieces are computed once (backend.features.topology) and shared by every step."""
        t0 = time.perf_counter()
        report(progress, "checking")
        settings = self.settings.with_overrides(prune=prune, smooth=smooth, diffuse=diffuse)
        smooth, diffuse = settings.smooth, settings.diffuse
        rig = rig.without_weights()
        validate_rig(rig)
        check_geometry(rig)
        info: dict = {"vertices": rig.num_vertices, "bones": rig.num_bones,
                      "deform_bones": int(rig.is_deform.sum()), "simplified_to": None, "helper_bones_skipped": []}
        topology = MeshTopology(rig.faces, rig.num_vertices)
        share = None
        stored_rule = self.model.info.settings.prior_blend_rule if self.model is not None else None
        if stored_rule is not None:
            share = info["small_piece_share"] = stored_rule.share(rig, topology.pieces)
        blends = [self.blend_for(rig, b, share) for b in blends]
        if self.skip_helpers:
            from backend.features.helper_bones import without_helpers

            rig, helpers = without_helpers(rig)
            info["helper_bones_skipped"] = [rig.joint_names[j] for j in np.flatnonzero(helpers)]
        simp = _simplifier() if rig.num_vertices > self.vertex_budget > 0 else None
        target, index_map = rig, None
        if simp is not None:
            report(progress, "simplifying")
            target, index_map = simp[0](rig, self.vertex_budget, labels=topology.pieces[1])
            info["simplified_to"] = target.num_vertices
        raws, more = self._raw_for_blends(target, list(blends), progress)
        info.update(more)
        if self.model is not None:
            info.update(self.model.info.as_dict())
        enclosed = None  # geometry alone: the same for every blend
        if self.model is not None and settings.enclosing_pieces > 0.0:
            enclosed = enclosed_bones(rig.vertices, rig.faces, rig.joints, rig.tails, rig.is_deform,
                                      settings.enclosing_pieces, pieces=topology.pieces)
        shared = time.perf_counter() - t0
        out = []
        for n, (w, b) in enumerate(zip(raws, blends)):
            t1 = time.perf_counter()
            if simp is not None:
                report(progress, "transfer")
                w = np.asarray(simp[1](rig, index_map, w, labels=topology.pieces[1]), np.float32)
            report(progress, "post-processing")
            part = within(progress, "post-processing", None)
            done = None if part is None else (lambda share, n=n: part((n + share) / len(raws)))
            w = postprocess(w, rig.faces, max_influences=max_influences, prune=settings.prune, smooth=smooth,
                            allowed=rig.is_deform, sharpen=settings.sharpen, diffuse=diffuse, vertices=rig.vertices,
                            edges=topology.edges if (smooth > 0 or diffuse > 0) else None, progress=done)
            one = dict(info)
            one["sharpen"] = settings.sharpen
            one["smooth"] = int(smooth)
            one["diffuse"] = float(diffuse)
            if enclosed is not None:
                w = give_to_bones(w, enclosed[0])
                one["enclosed_pieces"] = len(enclosed[1])
            if self.model is not None and self.rigid_pieces:
                w, bones = rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, rig.is_deform,
                                        pieces=topology.pieces)
                one["rigid_pieces"] = len(bones)
            one["postprocess_seconds"] = time.perf_counter() - t1
            if self.model is not None:
                one["prior_blend"] = self._blend(b)
            out.append(Prediction(weights=w, provider=self.provider, seconds=shared + time.perf_counter() - t1,
                                  mode=self.mode, info=one))
        return out
