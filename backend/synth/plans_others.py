"""Body plans without a backbone, and machines: spider, insect (hexapod, centipede), octopus,
robot arm, vehicle. Same conventions as :mod:`backend.synth.plans_vertebrates`.
"""
from __future__ import annotations

import numpy as np

from backend.synth.plans_vertebrates import FWD, SIDES, X, Z, _curve_chain, _nbones, _polyline
from backend.synth.skeleton import Anchor, Builder, rotate, unit


def _leg_points(attach, out_dir, reach: float, lift: float, ground: float, n: int) -> np.ndarray:
    """Arched arthropod leg: up and out to a knee, then down and out to the ground; (n+1, 3)."""
    attach = np.asarray(attach, float)
    knee = attach + out_dir * reach * 0.4 + Z * lift
    foot = attach + out_dir * reach
    foot[2] = ground
    key = np.array([attach, knee, attach + out_dir * reach * 0.8 + Z * (ground - attach[2]) * 0.3, foot])
    key[2, 2] = max(key[2, 2], ground + 0.03)
    seg = np.linalg.norm(np.diff(key, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)]) / seg.sum()
    q = np.linspace(0, 1, n + 1)
    return np.stack([np.interp(q, s, key[:, k]) for k in range(3)], 1)


def build_spider(b: Builder, rng: np.random.Generator, u: float) -> str:
    Hb = rng.uniform(0.12, 0.3)
    cr = rng.uniform(0.07, 0.1)
    root = b.bone(b.name("body"), (0, 0.04, Hb), (0, -0.08, Hb), -1, cr * 0.5)
    b.ellipsoid((0, -0.02, Hb), np.eye(3), (cr * 0.9, cr * 1.15, cr * 0.65), root)
    ar = rng.uniform(0.1, 0.17)
    ab = b.bone(b.name("abdomen"), (0, 0.05, Hb), (0, 0.05 + 1.6 * ar, Hb + 0.3 * ar), root, ar * 0.4)
    b.ellipsoid((0, 0.05 + ar, Hb + 0.2 * ar), np.eye(3), (ar * 0.85, ar * 1.05, ar * 0.8), ab)
    b.anchors["head"] = Anchor(np.array([0, -0.06, Hb + 0.2 * cr]), cr * 0.7, FWD.copy(), Z.copy(), root)
    b.anchors["mouth"] = Anchor(np.array([0, -0.02 - cr, Hb - 0.3 * cr]), cr * 0.4, FWD.copy(), Z.copy(), root)
    nb = _nbones(u, 3, 5)
    reach = rng.uniform(0.35, 0.55)
    lr = rng.uniform(0.012, 0.02)
    for side, s in SIDES:
        for k, ang in enumerate(np.radians([30, 70, 110, 150]) + rng.normal(0, 0.08, 4)):
            out = np.array([s * np.sin(ang), -np.cos(ang), 0.0])
            attach = np.array([0, -0.02, Hb]) + out * cr * 0.7
            pts = _leg_points(attach, out, reach * (1.1 if k in (0, 3) else 1.0), rng.uniform(0.05, 0.15), 0.012, nb)
            ids = b.chain(f"leg{k + 1}", pts, root, np.linspace(lr, lr * 0.5, nb + 1), side=side)
            b.ik.append(ids[-1])
        if rng.random() < 0.3 + 0.5 * u:
            p0 = np.array([s * 0.03, -0.02 - cr * 0.9, Hb])
            pts = _polyline(p0, [(s * 0.3, -1, 0.3), (s * 0.2, -1, -0.6)], [0.05, 0.05])
            b.chain("palp", pts, root, lr * 0.7, side=side)
        f0 = np.array([s * 0.02, -0.02 - cr * 0.9, Hb - 0.2 * cr])
        b.bone(b.name("fang", side), f0, f0 + (0, -0.02, -0.04), root, 0.012, 0.006)
    return "spider"


