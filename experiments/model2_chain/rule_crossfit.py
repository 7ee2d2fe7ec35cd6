"""Cross-fit of the per-rig blend rule: fit on each set alone (and on the first two together), score
on every set. Reads `blend-sweep --fit-rule --out` files (their per-rig L1 and piece shares; the
`check` set inside a file counts as its own set).

    PYTHONPATH=. python experiments/model2_chain/rule_crossfit.py \\
        experiments/model2_chain/results/blend_val.json runs/blend_rule_test.json
"""
from __future__ import annotations

import json
import sys

from backend.evaluation.blend import BlendSummary, fit_piece_rule, rule_l1


def load_sets(paths: list[str]) -> dict[str, BlendSummary]:
    sets: dict[str, BlendSummary] = {}
    for path in paths:
        data = json.loads(open(path, encoding="utf-8").read())
        sets[data["data"]] = BlendSummary.from_dict(data)
        if data.get("check"):
            sets[data["check_data"]] = BlendSummary.from_dict(data["check"])
    return sets


def main() -> None:
    sets = load_sets(sys.argv[1:])
    names = list(sets)
    fits = [[n] for n in names] + ([names[:2]] if len(names) > 1 else [])
    for fit_on in fits:
        rule, _ = fit_piece_rule([sets[n] for n in fit_on])
        scores = ", ".join(f"{n} {rule_l1(s, rule):.3f}" for n, s in sets.items())
        print(f"fit on {' + '.join(fit_on)}: low {rule.low:g}, high {rule.high:g}, "
              f"saturation {rule.saturation:g} -> {scores}")


if __name__ == "__main__":
    main()
