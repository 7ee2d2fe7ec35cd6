#!/bin/bash
# Semi-supervised study of issue 23 on fold 0 (nssm_mobs, 52 boxy mobs held out), reduced budget
# (8 + 1 epochs). Run from the repository root after `source scripts/env.sh`; every run resumes.
#   100 % of the labels: the recipe's pool (synthetic creatures) is fold 0 of runs/cv/recipe
#   (python -m backend cv ... --stage-models --fold 0) for seed 0, runs/cv/ss_a100_s1 for seed 1;
#   (b) adds the held-out meshes without weights (seed 0).
#   25 % of the labels: (a) pool = synthetic creatures + the other 75 % of the training rigs without
#   weights; (b) the same + the held-out meshes without weights. Seeds 0-2.
# Every run's two generators (stage 1 best, end of training) are then scored with the same run-time
# settings (experiments/sharpen_rule/collect.py) and tabled.
set -e
common=(--config configs/recipe.toml --data ../shared/data --set stages.stage1_epochs=8
        --set stages.stage2_epochs=1 --set runtime.sharpen=1.5 --baselines runs/cv/baselines_styles
        --runtime s3d05:sharpen=3,diffuse=0.5 --stage-models --fold 0)
python -m backend cv "${common[@]}" --out runs/cv/ss_b --unlabeled-heldout
python -m backend cv "${common[@]}" --out runs/cv/ss_a100_s1 --set run.seed=1
for seed in 0 1 2; do
  python -m backend cv "${common[@]}" --out runs/cv/ss_a25_s$seed --set data.labeled_fraction=0.25 --set run.seed=$seed
  python -m backend cv "${common[@]}" --out runs/cv/ss_b25_s$seed --set data.labeled_fraction=0.25 --set run.seed=$seed \
      --unlabeled-heldout
done
mkdir -p runs/ss_enc
for d in recipe ss_b ss_a100_s1 ss_a25_s0 ss_b25_s0 ss_a25_s1 ss_b25_s1 ss_a25_s2 ss_b25_s2; do
  for m in stage1 final; do
    PYTHONPATH=. python experiments/sharpen_rule/collect.py --cv runs/cv/$d --cv-model cv_$m.onnx --fold fold0 \
      --out runs/ss_enc/${d}_$m.jsonl --variant c:sharpen=1.5,diffuse=0.5,enclosing_pieces=1 \
      --variant enc100:sharpen=3,diffuse=0.5,enclosing_pieces=1
  done
done
python experiments/ss_pool_study/table.py runs/ss_enc
