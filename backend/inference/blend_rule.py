"""A prior blend that depends on how the mesh is built (numpy only, no torch).

The runtime mixes ``w = b * G + (1 - b) * prior``. One fixed b is a compromise: the heat-diffusion
prior suits one closed body (MakeHuman, most animals), where artists' weights follow the surface
smoothly, while on models assembled from separate parts (clothing layers, armour, robots, props)
diffusion bleeds across the gaps and the generator, which has learned how artists bind parts, is
far better (docs/history/ablation.md). :class:`PieceBlendRule` sets b per rig from the share of the surface
in small separate pieces (``backend.features.pieces.small_piece_share``):

    b = low + (high - low) * min(share / saturation, 1), rounded to a multiple of ``step``

Rounding keeps every runtime blend on the grid that ``blend-sweep --fit-rule`` scores exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.features.pieces import SMALL_PIECE_SHARE, small_piece_share
from backend.rig import Rig

RULE_KIND = "small-pieces"


@dataclass(frozen=True)
class PieceBlendRule:
    """Blend ``low`` for one closed body, rising linearly to ``high`` when ``saturation`` of the
    surface lies in pieces smaller than ``small`` of it."""

    low: float
    high: float
    saturation: float
    step: float = 0.05
    small: float = SMALL_PIECE_SHARE

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"blend rule: {name} must be in [0, 1], got {v!r}")
        if not 0.0 < self.saturation <= 1.0:
            raise ValueError(f"blend rule: saturation must be in (0, 1], got {self.saturation!r}")
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"blend rule: step must be in (0, 1], got {self.step!r}")
        if not 0.0 < self.small < 1.0:
            raise ValueError(f"blend rule: small must be in (0, 1), got {self.small!r}")

    def blend_for_share(self, share: float) -> float:
        """The blend for a mesh with ``share`` of its surface in small pieces."""
        b = self.low + (self.high - self.low) * min(max(share, 0.0) / self.saturation, 1.0)
        return float(np.clip(round(b / self.step) * self.step, 0.0, 1.0))

    def share(self, rig: Rig, pieces: tuple[int, np.ndarray] | None = None) -> float:
        """The rig's small-piece share; ``pieces``: its (P, labels) when already known."""
        return small_piece_share(rig.vertices, rig.faces, self.small, pieces)

    def as_dict(self) -> dict:
        return {"kind": RULE_KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> "PieceBlendRule":
        """Inverse of :meth:`as_dict`; ValueError naming the problem for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"blend rule must be a JSON object, got {type(data).__name__}")
        if data.get("kind") != RULE_KIND:
            raise ValueError(f"blend rule kind must be {RULE_KIND!r}, got {data.get('kind')!r}")
        fields = {k: v for k, v in data.items() if k != "kind"}
        unknown = sorted(set(fields) - {"low", "high", "saturation", "step", "small"})
        if unknown:
            raise ValueError(f"blend rule: unknown fields {unknown}")
        for k, v in fields.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"blend rule: {k} must be a number, got {v!r}")
        try:
            return cls(**{k: float(v) for k, v in fields.items()})
        except TypeError as exc:
            raise ValueError(f"blend rule: {exc}") from None


def load_rule_file(path: str | Path) -> PieceBlendRule:
    """The rule in a JSON file: the ``piece_rule`` of a ``blend-sweep --fit-rule --out`` file, or the
    rule itself. ValueError naming the file for anything else (missing, not JSON, malformed rule)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return PieceBlendRule.from_dict(data.get("piece_rule", data) if isinstance(data, dict) else data)
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
