"""Skeleton + body-volume builder shared by every creature kind.

A body plan adds bones (head, tail, parent, name) and, with each bone or on its own, the
implicit volumes that make up the body: round cones ("capsules" with a radius at each end)
and oriented ellipsoids. Convention: Z up, the creature faces -Y, its left side is +X.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIDE_STYLES = ("snake", "blender", "prefix", "camel")


def rotate(v: np.ndarray, axis, angle: float) -> np.ndarray:
    """Rotate vector(s) v (..., 3) about ``axis`` by ``angle`` radians (Rodrigues)."""
    v = np.asarray(v, float)
    k = np.asarray(axis, float)
    k = k / max(np.linalg.norm(k), 1e-12)
    c, s = np.cos(angle), np.sin(angle)
    return v * c + np.cross(k, v) * s + k * np.asarray(v @ k)[..., None] * (1 - c)


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class Anchor:
    """A place where accessories go: e.g. the head (centre, radius, forward, up)."""

    center: np.ndarray
    radius: float
    forward: np.ndarray
    up: np.ndarray
    bone: int


@dataclass
class Builder:
    """Accumulates bones and body volumes; ``style`` picks the naming convention."""

    style: str = "snake"
    heads: list = field(default_factory=list)
    tails: list = field(default_factory=list)
    parents: list = field(default_factory=list)
    names: list = field(default_factory=list)
    deform: list = field(default_factory=list)
    bone_radius: list = field(default_factory=list)
    capsules: list = field(default_factory=list)  # (a(3), b(3), r0, r1, bone)
    ellipsoids: list = field(default_factory=list)  # (center(3), axes(3,3), radii(3), bone)
    anchors: dict = field(default_factory=dict)
    ik: list = field(default_factory=list)  # extremity bones that may get an IK control bone

    # ----- names -------------------------------------------------------------------
    def name(self, base: str, side: str | None = None, index: int | None = None) -> str:
        """Bone name in this builder's style, e.g. leg_L_02 / leg.002.L / L_leg_02 / LeftLeg2."""
        st = self.style
        if st == "camel":
            word = "".join(p.capitalize() for p in base.split("_"))
            pre = {"L": "Left", "R": "Right", None: ""}[side]
            return f"{pre}{word}{index if index is not None else ''}"
        if st == "blender":
            s = base + (f".{index:03d}" if index is not None else "")
            return s + (f".{side}" if side else "")
        if st == "prefix":
            s = (f"{side}_" if side else "") + base
            return s + (f"_{index:02d}" if index is not None else "")
        s = base + (f"_{side}" if side else "")
        return s + (f"_{index:02d}" if index is not None else "")

    # ----- bones -------------------------------------------------------------------
    def bone(self, name: str, head, tail, parent: int = -1, radius: float | None = None,
             radius_tail: float | None = None, deform: bool = True) -> int:
        """Add a bone; with ``radius`` also a round cone head->tail (radius_tail at the tail)."""
        self.heads.append(np.asarray(head, float).copy())
        self.tails.append(np.asarray(tail, float).copy())
        self.parents.append(int(parent))
        self.names.append(name)
        self.deform.append(bool(deform))
        j = len(self.heads) - 1
        r = 0.0 if radius is None else float(radius)
        self.bone_radius.append(r)
        if radius is not None:
            self.capsule(head, tail, radius, radius if radius_tail is None else radius_tail, bone=j)
        return j

    def chain(self, base: str, points, parent: int, radii, side: str | None = None,
              start_index: int = 1) -> list[int]:
        """Bones between consecutive ``points`` (P, 3); radii (P,) at the points. Returns bone ids."""
        pts = np.asarray(points, float)
        radii = np.broadcast_to(np.asarray(radii, float), (len(pts),))
        ids = []
        for k in range(len(pts) - 1):
            j = self.bone(self.name(base, side, start_index + k), pts[k], pts[k + 1], parent,
                          radii[k], radii[k + 1])
            ids.append(j)
            parent = j
        return ids

    def capsule(self, a, b, r0: float, r1: float | None = None, bone: int = -1) -> None:
        self.capsules.append((np.asarray(a, float).copy(), np.asarray(b, float).copy(), float(r0),
                              float(r0 if r1 is None else r1), bone))

    def ellipsoid(self, center, axes, radii, bone: int = -1) -> None:
        """Oriented ellipsoid; ``axes`` (3, 3) rows are its local x, y, z directions."""
        self.ellipsoids.append((np.asarray(center, float).copy(), np.asarray(axes, float).copy(),
                                np.asarray(radii, float).copy(), bone))

    def slab(self, a, b, width: float, thickness: float, normal, bone: int = -1) -> None:
        """Flat ellipsoid spanning segment a->b (plus a margin), ``width`` across, thin along ``normal``:
        fins, wings, feathers, plates."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        z = unit(b - a)
        n = unit(np.asarray(normal, float) - z * float(np.dot(normal, z)))
        x = np.cross(n, z)
        length = float(np.linalg.norm(b - a))
        self.ellipsoid((a + b) / 2, np.stack([x, n, z]), (width, thickness, length / 2 + 0.3 * width), bone)

    # ----- finishing ---------------------------------------------------------------
    @property
    def num_bones(self) -> int:
        return len(self.heads)

    def transform(self, scale: float, offset=(0.0, 0.0, 0.0), rot_z: float = 0.0) -> None:
        """Scale, rotate about Z, then translate everything in place."""
        c, s = np.cos(rot_z), np.sin(rot_z)
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        off = np.asarray(offset, float)

        def tp(p):
            return (R @ (np.asarray(p, float) * scale)) + off

        def tv(v):
            return R @ np.asarray(v, float)

        self.heads = [tp(p) for p in self.heads]
        self.tails = [tp(p) for p in self.tails]
        self.bone_radius = [r * scale for r in self.bone_radius]
        self.capsules = [(tp(a), tp(b), r0 * scale, r1 * scale, j) for a, b, r0, r1, j in self.capsules]
        self.ellipsoids = [(tp(c), (R @ ax.T).T, rad * scale, j) for c, ax, rad, j in self.ellipsoids]
        self.anchors = {k: Anchor(tp(a.center), a.radius * scale, tv(a.forward), tv(a.up), a.bone)
                        for k, a in self.anchors.items()}

    def unique_names(self) -> list[str]:
        """Names made unique by suffixing repeats (``name_dup2``)."""
        seen: dict[str, int] = {}
        out = []
        for n in self.names:
            if n in seen:
                seen[n] += 1
                n = f"{n}_dup{seen[n]}"
            seen.setdefault(n, 1)
            out.append(n)
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(J, 3) float32 heads, (J, 3) float32 tails, (J,) int32 parents, (J,) bool deform."""
        return (np.asarray(self.heads, np.float32), np.asarray(self.tails, np.float32),
                np.asarray(self.parents, np.int32), np.asarray(self.deform, bool))
