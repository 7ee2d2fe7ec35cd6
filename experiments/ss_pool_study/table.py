"""The study's table: mean L1 / deformation % over fold 0's held-out rigs of the supervised stage's
best generator (stage1) and of the generator as training ended (final), per run folder."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

RUNS = ["runs/cv/recipe", "runs/cv/ss_b"] + [f"runs/cv/ss_{s}25_s{k}" for k in range(3) for s in "ab"]


def cell(rows: list[dict], method: str) -> str:
    rs = [r for r in rows if r.get("method") == method and not r.get("error")]
    if not rs:
        return "-"
    return f"{statistics.mean(r['l1'] for r in rs):.3f} / {statistics.mean(r['deform_mean'] for r in rs):.3f}"


def main() -> None:
    print("| run | stage 1 best | end of training |\n|---|---|---|")
    for run in RUNS:
        path = Path(run) / "fold0" / "eval" / "results.jsonl"
        if path.is_file():
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            print(f"| {run} | {cell(rows, 'model:cv_stage1')} | {cell(rows, 'model:cv_final')} |")


if __name__ == "__main__":
    main()
