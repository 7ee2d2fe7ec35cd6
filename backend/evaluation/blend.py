"""Choosing a model's prior blend on validation rigs (numpy + onnxruntime, no torch).

The runtime mixes the generator's weights with the prior it was given:
``w = b * G + (1 - b) * prior`` (``backend.inference.model_meta.KEY_PRIOR_BLEND``). Lower b
trusts the style-free physical prior more. :func:`choose_blend` applies the one-standard-error
rule (Breiman et al.'s rule for picking the simplest model the data cannot tell from the best):
the lowest b whose mean per-rig L1 exceeds the best blend's by at most the standard error of
the paired per-rig differences. With a second, out-of-style set, :func:`choose_across` instead
takes the blend with the lowest L1 averaged over both sets (training style and other styles count
equally).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from backend.evaluation.metrics import weight_metrics
from backend.features.pieces import small_piece_share
from backend.inference.blend_rule import PieceBlendRule
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz

METRICS = ("l1", "precision", "recall", "dominant_acc")


@dataclass
class BlendSummary:
    """Mean metrics per blend over the rigs, and the rule's verdict.

    blends: (B,) float; means: metric -> (B,) float; l1: (R, B) per-rig L1; se: (B,) standard
    error of the paired L1 difference to the best blend; chosen: the selected blend."""

    blends: np.ndarray
    means: dict[str, np.ndarray]
    l1: np.ndarray
    se: np.ndarray
    best: float
    chosen: float
    rigs: list[str]
    piece_share: np.ndarray | None = None  # (R,) share of each rig's surface in small separate pieces

    def table(self) -> str:
        """Markdown table: one row per blend."""
        lines = ["| prior blend | L1 ↓ | Δ L1 vs best | SE of Δ | precision ↑ | recall ↑ | dom. acc ↑ | |",
                 "|---|---|---|---|---|---|---|---|"]
        best_l1 = self.means["l1"].min()
        for i, b in enumerate(self.blends):
            mark = "chosen" if b == self.chosen else ("best L1" if b == self.best else "")
            lines.append(f"| {b:.2f} | {self.means['l1'][i]:.3f} | {self.means['l1'][i] - best_l1:+.3f} | "
                         f"{self.se[i]:.3f} | {self.means['precision'][i]:.3f} | {self.means['recall'][i]:.3f} | "
                         f"{self.means['dominant_acc'][i]:.3f} | {mark} |")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: dict) -> "BlendSummary":
        """Inverse of :meth:`as_dict` (e.g. a blend-sweep --out file read back)."""
        return cls(blends=np.array(data["blends"], np.float64),
                   means={k: np.array(v, np.float64) for k, v in data["means"].items()},
                   l1=np.array(data["per_rig_l1"], np.float64), se=np.array(data["se"], np.float64),
                   best=float(data["best"]), chosen=float(data["chosen"]), rigs=list(data["rigs"]),
                   piece_share=np.array(data["piece_share"], np.float64) if data.get("piece_share") else None)

    def as_dict(self) -> dict:
        return {"blends": self.blends.tolist(), "means": {k: v.tolist() for k, v in self.means.items()},
                "se": self.se.tolist(), "best": self.best, "chosen": self.chosen, "rigs": self.rigs,
                "per_rig_l1": self.l1.tolist(),
                "piece_share": None if self.piece_share is None else self.piece_share.tolist()}


def choose_blend(blends: Sequence[float], l1: np.ndarray) -> tuple[float, float, np.ndarray]:
    """One-standard-error choice. blends (B,), l1 (R, B) per-rig L1 -> (best, chosen, (B,) SE)."""
    blends = np.asarray(blends, np.float64)
    l1 = np.asarray(l1, np.float64)
    if l1.ndim != 2 or l1.shape[1] != len(blends) or len(l1) == 0:
        raise ValueError(f"l1 must be (rigs, {len(blends)}) with at least one rig, got {l1.shape}")
    mean = l1.mean(axis=0)
    ib = int(np.argmin(mean))
    diff = l1 - l1[:, [ib]]
    se = diff.std(axis=0, ddof=1) / np.sqrt(len(l1)) if len(l1) > 1 else np.zeros(len(blends))
    ok = (mean - mean[ib]) <= se + 1e-12
    chosen = float(blends[ok].min())
    return float(blends[ib]), chosen, se


def choose_across(summaries: Sequence[BlendSummary]) -> float:
    """The blend with the lowest mean over the sets of each set's mean per-rig L1 (every set counts
    equally, e.g. val in the training style and an out-of-style check). All sets must share blends."""
    if not summaries:
        raise ValueError("no sets to choose across")
    blends = summaries[0].blends
    for s in summaries[1:]:
        if not np.array_equal(s.blends, blends):
            raise ValueError("the sets were swept over different blends")
    score = np.mean([s.means["l1"] for s in summaries], axis=0)
    return float(blends[int(np.argmin(score))])


def sweep_blends(files: Iterable[str | Path], model_path: str | Path, blends: Sequence[float],
                 threads: int | None = None) -> BlendSummary:
    """Predict every rig at every blend through the runtime (``Predictor.predict_blends``: features
    and network once per rig) and score it against the rig's painted weights."""
    blends = sorted({float(b) for b in blends}, reverse=True)
    if not blends or min(blends) < 0 or max(blends) > 1:
        raise ValueError(f"blends must be numbers in [0, 1], got {blends}")
    predictor = Predictor(model_path, threads=threads)
    names: list[str] = []
    rows: list[list[dict]] = []
    shares: list[float] = []
    for f in files:
        rig = load_npz(f)
        if rig.weights is None:
            raise ValueError(f"{f}: has no painted weights to compare with")
        names.append(Path(f).stem)
        shares.append(small_piece_share(rig.vertices, rig.faces))
        rows.append([weight_metrics(rig, p.weights) for p in predictor.predict_blends(rig, blends)])
    if not rows:
        raise ValueError("no rigs to sweep")
    per = {m: np.array([[r[m] for r in rig_rows] for rig_rows in rows]) for m in METRICS}
    best, chosen, se = choose_blend(blends, per["l1"])
    return BlendSummary(blends=np.array(blends), means={m: v.mean(axis=0) for m, v in per.items()},
                        l1=per["l1"], se=se, best=best, chosen=chosen, rigs=names, piece_share=np.array(shares))


