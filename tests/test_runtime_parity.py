"""The runtime's faster paths (issue 26) give the numbers of the plain ones: mesh edges by 1-D keys,
edges and pieces computed once and shared, the diffusion's symmetric factorisation solved column by
column, the clean-up and the transfer in row chunks, the geodesic search graph built row by row and
searched per bone or by levels (bit for bit the first version, ``search="reference"``); and
``Predictor.predict`` reports its steps and stops when its progress callback raises. Generated meshes,
plus the shared test rigs when present."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.linalg import splu

from backend.cli.bench_features import make_creature
from backend.features import simplify
from backend.features import geodesic
from backend.features.frame import canonical_deform_arrays
from backend.features.geodesic import geodesic_bone_distances, geodesic_prior_weights
from backend.features.geometry import mesh_edges
from backend.features.helper_bones import without_helpers
from backend.features.pieces import vertex_areas
from backend.features.topology import MeshTopology
from backend.inference import postprocess as pp
from backend.inference.predictor import Predictor
from backend.inference.progress import STAGES, Cancelled
from conftest import DATA_DIR, make_capsule_chain, make_chain_with_eye, needs_data


def two_pieces():
    """A capsule chain and a second capsule beside it (two separate pieces), 3 + 0 bones."""
    rig = make_capsule_chain(3, with_weights=False)
    other = make_capsule_chain(1, with_weights=False)
    rig.faces = np.concatenate([rig.faces, other.faces + rig.num_vertices])
    rig.vertices = np.concatenate([rig.vertices, other.vertices + np.array([1.0, 0.0, 0.0], np.float32)])
    return rig


def test_mesh_edges_equal_the_row_unique_reference():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 60, size=(300, 3))
    faces[:10, 1] = faces[:10, 0]  # degenerate triangles: no self edge
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    ref = np.unique(e[e[:, 0] != e[:, 1]], axis=0)
    got = mesh_edges(faces)
    assert got.dtype == np.int64 and np.array_equal(got, ref)
    assert mesh_edges(np.zeros((0, 3), np.int64)).shape == (0, 2)


def test_shared_pieces_number_parts_like_mesh_components():
    for rig in (two_pieces(), make_creature(3000, 10)):
        count, labels = MeshTopology(rig.faces, rig.num_vertices).pieces
        ref = simplify.mesh_components(rig.num_vertices, rig.faces)
        assert np.array_equal(labels, ref) and count == ref.max() + 1
    assert count > 1  # the creature's limbs are separate capsules


def test_cluster_ids_equal_the_lexsort_numbering():
    rig = make_creature(3000, 10)
    labels = simplify.mesh_components(rig.num_vertices, rig.faces)
    v = rig.vertices.astype(np.float64)
    for h in (0.5, 0.05, 0.01, 1e-4):
        cid, n = simplify._cluster(v, labels, h)
        cell = np.floor((v - v.min(axis=0)) / h).astype(np.int64)
        _, ref = np.unique(np.stack([labels, cell[:, 0], cell[:, 1], cell[:, 2]], 1), axis=0, return_inverse=True)
        assert n == ref.max() + 1 and np.array_equal(cid, ref.reshape(-1))


def dense_diffusion(w: np.ndarray, x: np.ndarray, faces: np.ndarray, radius: float) -> np.ndarray:
    """The diffusion step written out plainly: dense (M + t L) w' = M w, one edge at a time."""
    n = len(x)
    mass = vertex_areas(x, faces)
    mass = np.maximum(mass, 1e-9 * mass.mean())
    edges = {tuple(sorted((int(f[a]), int(f[b])))) for f in faces for a, b in ((0, 1), (1, 2), (2, 0))}
    length2 = {e: float(np.sum((x[e[0]] - x[e[1]]) ** 2)) for e in edges}
    floor = (1e-3 * np.sqrt(np.median(list(length2.values())))) ** 2
    L = np.zeros((n, n))
    for (i, j), l2 in length2.items():
        c = 0.5 * (mass[i] + mass[j]) / max(l2, floor)
        L[i, j] -= c
        L[j, i] -= c
        L[i, i] += c
        L[j, j] += c
    t = 0.5 * (radius * np.linalg.norm(x.max(axis=0) - x.min(axis=0))) ** 2
    out = np.linalg.solve(np.diag(mass) + t * L, mass[:, None] * w)
    return out / out.sum(axis=1, keepdims=True)


