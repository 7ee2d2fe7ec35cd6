"""Choose a model's prior blend on validation rigs (one-standard-error rule).

Scores ``w = b * G + (1 - b) * prior`` for each blend b on the weighted rigs of DATA, prints a
Markdown table and the chosen blend (the lowest b whose mean L1 is within one standard error of
the best; with --check OUT_OF_STYLE_DIR, the b with the lowest L1 averaged over both sets), and
writes the table and per-rig numbers to --out (JSON). With --fit-rule it also fits a per-rig rule
(backend.inference.blend_rule) by the same criterion. Export the model with
``python -m backend export CKPT OUT.onnx --prior-blend B [--prior-blend-rule OUT.json]`` to ship the
choice. Example:

  python -m backend blend-sweep runs/tmp.onnx runs/views/shipped/val \\
      --out experiments/model2_chain/results/blend_val.json
"""
from __future__ import annotations

import argparse

NAME = "blend-sweep"
HELP = "choose the generator/prior blend of a model on validation rigs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="exported .onnx model")
    p.add_argument("data", help="folder of weighted .npz rigs (validation split)")
    p.add_argument("--blends", default=None,
                   help="comma-separated blends in [0, 1] (default 1,0.9,0.75,0.6,0.5,0.25,0; with --fit-rule "
                        "every multiple of 0.05)")
    p.add_argument("--fit-rule", action="store_true",
                   help="also fit a per-rig blend rule (backend.inference.blend_rule: the blend rises with the "
                        "share of the surface in small separate pieces) by the same criterion; written to --out "
                        "as 'piece_rule', which `export --prior-blend-rule` reads")
    p.add_argument("--check", default=None, metavar="DIR",
                   help="an out-of-style set of weighted rigs: the blend is then chosen by the L1 averaged over "
                        "DATA and this set (each counts equally) instead of the one-standard-error rule on DATA")
    p.add_argument("--out", default=None, help="write the summary as JSON here")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import numpy as np

    from backend.evaluation.blend import sweep_blends
    from backend.io.atomic import atomic_path
    from backend.io.npz import list_rig_files

    if args.blends is None:
        fine = ",".join(f"{i / 20:g}" for i in range(20, -1, -1))
        args.blends = fine if args.fit_rule else "1,0.9,0.75,0.6,0.5,0.25,0"
    try:
        blends = [float(x) for x in args.blends.split(",") if x.strip()]
    except ValueError:
        print(f"error: --blends must be comma-separated numbers, got {args.blends!r}", file=sys.stderr)
        return 2
    if not blends or not all(0.0 <= b <= 1.0 for b in blends):
        print(f"error: --blends must be numbers in [0, 1], got {args.blends!r}", file=sys.stderr)
        return 2
    files = list_rig_files(args.data, allow_file=True, what="data folder")
    summary = sweep_blends(files, args.model, blends, threads=args.threads)
    one_se = summary.chosen
    check = None
    if args.check:  # swept first, so that both tables mark the blend finally chosen
        from backend.evaluation.blend import choose_across

        check = sweep_blends(list_rig_files(args.check, allow_file=True, what="check folder"), args.model, blends,
                             threads=args.threads)
        check.chosen = summary.chosen = choose_across([summary, check])
    print(f"{len(summary.rigs)} rigs of {args.data}, model {args.model}")
    print(summary.table())
    print(f"best L1 at blend {summary.best:.2f}; one-standard-error rule: {one_se:.2f}")
    extra: dict = {"rule": "one-standard-error rule on DATA"}
    if check is not None:
        chosen = summary.chosen
        print(f"\n{len(check.rigs)} rigs of {args.check} (out-of-style check)")
        print(check.table())
        print(f"chosen (lowest L1 averaged over {args.data} and {args.check}): {chosen:.2f}")
        extra = {"check_data": str(args.check), "check": check.as_dict(),
                 "rule": "lowest L1 averaged over DATA and the out-of-style check"}
    if args.fit_rule:
        from backend.evaluation.blend import fit_piece_rule

        sets = [summary] + ([check] if args.check else [])
        try:
            rule, per_set = fit_piece_rule(sets)
        except ValueError as exc:
            print(f"error: --fit-rule: {exc}", file=sys.stderr)
            return 2
        fixed = [float(s_.means["l1"][np.flatnonzero(s_.blends == summary.chosen)[0]]) for s_ in sets]
        print(f"\nper-rig rule: blend {rule.low:g} for one closed body, rising to {rule.high:g} when "
              f"{rule.saturation:g} of the surface is in small separate pieces")
        for name, a, b in zip([args.data] + ([args.check] if args.check else []), per_set, fixed):
            print(f"  {name}: L1 {a:.3f} with the rule, {b:.3f} at the chosen fixed blend {summary.chosen:.2f}")
        extra["piece_rule"] = rule.as_dict()
        extra["piece_rule_l1"] = per_set
        extra["fixed_blend_l1"] = fixed
    result = summary.as_dict() | {"model": str(args.model), "data": str(args.data)} | extra
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    return 0
