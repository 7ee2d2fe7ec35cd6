"""Procedural rigged creatures: body plan -> skeleton + volumes -> surface mesh -> :class:`Rig`.

Creature ``index`` of a run with ``seed`` uses its own generators seeded from
(seed, index, stage), so any creature can be rebuilt alone and the skeleton stage
(:func:`plan`) does not depend on the meshing stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from backend.rig import Rig, make_rig
import backend.synth.defects as D
import backend.synth.parts as PT
import backend.synth.plans_others as PO
import backend.synth.plans_vertebrates as PV
from backend.synth.implicit import mesh_body
from backend.synth.primitives import merge
from backend.synth.skeleton import SIDE_STYLES, Builder

KINDS = ("humanoid", "quadruped", "bird", "snake", "fish", "spider", "insect", "octopus", "robot")
# (low, high) of the largest extent in metres (log-uniform); humanoids are mostly adult sized.
EXTENT = {"humanoid": (1.2, 2.1), "quadruped": (0.4, 3.0), "bird": (0.3, 1.5), "snake": (0.5, 3.0),
          "fish": (0.3, 2.0), "spider": (0.3, 1.5), "insect": (0.3, 1.5), "octopus": (0.4, 2.5),
          "robot": (0.4, 3.0)}
EYED = {"humanoid": 0.8, "quadruped": 0.7, "bird": 0.6, "snake": 0.6, "fish": 0.8, "spider": 0.9,
        "insect": 0.5, "octopus": 0.9, "robot": 0.3}


@dataclass
class Plan:
    """The skeleton stage of a creature: builder (bones + volumes) and labels."""

    kind: str
    variant: str
    builder: Builder
    seed: int
    index: int
    info: dict = field(default_factory=dict)


def schedule(seed: int, index: int) -> tuple[str, str]:
    """(kind, special) for creature ``index``: round-robin over KINDS (so every kind appears in
    any run of >= 100), with index % 100 == 50 a 2-bone worm and == 51 a 150+ bone creature."""
    slot = index % 100
    if slot == 50:
        return "snake", "minimal"
    if slot == 51:
        return ("insect", "maximal") if (seed + index // 100) % 2 == 0 else ("octopus", "maximal")
    return KINDS[(index + seed) % len(KINDS)], ""


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def plan(seed: int, index: int, kind: str | None = None, special: str = "", **opts) -> Plan:
    """Build the skeleton and body volumes (in metres, Z up) of creature ``index``.

    opts: ``fingers`` / ``head_bones`` (humanoid), ``extent`` (metres), ``robot_variant``.
    """
    if kind is None:
        kind, special = schedule(seed, index)
    if kind not in KINDS:
        raise ValueError(f"unknown creature kind {kind!r}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng([int(seed), int(index), 0])
    b = Builder(style=str(rng.choice(SIDE_STYLES, p=[0.55, 0.2, 0.1, 0.15])))
    u = float(rng.random())
    if special == "maximal":
        u = 1.0
    if kind == "humanoid":
        variant = PV.build_humanoid(b, rng, u, fingers=opts.get("fingers"), head_bones=opts.get("head_bones"))
    elif kind == "quadruped":
        variant = PV.build_quadruped(b, rng, u)
    elif kind == "bird":
        variant = PV.build_bird(b, rng, u)
    elif kind == "snake":
        variant = PV.build_snake(b, rng, u, minimal=special == "minimal")
    elif kind == "fish":
        variant = PV.build_fish(b, rng, u)
    elif kind == "spider":
        variant = PO.build_spider(b, rng, u)
    elif kind == "insect":
        if special == "maximal":
            variant = PO.build_centipede(b, rng, u, n_seg=int(rng.integers(30, 36)))
        elif rng.random() < 0.35:
            variant = PO.build_centipede(b, rng, u)
        else:
            variant = PO.build_insect(b, rng, u)
    elif kind == "octopus":
        variant = PO.build_octopus(b, rng, u, n_bones=19 if special == "maximal" else None)
    else:
        rv = opts.get("robot_variant") or str(rng.choice(["humanoid", "arm", "vehicle", "walker", "snake"]))
        if rv == "humanoid":
            PV.build_humanoid(b, rng, u, fingers=rng.random() < 0.2)
        elif rv == "arm":
            PO.build_robot_arm(b, rng, u)
        elif rv == "vehicle":
            PO.build_vehicle(b, rng, u)
        elif rv == "walker":
            (PO.build_spider if rng.random() < 0.5 else PO.build_insect)(b, rng, u)
        else:
            PV.build_snake(b, rng, u)
        variant = f"robot_{rv}"
    lo, hi = EXTENT[kind]
    if kind == "humanoid" and rng.random() < 0.2:
        lo, hi = 0.3, 1.2
    extent = float(opts.get("extent") or _log_uniform(rng, lo, hi))
    pts = np.array([p for a, c, r0, r1, _ in b.capsules for p in (a, c)] +
                   [c for c, _, _, _ in b.ellipsoids] + b.heads + b.tails)
    size = float(np.ptp(pts, axis=0).max())
    rot = float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2], p=[0.85, 0.05, 0.05, 0.05]))
    b.transform(extent / max(size, 1e-9), (0.0, 0.0, 0.0), rot)
    return Plan(kind, variant, b, int(seed), int(index), {"u": u, "special": special, "extent": extent})


def generate_creature(seed: int, index: int, kind: str | None = None, detail: float = 1.0,
                      target_vertices: int | None = None, accessories: set | None = None,
                      defects: bool | None = None, control_bones: bool | None = None,
                      unit_scale: float | None = None, **plan_opts) -> Rig:
    """Creature ``index`` of the run ``seed`` as a :class:`Rig` without weights.

    detail scales the vertex target (tests use < 1 for speed). accessories: subset of
    {"eyes", "teeth", "hat", "armour", "floating"} (None: random). defects / control_bones /
    unit_scale: None for random. extra keys: kind, variant, defects, unit_scale.
    """
    special = ""
    if kind is None:
        kind, special = schedule(seed, index)
    p = plan(seed, index, kind, special, **plan_opts)
    b = p.builder
    rng = np.random.default_rng([int(seed), int(index), 1])
    target = int(target_vertices or _log_uniform(rng, 1500, 14000) * detail)
    if b.num_bones > 60:
        target = max(target, int(6000 * detail))
    min_v = int(1000 * min(detail, 1.0))

    # separate parts
    if accessories is None:
        accessories = set()
        if rng.random() < EYED[kind]:
            accessories.add("eyes")
        for name, prob in (("teeth", 0.15), ("hat", 0.08), ("armour", 0.1), ("floating", 0.06)):
            if rng.random() < prob:
                accessories.add(name)
    part_meshes: list[tuple[str, list]] = []
    head = b.anchors.get("head")
    mouth = b.anchors.get("mouth")
    n_sub = 3 if detail < 1 else 4
    if "eyes" in accessories and head is not None:
        count = int(rng.choice([2, 4, 6, 8])) if kind == "spider" else 2
        part_meshes.append(("eyes", PT.eyes(head, rng, count, n_sub)))
    if "teeth" in accessories and mouth is not None:
        part_meshes.append(("teeth", PT.teeth(mouth, rng, 2)))
    if "hat" in accessories and head is not None:
        part_meshes.append(("hat", PT.hat(head, rng, n_sub + 1)))
    if "armour" in accessories:
        part_meshes.append(("armour", PT.armour(b, rng, int(rng.integers(1, 5)), 3)))
    if "floating" in accessories and head is not None:
        part_meshes.append(("accessory", PT.floating(head, rng, n_sub)))
    part_meshes = [(n, m) for n, m in part_meshes if m]
    n_part_v = sum(len(v) for _, ms in part_meshes for v, _ in ms)

    # body
    if kind == "robot":
        body_parts = PT.robot_parts(b, rng, max(target, min_v))
        bv, bf = merge(body_parts)
    else:
        bv, bf, _ = mesh_body(b.capsules, b.ellipsoids, target, rng.uniform(0.25, 0.7),
                                 min_vertices=min_v, max_vertices=19500 - n_part_v)
    meshes = [(bv, bf)]
    part_id = [np.zeros(len(bv), np.int16)]
    part_names = ["body"]
    for name, ms in part_meshes:
        v, f = merge(ms)
        meshes.append((v, f))
        part_id.append(np.full(len(v), len(part_names), np.int16))
        part_names.append(name)
    verts, faces = merge(meshes)
    mesh_part = np.concatenate(part_id)

    # defects
    heads, tails, parents, deform = b.arrays()
    applied = []
    if defects if defects is not None else rng.random() < 0.2:
        step = float(np.median(np.linalg.norm(bv[bf[:, 0]] - bv[bf[:, 1]], axis=1)))
        protect = np.concatenate([heads, tails]).astype(np.float64)
        kinds_of = [k for k in ("holes", "duplicates", "nonmanifold") if rng.random() < 0.5] or ["holes"]
        if "holes" in kinds_of:
            nf = len(faces)
            faces = D.punch_holes(verts, faces, rng, int(rng.integers(1, 5)), 2.5 * step, protect)
            if len(faces) < nf:
                applied.append("holes")
            elif "duplicates" not in kinds_of:
                kinds_of.append("duplicates")
        if "duplicates" in kinds_of:
            faces = D.duplicate_faces(faces, rng, rng.uniform(0.002, 0.03))
            applied.append("duplicates")
        if "nonmanifold" in kinds_of:
            n0 = len(verts)
            verts, faces = D.add_fins(verts, faces, rng, int(rng.integers(1, 12)), step)
            mesh_part = np.concatenate([mesh_part, mesh_part[faces[-(len(verts) - n0):, 0]]])
            applied.append("nonmanifold")
        verts, faces, kept = D.drop_unused(verts, faces)
        mesh_part = mesh_part[kept]

    names = b.unique_names()
    # control bones (IK targets outside the hierarchy, not deforming)
    if (control_bones if control_bones is not None else rng.random() < 0.1) and b.ik:
        extra_h, extra_t = [], []
        for j in b.ik[:4]:
            extra_h.append(heads[j])
            extra_t.append((heads[j] + tails[j]) / 2)
            names.append(f"IK_{names[j]}")
        heads = np.concatenate([heads, np.asarray(extra_h, np.float32)])
        tails = np.concatenate([tails, np.asarray(extra_t, np.float32)])
        parents = np.concatenate([parents, np.full(len(extra_h), -1, np.int32)])
        deform = np.concatenate([deform, np.zeros(len(extra_h), bool)])

    # ground contact, then units
    dz = -float(verts[:, 2].min())
    shift = np.array([0.0, 0.0, dz])
    if unit_scale is None:
        r = rng.random()
        unit_scale = 100.0 if r < 0.1 else (0.01 if r < 0.15 else 1.0)
    verts = (verts + shift) * unit_scale
    heads = (heads + shift) * unit_scale
    tails = (tails + shift) * unit_scale
    rig = make_rig(verts, faces, heads, parents, tails=tails, joint_names=names, is_deform=deform,
                   mesh_part=mesh_part if len(part_names) > 1 else None,
                   mesh_part_names=part_names if len(part_names) > 1 else None,
                   name=f"synth_{seed}_{index:05d}_{kind}")
    rig.extra["kind"] = np.array(kind)
    rig.extra["variant"] = np.array(p.variant)
    rig.extra["defects"] = np.array("+".join(applied))
    rig.extra["unit_scale"] = np.array(unit_scale, np.float32)
    return rig


def generate(count: int, seed: int, start: int = 0, **kw) -> Iterator[Rig]:
    """Creatures start .. start + count - 1 of the run ``seed``."""
    for i in range(start, start + count):
        yield generate_creature(seed, i, **kw)


def sample_character(kind: str = "humanoid", seed: int = 7) -> Rig:
    """The built-in demo character: for a humanoid ~20-30 bones, ~5-10k vertices, separate eyes,
    metres, no defects, no control bones."""
    opts = {"fingers": False, "head_bones": False} if kind == "humanoid" else {}
    return generate_creature(seed, 0, kind=kind, target_vertices=7000, accessories={"eyes"}, defects=False,
                             control_bones=False, unit_scale=1.0, extent=1.75 if kind == "humanoid" else None,
                             **opts)
