"""Export a trained generator checkpoint to one self-contained ONNX file with metadata.

Checks that onnxruntime reproduces torch (max abs difference printed). With --quantize int8 a
second file ``<out>.int8.onnx`` is written and its size and accuracy change against fp32 are
measured on a sample rig (--sample, else random inputs) and printed as JSON.
"""
from __future__ import annotations

import argparse

from backend.cli.skin import diffuse_percent, sharpen_power, smooth_iterations, surface_share, unit_interval

NAME = "export"
HELP = "export a generator checkpoint to ONNX (optionally int8-quantised)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="generator checkpoint (.pt) written by training")
    p.add_argument("output", help="output .onnx file")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="also write an int8 dynamically quantised model next to OUTPUT (<stem>.int8.onnx)")
    p.add_argument("--sample", default=None, help="rig .npz used to measure the quantisation error")
    p.add_argument("--method", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="ONNX exporter (auto: dynamo, then torchscript)")
    p.add_argument("--model-version", default=None, help="version string stored in the model")
    p.add_argument("--prior-blend", type=unit_interval, default=1.0,
                   help="share of the generator in the runtime weights, the rest is its prior input "
                        "(0..1, default 1: the generator alone; choose it on val)")
    p.add_argument("--prior-blend-rule", default=None, metavar="JSON",
                   help="a per-rig blend rule that the runtime uses instead of --prior-blend: the 'piece_rule' "
                        "of a `blend-sweep --fit-rule --out` file, or a JSON file holding the rule itself")
    p.add_argument("--sharpen", type=sharpen_power, default=1.0,
                   help="power (1..10) the runtime raises this model's weights to before limiting the influences "
                        "(default 1: none; choose it on val, docs/history/ablation.md)")
    p.add_argument("--smooth", type=smooth_iterations, default=0,
                   help="Laplacian smoothing iterations (0..20) the runtime applies to this model's weights before "
                        "sharpening them (default 0; choose it on val, docs/history/ablation.md)")
    p.add_argument("--diffuse", type=diffuse_percent, default=0.0, metavar="PCT",
                   help="reach of the heat diffusion the runtime applies to this model's weights before sharpening "
                        "them, in %% of the character's size (0..5, default 0; choose it on val, "
                        "docs/history/ablation.md)")
    p.add_argument("--enclosing-pieces", type=surface_share, default=0.0, metavar="SHARE",
                   help="the runtime gives a separate piece under this share of the surface whose hull holds the "
                        "middle of exactly one bone to that bone alone (0..1, default 0: never; choose it on the "
                        "cross-validation folds, docs/crossval.md)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from backend.export.onnx_export import export_generator, example_inputs, feature_config_of
    from backend.io.outputs import check_output_file
    from backend.models.checkpoint import load_generator_checkpoint

    out = check_output_file(args.output, [args.checkpoint], suffixes=(".onnx",))
    if args.quantize == "int8":
        check_output_file(out.with_name(out.stem + ".int8.onnx"), [args.checkpoint], what="quantised output")
    rule = None
    if args.prior_blend_rule:
        from backend.inference.blend_rule import load_rule_file

        try:
            rule = load_rule_file(args.prior_blend_rule).as_dict()
        except ValueError as exc:
            print(f"error: --prior-blend-rule {exc}", file=sys.stderr)
            return 2
    model, ckpt = load_generator_checkpoint(args.checkpoint)
    fcfg = feature_config_of(ckpt, str(args.checkpoint))
    try:
        res = export_generator(model, out, fcfg, train_summary=ckpt.get("train_summary"),
                               model_version=args.model_version, method=args.method,
                               prior_blend=args.prior_blend, prior_blend_rule=rule, sharpen=args.sharpen,
                               smooth=args.smooth, diffuse=args.diffuse, enclosing_pieces=args.enclosing_pieces)
    except RuntimeError as exc:
        print(f"error: {args.checkpoint}: {exc}", file=sys.stderr)
        return 1
    for note in res.failed:
        print(f"note: exporter {note[:300]}")
    print(f"wrote {res.path} ({res.size_bytes / 1e6:.2f} MB, {res.method} exporter, "
          f"max |torch - onnxruntime| = {res.max_abs_diff:.2e}, model {res.metadata['model_version']}, "
          f"prior blend {'rule ' + json.dumps(rule) if rule else args.prior_blend}, sharpen {args.sharpen:g}, "
          f"smooth {args.smooth}, "
          f"diffuse {args.diffuse:g} %, enclosing pieces {args.enclosing_pieces:g})")
    if args.quantize == "int8":
        from backend.export.quantize import quantize_with_report

        if args.sample:
            from backend.features.pipeline import compute_features
            from backend.io.npz import load_npz

            inputs = compute_features(load_npz(args.sample, validate=True).without_weights(), fcfg).model_inputs()
            sample = str(args.sample)
        else:
            inputs = example_inputs(2000, fcfg.n_neighbors, 40, fcfg.k_bones, seed=7, fp=fcfg.pair_dim)
            sample = "random inputs V=2000 Jd=40"
        q_path = out.with_name(out.stem + ".int8.onnx")
        rep = quantize_with_report(out, q_path, inputs, sample)
        print(json.dumps(rep.as_dict(), indent=2))
    return 0