#: saturations tried by :func:`fit_piece_rule` (share of the surface in small pieces at which the
#: blend reaches ``high``)
SATURATIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


def rule_l1(summary: BlendSummary, rule: PieceBlendRule) -> float:
    """Mean per-rig L1 of ``summary``'s rigs when each gets ``rule``'s blend (which must be swept)."""
    if summary.piece_share is None:
        raise ValueError("the sweep has no piece shares (re-run blend-sweep)")
    out = []
    for r, share in enumerate(summary.piece_share):
        b = rule.blend_for_share(float(share))
        hit = np.flatnonzero(np.isclose(summary.blends, b, atol=1e-9))
        if not len(hit):
            raise ValueError(f"blend {b:g} of the rule was not swept")
        out.append(summary.l1[r, hit[0]])
    return float(np.mean(out))


def fit_piece_rule(summaries: Sequence[BlendSummary], saturations: Sequence[float] = SATURATIONS,
                   step: float = 0.05) -> tuple[PieceBlendRule, list[float]]:
    """The :class:`PieceBlendRule` with the lowest L1 averaged over the sets (each set counts equally),
    trying every swept (low <= high) pair and each saturation; the sweeps must cover every multiple
    of ``step`` in [0, 1]. Returns (rule, its mean L1 per set). Ties go to the first found (lowest
    low, then lowest high, then lowest saturation)."""
    grid = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    for s in summaries:
        if not all(np.isclose(s.blends, g).any() for g in grid):
            raise ValueError(f"fitting a rule needs the sweep to cover every multiple of {step:g} in [0, 1]")
    best: tuple[float, PieceBlendRule, list[float]] | None = None
    for low in grid:
        for high in grid[grid >= low]:
            for sat in saturations:
                rule = PieceBlendRule(low=float(low), high=float(high), saturation=float(sat), step=step)
                per_set = [rule_l1(s, rule) for s in summaries]
                score = float(np.mean(per_set))
                if best is None or score < best[0] - 1e-12:
                    best = (score, rule, per_set)
    assert best is not None
    return best[1], best[2]
