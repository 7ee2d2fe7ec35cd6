"""Shared pytest setup.

* BLENDER_USER_RESOURCES points at a temporary folder before anything imports bpy, so tests
  never read or write the user's Blender configuration.
* ``small_rig`` is a fixture factory building a capsule chain :class:`backend.rig.Rig` in numpy
  (``make_capsule_chain`` is importable as a plain function too).
* ``make_chain_with_eye``: a capsule chain plus a small separate cube (two mesh pieces).
* ``export_tiny_model`` writes a random (untrained) generator as an ONNX model.
* ``DATA_DIR`` / ``needs_data``: the shared data folder and a skip marker for when it is absent.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("BLENDER_USER_RESOURCES"):
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="autoskin_blender_user_")

from backend.rig import Rig, make_rig  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA_DIR / "rigs").is_dir(), reason=f"{DATA_DIR} is absent")


def make_capsule_chain(
    n_bones: int = 3,
    length: float = 3.0,
    radius: float = 0.3,
    segments: int = 16,
    rings: int = 24,
    cap_rings: int = 4,
    with_weights: bool = True,
    name: str = "capsule_chain",
) -> Rig:
    """A closed, manifold capsule along +Z from z=0 to z=``length`` with a straight chain of
    ``n_bones`` equal bones on its axis (bone j from z=j*L/n to (j+1)*L/n, parent j-1).

    Vertices: 2 poles + (2*cap_rings + rings + 1) rings of ``segments`` each.
    Weights (optional): tent functions centred on each bone's middle, at most two influences
    per vertex, rows summing to 1.
    """
    if n_bones < 1:
        raise ValueError("n_bones must be >= 1")
    # profile (z, r) from bottom pole to top pole, poles excluded
    prof = []
    for i in range(1, cap_rings + 1):  # bottom hemisphere
        a = -np.pi / 2 + (np.pi / 2) * i / cap_rings
        prof.append((radius * np.sin(a), radius * np.cos(a)))
    for i in range(1, rings):  # cylinder body (excluding the two equator rings already added/added below)
        prof.append((length * i / rings, radius))
    for i in range(0, cap_rings):  # top hemisphere, starting at the equator
        a = (np.pi / 2) * i / cap_rings
        prof.append((length + radius * np.sin(a), radius * np.cos(a)))
    prof = np.asarray(prof, dtype=np.float64)
    R = len(prof)
    ang = 2 * np.pi * np.arange(segments) / segments
    ring_xyz = np.stack([
        prof[:, 1:2] * np.cos(ang)[None, :],
        prof[:, 1:2] * np.sin(ang)[None, :],
        np.repeat(prof[:, 0:1], segments, axis=1),
    ], axis=-1).reshape(-1, 3)
    bottom = np.array([[0.0, 0.0, -radius]])
    top = np.array([[0.0, 0.0, length + radius]])
    verts = np.concatenate([bottom, ring_xyz, top])
    top_i = len(verts) - 1

    def ring(r: int, s: np.ndarray) -> np.ndarray:
        return 1 + r * segments + (s % segments)

    s = np.arange(segments)
    faces = [np.stack([np.zeros(segments, int), ring(0, s + 1), ring(0, s)], 1)]
    for r in range(R - 1):
        a, b, c, d = ring(r, s), ring(r, s + 1), ring(r + 1, s + 1), ring(r + 1, s)
        faces.append(np.stack([a, b, c], 1))
        faces.append(np.stack([a, c, d], 1))
    faces.append(np.stack([np.full(segments, top_i), ring(R - 1, s), ring(R - 1, s + 1)], 1))
    faces = np.concatenate(faces)

    seg = length / n_bones
    heads = np.stack([np.zeros(n_bones), np.zeros(n_bones), seg * np.arange(n_bones)], 1)
    tails = heads + np.array([0.0, 0.0, seg])
    parents = np.arange(n_bones) - 1
    weights = None
    if with_weights:
        centres = seg * (np.arange(n_bones) + 0.5)
        z = np.clip(verts[:, 2], centres[0], centres[-1])
        w = np.clip(1.0 - np.abs(z[:, None] - centres[None, :]) / seg, 0.0, None)
        weights = w / w.sum(axis=1, keepdims=True)
    return make_rig(verts, faces, heads, parents, tails=tails,
                    joint_names=[f"bone_{j}" for j in range(n_bones)], weights=weights, name=name)


def cube(centre, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) corners and (12, 3) triangles of an axis-aligned cube."""
    c = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64) * size / 2
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c_, d in quads for t in ((a, b, c_), (a, c_, d))]
    return c + np.asarray(centre, np.float64), np.asarray(tris, np.int64)


def make_chain_with_eye(eye_z: float = 2.5, eye_x: float = 0.45):
    """A 3-bone capsule chain (z 0..3) plus a small separate cube (an 'eye') beside it at height eye_z.
    Returns (rig, (V,) bool mask of the eye's vertices)."""
    body = make_capsule_chain(3, with_weights=False)
    ev, ef = cube([eye_x, 0.0, eye_z], 0.1)
    verts = np.concatenate([body.vertices, ev])
    faces = np.concatenate([body.faces, ef + len(body.vertices)])
    rig = make_rig(verts, faces, body.joints, body.parents, tails=body.tails, joint_names=list(body.joint_names))
    eye = np.zeros(len(verts), bool)
    eye[len(body.vertices):] = True
    return rig, eye


