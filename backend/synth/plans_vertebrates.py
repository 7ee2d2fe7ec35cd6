"""Body plans with a backbone: humanoid, quadruped, bird, snake, fish.

Each ``build_*(b, rng, u)`` fills a :class:`Builder` at unit size (the creature's main
dimension is about 1) and returns a variant label. ``u`` in [0, 1] is the complexity: it
drives the bone count. Z up, facing -Y, left = +X.
"""
from __future__ import annotations

import numpy as np

from backend.synth.skeleton import Anchor, Builder, rotate, unit

X, Y, Z = np.eye(3)
FWD = -Y
SIDES = (("L", 1.0), ("R", -1.0))


def _nbones(u: float, lo: int, hi: int) -> int:
    return int(np.clip(round(lo + u * (hi - lo)), lo, hi))


def _polyline(start, directions, lengths) -> np.ndarray:
    pts = [np.asarray(start, float)]
    for d, L in zip(directions, lengths):
        pts.append(pts[-1] + unit(d) * L)
    return np.asarray(pts)


def _curve_chain(start, direction, total: float, n: int, bend_axis, bend: float, wiggle: float,
                 rng: np.random.Generator) -> np.ndarray:
    """(n+1, 3) points of a chain that turns by ``bend`` radians in total about ``bend_axis``."""
    d = unit(direction)
    pts = [np.asarray(start, float)]
    for _ in range(n):
        pts.append(pts[-1] + d * total / n)
        d = unit(rotate(d, bend_axis, bend / n + rng.normal(0, wiggle)))
    return np.asarray(pts)