def test_diffusion_equals_a_dense_solve_and_keeps_empty_bones_empty():
    rig = two_pieces()
    x = rig.vertices.astype(np.float64)
    rng = np.random.default_rng(1)
    w = rng.random((len(x), 5))
    w[:, 3] = 0.0  # a bone nobody carries
    w /= w.sum(axis=1, keepdims=True)
    got = pp.diffuse_weights(w, x, rig.faces, 0.05)
    np.testing.assert_allclose(got, dense_diffusion(w, x, rig.faces, 0.05), atol=1e-10)
    assert not got[:, 3].any()
    shared = pp.diffuse_weights(w, x, rig.faces, 0.05, edges=mesh_edges(rig.faces))
    assert np.array_equal(shared, got)


def test_chunks_change_nothing(monkeypatch):
    rig = make_creature(3000, 10)
    small, index_map = simplify.simplify_rig(rig, 400)
    w_small = geodesic_prior_weights(small)
    whole_t = simplify.transfer_to_rig(rig, index_map, w_small)
    whole = pp.postprocess(whole_t, rig.faces, diffuse=0.5, vertices=rig.vertices, sharpen=1.5)
    monkeypatch.setattr(simplify, "TRANSFER_CHUNK", 97)
    monkeypatch.setattr(pp, "ROW_CHUNK", 101)
    chunked_t = simplify.transfer_to_rig(rig, index_map, w_small)
    assert np.array_equal(chunked_t, whole_t)
    assert np.array_equal(pp.postprocess(chunked_t, rig.faces, diffuse=0.5, vertices=rig.vertices, sharpen=1.5),
                          whole)


