"""The study's table: mean L1 / deformation % over fold 0's held-out rigs (52 nssm_mobs) of the supervised
stage's best generator (stage 1) and of the generator as training ended (end), every run scored with
the same run-time settings by experiments/sharpen_rule/collect.py (see run.sh): ``c`` = sharpen 1.5,
diffusion 0.5 %, enclosing pieces; ``enc100`` = model 3.1's (sharpen 3, diffusion 0.5 %, enclosing pieces).

    python experiments/ss_pool_study/table.py [runs/ss_enc]
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RUNS = [("100 %", "0", "(a) synthetic creatures (the recipe)", "recipe"),
        ("100 %", "0", "(b) + held-out meshes", "ss_b"),
        ("100 %", "1", "(a) synthetic creatures (the recipe)", "ss_a100_s1")]
RUNS += [("25 %", str(k), label, f"ss_{s}25_s{k}") for k in range(3)
         for s, label in (("a", "(a) synthetic + other 75 % of the training rigs"), ("b", "(b) (a) + held-out meshes"))]


def cell(path: Path, variant: str) -> str:
    if not path.is_file():
        return "-"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    l1 = statistics.mean(r["scores"][variant]["l1"] for r in rows)
    de = statistics.mean(r["scores"][variant]["deform_mean"] for r in rows)
    return f"{l1:.3f} / {de:.3f}"


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ss_enc")
    for variant in ("c", "enc100"):
        print(f"\n{variant}:\n\n| labels | seed | pool | stage 1 best | end of training |\n|---|---|---|---|---|")
        for labels, seed, pool, run in RUNS:
            print(f"| {labels} | {seed} | {pool} | {cell(folder / f'{run}_stage1.jsonl', variant)} | "
                  f"{cell(folder / f'{run}_final.jsonl', variant)} |")


if __name__ == "__main__":
    main()
