"""Time the feature computation on generated creatures of several sizes.

For each vertex count, a four-legged creature (torso, neck and head, tail, four legs: closed
capsules that overlap like a game model's parts) gets a skeleton of --bones bones; the command
prints the wall time of the geodesic prior (model-free weights) and of the full learning features
(backend.features.pipeline.compute_features, when present), and the peak memory of the prior
(numpy allocations seen by tracemalloc, measured in a separate run so it does not slow the timing).

``--compare`` times, instead, the first version of the geodesic search (``search="reference"``: the graph
from coordinate lists, one Dijkstra per bone) against the current one, in this process, interleaved
(reference, current, reference, ...; best of --repeat each), on the creatures and on any ``--rig``
files: the geodesic prior, the learning features of the shipped model's configuration and
``Predictor.predict`` end to end (learned mode with the shipped model when present). It prints wall
and CPU seconds, their ratios and whether the outputs are identical.
"""
from __future__ import annotations

import argparse

import numpy as np

NAME = "bench-features"
HELP = "time the geodesic prior and the learning features on generated meshes"

# (start, end, radius, share of the bones); legs start inside the torso
_LIMBS = (
    ((-0.6, 0.0, 0.6), (0.6, 0.0, 0.6), 0.22, 14),  # torso (root chain)
    ((0.6, 0.0, 0.6), (0.95, 0.0, 0.95), 0.12, 6),  # neck + head
    ((-0.6, 0.0, 0.6), (-1.3, 0.0, 0.9), 0.06, 12),  # tail
    ((0.45, 0.15, 0.55), (0.45, 0.18, 0.0), 0.07, 7),  # legs
    ((0.45, -0.15, 0.55), (0.45, -0.18, 0.0), 0.07, 7),
    ((-0.45, 0.15, 0.55), (-0.45, 0.18, 0.0), 0.07, 7),
    ((-0.45, -0.15, 0.55), (-0.45, -0.18, 0.0), 0.07, 7),
)
MIN_BONES = len(_LIMBS)  # one bone per chain at least