def build_humanoid(b: Builder, rng: np.random.Generator, u: float, fingers: bool | None = None,
                   head_bones: bool | None = None) -> str:
    chibi = rng.random() < 0.15
    head_r = rng.uniform(0.1, 0.13) if chibi else rng.uniform(0.055, 0.072)
    leg_len = rng.uniform(0.26, 0.32) if chibi else rng.uniform(0.42, 0.5)
    fat, limb = rng.uniform(0.75, 1.45), rng.uniform(0.75, 1.3)
    ankle_z = 0.045
    hip_z = ankle_z + leg_len
    head_base = 1.0 - 2.0 * head_r
    neck_base = head_base - rng.uniform(0.025, 0.05)
    hip_w = rng.uniform(0.065, 0.095) * fat ** 0.5
    sh_w = rng.uniform(0.1, 0.15) * fat ** 0.3
    lean = rng.uniform(-0.02, 0.03)

    root = b.bone(b.name("hips"), (0, 0, hip_z), (0, 0, hip_z + 0.06), -1, 0.07 * fat)
    n_spine = _nbones(u * rng.uniform(0.6, 1.0), 1, 4)
    zs = np.linspace(hip_z + 0.06, neck_base, n_spine + 1)
    ys = lean * np.sin(np.linspace(0, np.pi, n_spine + 1))
    spine = b.chain("spine", np.stack([0 * zs, ys, zs], 1), root, np.linspace(0.07, 0.075, n_spine + 1) * fat)
    chest = spine[-1]
    n_neck = 1 + int(rng.random() < 0.3 + 0.3 * u)
    neck = b.chain("neck", np.stack([np.zeros(n_neck + 1), np.zeros(n_neck + 1),
                                     np.linspace(neck_base, head_base, n_neck + 1)], 1), chest, 0.032 * limb)
    hc = np.array([0.0, -0.1 * head_r, head_base + head_r])
    head = b.bone(b.name("head"), (0, 0, head_base), (0, 0, 1.0 - 0.15 * head_r), neck[-1], 0.3 * head_r)
    b.ellipsoid(hc, np.eye(3), np.array([0.85, 0.95, 1.05]) * head_r, head)
    b.anchors["head"] = Anchor(hc, head_r, FWD.copy(), Z.copy(), head)
    b.anchors["mouth"] = Anchor(hc + np.array([0, -0.8 * head_r, -0.45 * head_r]), 0.45 * head_r, FWD.copy(),
                                Z.copy(), head)
    if head_bones if head_bones is not None else rng.random() < 0.3 + 0.4 * u:
        b.bone(b.name("jaw"), hc + (0, 0.1 * head_r, -0.35 * head_r), hc + (0, -0.7 * head_r, -0.6 * head_r),
               head, 0.2 * head_r)
        for side, s in SIDES:
            e = hc + (s * 0.35 * head_r, -0.55 * head_r, 0.15 * head_r)
            b.bone(b.name("eye", side), e, e + (0, -0.2 * head_r, 0), head, 0.12 * head_r)
    # torso volumes
    b.ellipsoid((0, 0, hip_z + 0.02), np.eye(3), np.array([hip_w + 0.05, 0.085, 0.09]) * np.array([1, fat, 1]), root)
    chest_z = neck_base - 0.13
    b.ellipsoid((0, ys[-2] if n_spine > 1 else 0, chest_z), np.eye(3),
                np.array([sh_w * 0.85, 0.085 * fat, 0.15]), chest)
    b.ellipsoid((0, -0.01 * fat, (hip_z + chest_z) / 2), np.eye(3), np.array([0.1 * fat ** 0.7, 0.085 * fat, 0.12]),
                spine[0])
    arm_scale = rng.uniform(0.9, 1.1)
    t_pose = rng.random() < 0.5
    theta = 0.0 if t_pose else rng.uniform(0.45, 0.9)
    elbow = rng.uniform(0.0, 0.6) if rng.random() < 0.5 else 0.0
    knee = rng.uniform(0.0, 0.35) if rng.random() < 0.4 else 0.0
    with_fingers = fingers if fingers is not None else rng.random() < 0.25 + 0.5 * u
    for side, s in SIDES:
        sh = np.array([s * sh_w, 0.0, neck_base - 0.035])
        clav = b.bone(b.name("clavicle", side), (s * 0.025, -0.01, neck_base - 0.02), sh, chest, 0.035 * limb)
        d = np.array([s * np.cos(theta), 0.0, -np.sin(theta)])
        el = sh + d * 0.17 * arm_scale
        fd = unit(d * np.cos(elbow) + FWD * np.sin(elbow))
        wr = el + fd * 0.15 * arm_scale
        hand_len = 0.07 * arm_scale
        up_ = b.bone(b.name("upperarm", side), sh, el, clav, 0.034 * limb, 0.027 * limb)
        fo = b.bone(b.name("forearm", side), el, wr, up_, 0.027 * limb, 0.02 * limb)
        ht = wr + fd * hand_len
        hand = b.bone(b.name("hand", side), wr, ht, fo, 0.018 * limb)
        nrm = unit(np.cross(fd, FWD))
        b.slab(wr, ht, 0.032 * limb, 0.012 * limb, nrm, hand)
        b.ik.append(hand)
        if with_fingers:
            across = unit(np.cross(nrm, fd))
            nf = int(rng.choice([5, 5, 4, 3]))
            nseg = 3 if rng.random() < 0.7 else 2
            offs = np.linspace(-0.022, 0.022, nf - 1) * limb
            for k in range(nf):
                thumb = k == 0
                if thumb:
                    base = wr + fd * 0.3 * hand_len - across * 0.028 * limb * s
                    fdir = unit(fd - across * 0.8 * s)
                    flen = 0.045
                else:
                    base = ht - fd * 0.1 * hand_len + across * offs[k - 1] * s
                    fdir = fd
                    flen = 0.06 * (1.0 - 0.12 * abs(k - 2.5))
                pts = _polyline(base, [fdir] * nseg, [flen * arm_scale / nseg] * nseg)
                fname = ("thumb", "index", "middle", "ring", "pinky")[k if nf == 5 else min(k, 4)]
                b.chain(f"finger_{fname}", pts, hand, 0.0085 * limb, side=side)
        # legs
        hip = np.array([s * hip_w, 0.0, hip_z - 0.02])
        thigh, shin = 0.53 * leg_len, 0.5 * leg_len
        kn = hip + thigh * np.array([s * 0.03, -np.sin(knee), -np.cos(knee)])
        back = np.arcsin(np.clip(thigh * np.sin(knee) / shin, -1, 1))
        an = kn + shin * np.array([s * 0.01, np.sin(back), -np.cos(back)])
        an[2] = max(an[2], ankle_z)
        th = b.bone(b.name("thigh", side), hip, kn, root, 0.058 * fat ** 0.5 * limb, 0.04 * limb)
        sn = b.bone(b.name("shin", side), kn, an, th, 0.04 * limb, 0.03 * limb)
        foot_len = rng.uniform(0.1, 0.14)
        ball = np.array([an[0], an[1] - 0.7 * foot_len, 0.02])
        ft = b.bone(b.name("foot", side), an, ball, sn, 0.03 * limb, 0.022 * limb)
        toe = b.bone(b.name("toe", side), ball, ball + (0, -0.3 * foot_len, 0), ft, 0.02 * limb, 0.016 * limb)
        b.ik.append(ft)
        _ = toe
    if rng.random() < 0.15:
        n = _nbones(u, 2, 8)
        pts = _curve_chain((0, 0.07, hip_z), (0, 1, -0.5), rng.uniform(0.3, 0.7), n, X, rng.uniform(-1.5, 1.5),
                           0.1, rng)
        b.chain("tail", pts, root, np.linspace(0.035, 0.012, n + 1) * limb)
    return "chibi" if chibi else ("tpose" if t_pose else "apose")