def box_robot():
    """Three bones up the z axis (0-1, 1-2, 2-3), a box of side 0.8 around each bone's middle, an 'eye'
    box beside bone 2 that holds no bone, and a box of side 1.6 around z = 1 that holds the middles of
    bones 0 and 1. Returns (rig with one-hot weights, {piece name: (V,) bool mask})."""
    parts = {"box0": cube([0, 0, 0.5], 0.8), "box1": cube([0, 0, 1.5], 0.8), "box2": cube([0, 0, 2.5], 0.8),
             "eye": cube([0.6, 0, 2.5], 0.1), "long": cube([0, 0, 1.0], 1.6)}
    bone_of = {"box0": 0, "box1": 1, "box2": 2, "eye": 2, "long": 0}
    verts, faces, masks, weights = [], [], {}, []
    n = 0
    for name, (v, f) in parts.items():
        verts.append(v)
        faces.append(f + n)
        weights.append(np.tile(np.eye(3)[bone_of[name]], (len(v), 1)))
        n += len(v)
    V = n
    start = 0
    for name, (v, _f) in parts.items():
        masks[name] = np.zeros(V, bool)
        masks[name][start:start + len(v)] = True
        start += len(v)
    heads = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]], np.float64)
    tails = heads + [0, 0, 1]
    rig = make_rig(np.concatenate(verts), np.concatenate(faces), heads, np.array([-1, 0, 1]), tails=tails,
                   joint_names=["hips", "chest", "head"], weights=np.concatenate(weights), name="box_robot")
    return rig, masks


@pytest.fixture
def small_rig():
    """Factory: ``small_rig(n_bones=3, **kw) -> Rig`` (see :func:`make_capsule_chain`)."""
    return make_capsule_chain


def export_tiny_model(path: str | Path, seed: int = 0, width: int = 32, k_bones: int = 4) -> Path:
    """Export a randomly initialised generator (hidden = fused = ``width``, ``k_bones`` Euclidean
    candidates) to ``path`` as an ONNX model; returns the path. Needs torch."""
    from backend.export.onnx_export import export_random_generator
    from backend.features.pipeline import FeatureConfig

    export_random_generator(path, hidden=width, fused=width, seed=seed,
                            feature_config=FeatureConfig(k_bones=k_bones, distance="euclidean"))
    return Path(path)


def rewrite_meta(src: str | Path, dst: str | Path, **changes: str | None) -> Path:
    """Copy the ONNX model ``src`` to ``dst`` (may be the same file) with metadata keys set to the given
    strings (None: removed); returns ``dst``. Needs onnx."""
    import onnx

    from backend.export.metadata import get_metadata, set_metadata

    proto = onnx.load(str(src))
    meta = get_metadata(proto)
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    del proto.metadata_props[:]
    set_metadata(proto, meta)
    onnx.save_model(proto, str(dst))
    return Path(dst)


def make_fake_data_root(root: Path) -> Path:
    """rigs/{train,val,test} and styles/ with two domains of capsule chains, and their manifests
    (dom_a is sharealike, dom_b noncommercial; the rigs are CC0)."""
    from backend.io.npz import save_npz

    rows, style_rows = [], []
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        (root / "rigs" / split).mkdir(parents=True)
        for i in range(n):
            name = f"{split}{i}.npz"
            save_npz(make_capsule_chain(n_bones=2 + i % 2, segments=8, rings=8, name=name),
                     root / "rigs" / split / name)
            rows.append({"file": name, "split": split, "source": "quaternius_x", "kind": "other", "license": "CC0-1.0"})
    (root / "styles").mkdir()
    for d, n in (("dom_a", 2), ("dom_b", 1)):
        for i in range(n):
            name = f"{d}{i}.npz"
            save_npz(make_capsule_chain(n_bones=3, length=2.0 + i, segments=8, rings=8, name=name),
                     root / "styles" / name)
            style_rows.append({"file": name, "domain": d, "kind": "animal",
                               "license_class": "sharealike" if d == "dom_a" else "noncommercial"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "styles" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in style_rows))
    return root


def make_tiny_recipe(tmp_path: Path, extra: str = "") -> tuple[Path, Path, Path]:
    """(data root, folds file, config) for a seconds-long ``recipe`` / ``cv`` run on
    :func:`make_fake_data_root`: folds [dom_a], [dom_b]; ``extra`` TOML is appended to the config."""
    data = make_fake_data_root(tmp_path / "data")
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [["dom_a"], ["dom_b"]]}))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[model]\nhidden = 16\nfused = 16\ncritic_hidden = 8\n[data]\nvertex_budget = 400\n'
                   'domain_balance = 0.5\nsynth_unlabeled = 2\nplot_rigs = 0\n[stages]\nstage1_epochs = 1\n'
                   'stage2_epochs = 1\n[run]\nthreads = 1\nplot_every = 0\n' + extra)
    return data, folds, cfg


def run_fresh_blender(script: Path, tmp_path: Path, timeout: int = 180) -> dict:
    """Run ``script`` (which imports bpy) in a fresh Python process with Blender's user resources in
    ``tmp_path/user`` and no PYTHONPATH; returns the JSON object on its last line of output."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "user")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
