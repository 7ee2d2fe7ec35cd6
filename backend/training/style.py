"""A studio's style in the model's post-network settings, refitted on its corrected characters.

numpy + scipy + onnxruntime (no torch). The runtime turns the generator's output G, its prior P and
the geodesic falloff Q over the candidates (all (V, J), rows summing to 1) into weights by
``postprocess((1 - q) (b G + (1 - b) P) + q Q)`` with the model's prior blend b, geodesic share q,
diffusion reach and sharpening power (backend.inference.predictor), then the model's enclosing
pieces (kept, not refitted: ``RigCase.enclosed``). These settings
are where styles differ most (rigid game mobs want hard, one-bone rows; painted characters soft
ones), they need no training, and diffusion is linear, so each rig's G and P are diffused once per
reach and every setting of the grid costs one blend, sharpening, influence limit and prune.

A fit scores each setting on the corrections by the mean of its per-vertex L1 and its mean
deformation error (on sampled rows), each relative to the base settings' (so 1 = no change), and
takes the lowest when it is clearly better (:func:`pick`); :func:`fit_style` also fits without each
correction in turn and scores the one left out: the honest estimate of what a refit does to the
studio's other characters.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from backend.evaluation.deformation import bbox_diagonal, global_transforms, linear_blend_skinning, \
    random_local_rotations
from backend.evaluation.metrics import l1_per_vertex
from backend.features.pipeline import RigFeatures, compute_features
from backend.inference.enclosed_bones import enclosed_bones, give_to_bones
from backend.inference.postprocess import DEFAULT_PRUNE, limit_influences, normalize_rows, postprocess, \
    prune_weights, sharpen_weights, smooth_weights, diffuse_weights
from backend.rig import Rig

#: The grid searched by :func:`fit_style` (None blend = the model's own fixed blend or per-rig rule).
BLENDS: tuple[Optional[float], ...] = (None, 0.0, 0.25, 0.5, 0.75, 1.0)
SHARPENS: tuple[float, ...] = (1.0, 1.5, 2.5, 4.0, 7.0, 10.0)
DIFFUSES: tuple[float, ...] = (0.0, 0.5, 1.5)
GEODESICS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Rows of a rig used when scoring settings (sampled once per rig; every step after diffusion is per row).
FIT_ROWS = 2000
FIT_POSES = 4
#: A refit replaces the model's settings only when it lowers the mean relative cost on the corrections
#: by at least this share and lowers it on every correction: on one to three characters smaller
#: in-sample gains were mostly noise (docs/adaptation.md).
MIN_GAIN = 0.2
#: A version is published only when its mean cost on the corrections held out in turn (leave-one-out) is
#: below this bar: the same 20 % a refit must gain in-sample. With a bar of 1, three-character estimates
#: let through versions 3-20 % worse on the domain's other characters (docs/adaptation.md).
MAX_HELD_OUT_COST = 1.0 - MIN_GAIN
#: Added to a rig's (L1, deformation %) before they are compared with the base's: an error this small
#: is already invisible, and a correction the base gets almost exactly right (a rigid robot part) would
#: otherwise turn a difference of a few thousandths into a cost of thousands.
COST_FLOOR = (0.05, 0.05)
MAX_INFLUENCES = 4

#: (V', K) network output of a rig's features.
NetFn = Callable[[RigFeatures], np.ndarray]


@dataclass(frozen=True)
class StyleSettings:
    """Post-network settings: ``prior_blend`` (None: the model's fixed blend or per-rig rule),
    ``sharpen`` power, ``diffuse`` reach in % of the character's size, ``geodesic`` share of the
    geodesic falloff."""

    prior_blend: Optional[float]
    sharpen: float
    diffuse: float
    geodesic: float = 0.0

    def label(self) -> str:
        b = "model" if self.prior_blend is None else f"{self.prior_blend:g}"
        return f"blend {b}, geodesic {self.geodesic:g}, sharpen {self.sharpen:g}, diffuse {self.diffuse:g}"

    def as_dict(self) -> dict:
        return asdict(self)


def style_grid(reference: Optional[StyleSettings] = None) -> list[StyleSettings]:
    """Every combination of BLENDS x GEODESICS x SHARPENS x DIFFUSES (the blend only with geodesic
    share < 1, where it matters), plus ``reference`` when given."""
    grid = [StyleSettings(b, s, d, q) for b, q, s, d in itertools.product(BLENDS, GEODESICS, SHARPENS, DIFFUSES)
            if q < 1.0 or b is None]
    if reference is not None and reference not in grid:
        grid.append(reference)
    return grid


def grid_diffuses(grid: Sequence[StyleSettings]) -> list[float]:
    """The diffusion reaches a grid uses (what :func:`rig_outputs` must prepare)."""
    return sorted({s.diffuse for s in grid})


def model_settings(predictor) -> tuple[StyleSettings, int]:
    """(the settings a loaded model carries, its smoothing iterations): the base of every refit."""
    s = predictor.model.info.settings
    return StyleSettings(None, float(s.sharpen), float(s.diffuse), float(s.geodesic_share)), int(s.smooth)


@dataclass
class RigCase:
    """One rig prepared as the runtime sees it: ``rig`` with its true (V, J) weights; ``base`` the
    same rig with helper bones cleared (the runtime's candidates); ``feats`` the generator inputs of
    ``base`` or of its simplified copy (``index_map`` (S,) then maps its vertices back) and
    ``target`` that copy's (V', J) true weights; ``model_blend`` the blend the model gives this rig;
    ``enclosed`` (V,) int64 the bone the model's enclosing pieces give each vertex of ``base`` (-1: none;
    None: the model has none), applied after every setting's clean-up."""

    rig: Rig
    base: Rig
    feats: RigFeatures
    index_map: Optional[np.ndarray]
    model_blend: float
    target: Optional[np.ndarray] = None
    enclosed: Optional[np.ndarray] = None

    @property
    def name(self) -> str:
        return self.rig.name

    def dense(self, w_vk: np.ndarray) -> np.ndarray:
        """(V', K) weights over the candidates -> (V, J) float32 on the full rig."""
        w = self.feats.to_dense(w_vk)
        if self.index_map is not None:
            from backend.features.simplify import transfer_to_rig

            w = np.asarray(transfer_to_rig(self.base, self.index_map, w), np.float32)
        return w