def build_quadruped(b: Builder, rng: np.random.Generator, u: float) -> str:
    H = rng.uniform(0.45, 1.1)
    R = rng.uniform(0.13, 0.24)
    limb = rng.uniform(0.8, 1.25)
    n_spine = _nbones(u, 2, 6)
    hips = np.array([0.0, 0.45, H])
    root = b.bone(b.name("hips"), hips, hips + (0, -0.2, 0), -1, R)
    ys = np.linspace(0.25, -0.45, n_spine + 1)
    zs = H + 0.08 * (1 - (ys - 0.25) / -0.7) * rng.uniform(-0.5, 1.0)
    spine = b.chain("spine", np.stack([0 * ys, ys, zs], 1), root, R * np.linspace(1.0, 1.05, n_spine + 1))
    chest_pt = np.array([0.0, ys[-1], zs[-1]])
    b.ellipsoid((0, 0.0, H - 0.02), np.eye(3), (R * 1.1, 0.55, R * 1.15), spine[0])
    n_neck = _nbones(u * rng.random(), 1, 4)
    neck_len = rng.uniform(0.2, 0.6)
    alpha = rng.uniform(0.3, 1.2)
    nd = np.array([0.0, -np.cos(alpha), np.sin(alpha)])
    neck_pts = _polyline(chest_pt, [nd] * n_neck, [neck_len / n_neck] * n_neck)
    neck = b.chain("neck", neck_pts, spine[-1], np.linspace(R * 0.6, R * 0.38, n_neck + 1))
    hl = rng.uniform(0.18, 0.32)
    hd = unit(FWD + Z * rng.uniform(-0.6, 0.1))
    hs = neck_pts[-1]
    head = b.bone(b.name("head"), hs, hs + hd * hl, neck[-1], R * 0.42, R * 0.22)
    hc = hs + hd * 0.3 * hl
    b.ellipsoid(hc, np.eye(3), np.array([0.8, 1.0, 0.85]) * R * 0.55, head)
    b.anchors["head"] = Anchor(hc + Z * 0.1 * R, R * 0.5, FWD.copy(), Z.copy(), head)
    b.anchors["mouth"] = Anchor(hs + hd * 0.85 * hl - Z * 0.12 * R, R * 0.2, hd, Z.copy(), head)
    if rng.random() < 0.3 + 0.4 * u:
        b.bone(b.name("jaw"), hc - Z * 0.2 * R, hs + hd * 0.9 * hl - Z * 0.2 * R, head, R * 0.15)
    if rng.random() < 0.5:
        for side, s in SIDES:
            e0 = hc + np.array([s * 0.25 * R, 0.1 * R, 0.35 * R])
            e1 = e0 + unit((s * 0.5, 0.3, 1.0)) * rng.uniform(0.08, 0.2)
            ear = b.bone(b.name("ear", side), e0, e1, head, 0.04 * R / 0.2)
            b.slab(e0, e1, 0.05, 0.01, (0, 1, 0), ear)
    if rng.random() < 0.2:
        for side, s in SIDES:
            h0 = hc + np.array([s * 0.2 * R, 0.0, 0.4 * R])
            h1 = h0 + unit((s * 0.6, 0.4, 1.0)) * rng.uniform(0.1, 0.25)
            b.bone(b.name("horn", side), h0, h1, head, 0.035, 0.008)
    leg_bones = 3 if u < 0.4 else 4
    for (side, s) in SIDES:
        for front, y0, par in ((True, ys[-1] + 0.05, spine[-1]), (False, 0.42, root)):
            top = np.array([s * R * 0.6, y0, H - 0.3 * R])
            drop = top[2] - 0.03
            if front:
                dirs = [(0, 0.1, -1), (0, -0.05, -1), (0, -0.3, -1), (0, -1, -0.2)][:leg_bones]
                frac = [0.45, 0.42, 0.13, 0.08][:leg_bones]
            else:
                dirs = [(0, -0.5, -1), (0, 0.45, -1), (0, -0.1, -1), (0, -1, -0.2)][:leg_bones]
                frac = [0.42, 0.4, 0.18, 0.08][:leg_bones]
            dz = sum(f * abs(unit(d)[2]) for f, d in zip(frac, dirs))
            lens = [f * drop / dz for f in frac]
            pts = _polyline(top, dirs, lens)
            rad = np.linspace(R * 0.45, R * 0.2, leg_bones + 1) * limb
            base = "arm" if front else "leg"
            ids = b.chain(base, pts, par, rad, side=side)
            b.ik.append(ids[-1])
    if rng.random() < 0.9:
        n = _nbones(u * rng.uniform(0.5, 1.0), 1, 12)
        pts = _curve_chain(hips + (0, 0.08, 0), unit((0, 1, rng.uniform(-0.8, 0.5))), rng.uniform(0.2, 0.9), n, X,
                           rng.uniform(-2.0, 2.5), 0.1, rng)
        b.chain("tail", pts, root, np.linspace(R * 0.3, R * 0.08, n + 1))
    return "quadruped"


