#!/usr/bin/env bash
# Fine-tunes of the imported PP-OCR models on ICDAR 2015 training data, as run on one H200 (results:
# benchmarks/results/ppocr_{rec,det}_icdar2015_*). REC holds train.txt + holdout.txt (crops of 800 training images, split by
# source image 90/10; the holdout picks nothing here, it is the monitored val set) and val_crops/labels.txt (crops of
# the 200 validation images of configs/det/splits). DET holds ICDAR 2015 images and gt_*.txt for both splits.
# Usage: benchmarks/ppocr_icdar2015_gpu.sh rec|det REC_OR_DET_DIR OUT
set -euo pipefail
stage=$1 data=$2 out=$3
bench=(python3 benchmarks/ppocr_icdar2015.py)
mkdir -p "$out"
if [[ $stage == rec ]]; then
  common=(--train "$data/train.txt" --holdout "$data/holdout.txt" --crops "$data/val_crops/labels.txt")
  "${bench[@]}" rec-finetune --out "$out/v5_printable" --config configs/rec/ppocrv5_mobile_finetune.yaml "${common[@]}"
  "${bench[@]}" rec-finetune --out "$out/v6_printable" --config configs/rec/ppocrv6_small_finetune.yaml "${common[@]}"
  "${bench[@]}" rec-finetune --out "$out/v6_printable_lr5e-5" --config configs/rec/ppocrv6_small_finetune.yaml \
    "${common[@]}" -o optimizer.lr=0.00005
else
  "${bench[@]}" det-eval --out "$out/imported" --images "$data" --gt "$data"
  "${bench[@]}" det-finetune --out "$out/finetune" --images "$data" --gt "$data"
  ckpt=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" \
    "$out/finetune/det-finetune_ppocrv5_mobile_det_finetune.json")
  "${bench[@]}" det-eval --out "$out/finetuned" --images "$data" --gt "$data" --checkpoint "$ckpt"
fi
