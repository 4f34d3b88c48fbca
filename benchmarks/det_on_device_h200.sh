#!/usr/bin/env bash
# data.augment.on_device / decode_on_device on one GPU machine, in two stages that each fit a 10-minute command:
#   speed    det_on_device.py (CUDA against the CPU path, cost per batch), then `ocrforge bench` of the DBNet-R18,
#            PP-OCRv5 mobile detector configs with the CPU path, on_device and decode_on_device, DBNet-R50 with
#            decode_on_device (bf16, 15 workers, channels_last; the CPU path's figures are in speed_h200_2026-12-01),
#            and R18 compiled.
#   quality  the PP-OCRv5 mobile fine-tune recipe, short, trained with each path and tested on the same images.
# Usage (repository root, ocrforge importable): benchmarks/det_on_device_h200.sh speed|quality OUT DIR
#   (quality: EPOCHS=N, EXTRA="seed=7 ..." more overrides)
#   DIR holds images/, gt/, train.txt and val.txt (ICDAR 2015 format).
set -uo pipefail
stage=$1 out=$2 dir=$3
workers=${WORKERS:-15} seconds=${SECONDS_PER_PART:-8} steps=${STEPS:-60}
mkdir -p "$out"
source "$(dirname "$0")/lib.sh"  # note, timed
train_data=(data.train.images_dir="$dir/images" data.train.labels="$dir/gt" data.train.files="$dir/train.txt")
val_data=(data.val.images_dir="$dir/images" data.val.labels="$dir/gt" data.val.files="$dir/val.txt")
declare -A paths=([cpu]="data.augment.on_device=false" [on_device]="data.augment.on_device=true"
                  [decode_on_device]="data.augment.on_device=true data.augment.decode_on_device=true")

if [[ $stage == speed ]]; then
  timed check python benchmarks/det_on_device.py --images "$dir/images" --labels "$dir/gt" \
    --files "$dir/train.txt" --out "$out/check.json"
  for run in dbnet_r18_icdar2015:{cpu,on_device,decode_on_device} \
             ppocrv5_mobile_det_finetune:{cpu,on_device,decode_on_device} dbnet_r50_icdar2015:decode_on_device; do
    config=${run%%:*} path=${run##*:}
    timed "bench_${config}_$path" python -m ocrforge.cli bench "configs/det/$config.yaml" --amp --channels-last \
      --seconds "$seconds" --warmup-seconds 4 --steps "$steps" --out "$out/bench_${config}_$path.json" \
      -o "${train_data[@]}" data.train.num_workers="$workers" load_from=null ${paths[$path]}
  done
  timed bench_dbnet_r18_icdar2015_decode_on_device_compile python -m ocrforge.cli bench \
    configs/det/dbnet_r18_icdar2015.yaml --amp --channels-last --compile --seconds "$seconds" --warmup-seconds 4 \
    --steps "$steps" --out "$out/bench_dbnet_r18_icdar2015_decode_on_device_compile.json" \
    -o "${train_data[@]}" data.train.num_workers="$workers" ${paths[decode_on_device]}
elif [[ $stage == quality ]]; then
  for path in cpu on_device decode_on_device; do
    timed "finetune_$path" python -m ocrforge.cli train configs/det/ppocrv5_mobile_det_finetune.yaml \
      -o "${train_data[@]}" "${val_data[@]}" data.train.num_workers="$workers" ${paths[$path]} \
      train.max_epochs="${EPOCHS:-20}" train.check_val_every_n_epoch=10 work_dir="$out/work_dirs" \
      exp_name="finetune_$path" logging.tensorboard=false ${EXTRA:-}
    cp "$out"/work_dirs/det/finetune_"$path"_*/metrics.json "$out/finetune_$path.json"
  done
fi
