"""Learning features: shapes, invariance to placement and scale, bone-order equivariance."""
import numpy as np
import pytest

from backend.features.batch import collate
from backend.features.frame import canonical_frame
from backend.features.pipeline import FB, FP, FV, FeatureConfig, compute_features, neighbor_table
from backend.rig import make_rig
from tests.conftest import make_capsule_chain


@pytest.fixture(scope="module")
def chain():
    rig = make_capsule_chain(n_bones=4, segments=12, rings=16)
    # a little jitter so that no two neighbours are exactly equidistant (kNN ties)
    rig.vertices = rig.vertices + np.random.default_rng(0).normal(0, 0.01, rig.vertices.shape).astype(np.float32)
    return rig


@pytest.fixture(scope="module")
def feats(chain):
    return compute_features(chain, FeatureConfig(k_bones=3))


def test_shapes_and_ranges(chain, feats):
    V, Jd = chain.num_vertices, int(chain.is_deform.sum())
    assert feats.vertex_feat.shape == (V, FV)
    assert feats.bone_feat.shape == (Jd, FB)
    assert feats.cand.shape == (V, 3) and feats.pair_feat.shape == (V, 3, FP)
    assert feats.cand.min() >= 0 and feats.cand.max() < Jd
    np.testing.assert_allclose(feats.prior.sum(1), 1.0, atol=1e-5)
    assert all(np.isfinite(a).all() for a in feats.model_inputs().values() if a.dtype.kind == "f")
    # canonical frame: everything inside the unit sphere, root joint at the origin
    assert np.linalg.norm(feats.vertex_feat[:, :3], axis=1).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(feats.bone_feat[0, :3], 0.0, atol=1e-6)


def test_nearest_candidate_is_the_enclosing_bone(chain, feats):
    # vertex at height z on the axis-aligned chain lies around bone floor(z / (L/n))
    z = chain.vertices[:, 2]
    inner = (z > 0.1) & (z < 2.9) & (np.abs((z / 0.75) % 1 - 0.5) < 0.35)  # away from joints
    expected = np.floor(z / 0.75).astype(int)
    assert (feats.cand[inner, 0] == expected[inner]).mean() > 0.95


def test_features_do_not_depend_on_placement_or_units(chain, feats):
    moved = make_rig(chain.vertices * 100.0 + np.array([5.0, -3.0, 2.0]), chain.faces,
                     chain.joints * 100.0 + np.array([5.0, -3.0, 2.0]), chain.parents,
                     tails=chain.tails * 100.0 + np.array([5.0, -3.0, 2.0]))
    f2 = compute_features(moved, FeatureConfig(k_bones=3))
    np.testing.assert_array_equal(f2.cand, feats.cand)
    np.testing.assert_allclose(f2.pair_feat, feats.pair_feat, atol=1e-3)
    np.testing.assert_allclose(f2.vertex_feat, feats.vertex_feat, atol=1e-4)
    fr = canonical_frame(moved)
    np.testing.assert_allclose(fr.from_canonical(fr.to_canonical(moved.vertices)), moved.vertices, rtol=1e-5, atol=1e-3)


def test_dense_round_trip(feats, chain):
    w = feats.to_dense(feats.prior)
    assert w.shape == (chain.num_vertices, chain.num_bones)
    np.testing.assert_allclose(feats.gather_dense(w), feats.prior, atol=1e-6)


def test_neighbor_table_ring_first_then_nearest():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [5, 6, 5], [6, 5, 5]], np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    nb = neighbor_table(verts, faces, 3)
    assert set(nb[0, :2]) == {1, 2}  # its two mesh neighbours first
    assert nb[0, 2] in (1, 2, 3, 4, 5) and nb[0, 2] != 0
    assert (nb != np.arange(6)[:, None]).all()


def test_collate_offsets_and_pads(chain, feats):
    small = compute_features(make_capsule_chain(n_bones=2, segments=8, rings=8), FeatureConfig(k_bones=3))
    assert small.cand.shape[1] == 2
    b = collate([feats, small])
    V1, J1 = feats.vertex_feat.shape[0], feats.bone_feat.shape[0]
    assert b["cand"].shape[1] == 3
    assert b["cand"][V1:].min() >= J1 and b["neighbors"][V1:].min() >= V1
    assert b["pair_mask"][:V1].all() and not b["pair_mask"][V1:, 2].any()
    assert (b["prior"][V1:, 2] == 0).all()


