"""Ablation grid: the same training budget with parts of SS-WGAN switched off, each with a share of
the training labels, evaluated on several rig folders; writes one Markdown table.

Variants: ``sup`` (supervised only), ``sup+phys`` (+ smoothness and locality losses),
``sup+phys+cons`` (+ consistency), ``full`` (+ both critics: SS-WGAN). Each runs with
``--labeled-fraction`` for every given fraction (the rest of train becomes unlabelled) and the
synthetic creatures as extra unlabelled data. Every step is skipped when its output exists, so a
killed grid continues where it stopped::

    python -m backend ablation --data runs/views/shipped --config configs/ablation.toml \\
        --unlabeled-dir runs/synth400 --fractions 0.25,1.0 \\
        --eval val=runs/views/shipped/val --eval test=runs/views/shipped/test \\
        --eval out_of_style=runs/views/shipped/out_of_style --out runs/ablation --table docs/history/ablation.md
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

NAME = "ablation"
HELP = "train/export/evaluate the ablation grid (sup, +phys, +cons, full) x label fractions; one table"

VARIANTS = {
    "sup": ["--no-adversarial", "--no-consistency", "--no-physical"],
    "sup+phys": ["--no-adversarial", "--no-consistency"],
    "sup+phys+cons": ["--no-adversarial"],
    "full": [],
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder with train/ and val/")
    p.add_argument("--config", required=True, help="TOML training config shared by every variant")
    p.add_argument("--unlabeled-dir", action="append", default=[], help="extra unlabelled rigs (repeatable)")
    p.add_argument("--fractions", default="0.25,1.0", help="label fractions (comma-separated)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + ",".join(VARIANTS))
    p.add_argument("--seeds", default="0", help="seeds (comma-separated)")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=DIR", help="rig folder to evaluate on")
    p.add_argument("--cache-dir", default="runs/cache")
    p.add_argument("--out", required=True, help="grid folder (one sub-folder per run)")
    p.add_argument("--table", required=True, help="Markdown table to write")


def _call(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run(args: argparse.Namespace) -> int:
    from backend.cli.model_card import aggregate
    from backend.io.atomic import atomic_path

    py = [sys.executable, "-m", "backend"]
    out = Path(args.out)
    evals = [e.partition("=")[::2] for e in args.eval]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for frac in [float(f) for f in args.fractions.split(",")]:
            for variant in args.variants.split(","):
                name = f"{variant}_f{frac:g}_s{seed}"
                run_dir = out / name
                model = run_dir / "model.onnx"
                if not (run_dir / "summary.json").is_file():
                    cmd = py + ["train", "--config", args.config, "--data", args.data, "--out", str(run_dir),
                                "--cache-dir", args.cache_dir, "--labeled-fraction", str(frac),
                                "--set", f"run.seed={seed}", "--no-progress"] + VARIANTS[variant]
                    for u in args.unlabeled_dir:
                        cmd += ["--unlabeled-dir", u]
                    if (run_dir / "state.pt").is_file():
                        cmd.append("--resume")
                    _call(cmd)
                if not model.is_file():
                    _call(py + ["export", str(run_dir / "best_generator.pt"), str(model)])
                row = {"variant": variant, "fraction": frac, "seed": seed}
                for ev_name, folder in evals:
                    ev_out = run_dir / f"eval_{ev_name}"
                    if not (ev_out / "results.jsonl").is_file() or not (ev_out / "summary.md").is_file():
                        _call(py + ["evaluate", folder, "--methods", f"model:{model}", "--out", str(ev_out),
                                    "--poses", "5", "--no-progress"])
                    agg = next(iter(aggregate(ev_out / "results.jsonl").values()))
                    row[ev_name] = agg
                rows.append(row)
    lines = ["| variant | labels | seed | " + " | ".join(f"{e} L1 ↓ | {e} deform % ↓" for e, _ in evals) + " |",
             "|---|---|---|" + "---|---|" * len(evals)]
    for r in rows:
        cells = [f"{r[e]['l1']:.3f} | {r[e]['deform_mean']:.2f}" for e, _ in evals]
        lines.append(f"| {r['variant']} | {r['fraction']:.0%} | {r['seed']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.table) as tmp:
        tmp.write_text(table)
    print(table)
    return 0
