"""Separate mesh parts: eyes, teeth, hats, armour plates, floating accessories, and the rigid
per-bone parts of robots. Each returns closed analytic meshes (separate connected components).
"""
from __future__ import annotations

import numpy as np

import backend.synth.primitives as P
from backend.synth.skeleton import Anchor, Builder, unit

Mesh = P.Mesh


def eyes(anchor: Anchor, rng: np.random.Generator, count: int = 2, n: int = 4) -> list[Mesh]:
    """``count`` eyeballs half sunk into the head surface, in pairs facing forward."""
    fwd, up = unit(anchor.forward), unit(anchor.up)
    side = unit(np.cross(up, fwd))
    R = anchor.radius
    out = []
    pairs = max(1, count // 2)
    er = R * rng.uniform(0.18, 0.3) / (1 + 0.35 * (pairs - 1))
    for p in range(pairs):
        yaw = rng.uniform(0.35, 0.6) + 0.25 * p
        pitch = rng.uniform(0.1, 0.35) - 0.2 * p
        for s in (1.0, -1.0):
            d = unit(fwd * np.cos(yaw) + side * s * np.sin(yaw) + up * np.sin(pitch))
            out.append(P.sphere(anchor.center + d * R * 0.82, er, n))
    return out


def teeth(anchor: Anchor, rng: np.random.Generator, n: int = 2) -> list[Mesh]:
    """A row of small tapered spikes along the front of the mouth, pointing down."""
    fwd, up = unit(anchor.forward), unit(anchor.up)
    side = unit(np.cross(up, fwd))
    k = int(rng.integers(2, 9))
    width = anchor.radius
    out = []
    for i, t in enumerate(np.linspace(-1, 1, k)):
        base = anchor.center + side * t * width * 0.8 + fwd * width * 0.2 * (1 - t * t)
        tip = base - up * width * rng.uniform(0.25, 0.5) * (1.4 if i in (0, k - 1) else 1.0)
        out.append(P.tapered_box(base, tip, width * 0.08, fwd, 0.15, n))
    return out


def hat(anchor: Anchor, rng: np.random.Generator, n: int = 5) -> list[Mesh]:
    """A crown and a brim (two overlapping closed parts) on top of the head."""
    up = unit(anchor.up)
    axes = P.frame_from_direction(up, anchor.forward)
    R = anchor.radius
    h = R * rng.uniform(0.4, 1.1)
    top = anchor.center + up * R * 0.75
    crown = P.cylinder(top + up * h / 2, axes, (R * 0.75, R * 0.75, h / 2), n)
    brim = P.cylinder(top + up * 0.03 * R, axes, (R * 1.35, R * 1.35, 0.04 * R), n)
    return [crown, brim]


def armour(builder: Builder, rng: np.random.Generator, count: int, n: int = 3) -> list[Mesh]:
    """Thin plates floating just off the surface of the thickest bone volumes."""
    caps = [c for c in builder.capsules if c[4] >= 0 and np.linalg.norm(c[1] - c[0]) > 1e-6]
    if not caps:
        return []
    order = np.argsort([-max(c[2], c[3]) for c in caps])[: max(count * 2, 1)]
    out = []
    for i in rng.permutation(order)[:count]:
        a, b, r0, r1, _ = caps[i]
        s = 0.25 if r0 >= r1 else 0.75  # centre of the thicker half of a tapered bone
        r = r0 + s * (r1 - r0)
        axes = P.frame_from_direction(b - a, (0.0, 0.0, 1.0))
        normal = axes[rng.integers(0, 2)] * rng.choice([-1.0, 1.0])
        c = a + s * (b - a) + normal * (r * 1.15)
        t = 0.08 * r
        plate_axes = np.stack([unit(np.cross(normal, axes[2])), normal, axes[2]])
        out.append(P.box(c, plate_axes, (r * 0.7, t, np.linalg.norm(b - a) * 0.22 + 0.2 * r), n))
    return out


def floating(anchor: Anchor, rng: np.random.Generator, n: int = 4) -> list[Mesh]:
    """A halo above the head or an orb hovering beside it."""
    up = unit(anchor.up)
    R = anchor.radius
    if rng.random() < 0.5:
        axes = P.frame_from_direction(up, anchor.forward)
        return [P.torus(anchor.center + up * R * 1.9, axes, R * 0.8, R * 0.08, 16 + 4 * n, 6)]
    side = unit(np.cross(up, anchor.forward))
    return [P.sphere(anchor.center + side * R * 2.5 + up * R, R * 0.35, n)]


def robot_parts(builder: Builder, rng: np.random.Generator, target_vertices: int) -> list[Mesh]:
    """One rigid box or cylinder per bone volume (and a box per body ellipsoid), each
    reaching a little past its bone's head and tail so the joints lie inside."""
    caps, ells = builder.capsules, builder.ellipsoids
    count = max(1, len(caps) + len(ells))
    n = int(np.clip(round(np.sqrt(target_vertices / (6.0 * count))), 2, 24))
    round_pref = rng.uniform(0.0, 0.8)
    out = []
    for a, b, r0, r1, _ in caps:
        L = float(np.linalg.norm(b - a))
        r = max(r0, r1) * rng.uniform(0.85, 1.1)
        margin = min(0.5 * r, max(0.35 * L, 0.1 * r))
        axes = P.frame_from_direction(b - a if L > 1e-9 else (0, 0, 1), (0.0, 0.0, 1.0))
        half = (r, r * rng.uniform(0.75, 1.0), L / 2 + margin)
        shape = P.cylinder if rng.random() < round_pref else P.box
        out.append(shape((a + b) / 2, axes, half, n))
    for c, ax, rad, _ in ells:
        shape = P.ellipsoid if rng.random() < 0.3 else P.box
        out.append(shape(c, ax, rad * 0.85, n))
    return out
