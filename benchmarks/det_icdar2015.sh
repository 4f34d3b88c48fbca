#!/usr/bin/env bash
# Real-data check for text detection: DBNet-R18 pretrained on built-in synthetic pages, then trained on 800 ICDAR 2015
# training images and evaluated on the other 200 (configs/det/splits), no ImageNet weights (the GPU machines are
# offline). Writes run folders, stage times and a summary JSON under OUT. Stages run one by one (each fits in the
# GPU machines' 10-minute command limit) or all in a row: STAGE = pretrain | icdar | test | all.
# Usage: [MAX_TIME=DD:HH:MM:SS] benchmarks/det_icdar2015.sh STAGE IMAGES_DIR GT_DIR OUT [PRETRAIN_PAGES] [EPOCHS]
set -euo pipefail
stage=$1 images=$2 gt=$3 out=$4 pages=${5:-40000} epochs=${6:-120}
ocrforge=(python -m ocrforge.cli)
mkdir -p "$out"

if [[ $stage == pretrain || $stage == all ]]; then
start=$(date +%s)
"${ocrforge[@]}" train configs/det/dbnet_r18_icdar2015.yaml --work-dir "$out/pretrain" --amp \
  -o exp_name=dbnet_r18_synth_pretrain data.train.batch_size=32 data.train.num_workers=15 \
  train.max_epochs=1 train.check_val_every_n_epoch=1 train.val_check_interval=0.5 checkpoint.save_top_k=1 \
  "data.train={type: SynthPages, num_samples: $pages, seed: 0, height: 640, width: 640, \
               batch_size: 32, num_workers: 15, prefetch_factor: 4}" \
  "data.val={type: SynthPages, num_samples: 200, seed: 1, height: 640, width: 640, \
             batch_size: 16, num_workers: 8}" \
  data.eval_resize.limit_side_len=640 data.eval_resize.limit_type=max train.progress_bar=false \
  | tee "$out/pretrain.log"
echo $(( $(date +%s) - start )) > "$out/pretrain.seconds"
fi

if [[ $stage == icdar || $stage == all ]]; then
synth_ckpt=$(ls "$out"/pretrain/det/*/checkpoints/last.ckpt)
start=$(date +%s)
"${ocrforge[@]}" train configs/det/dbnet_r18_icdar2015.yaml --work-dir "$out/icdar" --amp --load-from "$synth_ckpt" \
  -o data.train.images_dir="$images" data.train.labels="$gt" data.val.images_dir="$images" data.val.labels="$gt" \
  data.train.num_workers=15 train.max_epochs="$epochs" train.check_val_every_n_epoch=20 train.progress_bar=false \
  train.max_time="${MAX_TIME:-null}" \
  | tee "$out/icdar.log"
echo $(( $(date +%s) - start )) > "$out/icdar.seconds"
fi

if [[ $stage == test || $stage == all ]]; then
run=$(ls -d "$out"/icdar/det/dbnet_r18_icdar2015_2*)
best=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['best']['checkpoint'])" "$run/metrics.json")

start=$(date +%s)
"${ocrforge[@]}" test configs/det/dbnet_r18_icdar2015.yaml "$best" --work-dir "$out/icdar" --save-preds \
  --show-dir "$out/show" -o data.val.images_dir="$images" data.val.labels="$gt" train.progress_bar=false \
  | tee "$out/test.log"
echo $(( $(date +%s) - start )) > "$out/test.seconds"
"${ocrforge[@]}" export "$best" --out "$out/dbnet_r18_icdar2015.onnx" > "$out/export.json"
python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
seconds = {s: int((out / f"{s}.seconds").read_text()) for s in ("pretrain", "icdar", "test")}
test_run = sorted((out / "icdar" / "det").glob("dbnet_r18_icdar2015_test_*"))[-1]
train_run = sorted(p for p in (out / "icdar" / "det").glob("dbnet_r18_icdar2015_2*"))[-1]
summary = {"seconds": seconds, "test": json.loads((test_run / "metrics.json").read_text()),
           "train_metrics": json.loads((train_run / "metrics.json").read_text()),
           "export": json.loads((out / "export.json").read_text())}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary["test"]["metrics"], indent=2))
EOF
fi
