#!/usr/bin/env bash
# Batch packing (data/packing.py) and the training step on one GPU machine, in two stages that each fit a 10-minute
# command (bf16, 15 workers, channels_last for detection):
#   loader  the training loader alone (`ocrforge bench`, part data) with BEFORE_SRC's code and with this one:
#           DBNet-R18 on the CPU path, on_device and decode_on_device, the PP-OCRv5 mobile detector at batch 32
#           (decode_on_device), the mobile recogniser from an LMDB; then that recogniser from the LMDB, whole bench,
#           eager and compiled.
#   step    whole benches with decode_on_device: the mobile detector at batch 64 (eager, compiled), DBNet-R18
#           compiled at batch 32 and 16; the compiled recogniser from the LMDB (made again if gone) with 8
#           workers, R18 loading with unpinned batches.
# Usage (repository root, ocrforge importable): benchmarks/loader_step_h200.sh loader|step OUT DIR [BEFORE_SRC]
#   DIR holds images/, gt/ and train.txt (ICDAR 2015 format); BEFORE_SRC the src/ of a checkout from before.
set -uo pipefail
stage=$1 out=$2 dir=$3 before=${4:-}
workers=${WORKERS:-15} seconds=${SECONDS_PER_PART:-8} steps=${STEPS:-60}
mkdir -p "$out"
source "$(dirname "$0")/lib.sh"  # note, timed, parts
det_data=(data.train.images_dir="$dir/images" data.train.labels="$dir/gt" data.train.files="$dir/train.txt"
          data.train.num_workers="$workers" load_from=null)
decode=(data.augment.on_device=true data.augment.decode_on_device=true)
r18=configs/det/dbnet_r18_icdar2015.yaml mobile_det=configs/det/ppocrv5_mobile_det_finetune.yaml
mobile_rec=configs/rec/ppocr_mobile_synth.yaml
lmdb="data.train={type: RecLMDB, roots: [/tmp/lmdb32], batch_size: 1024, num_workers: $workers, prefetch_factor: 4}"
bench() {  # NAME CONFIG OVERRIDES...: the whole `ocrforge bench`, amp
  timed "$1" python -m ocrforge.cli bench "$2" --amp --seconds "$seconds" --warmup-seconds 4 --steps "$steps" \
    --out "$out/$1.json" -o "${@:3}"
}

if [[ $stage == loader ]]; then
  timed synth_lmdb32 python -m ocrforge.cli synth rec --out /tmp/lmdb32 --num 200000 --lmdb
  for code in before after; do
    src=$PWD/src
    [[ $code == before ]] && src=$before
    [[ -z $src ]] && continue
    PYTHONPATH=$src:${PYTHONPATH:-}
    export PYTHONPATH
    timed "data_r18_cpu_$code" parts "data_r18_cpu_$code" "$r18" data "${det_data[@]}"
    timed "data_r18_on_device_$code" parts "data_r18_on_device_$code" "$r18" data "${det_data[@]}" \
      data.augment.on_device=true
    timed "data_r18_decode_on_device_$code" parts "data_r18_decode_on_device_$code" "$r18" data "${det_data[@]}" \
      "${decode[@]}"
    timed "data_mobile_det_b32_decode_on_device_$code" parts "data_mobile_det_b32_decode_on_device_$code" \
      "$mobile_det" data "${det_data[@]}" "${decode[@]}" data.train.batch_size=32
    timed "data_mobile_rec_lmdb_$code" parts "data_mobile_rec_lmdb_$code" "$mobile_rec" data "$lmdb"
    PYTHONPATH=${PYTHONPATH#"$src:"}
  done
  bench bench_mobile_rec_lmdb "$mobile_rec" "$lmdb"
  bench bench_mobile_rec_lmdb_compile "$mobile_rec" "$lmdb" train.compile=true
elif [[ $stage == step ]]; then
  bench bench_mobile_det_b64 "$mobile_det" "${det_data[@]}" "${decode[@]}" data.train.batch_size=64 \
    train.channels_last=true
  bench bench_mobile_det_b64_compile "$mobile_det" "${det_data[@]}" "${decode[@]}" data.train.batch_size=64 \
    train.channels_last=true train.compile=true
  bench bench_r18_b32_compile "$r18" "${det_data[@]}" "${decode[@]}" data.train.batch_size=32 \
    train.channels_last=true train.compile=true
  # The main process against 15 busy workers on 16 cores: the compiled recogniser with 8 workers.
  [[ -d /tmp/lmdb32 ]] || timed synth_lmdb32 python -m ocrforge.cli synth rec --out /tmp/lmdb32 --num 200000 --lmdb
  bench bench_mobile_rec_lmdb_compile_8workers "$mobile_rec" "$lmdb" train.compile=true data.train.num_workers=8
  # Whether the pinning thread bounds detection loading.
  timed data_r18_decode_on_device_unpinned parts data_r18_decode_on_device_unpinned "$r18" data "${det_data[@]}" \
    "${decode[@]}" data.train.pin_memory=false
  bench bench_r18_b16_compile "$r18" "${det_data[@]}" "${decode[@]}" train.channels_last=true train.compile=true
fi
