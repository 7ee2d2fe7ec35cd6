"""Two scorings of the held-out styles rigs side by side (rows of experiments/sharpen_rule/collect.py):
mean of per-domain means, per domain, per kind, and how many domains each side wins.

    python experiments/ship_generator/compare.py runs/sharpen_rule/rows.jsonl:3.0 runs/final_vs_best/rows.jsonl:final31
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def load(spec: str) -> dict[str, tuple[str, str, float, float]]:
    """``FILE:VARIANT`` -> {rig: (domain, kind, L1, deform %)}."""
    path, _, variant = spec.rpartition(":")
    out = {}
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            s = r["scores"][variant]
            out[r["rig"]] = (r["domain"], r["kind"], s["l1"], s["deform_mean"])
    return out


def grouped(rows: dict, rigs: list[str], key: int) -> dict[str, np.ndarray]:
    g = defaultdict(list)
    for rig in rigs:
        g[rows[rig][key]].append(rows[rig][2:])
    return {k: np.mean(v, axis=0) for k, v in g.items()}


def main() -> None:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    rigs = sorted(set(a) & set(b))
    da, db = grouped(a, rigs, 0), grouped(b, rigs, 0)
    ma, mb = np.mean(list(da.values()), axis=0), np.mean(list(db.values()), axis=0)
    print(f"{len(rigs)} rigs, {len(da)} domains; A = {sys.argv[1]}, B = {sys.argv[2]}")
    print(f"mean of domains, L1 / deform %: A {ma[0]:.3f} / {ma[1]:.3f}   B {mb[0]:.3f} / {mb[1]:.3f}   "
          f"B - A {100 * (mb[0] / ma[0] - 1):+.1f} % / {100 * (mb[1] / ma[1] - 1):+.1f} %")
    wins = sum(db[d][0] < da[d][0] for d in da), sum(db[d][1] < da[d][1] for d in da)
    print(f"domains where B is lower: L1 {wins[0]} / {len(da)}, deform {wins[1]} / {len(da)}")
    print("\n| domain | A L1 / deform | B L1 / deform |\n|---|---|---|")
    for d in sorted(da, key=lambda d: db[d][0] - da[d][0]):
        print(f"| {d} | {da[d][0]:.3f} / {da[d][1]:.2f} | {db[d][0]:.3f} / {db[d][1]:.2f} |")
    ka, kb = grouped(a, rigs, 1), grouped(b, rigs, 1)
    print("\n| kind | A | B |\n|---|---|---|")
    for k in sorted(ka):
        print(f"| {k} | {ka[k][0]:.3f} / {ka[k][1]:.2f} | {kb[k][0]:.3f} / {kb[k][1]:.2f} |")


if __name__ == "__main__":
    main()