def prepare_case(rig: Rig, predictor) -> RigCase:
    """The runtime's preparation of ``rig`` (backend.inference.predictor.Predictor.predict_blends)
    up to the network: helpers cleared, simplified above the predictor's vertex budget, features."""
    from backend.features.helper_bones import without_helpers
    from backend.features.simplify import simplify_rig

    base, _ = without_helpers(rig)
    target, index_map = base, None
    if base.num_vertices > predictor.vertex_budget > 0:
        target, index_map = simplify_rig(base, predictor.vertex_budget)
    feats = compute_features(target.without_weights(), predictor.model.info.feature_config)
    return RigCase(rig, base, feats, index_map, predictor.blend_for(rig), target.weights,
                   enclosed_of(base, predictor.settings.enclosing_pieces))


def enclosed_of(base: Rig, share: float) -> Optional[np.ndarray]:
    """(V,) int64 bone the enclosing-pieces rule gives each vertex of ``base`` (-1: none), None when
    ``share`` is 0 (backend.inference.enclosed_bones)."""
    if share <= 0.0:
        return None
    return enclosed_bones(base.vertices, base.faces, base.joints, base.tails, base.is_deform, share)[0]


def onnx_net(predictor) -> NetFn:
    """The predictor's ONNX session as a :data:`NetFn`."""
    return lambda feats: np.asarray(predictor.model.run(feats.model_inputs()), np.float32)


