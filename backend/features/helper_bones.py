"""Helper bones: deform-flagged bones that by convention carry no weight.

Importers and exporters mark every bone as deforming, including bones that never hold skin:
the leaf bones FBX adds at the end of each chain (``Head_end``, ``Bip01 L Finger0Nub``) and IK
pole targets. On the project's labelled rigs not one of these carries weight (1046 helper bones
over 282 rigs, all empty: ``experiments/helper_census/helper_census.py``), while a method that weights every deform
bone puts skin on them. Leaving them out of the candidates is what a rigger does by hand.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from backend.rig import Rig

#: Leaf bones with these name endings are exporter-added chain ends.
LEAF_END = re.compile(r"([._\- ](end|leaf)|nub)$", re.IGNORECASE)
#: Bones with these names are IK pole targets (control bones, never skin).
POLE_TARGET = re.compile(r"pole[._\- ]?(target|vector)", re.IGNORECASE)


def helper_bones(rig: Rig) -> np.ndarray:
    """(J,) bool: deform bones that carry no weight by convention (chain-end leaves, pole targets)."""
    J = rig.num_bones
    children = np.bincount(rig.parents[rig.parents >= 0], minlength=J)
    out = np.zeros(J, bool)
    for j, name in enumerate(rig.joint_names):
        if not rig.is_deform[j]:
            continue
        out[j] = (children[j] == 0 and LEAF_END.search(name) is not None) or POLE_TARGET.search(name) is not None
    return out


def without_helpers(rig: Rig) -> tuple[Rig, np.ndarray]:
    """(rig with the helper bones' deform flag cleared, (J,) bool helpers cleared). A rig whose
    deform bones are all helpers is returned unchanged (nothing cleared): some bone must skin it."""
    helpers = helper_bones(rig)
    if not helpers.any() or helpers.sum() == rig.is_deform.sum():
        return rig, np.zeros(rig.num_bones, bool)
    return replace(rig, is_deform=rig.is_deform & ~helpers), helpers