def build_bird(b: Builder, rng: np.random.Generator, u: float) -> str:
    leg_h = rng.uniform(0.15, 0.55)
    br = rng.uniform(0.11, 0.16)
    Hb = leg_h + br * 0.8
    root = b.bone(b.name("root"), (0, 0.12, Hb), (0, -0.1, Hb + 0.04), -1, br * 0.6)
    b.ellipsoid((0, 0.0, Hb + 0.02), np.eye(3), (br, br * 1.6, br * 1.05), root)
    n_neck = _nbones(u * rng.random(), 1, 6)
    nl = rng.uniform(0.08, 0.45)
    neck_pts = _curve_chain((0, -0.12, Hb + 0.06), (0, -0.4, 1), nl, n_neck, X, rng.uniform(-0.8, 0.4), 0.05, rng)
    neck = b.chain("neck", neck_pts, root, np.linspace(br * 0.45, br * 0.3, n_neck + 1))
    hr = rng.uniform(0.05, 0.075)
    hs = neck_pts[-1]
    head = b.bone(b.name("head"), hs, hs + FWD * hr, neck[-1], hr * 0.5)
    hc = hs + FWD * 0.4 * hr + Z * 0.2 * hr
    b.ellipsoid(hc, np.eye(3), (hr * 0.85, hr, hr * 0.9), head)
    bl = rng.uniform(0.04, 0.18)
    bk0 = hc + FWD * 0.7 * hr
    b.bone(b.name("beak"), bk0, bk0 + unit(FWD - Z * rng.uniform(0, 0.5)) * bl, head, hr * 0.35, 0.004)
    b.anchors["head"] = Anchor(hc, hr, FWD.copy(), Z.copy(), head)
    spread = rng.random() < 0.6
    feathers = _nbones(u * rng.random(), 0, 6) if rng.random() < 0.6 else 0
    for side, s in SIDES:
        # legs
        hip = np.array([s * 0.05, 0.02, Hb - 0.3 * br])
        drop = hip[2] - 0.015
        pts = _polyline(hip, [(0, -0.4, -1), (0, 0.3, -1), (0, -0.05, -1)],
                        [0.35 * drop / 0.93, 0.35 * drop / 0.96, 0.3 * drop])
        ids = b.chain("leg", pts, root, np.linspace(0.035, 0.012, 4), side=side)
        b.ik.append(ids[-1])
        ank = pts[-1]
        toes = [(0.0, -1, 0), (s * 0.7, -1, 0), (-s * 0.7, -1, 0), (0, 1, 0)]
        for k, d in enumerate(toes[: 3 + int(rng.random() < 0.7)]):
            nseg = 1 + int(rng.random() < u)
            tp = _polyline(ank, [unit(d) + (0, 0, -0.05)] * nseg, [0.06 / nseg] * nseg)
            b.chain(f"toe{k}", tp, ids[-1], 0.01, side=side)
        # wings
        sh = np.array([s * br * 0.8, -0.08, Hb + 0.06])
        if spread:
            dirs = [(s, 0.15, 0.15), (s, 0.3, 0.0), (s, 0.5, -0.05)]
            nrm = Z
        else:
            dirs = [(s * 0.35, 0.6, -0.1), (s * 0.1, 1.0, 0.05), (s * 0.05, 1.0, -0.1)]
            nrm = s * X
        wl = rng.uniform(0.8, 1.4)
        pts = _polyline(sh, dirs, [0.17 * wl, 0.2 * wl, 0.14 * wl])
        wing = b.chain("wing", pts, root, [0.03, 0.022, 0.015, 0.01], side=side)
        chord = rng.uniform(0.07, 0.12)
        for k in range(3):
            mid_off = unit(np.cross(nrm, pts[k + 1] - pts[k])) * chord * 0.5 * s * (1 if spread else 0)
            b.slab(pts[k] + mid_off * 0.5, pts[k + 1] + mid_off * 0.5, chord, 0.012, nrm, wing[k])
        for k in range(feathers):
            f0 = pts[2] + (pts[3] - pts[2]) * (k + 0.5) / max(feathers, 1)
            fd = unit(pts[3] - pts[2] + (0, 0.08 * (k + 1), 0))
            fb = b.bone(b.name("feather", side, k + 1), f0, f0 + fd * 0.12 * wl, wing[2], 0.008)
            b.slab(f0, f0 + fd * 0.12 * wl, 0.025, 0.008, nrm, fb)
    tl = rng.uniform(0.1, 0.3)
    t0 = np.array([0, 0.12, Hb])
    tail = b.bone(b.name("tail"), t0, t0 + unit((0, 1, rng.uniform(-0.4, 0.4))) * tl, root, 0.03, 0.015)
    b.slab(t0, b.tails[tail], rng.uniform(0.05, 0.1), 0.01, Z, tail)
    return "spread" if spread else "folded"