def build_insect(b: Builder, rng: np.random.Generator, u: float) -> str:
    Hb = rng.uniform(0.1, 0.22)
    tr = rng.uniform(0.05, 0.08)
    root = b.bone(b.name("thorax"), (0, 0.05, Hb), (0, -0.08, Hb + 0.01), -1, tr * 0.6)
    b.ellipsoid((0, -0.01, Hb), np.eye(3), (tr * 0.9, tr * 1.5, tr * 0.9), root)
    hr = tr * rng.uniform(0.7, 1.1)
    hs = np.array([0, -0.08, Hb + 0.01])
    head = b.bone(b.name("head"), hs, hs + (0, -1.6 * hr, 0.3 * hr), root, hr * 0.4)
    hc = hs + (0, -0.9 * hr, 0.1 * hr)
    b.ellipsoid(hc, np.eye(3), (hr, hr * 0.9, hr * 0.85), head)
    b.anchors["head"] = Anchor(hc, hr, FWD.copy(), Z.copy(), head)
    b.anchors["mouth"] = Anchor(hc + (0, -0.8 * hr, -0.5 * hr), hr * 0.4, FWD.copy(), Z.copy(), head)
    n_ab = _nbones(u, 2, 8)
    ab_len = rng.uniform(0.25, 0.45)
    pts = _curve_chain((0, 0.05, Hb), (0, 1, 0.1), ab_len, n_ab, X, rng.uniform(-0.6, 0.3), 0.03, rng)
    ar = tr * rng.uniform(0.9, 1.4)
    rad = ar * np.clip(np.sin(np.linspace(0.35, 3.0, n_ab + 1)), 0.25, 1.0)
    ab = b.chain("abdomen", pts, root, rad)
    for k in range(n_ab):
        c, d = (pts[k] + pts[k + 1]) / 2, unit(pts[k + 1] - pts[k])
        b.ellipsoid(c, np.stack([np.cross(d, Z), d, Z]), (rad[k] * 1.1, ab_len / n_ab * 0.75, rad[k] * 0.95), ab[k])
    nb = _nbones(u, 3, 4)
    reach = rng.uniform(0.22, 0.35)
    for side, s in SIDES:
        for k, ang in enumerate(np.radians([45, 90, 130])):
            out = np.array([s * np.sin(ang), -np.cos(ang), 0.0])
            attach = np.array([s * tr * 0.5, 0.02 - 0.05 * k, Hb - 0.3 * tr])
            lp = _leg_points(attach, out, reach, rng.uniform(0.04, 0.1), 0.01, nb)
            ids = b.chain(f"leg{k + 1}", lp, root, np.linspace(0.012, 0.007, nb + 1), side=side)
            b.ik.append(ids[-1])
        na = _nbones(u * rng.random(), 2, 6)
        a0 = hc + (s * 0.4 * hr, -0.6 * hr, 0.6 * hr)
        ap = _curve_chain(a0, (s * 0.4, -1, 0.8), rng.uniform(0.12, 0.3), na, X * s, rng.uniform(-1, 1), 0.1, rng)
        b.chain("antenna", ap, head, 0.007, side=side)
        if rng.random() < 0.5:
            for w in range(1 + int(rng.random() < 0.5)):
                w0 = np.array([s * tr * 0.4, -0.02 + 0.05 * w, Hb + 0.6 * tr])
                w1 = w0 + unit((s, 0.9 + 0.5 * w, 0.25)) * rng.uniform(0.2, 0.35)
                wb = b.bone(b.name("wing", side, w + 1), w0, w1, root, 0.008)
                b.slab(w0, w1, rng.uniform(0.04, 0.08), 0.006, Z, wb)
    return "hexapod"


def build_centipede(b: Builder, rng: np.random.Generator, u: float, n_seg: int | None = None) -> str:
    n = n_seg if n_seg is not None else _nbones(u, 8, 34)
    r = rng.uniform(0.022, 0.035)
    Hb = r + rng.uniform(0.03, 0.06)
    amp, waves = rng.uniform(0.0, 0.08), rng.uniform(0.5, 1.5)
    t = np.linspace(0, 1, n + 1)
    pts = np.stack([amp * np.sin(2 * np.pi * waves * t), 0.05 + 0.95 * t, Hb + 0 * t], 1)
    hs = np.array([0, 0.05, Hb])
    head = b.bone(b.name("head"), hs, hs + (0, -0.06, 0), -1, r)
    hc = hs + (0, -0.03, 0)
    b.ellipsoid(hc, np.eye(3), (r * 1.3, 0.05, r * 1.0), head)
    b.anchors["head"] = Anchor(hc, r * 1.1, FWD.copy(), Z.copy(), head)
    b.anchors["mouth"] = Anchor(hc + (0, -0.04, -0.4 * r), r * 0.5, FWD.copy(), Z.copy(), head)
    body = b.chain("segment", pts, head, r * np.clip(1.0 - 0.6 * t ** 3, 0.3, None))
    leg_n = 2
    reach = rng.uniform(0.05, 0.1)
    for k in range(n):
        c = (pts[k] + pts[k + 1]) / 2
        d = unit(pts[k + 1] - pts[k])
        side_dir = np.cross(d, Z)
        for side, s in SIDES:
            out = unit(-s * side_dir + d * 0.3)
            lp = _leg_points(c - s * side_dir * r * 0.5, out, reach, 0.02, 0.005, leg_n)
            b.chain(f"leg{k + 1:02d}", lp, body[k], np.linspace(0.008, 0.005, leg_n + 1), side=side)
    for side, s in SIDES:
        a0 = hc + (s * 0.5 * r, -0.03, 0.3 * r)
        ap = _curve_chain(a0, (s * 0.5, -1, 0.3), rng.uniform(0.08, 0.15), 3, Z, s * 0.8, 0.05, rng)
        b.chain("antenna", ap, head, 0.006, side=side)
    return "centipede"