@dataclass
class RigOutputs:
    """One rig's network output G, prior P and geodesic falloff Q on all bones, each diffused per reach
    (dicts reach -> (V, J) float64), and the rows and poses used to score settings."""

    case: RigCase
    net: dict
    prior: dict
    geo: dict
    rows: np.ndarray  # (R,) int64 scored rows: sampled vertices with true weight
    posed_truth: np.ndarray  # (P, R, 3) float64 the rows posed with the true weights
    transforms: list  # P (A (Jd, 3, 3), b (Jd, 3)) over the deform bones
    diagonal: float


def rig_outputs(case: RigCase, net: NetFn, diffuses: Sequence[float] = DIFFUSES, smooth: int = 0,
                rows: int = FIT_ROWS, poses: int = FIT_POSES, seed: int = 0) -> RigOutputs:
    """Run ``net`` on the case, apply the model's ``smooth`` iterations and diffuse G and P once per
    reach (the expensive part of scoring; both steps are linear, so blending after them is exact)."""
    from backend.features.geodesic import geodesic_weights
    from backend.inference.model_meta import DISTANCE_COLUMN

    allowed = case.base.is_deform
    vx, faces = case.base.vertices, case.base.faces
    parts = []
    for w_vk in (net(case.feats), case.feats.prior, geodesic_weights(case.feats.pair_feat[:, :, DISTANCE_COLUMN])):
        w = normalize_rows(case.dense(w_vk), allowed)
        if smooth > 0:
            w = smooth_weights(w, faces, smooth)
        parts.append({d: (diffuse_weights(w, vx, faces, d / 100.0) if d > 0 else w) for d in diffuses})
    rig = case.rig
    cols = rig.deform_indices
    truth = np.asarray(rig.weights, np.float64)[:, cols]
    live = np.flatnonzero(truth.sum(axis=1) > 1e-6)
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(live, rows, replace=False)) if len(live) > rows else live
    rot = random_local_rotations(rig.num_bones, poses, seed=seed)
    transforms = []
    posed = []
    for r in rot:
        A, b = global_transforms(rig.joints, rig.parents, r, rig.name)
        transforms.append((A[cols], b[cols]))
        posed.append(linear_blend_skinning(rig.vertices[sel], truth[sel], A[cols], b[cols]))
    return RigOutputs(case, *parts, sel.astype(np.int64), np.stack(posed), transforms,
                      bbox_diagonal(rig.vertices))


