"""Domain means of the geodesic mixes and a per-rig rule fitted with leave-one-fold-out (nested) selection.

    python experiments/enclosing_pieces/table.py --scores runs/geodesic_trust --data ../shared/data

The rule: variant X (a geodesic share or a mix) on rigs whose signal is below a threshold, the shipped
settings elsewhere. It is chosen as the lowest domain-mean L1 among rules whose domain-mean deformation is
no higher than the shipped settings' (the run-time rule of docs/crossval.md). "nested": for each fold,
the rule chosen on the other four folds' rigs, scored on that fold's; "all folds": chosen and scored on
all five (what choosing a setting on the CV mean does, optimistic).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

SIGNALS = ("v_per_bone", "edge_over_bone", "edge_over_size")
BASE = "share0"  # set from --base


def domain_means(rows: list[dict], pick) -> tuple[float, float]:
    """Mean over domains of per-domain means of (L1, deform %); pick(row) -> [l1, deform]."""
    by = defaultdict(list)
    for r in rows:
        by[r["domain"]].append(pick(r)[:2])
    m = np.array([np.mean(v, axis=0) for v in by.values()])
    return float(m[:, 0].mean()), float(m[:, 1].mean())


def rule_pick(signal: str, t: float, variant: str):
    if signal == "always":
        return lambda r: r[variant]
    return lambda r: r[variant] if r[signal] < t else r[BASE]


def candidates(rows: list[dict], variants: list[str]):
    for s in [x for x in SIGNALS if x in rows[0]]:
        vals = sorted({r[s] for r in rows})
        for t in np.quantile(vals, np.linspace(0.02, 0.98, 49)):
            for v in variants:
                yield (s, float(t), v)


def choose(rows: list[dict], variants: list[str]):
    base = domain_means(rows, lambda r: r[BASE])
    best = (base[0], None)
    for v in variants:  # the variant on every rig
        l1, de = domain_means(rows, lambda r, v=v: r[v])
        if de <= base[1] + 1e-12 and l1 < best[0] - 1e-12:
            best = (l1, ("always", 0.0, v))
    for c in candidates(rows, variants):
        l1, de = domain_means(rows, rule_pick(*c))
        if de <= base[1] + 1e-12 and l1 < best[0] - 1e-12:
            best = (l1, c)
    return best[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scores", default="runs/geodesic_trust")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--base", default="share0", help="the column of the shipped settings")
    a = p.parse_args()
    global BASE
    BASE = a.base
    dom = {json.loads(x)["file"]: json.loads(x)["domain"] for x in open(Path(a.data) / "styles" / "manifest.jsonl")}
    rows = []
    for f in sorted(Path(a.scores).glob("fold*.jsonl")):
        for line in f.open():
            r = json.loads(line)
            r["domain"] = dom[r["rig"]]
            rows.append(r)
    skip = {"rig", "fold", "domain", BASE} | set(SIGNALS) | {"V", "Jd", "pieces"}
    variants = [k for k in rows[0] if k not in skip]
    print(f"{len(rows)} rigs, {len({r['domain'] for r in rows})} domains, folds {sorted({r['fold'] for r in rows})}\n")
    print("| variant (every rig) | L1 | deform % |\n|---|---|---|")
    for v in [BASE] + variants:
        l1, de = domain_means(rows, lambda r, v=v: r[v])
        print(f"| {v} | {l1:.3f} | {de:.3f} |")
    chosen_all = choose(rows, variants)
    print(f"\nrule chosen on all folds: {chosen_all}")
    if chosen_all:
        print("  all folds: L1 %.3f deform %.3f" % domain_means(rows, rule_pick(*chosen_all)))
    picks = {}
    for k in sorted({r["fold"] for r in rows}):
        c = choose([r for r in rows if r["fold"] != k], variants)
        print(f"fold {k}: rule chosen on the other folds: {c}")
        for r in rows:
            if r["fold"] == k:
                picks[r["rig"]] = rule_pick(*c)(r) if c else r[BASE]
    print("nested (leave-one-fold-out): L1 %.3f deform %.3f" % domain_means(rows, lambda r: picks[r["rig"]]))
    print("\nper domain (base -> nested):")
    by = defaultdict(list)
    for r in rows:
        by[r["domain"]].append((r[BASE][:2], picks[r["rig"]][:2], r[variants[-1]][:2]))
    for d, v in sorted(by.items()):
        m = np.mean(np.array(v), axis=0)
        print(f"  {d:18s} n={len(v):2d} base {m[0][0]:.3f}/{m[0][1]:.2f}  nested {m[1][0]:.3f}/{m[1][1]:.2f}  "
              f"{variants[-1]} {m[2][0]:.3f}/{m[2][1]:.2f}")


if __name__ == "__main__":
    main()
