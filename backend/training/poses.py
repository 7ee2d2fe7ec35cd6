"""Random poses for the deformation loss (pure numpy, no torch).

The evaluation measures how far a vertex lands from where the painted weights put it when the
skeleton is posed (backend.evaluation.deformation). A weight error matters in proportion to how
differently the two bones move the vertex, which L_sup does not know: a leg vertex given to the
hip instead of the thigh costs little L1 but a lot of displacement far from the joint. Here each
(vertex, candidate bone) pair gets the displacement that bone would give the vertex in a few
random poses, so the loss (``losses.deformation_loss``) can weigh weight errors by it.
"""
from __future__ import annotations

import numpy as np

from backend.evaluation.deformation import DEFAULT_MAX_ANGLE_DEG, global_transforms, random_local_rotations


def candidate_displacements(vertices: np.ndarray, joints: np.ndarray, parents: np.ndarray,
                            deform_index: np.ndarray, cand: np.ndarray, diagonal: float, num_poses: int,
                            seed: int, max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG) -> np.ndarray:
    """(P, V, K, 3) float32: ``(A_b x_v + b_b - x_v) / diagonal`` for candidate bone b = deform_index[cand[v, k]].

    vertices (V, 3) rest positions, joints (J, 3) bone heads, parents (J,), deform_index (Jd,) rig
    bone of each deform bone, cand (V, K) candidates (indices into deform bones). Every bone of the
    rig gets a random local rotation (uniform axis, angle in [0, max_angle_deg]) composed down the
    hierarchy, as in the evaluation's poses; ``seed`` fixes them. Since predicted and true weights
    both sum to 1 over the candidates, sum_k (w_vk - t_vk) * disp[p, v, k] is the distance vector
    between the two posed positions of v, in units of the bounding-box diagonal."""
    x = np.asarray(vertices, np.float64)
    J = int(np.asarray(joints).shape[0])
    bones = np.asarray(deform_index, np.int64)[np.asarray(cand, np.int64)]  # (V, K) rig bones
    rots = random_local_rotations(J, num_poses, max_angle_deg, seed)
    out = np.empty((num_poses,) + bones.shape + (3,), np.float32)
    scale = 1.0 / max(float(diagonal), 1e-12)
    for p, rot in enumerate(rots):
        A, b = global_transforms(joints, parents, rot)
        A = A - np.eye(3)  # displacement: (A - I) x + b
        out[p] = scale * (np.einsum("vkab,vb->vka", A[bones], x) + b[bones])
    return out
