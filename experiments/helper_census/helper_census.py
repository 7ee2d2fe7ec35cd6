"""How much skin the artists gave the bones backend.features.helper_bones calls helpers.

Usage: python experiments/helper_census/helper_census.py DIR [DIR ...]   (folders of weighted .npz rigs)
Prints, per folder and in total: rigs, deform bones, helper bones, helper bones with any weight,
and deform leaf bones with weight before / after the helpers are taken out of the hierarchy.
"""
from __future__ import annotations

import sys

import numpy as np

from backend.features.helper_bones import helper_bones
from backend.features.pipeline import deform_parents
from backend.io.npz import list_rig_files, load_npz


def leaves_with_weight(parents: np.ndarray, deform: np.ndarray, weights: np.ndarray) -> tuple[int, int]:
    """(deform bones that are leaves of the deform hierarchy and carry weight, deform leaves)."""
    idx = np.flatnonzero(deform)
    par = deform_parents(parents, idx)
    leaf = np.bincount(par[par >= 0], minlength=len(idx)) == 0
    used = weights[:, idx].max(axis=0) > 0
    return int((leaf & used).sum()), int(leaf.sum())


def main(folders: list[str]) -> None:
    total = np.zeros(7, np.int64)
    print("folder | rigs | deform bones | helpers | helpers with weight | weighted leaves (all deform) | "
          "weighted leaves (helpers out)")
    for folder in folders:
        row = np.zeros(7, np.int64)
        for f in list_rig_files(folder):
            rig = load_npz(f)
            if rig.weights is None:
                continue
            h = helper_bones(rig)
            used = rig.weights.max(axis=0) > 0
            a, _ = leaves_with_weight(rig.parents, rig.is_deform, rig.weights)
            b, _ = leaves_with_weight(rig.parents, rig.is_deform & ~h, rig.weights)
            row += [1, rig.is_deform.sum(), h.sum(), (h & used).sum(), a, b, 0]
        total += row
        print(f"{folder} | {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} | {row[5]}")
    print(f"total | {total[0]} | {total[1]} | {total[2]} | {total[3]} | {total[4]} | {total[5]}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