def old_diffusion(w: np.ndarray, x: np.ndarray, faces: np.ndarray, radius: float) -> np.ndarray:
    """The diffusion as it was before issue 26: default (COLAMD) ordering, one many-column solve."""
    w = pp.normalize_rows(w)
    e = mesh_edges(faces)
    n = len(x)
    mass = vertex_areas(x, faces)
    mass = np.maximum(mass, 1e-9 * max(float(mass.mean()), 1e-30))
    length2 = np.sum((x[e[:, 0]] - x[e[:, 1]]) ** 2, axis=1)
    length2 = np.maximum(length2, (1e-3 * max(float(np.sqrt(np.median(length2))), 1e-12)) ** 2)
    c = 0.5 * (mass[e[:, 0]] + mass[e[:, 1]]) / length2
    lap = sparse.csr_matrix((np.concatenate([-c, -c]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                        np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n))
    lap = lap - sparse.diags(np.asarray(lap.sum(axis=1)).ravel())
    t = 0.5 * (radius * float(np.linalg.norm(x.max(axis=0) - x.min(axis=0)))) ** 2
    return pp.normalize_rows(splu((sparse.diags(mass) + t * lap).tocsc()).solve(mass[:, None] * w))


def test_predictor_equals_the_unshared_step_by_step_path():
    """Geodesic mode through simplification, transfer and diffusion, against the same steps called
    one by one with nothing shared and the old diffusion."""
    rig = make_creature(2500, 12)
    got = Predictor(mode="geodesic", vertex_budget=600).predict(rig, diffuse=0.5).weights
    rig, _ = without_helpers(rig)
    small, index_map = simplify.simplify_rig(rig, 600)
    w = simplify.transfer_to_rig(rig, index_map, geodesic_prior_weights(small, resolution=64))
    w = pp.normalize_rows(w, rig.is_deform)
    w = old_diffusion(w, rig.vertices.astype(np.float64), rig.faces, 0.005)
    ref = pp.postprocess(w, rig.faces, allowed=rig.is_deform)
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_predict_reports_its_steps_and_stops_when_asked():
    rig = make_creature(2500, 12)
    p = Predictor(mode="geodesic", vertex_budget=600)
    seen = []
    p.predict(rig, diffuse=0.5, progress=lambda stage, f: seen.append((stage, f)))
    assert list(dict.fromkeys(s for s, _ in seen)) == ["checking", "simplifying", "features", "transfer",
                                                       "post-processing"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(STAGES[s] <= f for s, f in seen)
    assert sum(s == "post-processing" for s, _ in seen) > 5  # column by column, then row chunks

    def stop(stage, fraction):
        if stage == "post-processing" and fraction > STAGES["post-processing"]:
            raise Cancelled()

    with pytest.raises(Cancelled):
        p.predict(rig, diffuse=0.5, progress=stop)


def test_learned_mode_reports_the_network_step():
    pytest.importorskip("onnxruntime")
    rig = make_capsule_chain(4, with_weights=False)
    seen = []
    Predictor(device="cpu").predict(rig, progress=lambda stage, f: seen.append(stage))
    assert list(dict.fromkeys(seen)) == ["checking", "features", "network", "post-processing"]


# ----------------------------------------------------------------------------- geodesic search
def test_voxel_graph_equals_the_coordinate_list_matrix():
    """The row-by-row graph is the csr_matrix of the coordinate lists, a bridge joined from both of its
    components (summed, as csr_matrix sums duplicates) included."""
    rng = np.random.default_rng(3)
    solid = rng.random((9, 7, 8)) < 0.55
    ids = np.full(solid.shape, -1, np.int64)
    N = int(solid.sum())
    ids[solid] = np.arange(N)
    coords = np.argwhere(solid)
    # bridges join voxels that are not 26-neighbours (they join separate components)
    far = np.flatnonzero(np.abs(coords - coords[0]).max(axis=1) > 1)
    far2 = np.flatnonzero(np.abs(coords - coords[far[1]]).max(axis=1) > 1)
    bs = np.array([0, far[0], far[1]])
    bd = np.array([far[0], 0, far2[-1]])  # 0 <-> far[0] from both sides
    bl = np.array([2.5, 2.5, 3.0]) * 0.1
    seed_b = np.array([0, 0, 1, 2, 2, 2])
    seed_n = np.array([1, 5, 3, 0, 4, 9])
    seed_d = rng.random(6) * 0.05
    Jd = 3
    got = geodesic._voxel_graph(ids, coords, 0.1, (bs, bd, bl), (seed_b, seed_n, seed_d), Jd).csr
    es, ed, el = geodesic._voxel_edges(ids, 0.1)
    rows = np.concatenate([es, ed, bs, bd, N + seed_b])
    cols = np.concatenate([ed, es, bd, bs, seed_n])
    vals = np.concatenate([el, el, bl, bl, seed_d]) + geodesic._EDGE_EPS
    ref = sparse.csr_matrix((vals, (rows, cols)), shape=(N + Jd, N + Jd))
    assert got.shape == ref.shape and got.nnz == ref.nnz
    got.sort_indices()
    assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)  # bit for bit, the doubled bridge too
    assert got[0, far[0]] == 2 * (0.25 + geodesic._EDGE_EPS)


def _geodesic_cases():
    body = make_capsule_chain(5, with_weights=False)
    eye, _ = make_chain_with_eye()  # a separate piece without bones: joined by a bridge
    outside = make_capsule_chain(3, with_weights=False)
    outside.joints = outside.joints + np.array([0.0, 0.8, 0.0], np.float32)  # bones beside the mesh
    outside.tails = outside.tails + np.array([0.0, 0.8, 0.0], np.float32)
    return [(make_creature(3000, 60), 8, 64), (make_creature(2000, 20), 8, 48), (make_creature(1500, 11), 3, 32),
            (body, 2, 40), (eye, 8, 64), (outside, 2, 32)]


@pytest.mark.parametrize("case", range(6))
def test_every_search_gives_the_reference_bit_for_bit(case, monkeypatch):
    rig, k, res = _geodesic_cases()[case]
    _, v, heads, tails, _ = canonical_deform_arrays(rig)
    ref = geodesic_bone_distances(v, rig.faces, heads, tails, k, res, search="reference")
    ran = []
    levels = geodesic._search_levels
    monkeypatch.setattr(geodesic, "_search_levels", lambda *a: ran.append(1) or levels(*a))
    for search in ("bones", "levels", "auto"):
        got = geodesic_bone_distances(v, rig.faces, heads, tails, k, res, search=search)
        for g, r in zip(got, ref):
            assert g.dtype == r.dtype and np.array_equal(g, r), search
    assert ran  # the level search answered (it did not fall back to the per-bone one)
    if case == 0:
        assert len(ran) == 2  # 60 bones, K = 8: "auto" chose the levels


def test_a_level_tie_falls_back_to_the_per_bone_search(monkeypatch):
    rig = make_creature(2000, 30)
    _, v, heads, tails, _ = canonical_deform_arrays(rig)
    ref = geodesic_bone_distances(v, rig.faces, heads, tails, 8, 48, search="reference")

    def tie(*args):
        raise geodesic._LevelTie

    monkeypatch.setattr(geodesic, "_search_levels", tie)
    got = geodesic_bone_distances(v, rig.faces, heads, tails, 8, 48, search="levels")
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    with pytest.raises(ValueError, match="search must be one of"):
        geodesic_bone_distances(v, rig.faces, heads, tails, 8, 48, search="fast")


@pytest.mark.parametrize("mode", ["learned", "geodesic", "heat"])
def test_predictions_do_not_depend_on_the_search(mode, monkeypatch):
    if mode == "learned":
        pytest.importorskip("onnxruntime")
    rig = make_creature(2500, 40)
    got = Predictor(mode=mode, device="cpu").predict(rig).weights
    monkeypatch.setattr(geodesic, "SEARCH", "reference")
    ref = Predictor(mode=mode, device="cpu").predict(rig).weights
    assert np.array_equal(got, ref)


@needs_data
@pytest.mark.parametrize("name", ["quaternius_b2b__Pug", "quaternius_b2b__Tank3", "quaternius_b2b__Cat",
                                  "quaternius_fable__characters_Wizard"])
def test_test_rigs_search_bit_for_bit(name):
    from backend.features.helper_bones import without_helpers
    from backend.io.npz import load_npz

    rig, _ = without_helpers(load_npz(DATA_DIR / "rigs" / "test" / f"{name}.npz"))
    _, v, heads, tails, _ = canonical_deform_arrays(rig)
    ref = geodesic_bone_distances(v, rig.faces, heads, tails, 8, 64, search="reference")
    for search in ("levels", "auto"):
        got = geodesic_bone_distances(v, rig.faces, heads, tails, 8, 64, search=search)
        assert all(g.dtype == r.dtype and np.array_equal(g, r) for g, r in zip(got, ref)), search


def test_bench_compare_prints_identical_outputs(capsys):
    from backend.__main__ import main

    assert main(["bench-features", "--compare", "--sizes", "400", "--bones", "9", "--repeat", "1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("creature 400")]
    assert [ln.split()[4] for ln in rows] == ["prior", "features", "predict"]
    assert all(ln.endswith("yes") for ln in rows)
    assert main(["bench-features", "--rig", "x.npz"]) == 2  # --rig needs --compare