def capsule_mesh(p0: np.ndarray, p1: np.ndarray, radius: float, segments: int, rings: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Closed capsule around p0 -> p1: ((V, 3) float64, (F, 3) int64); rings along the body,
    four rings per hemispherical cap, ``segments`` around."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    z = axis / length
    x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    cap = 4
    a = np.linspace(-np.pi / 2, 0, cap + 1)[1:]
    prof = [(radius * np.sin(t), radius * np.cos(t)) for t in a]
    prof += [(length * i / rings, radius) for i in range(1, rings)]
    prof += [(length + radius * np.sin(t), radius * np.cos(t)) for t in np.linspace(0, np.pi / 2, cap + 1)[:-1]]
    prof = np.asarray(prof)
    ang = 2 * np.pi * np.arange(segments) / segments
    ring_pts = (prof[:, None, 0:1] * z + prof[:, None, 1:2] * (np.cos(ang)[None, :, None] * x
                                                               + np.sin(ang)[None, :, None] * y))
    verts = np.concatenate([[-radius * z], ring_pts.reshape(-1, 3), [(length + radius) * z]]) + p0
    R, s = len(prof), np.arange(segments)
    top = len(verts) - 1

    def ring(r: int, k: np.ndarray) -> np.ndarray:
        return 1 + r * segments + k % segments

    faces = [np.stack([np.zeros(segments, np.int64), ring(0, s + 1), ring(0, s)], 1)]
    for r in range(R - 1):
        q = (ring(r, s), ring(r, s + 1), ring(r + 1, s + 1), ring(r + 1, s))
        faces += [np.stack([q[0], q[1], q[2]], 1), np.stack([q[0], q[2], q[3]], 1)]
    faces.append(np.stack([np.full(segments, top), ring(R - 1, s), ring(R - 1, s + 1)], 1))
    return verts, np.concatenate(faces)


def make_creature(n_vertices: int, n_bones: int = 60):
    """A generated four-legged creature with about ``n_vertices`` vertices and ``n_bones`` bones
    (chains along torso, neck, tail and legs; at least one bone per chain: ``n_bones`` >=
    ``MIN_BONES``). Returns a backend.rig.Rig without weights."""
    from backend.rig import make_rig

    if n_bones < MIN_BONES:
        raise ValueError(f"the bench creature has {MIN_BONES} bone chains: give at least {MIN_BONES} bones, "
                         f"got {n_bones}")

    share = np.array([b for *_, b in _LIMBS], float)
    nb = np.maximum(np.round(share / share.sum() * n_bones).astype(int), 1)
    nb[0] += n_bones - nb.sum()
    area = np.array([np.linalg.norm(np.subtract(p1, p0)) * r for p0, p1, r, _ in _LIMBS])
    verts, faces, heads, tails, parents = [], [], [], [], []
    off = 0
    chain_ends = {}
    for i, (p0, p1, r, _) in enumerate(_LIMBS):
        nv = n_vertices * area[i] / area.sum()
        length = float(np.linalg.norm(np.subtract(p1, p0)))
        seg = max(int(round(np.sqrt(nv * 2 * np.pi * r / length))), 6)
        rings = max(int(round(nv / seg)) - 8, 2)
        v, f = capsule_mesh(np.asarray(p0), np.asarray(p1), r, seg, rings)
        verts.append(v)
        faces.append(f + off)
        off += len(v)
        t = np.linspace(0, 1, nb[i] + 1)[:, None]
        pts = np.asarray(p0) + t * np.subtract(p1, p0)
        first = len(heads)
        for j in range(nb[i]):
            heads.append(pts[j])
            tails.append(pts[j + 1])
            if j > 0:
                parents.append(first + j - 1)
            elif i == 0:
                parents.append(-1)
            elif i in (1, 3, 4):  # neck and front legs hang from the torso's front
                parents.append(chain_ends[0][1])
            else:  # tail and hind legs from the torso's back
                parents.append(chain_ends[0][0])
        chain_ends[i] = (first, first + nb[i] - 1)
    return make_rig(np.concatenate(verts), np.concatenate(faces), np.asarray(heads), parents,
                    tails=np.asarray(tails), name=f"creature_{n_vertices}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="5000,50000,200000",
                        help="comma-separated vertex counts (default: %(default)s)")
    parser.add_argument("--bones", type=int, default=60, help="bones per creature (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=64, help="voxel resolution (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per size, the best is shown (default: %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument("--no-features", action="store_true", help="time the geodesic prior only")
    parser.add_argument("--compare", action="store_true",
                        help="time the first geodesic search against the current one (same process, interleaved)")
    parser.add_argument("--rig", action="append", default=[],
                        help="with --compare: an .npz rig to time as well (repeatable; its weights are ignored)")


def _best_time(fn, repeat: int) -> float:
    import time

    best = float("inf")
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _interleaved(fns: dict, repeat: int) -> tuple[dict, dict, dict]:
    """Run each of ``fns`` (name -> callable) in turn, ``repeat`` rounds after one warm-up round:
    (best wall seconds, best CPU seconds, last result) per name."""
    import time

    wall = {k: float("inf") for k in fns}
    cpu = dict(wall)
    out = {}
    for n in range(max(repeat, 1) + 1):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            out[k] = fn()
            if n:  # the first round warms caches up
                wall[k] = min(wall[k], time.perf_counter() - w0)
                cpu[k] = min(cpu[k], time.process_time() - c0)
    return wall, cpu, out


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "model_inputs"):
        return all(_same(a.model_inputs()[k], b.model_inputs()[k]) for k in a.model_inputs())
    if hasattr(a, "weights"):
        return _same(a.weights, b.weights)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def compare(args: argparse.Namespace, sizes: list[int]) -> int:
    """``--compare``: the first geodesic search against the current one, in this process."""
    from pathlib import Path

    from tqdm import tqdm

    from backend.features import geodesic
    from backend.features.pipeline import FeatureConfig, compute_features
    from backend.inference.predictor import DEFAULT_MODEL, Predictor
    from backend.io.npz import load_npz

    model = Path(DEFAULT_MODEL)
    predictor = Predictor(model) if model.is_file() else Predictor(mode="geodesic")
    config = predictor.model.info.feature_config if predictor.model is not None else FeatureConfig()
    cases = [(f"creature {n}", lambda n=n: make_creature(n, args.bones)) for n in sizes]
    cases += [(Path(r).stem, lambda r=r: load_npz(r).without_weights()) for r in args.rig]
    steps = {"prior": lambda rig: geodesic.geodesic_prior_weights(rig, resolution=args.resolution),
             "features": lambda rig: compute_features(rig, config),
             "predict": lambda rig: predictor.predict(rig)}
    rows = []
    saved = geodesic.SEARCH
    try:
        for name, make in tqdm(cases, desc="bench-features --compare", unit="rig"):
            rig = make()
            for step, fn in steps.items():
                def with_search(search, fn=fn, rig=rig):
                    geodesic.SEARCH = search
                    return fn(rig)

                wall, cpu, out = _interleaved({"reference": lambda: with_search("reference"),
                                               "current": lambda: with_search("auto")}, args.repeat)
                rows.append((name, rig.num_vertices, int(rig.is_deform.sum()), step, wall, cpu,
                             _same(out["reference"], out["current"])))
    finally:
        geodesic.SEARCH = saved
    print(f"{'rig':<34} {'V':>6} {'J':>4} {'step':<8} {'ref s':>7} {'new s':>7} {'ratio':>6} "
          f"{'ref cpu':>7} {'new cpu':>7} {'ratio':>6}  identical")
    for name, V, J, step, wall, cpu, same in rows:
        print(f"{name[:34]:<34} {V:6d} {J:4d} {step:<8} {wall['reference']:7.3f} {wall['current']:7.3f} "
              f"{wall['reference'] / wall['current']:5.2f}x {cpu['reference']:7.3f} {cpu['current']:7.3f} "
              f"{cpu['reference'] / cpu['current']:5.2f}x  {'yes' if same else 'NO'}")
    print(f"resolution {args.resolution}, best of {args.repeat} (interleaved, after a warm-up round); predict: "
          f"{'learned, ' + model.name if predictor.model is not None else 'geodesic mode (no model file)'}, "
          f"{predictor.provider}; J counts deform bones before helper bones are skipped")
    return 0 if all(r[-1] for r in rows) else 1


def run(args: argparse.Namespace) -> int:
    import resource
    import tracemalloc

    from tqdm import tqdm

    from backend.features.geodesic import geodesic_prior_weights

    try:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError:
        print(f"error: --sizes must be comma-separated integers, got {args.sizes!r}")
        return 2
    if not sizes or min(sizes) < 100 or args.bones < MIN_BONES:
        print(f"error: sizes must be >= 100 vertices and --bones >= {MIN_BONES}")
        return 2
    if args.rig and not args.compare:
        print("error: --rig needs --compare")
        return 2
    if args.compare:
        return compare(args, sizes)
    compute_features = None
    if not args.no_features:
        try:
            from backend.features.pipeline import FeatureConfig, compute_features
        except ImportError as exc:
            print(f"(learning features skipped: backend.features.pipeline is not available: {exc})")
    rows = []
    for n in tqdm(sizes, desc="bench-features", unit="mesh"):
        rig = make_creature(n, args.bones)
        prior = lambda: geodesic_prior_weights(rig, resolution=args.resolution)  # noqa: E731
        prior()  # warm-up (imports, caches)
        t_prior = _best_time(prior, args.repeat)
        t_feat = None
        if compute_features is not None:
            cfg = FeatureConfig(geodesic_resolution=args.resolution)
            t_feat = _best_time(lambda: compute_features(rig, cfg), args.repeat)
        peak = None
        if not args.no_memory:
            tracemalloc.start()
            prior()
            peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        rows.append((rig.num_vertices, rig.num_bones, t_prior, t_feat, peak))
    print(f"{'vertices':>9} {'bones':>5} {'prior s':>8} {'features s':>10} {'prior peak MiB':>14}")
    for v, j, tp, tf, pk in rows:
        tf_s = f"{tf:10.3f}" if tf is not None else f"{'-':>10}"
        pk_s = f"{pk:14.1f}" if pk is not None else f"{'-':>14}"
        print(f"{v:9d} {j:5d} {tp:8.3f} {tf_s} {pk_s}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resolution {args.resolution}, best of {args.repeat}; process peak RSS {rss:.0f} MiB")
    return 0
