"""Weight-space metrics between ground-truth and predicted skin weights (pure numpy).

Every metric takes weights already restricted to the deform bones and to the vertices
that carry ground-truth weight (see :func:`restrict`). Formulas: docs/evaluation.md.
"""
from __future__ import annotations

import numpy as np

from backend.rig import Rig

#: a weight at or above this counts as an influence (precision / recall of influences)
INFLUENCE_THRESHOLD = 0.05
#: a row whose weights sum to at most this is "unweighted"
EMPTY_ROW_TOL = 1e-6
#: a weight above this counts as nonzero for the weight-distribution histograms
NONZERO_TOL = 1e-4
#: fixed histogram bins for the weight distribution error: 20 equal bins on (0, 1]
HIST_BINS = np.linspace(0.0, 1.0, 21)
#: added to every histogram bin probability before the KL divergence
HIST_EPS = 1e-6


def restrict(truth: np.ndarray, pred: np.ndarray, is_deform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep deform-bone columns and the rows with ground-truth weight.

    truth, pred: (V, J). Returns ((M, Jd) float64 truth, (M, Jd) float64 pred, (V,) bool mask of kept rows).
    Columns are not renormalised: weight a method puts on non-deform bones is lost, as in Blender.
    """
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    cols = np.flatnonzero(np.asarray(is_deform, dtype=bool))
    t, p = truth[:, cols], pred[:, cols]
    mask = t.sum(axis=1) > EMPTY_ROW_TOL
    return t[mask], p[mask], mask


def mse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over all (vertex, bone) entries of (w - w*)^2. truth, pred: (M, Jd)."""
    return float(np.mean((pred - truth) ** 2)) if truth.size else 0.0


def l1_per_vertex(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over vertices of sum_j |w_vj - w*_vj| (0 = perfect, 2 = disjoint). truth, pred: (M, Jd)."""
    return float(np.abs(pred - truth).sum(axis=1).mean()) if len(truth) else 0.0


def cosine_similarity(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over vertices of <w, w*> / (|w| |w*|); a zero predicted row scores 0. truth, pred: (M, Jd)."""
    if not len(truth):
        return 1.0
    num = (truth * pred).sum(axis=1)
    den = np.linalg.norm(truth, axis=1) * np.linalg.norm(pred, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return float(cos.mean())


def dominant_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of vertices whose largest predicted weight is on the true largest bone.

    A zero predicted row never matches. truth, pred: (M, Jd)."""
    if not len(truth):
        return 1.0
    hit = (np.argmax(pred, axis=1) == np.argmax(truth, axis=1)) & (pred.sum(axis=1) > EMPTY_ROW_TOL)
    return float(hit.mean())


def influence_precision_recall(truth: np.ndarray, pred: np.ndarray,
                               threshold: float = INFLUENCE_THRESHOLD) -> tuple[float, float]:
    """Micro-averaged precision and recall of the influence sets {j : w_vj >= threshold}.

    precision = sum_v |S_v & S*_v| / sum_v |S_v|, recall = sum_v |S_v & S*_v| / sum_v |S*_v|;
    an empty denominator gives 0. truth, pred: (M, Jd)."""
    s_true = truth >= threshold
    s_pred = pred >= threshold
    both = float((s_true & s_pred).sum())
    n_pred, n_true = float(s_pred.sum()), float(s_true.sum())
    return (both / n_pred if n_pred else 0.0), (both / n_true if n_true else 0.0)


def weight_histogram(weights: np.ndarray) -> np.ndarray:
    """(20,) float64 probabilities of the nonzero weights (> NONZERO_TOL) over HIST_BINS, HIST_EPS added."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    w = w[w > NONZERO_TOL]
    counts, _ = np.histogram(np.clip(w, 0.0, 1.0), bins=HIST_BINS)
    total = counts.sum()
    p = counts / total if total else np.full(len(counts), 1.0 / len(counts))
    p = p + HIST_EPS
    return p / p.sum()


def distribution_error(truth: np.ndarray, pred: np.ndarray) -> float:
    """KL(P* || P) between the histograms of the nonzero true and predicted weights (see weight_histogram)."""
    pt, pp = weight_histogram(truth), weight_histogram(pred)
    return float(np.sum(pt * np.log(pt / pp)))


def smoothness(weights: np.ndarray, edges: np.ndarray) -> float:
    """Mean over mesh edges (i, k) of sum_j |w_ij - w_kj|; lower is smoother.

    weights: (V, Jd) for all vertices indexed by edges (E, 2). No edges gives 0."""
    if not len(edges):
        return 0.0
    w = np.asarray(weights, dtype=np.float64)
    return float(np.abs(w[edges[:, 0]] - w[edges[:, 1]]).sum(axis=1).mean())


def unweighted_count(pred: np.ndarray) -> int:
    """Number of rows whose weights sum to at most EMPTY_ROW_TOL. pred: (M, Jd)."""
    return int((np.asarray(pred).sum(axis=1) <= EMPTY_ROW_TOL).sum())


def weight_metrics(rig: Rig, pred: np.ndarray, edges: np.ndarray | None = None) -> dict[str, float]:
    """All weight-space metrics of ``pred`` (V, J) against ``rig.weights`` (V, J).

    Over deform bones and the vertices with ground-truth weight; smoothness over the mesh
    edges whose two ends both carry ground-truth weight (for prediction and truth)."""
    from backend.features.geometry import mesh_edges

    if rig.weights is None:
        raise ValueError(f"{rig.name}: no ground-truth weights to compare with")
    t, p, mask = restrict(rig.weights, pred, rig.is_deform)
    if edges is None:
        edges = mesh_edges(rig.faces)
    remap = np.full(len(mask), -1, dtype=np.int64)
    remap[mask] = np.arange(int(mask.sum()))
    e = remap[edges]
    e = e[(e >= 0).all(axis=1)]
    prec, rec = influence_precision_recall(t, p)
    return {
        "vertices": int(mask.sum()),
        "mse": mse(t, p),
        "cosine": cosine_similarity(t, p),
        "l1": l1_per_vertex(t, p),
        "dominant_acc": dominant_accuracy(t, p),
        "precision": prec,
        "recall": rec,
        "dist_kl": distribution_error(t, p),
        "smooth_pred": smoothness(p, e),
        "smooth_true": smoothness(t, e),
        "unweighted": unweighted_count(p),
    }