def mix(out: RigOutputs, s: StyleSettings, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """(V or R, J) float64 (1 - q) (b G + (1 - b) P) + q Q at reach ``s.diffuse`` (``rows``: just those)."""
    b = out.case.model_blend if s.prior_blend is None else s.prior_blend
    pick_rows = (lambda a: a) if rows is None else (lambda a: a[rows])
    w = b * pick_rows(out.net[s.diffuse]) + (1.0 - b) * pick_rows(out.prior[s.diffuse])
    if s.geodesic > 0.0:
        w = (1.0 - s.geodesic) * w + s.geodesic * pick_rows(out.geo[s.diffuse])
    return w


def apply_rows(out: RigOutputs, s: StyleSettings) -> np.ndarray:
    """(R, J) float64 weights of the scored rows under settings ``s`` (the runtime's steps after diffusion)."""
    w = mix(out, s, out.rows)
    w = sharpen_weights(w, s.sharpen)
    w = limit_influences(w, MAX_INFLUENCES)
    w = normalize_rows(prune_weights(w, DEFAULT_PRUNE), out.case.base.is_deform)
    return w if out.case.enclosed is None else give_to_bones(w, out.case.enclosed[out.rows])


def row_scores(out: RigOutputs, s: StyleSettings) -> tuple[float, float]:
    """(per-vertex L1, mean deformation in % of the diagonal) of settings ``s`` on the scored rows."""
    rig = out.case.rig
    cols = rig.deform_indices
    w = apply_rows(out, s)[:, cols]
    truth = np.asarray(rig.weights, np.float64)[out.rows][:, cols]
    l1 = l1_per_vertex(truth, w)
    x = rig.vertices[out.rows]
    d = [np.linalg.norm(linear_blend_skinning(x, w, A, b) - pt, axis=1).mean()
         for (A, b), pt in zip(out.transforms, out.posed_truth)]
    return l1, float(100.0 * np.mean(d) / out.diagonal)


def full_weights(out: RigOutputs, s: StyleSettings) -> np.ndarray:
    """(V, J) float32 runtime weights of the whole rig under settings ``s``."""
    w = mix(out, s)
    base = out.case.base
    w = postprocess(w, base.faces, max_influences=MAX_INFLUENCES, prune=DEFAULT_PRUNE, allowed=base.is_deform,
                    sharpen=s.sharpen)
    return w if out.case.enclosed is None else give_to_bones(w, out.case.enclosed)


def score_table(outs: Sequence[RigOutputs], grid: Sequence[StyleSettings]) -> np.ndarray:
    """(len(outs), len(grid), 2) per-rig (L1, deformation) of every setting."""
    return np.array([[row_scores(o, s) for s in grid] for o in outs], np.float64).reshape(len(outs), len(grid), 2)


def relative_cost(table: np.ndarray, ref: int) -> np.ndarray:
    """(N, G) cost of each setting per rig: mean of its L1 and deformation relative to setting ``ref``'s,
    each with :data:`COST_FLOOR` added to both sides. table (N, G, 2)."""
    floor = np.asarray(COST_FLOOR, np.float64)
    return ((table + floor) / (table[:, ref:ref + 1, :] + floor)).mean(axis=2)


def pick(table: np.ndarray, ref: int, rigs: Sequence[int], min_gain: float = MIN_GAIN) -> int:
    """Index of the setting with the lowest mean relative cost over ``rigs``, or the reference ``ref``
    unless that cost is below 1 - ``min_gain`` and the setting is better on every one of ``rigs``."""
    per = relative_cost(table[list(rigs)], ref)  # (N, G)
    cost = per.mean(axis=0)
    best = int(np.argmin(cost))
    if cost[best] > 1.0 - min_gain or not np.all(per[:, best] < 1.0):
        return ref
    return best


@dataclass
class StyleFit:
    """settings: the chosen setting; reference: the base model's own; cost: its mean relative cost on
    the corrections (1 = the base); loo_cost: mean relative cost of the leave-one-out fits on the
    correction each left out (None with one correction); loo_choices: the setting of each of those fits."""

    settings: StyleSettings
    reference: StyleSettings
    cost: float
    loo_cost: Optional[float]
    loo_choices: list

    @property
    def refused(self) -> bool:
        """The leave-one-out estimate says the refit is no better than the base on a correction it did
        not see by less than :data:`MIN_GAIN` (cost >= :data:`MAX_HELD_OUT_COST`): ``adapt`` then publishes
        nothing and the base settings stay."""
        return self.loo_cost is not None and self.loo_cost >= MAX_HELD_OUT_COST

    def kept_base(self) -> "StyleFit":
        """The same fit with the base settings chosen everywhere (cost 1): what the head trains under
        when the refit is refused."""
        return StyleFit(self.reference, self.reference, 1.0, 1.0, [self.reference] * len(self.loo_choices))


def fit_style(outs: Sequence[RigOutputs], reference: StyleSettings,
              grid: Optional[Sequence[StyleSettings]] = None, min_gain: float = MIN_GAIN) -> StyleFit:
    """Choose post-network settings on the corrections ``outs`` (>= 1) by :func:`pick`, with a
    leave-one-out estimate of the cost on a correction the fit did not see."""
    grid = list(grid or style_grid(reference))
    if reference not in grid:
        grid.append(reference)
    ref = grid.index(reference)
    table = score_table(outs, grid)
    n = len(outs)
    best = pick(table, ref, range(n), min_gain)
    cost = float(relative_cost(table, ref)[:, best].mean())
    loo, choices = None, []
    if n >= 2:
        held = []
        for i in range(n):
            j = pick(table, ref, [r for r in range(n) if r != i], min_gain)
            choices.append(grid[j])
            held.append(relative_cost(table[[i]], ref)[0, j])
        loo = float(np.mean(held))
    return StyleFit(grid[best], reference, cost, loo, choices)