def build_octopus(b: Builder, rng: np.random.Generator, u: float, n_bones: int | None = None) -> str:
    Hb = rng.uniform(0.2, 0.35)
    mr = rng.uniform(0.11, 0.16)
    root = b.bone(b.name("body"), (0, 0, Hb), (0, 0, Hb + 0.12), -1, mr * 0.5)
    tilt = unit((0, rng.uniform(0.0, 0.6), 1))
    mantle = b.bone(b.name("mantle"), (0, 0, Hb + 0.12), (0, 0, Hb + 0.12) + tilt * mr * 1.8, root, mr * 0.5)
    b.ellipsoid((0, 0, Hb + 0.12) + tilt * mr * 0.9, np.stack([X, np.cross(tilt, X), tilt]),
                (mr, mr * 1.05, mr * 1.2), mantle)
    b.ellipsoid((0, -0.01, Hb + 0.03), np.eye(3), (mr * 0.9, mr * 0.9, mr * 0.7), root)
    b.anchors["head"] = Anchor(np.array([0, -0.02, Hb + 0.07]), mr * 0.9, FWD.copy(), Z.copy(), root)
    nt = int(rng.choice([8, 8, 8, 6, 10, 5, 4])) if n_bones is None else 8
    k = n_bones if n_bones is not None else _nbones(u, 3, 19)
    length = rng.uniform(0.45, 0.85)
    curl = rng.uniform(0.8, 3.5)
    tr0 = rng.uniform(0.03, 0.05)
    for i in range(nt):
        th = 2 * np.pi * (i + 0.5) / nt + rng.normal(0, 0.1)
        out = np.array([np.cos(th), np.sin(th), 0.0])
        start = np.array([0, 0, Hb - 0.02]) + out * mr * 0.5
        d0 = unit(out - Z * rng.uniform(0.6, 1.5))
        axis = np.cross(out, Z)
        pts = _curve_chain(start, d0, length, k, axis, curl, 0.08, rng)
        name = "tentacle" if nt != 8 else "arm"
        b.chain(f"{name}{i + 1}", pts, root, np.linspace(tr0, tr0 * 0.2, k + 1))
        b.ik.append(len(b.heads) - 1)
    return f"{nt}arms"


def build_robot_arm(b: Builder, rng: np.random.Generator, u: float) -> str:
    base_r = rng.uniform(0.1, 0.18)
    root = b.bone(b.name("base"), (0, 0, 0.0), (0, 0, 0.12), -1, base_r)
    n = _nbones(u, 3, 7)
    pts = [np.array([0, 0, 0.12])]
    d = Z.copy()
    for k in range(n):
        L = rng.uniform(0.15, 0.4)
        if k > 0:
            d = unit(rotate(d, rng.choice([X, -X, FWD]), rng.uniform(0.3, 1.3)))
        pts.append(pts[-1] + d * L)
    rad = np.linspace(0.07, 0.035, n + 1) * rng.uniform(0.8, 1.3)
    links = b.chain("link", np.asarray(pts), root, rad)
    ee = b.bone(b.name("wrist"), pts[-1], pts[-1] + d * 0.06, links[-1], rad[-1])
    side = unit(np.cross(d, Z)) if abs(d[2]) < 0.95 else X
    for sname, s in SIDES:
        g0 = pts[-1] + d * 0.06 + side * s * 0.025
        gp = _polyline(g0, [d + side * s * 0.3, d - side * s * 0.3][: 1 + int(rng.random() < 0.5)], [0.05, 0.04])
        b.chain("gripper", gp, ee, 0.012, side=sname)
    b.ik.append(ee)
    return "arm"


def build_vehicle(b: Builder, rng: np.random.Generator, u: float) -> str:
    L, W = rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.5)
    wr = rng.uniform(0.08, 0.15)
    Hc = wr + 0.06
    root = b.bone(b.name("chassis"), (0, L / 2, Hc), (0, -L / 2, Hc), -1, 0.08)
    b.ellipsoid((0, 0, Hc + 0.02), np.eye(3), (W / 2, L / 2 + 0.05, 0.08), root)
    n_axles = int(rng.integers(2, 5))
    for a, y in enumerate(np.linspace(L / 2 - wr, -L / 2 + wr, n_axles)):
        for side, s in SIDES:
            c0 = np.array([s * (W / 2 + 0.01), y, wr])
            b.bone(b.name("wheel", side, a + 1), c0, c0 + (s * 0.07, 0, 0), root, wr)
    if rng.random() < 0.7:
        t0 = np.array([0, 0.05, Hc + 0.08])
        tur = b.bone(b.name("turret"), t0, t0 + (0, 0, 0.1), root, rng.uniform(0.1, 0.16))
        g0 = t0 + (0, -0.05, 0.06)
        b.bone(b.name("barrel"), g0, g0 + unit((0, -1, rng.uniform(0, 0.4))) * rng.uniform(0.3, 0.6), tur, 0.025)
    if rng.random() < 0.5:
        a0 = np.array([W / 3, L / 3, Hc + 0.08])
        n = _nbones(u, 1, 4)
        b.chain("antenna", _polyline(a0, [(0, 0.1, 1)] * n, [0.35 / n] * n), root, 0.01)
    return "vehicle"