def build_snake(b: Builder, rng: np.random.Generator, u: float, minimal: bool = False) -> str:
    r = rng.uniform(0.018, 0.045)
    if minimal:
        n, r = 1, r * 3.0
    else:
        n = _nbones(u, 3, 60)
    coil = n >= 20 and rng.random() < 0.3
    m = 400
    t = np.linspace(0, 1, m)
    if coil:
        turns = rng.uniform(1.5, 3.0)
        ang = 2 * np.pi * turns * t
        rad = 0.09 + 0.02 * ang
        pitch = 2.6 * r / (2 * np.pi)
        curve = np.stack([rad * np.cos(ang), rad * np.sin(ang), r + pitch * ang], 1)[::-1].copy()
    else:
        amp, waves = rng.uniform(0.0, 0.12), rng.uniform(0.5, 2.5)
        curve = np.stack([amp * np.sin(2 * np.pi * waves * t + rng.uniform(0, 6)), t, r + 0 * t], 1)
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    total = float(s[-1])
    head_frac = 0.06 if not minimal else 0.3
    s = s / total
    qs = np.linspace(head_frac, 1.0, n + 1)
    pts = np.stack([np.interp(qs, s, curve[:, k]) for k in range(3)], 1)
    prof = r * np.clip(1.15 - 0.9 * qs ** 2, 0.2, None)
    body = b.chain("spine", pts, -1, prof)
    hs = pts[0]
    hd = unit((curve[0] - hs) * (1, 1, 0))
    head_len = head_frac * total
    he = hs + hd * head_len * 0.9
    head = b.bone(b.name("head"), hs, he, body[0], r * 1.1, r * 0.7)
    b.ellipsoid((hs + he) / 2, np.stack([np.cross(hd, Z), hd, Z]), (r * 1.35, head_len * 0.55, r * 0.9), head)
    b.anchors["head"] = Anchor((hs * 0.4 + he * 0.6) + Z * r * 0.3, r, hd, Z.copy(), head)
    b.anchors["mouth"] = Anchor(he - Z * r * 0.3, r * 0.6, hd, Z.copy(), head)
    if not minimal and rng.random() < 0.5:
        b.bone(b.name("jaw"), hs - Z * r * 0.3, he - Z * r * 0.4, head, r * 0.5)
    return "worm" if minimal else ("coiled" if coil else "slither")


