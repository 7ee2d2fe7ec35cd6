"""The benchmarks' generated creature: any bone count from one bone per chain up, and a one-line
refusal below that in every bench command, before any work."""
from __future__ import annotations

import numpy as np
import pytest

from backend.__main__ import main
from backend.cli.bench_features import MIN_BONES, make_creature


@pytest.mark.parametrize("bones", [MIN_BONES, MIN_BONES + 1, 10, 23, 60])
def test_the_creature_has_the_bones_asked_for_in_one_tree(bones):
    rig = make_creature(2000, bones)
    assert rig.num_bones == bones
    roots = np.flatnonzero(rig.parents < 0)
    assert len(roots) == 1 and (rig.parents < np.arange(bones)).all()  # parents come first: one tree


def test_too_few_bones_are_refused():
    with pytest.raises(ValueError, match=f"at least {MIN_BONES} bones"):
        make_creature(2000, MIN_BONES - 2)


@pytest.mark.parametrize("argv", [["bench", "--vertices", "2000", "--bones", "5", "--no-boneheat"],
                                  ["bench-features", "--sizes", "2000", "--bones", "5"],
                                  ["bench-addon", "--vertices", "2000", "--bones", "5", "--no-blender"]])
def test_bench_commands_refuse_too_few_bones_in_one_line(argv, capsys):
    assert main(argv) == 2
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert len(lines) == 1 and f"--bones >= {MIN_BONES}" in lines[0]
