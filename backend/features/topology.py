"""The topology of one triangle mesh (unique edges, connected pieces), computed once and shared.

The runtime needs the same edges and pieces in several steps (the small-piece share of the blend
rule, simplification and the transfer back, smoothing and diffusion, rigid pieces); a
:class:`MeshTopology` computes each on first use and hands the same arrays to all of them.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from backend.features.geometry import mesh_edges


class MeshTopology:
    """Edges and connected pieces of a mesh with ``num_vertices`` vertices and (F, 3) ``faces``."""

    def __init__(self, faces: np.ndarray, num_vertices: int):
        self.faces = np.asarray(faces, np.int64).reshape(-1, 3)
        self.num_vertices = int(num_vertices)

    @cached_property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 unique undirected edges (i < j), sorted (:func:`mesh_edges`)."""
        return mesh_edges(self.faces)

    @cached_property
    def pieces(self) -> tuple[int, np.ndarray]:
        """(P, (V,) int64 piece of each vertex): connected components of the edge graph, numbered in
        the order of their lowest vertex index; a vertex used by no face is a piece of its own."""
        return edge_pieces(self.edges, self.num_vertices)


def edge_pieces(edges: np.ndarray, num_vertices: int) -> tuple[int, np.ndarray]:
    """Connected components of an (E, 2) edge list over ``num_vertices`` vertices:
    (P, (V,) int64 label of each vertex, numbered by lowest vertex index)."""
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    graph = sparse.csr_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels.astype(np.int64)