def build_fish(b: Builder, rng: np.random.Generator, u: float) -> str:
    n = _nbones(u, 2, 12)
    hm, wm = rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.11)
    zc = 0.5
    ys = np.linspace(-0.22, 0.38, n + 1)
    amp = rng.uniform(0.0, 0.08)
    xs = amp * np.sin(np.pi * (ys + 0.22) / 0.6) * rng.choice([-1, 1]) * ((ys + 0.22) / 0.6)
    pts = np.stack([xs, ys, zc + 0 * ys], 1)
    prof = np.clip(1.0 - ((ys + 0.1) / 0.55) ** 2, 0.15, 1.0)
    body = b.chain("spine", pts, -1, np.minimum(wm, hm) * 0.5 * prof)
    for k in range(n):
        c = (pts[k] + pts[k + 1]) / 2
        d = unit(pts[k + 1] - pts[k])
        pk = (prof[k] + prof[k + 1]) / 2
        b.ellipsoid(c, np.stack([np.cross(d, Z), d, Z]),
                    (wm * pk, np.linalg.norm(pts[k + 1] - pts[k]) * 0.8 + 0.02, hm * pk), body[k])
    hs = pts[0]
    head = b.bone(b.name("head"), hs, hs + (0, -0.2, 0), body[0], wm * 0.4)
    hc = hs + (0, -0.09, 0)
    b.ellipsoid(hc, np.eye(3), (wm * 0.95, 0.13, hm * 0.8), head)
    b.anchors["head"] = Anchor(hc + (0, -0.03, 0.2 * hm), 0.7 * min(wm * 1.4, hm), FWD.copy(), Z.copy(), head)
    b.anchors["mouth"] = Anchor(hs + (0, -0.2, -0.1 * hm), 0.4 * wm, FWD.copy(), Z.copy(), head)
    if rng.random() < 0.3 + 0.5 * u:
        b.bone(b.name("jaw"), hc + (0, 0.02, -0.3 * hm), hs + (0, -0.19, -0.15 * hm), head, wm * 0.25)
    # tail fin: two lobes
    te = pts[-1]
    span = rng.uniform(0.1, 0.25)
    for lobe, sz in (("upper", 1), ("lower", -1)):
        tip = te + unit((0, 1.0, sz * rng.uniform(0.6, 1.4))) * span
        f = b.bone(b.name(f"fin_tail_{lobe}"), te, tip, body[-1], 0.012)
        b.slab(te, tip, 0.06, 0.012, X, f)
    nd = 1 + int(rng.random() < u) + int(rng.random() < u * 0.5)
    d0 = np.array([0.0, -0.05, zc + hm * 0.8])
    for k in range(nd):
        tip = d0 + unit((0, 0.6, 1.0)) * rng.uniform(0.06, 0.14) * (1 - 0.2 * k)
        f = b.bone(b.name("fin_dorsal", None, k + 1), d0, tip, body[min(n - 1, n // 2)], 0.01)
        b.slab(d0, tip, 0.06, 0.012, X, f)
        d0 = tip - (0, 0, 0.04)
        d0[2] = max(d0[2], zc + hm * 0.7)
    for side, s in SIDES:
        p0 = hs + (s * wm * 0.5, 0.03, -0.2 * hm)
        tip = p0 + unit((s * 1.0, 0.8, -0.4)) * rng.uniform(0.06, 0.14)
        f = b.bone(b.name("fin_pectoral", side), p0, tip, body[0], 0.01)
        b.slab(p0, tip, 0.05, 0.012, Z, f)
        if rng.random() < u:
            p0 = pts[min(n, n // 2)] + (s * wm * 0.3, 0, -hm * 0.6)
            tip = p0 + unit((s * 0.5, 1.0, -0.8)) * 0.07
            f = b.bone(b.name("fin_pelvic", side), p0, tip, body[min(n - 1, n // 2)], 0.008)
            b.slab(p0, tip, 0.035, 0.012, Z, f)
    return "fish"