def test_heat_prior_option(chain):
    """features.prior = heat: the prior over the candidates is the heat solution, positive, rows sum to 1."""
    f = compute_features(chain, FeatureConfig(k_bones=3, prior="heat"))
    assert (f.prior > 0).all()
    np.testing.assert_allclose(f.prior.sum(1), 1.0, atol=1e-5)
    z = chain.vertices[:, 2]
    mid = np.abs(z - 0.375) < 0.1  # middle of bone 0: heat puts nearly all weight there
    assert (f.prior[mid, 0] > 0.8).all() and (f.cand[mid, 0] == 0).all()
    with pytest.raises(ValueError, match="unknown prior"):
        compute_features(chain, FeatureConfig(k_bones=3, prior="nope"))


def test_with_parent_candidate_known_answer():
    from backend.features.pipeline import with_parent_candidate

    parents = np.array([-1, 0, 0, 0, 1])  # bone 0 carries 1, 2, 3; bone 1 carries 4
    cand = np.array([[1, 2, 3], [0, 1, 2], [4, 1, 2], [4, 2, 3]])
    dist = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]], np.float32)
    edist = np.full((4, 5), 0.05, np.float32)
    edist[0, 0] = 0.9  # straight-line distance to the parent beyond the replaced candidate's
    c2, d2 = with_parent_candidate(cand, dist, parents, edist)
    # row 0: parent 0 missing -> last slot, at its straight-line distance 0.9
    # row 1: the nearest bone is a root (no parent) -> unchanged; row 2: parent 1 already there
    # row 3: parent 1 missing -> last slot at the replaced distance 0.3 (0.05 would break the order)
    np.testing.assert_array_equal(c2, [[1, 2, 0], [0, 1, 2], [4, 1, 2], [4, 2, 1]])
    np.testing.assert_allclose(d2, [[0.1, 0.2, 0.9], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(cand[0], [1, 2, 3])  # inputs untouched
    one = with_parent_candidate(cand[:, :1], dist[:, :1], parents, edist)  # a single slot stays the nearest
    np.testing.assert_array_equal(one[0], cand[:, :1])


def test_parent_candidate_brings_in_the_carrying_bone():
    # a hull (a long capsule) carried by a root bone in its middle, with eight "wheel" bones along its
    # sides: with 3 candidates the hull's ends see only wheels; with parent_candidate the root is
    # always among them, and the prior over the candidates still sums to 1
    from backend.features.pipeline import deform_parents

    rig = make_capsule_chain(n_bones=1, length=6.0, radius=0.5, segments=12, rings=24)
    verts = rig.vertices.astype(np.float64)
    joints = np.array([[0, 0, 2.8], *[[s * 0.6, 0, z] for s in (-1, 1) for z in (0.3, 0.9, 5.1, 5.7)]])
    tails = joints.copy()
    tails[0, 2] = 3.2
    tails[1:, 0] *= 1.5
    parents = np.array([-1] + [0] * 8)
    hull = make_rig(verts, rig.faces, joints, parents, tails=tails)
    plain = compute_features(hull, FeatureConfig(k_bones=3, distance="euclidean"))
    with_root = compute_features(hull, FeatureConfig(k_bones=3, distance="euclidean", parent_candidate=True))
    has_root = (with_root.cand == 0).any(axis=1)
    assert not (plain.cand == 0).any(axis=1).all()  # the ends lose the root without the option
    assert has_root.all()
    np.testing.assert_allclose(with_root.prior.sum(1), 1.0, atol=1e-5)
    d = with_root.pair_feat[:, :, 5]  # candidate distances stay nearest first
    assert (np.diff(d, axis=1) >= -1e-6).all()
    same = (plain.cand == with_root.cand).all(axis=1)
    np.testing.assert_allclose(plain.pair_feat[same], with_root.pair_feat[same], atol=1e-6)
    assert deform_parents(hull.parents, hull.deform_indices).tolist() == parents.tolist()
