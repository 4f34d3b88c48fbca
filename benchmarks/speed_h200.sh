#!/usr/bin/env bash
# Issue 13's training-speed measurements on one GPU machine, in two stages that each fit a 10-minute command:
#   rec  real training runs of the mobile recogniser before/after a change and compiled (train_speed.py: samples/s,
#        host syncs per step); `ocrforge synth rec --lmdb`, then `ocrforge bench` from that LMDB; loading per
#        worker (synthetic, LMDB); peak memory at 4,096 x 48x320; reduced JPEG decoding; bench compiled (also
#        length-bucketed) last.
#   det  side_by_side.py (ocrforge and docTR, detection and recognition, same run), detection loading with 1 worker.
# Usage (repository root, ocrforge importable): benchmarks/speed_h200.sh rec|det OUT [BEFORE_SRC | DET_DIR]
#   BEFORE_SRC: the src/ of a checkout from before the change (rec); DET_DIR: images/, gt/ and files.txt (det).
# Every result is a JSON file in OUT; OUT/summary.txt has one line per measurement.
set -uo pipefail
stage=$1 out=$2 extra=${3:-}
workers=${WORKERS:-15} steps=${STEPS:-250} seconds=${SECONDS_PER_PART:-8} num=${LMDB_SAMPLES:-200000}
mobile=configs/rec/ppocr_mobile_synth.yaml
mkdir -p "$out"

source "$(dirname "$0")/lib.sh"  # note, timed, parts
if [[ $stage == rec ]]; then
  train=(python benchmarks/train_speed.py "$mobile" --steps "$steps" --skip 60 --sync-steps 5)
  if [[ -n $extra ]]; then
    PYTHONPATH=$extra:${PYTHONPATH:-} timed train_mobile_before "${train[@]}" --label before \
      --out "$out/train_mobile_before.json" -o "data.train.num_workers=$workers"
  fi
  timed train_mobile_after "${train[@]}" --label after --out "$out/train_mobile_after.json" \
    -o "data.train.num_workers=$workers"
  timed train_mobile_after_compile "${train[@]}" --label after_compile --out "$out/train_mobile_after_compile.json" \
    -o "data.train.num_workers=$workers" train.compile=true
  timed synth_lmdb32 python -m ocrforge.cli synth rec --out /tmp/lmdb32 --num "$num" --lmdb
  timed synth_lmdb128 python -m ocrforge.cli synth rec --out /tmp/lmdb128 --num 20000 --seed 1 --height 128 --lmdb
  lmdb="data.train={type: RecLMDB, roots: [/tmp/lmdb32], batch_size: 1024, num_workers: $workers, prefetch_factor: 4}"
  bench=(python -m ocrforge.cli bench "$mobile" --amp --seconds "$seconds" --warmup-seconds 4 --steps 50)
  timed bench_mobile_lmdb "${bench[@]}" --out "$out/bench_mobile_lmdb.json" -o "$lmdb"
  timed data_mobile_synth_1worker parts data_mobile_synth_1worker "$mobile" data data.train.num_workers=1
  timed data_mobile_lmdb_1worker parts data_mobile_lmdb_1worker "$mobile" data "$lmdb" data.train.num_workers=1
  timed memory_mobile_4096_48x320 parts memory_mobile_4096_48x320 "$mobile" model "data.image_size=[48,320]" \
    data.train.height=48 data.train.batch_size=4096 "data.train.num_workers=$workers" data.train.prefetch_factor=1
  timed decode_lmdb128 python - "$out/decode_lmdb128.json" <<'EOF'
import json, sys, time
import cv2
from ocrforge.data.lmdb_store import LmdbReader
from ocrforge.data.images import resize_to_height
cv2.setNumThreads(1)
reader, report = LmdbReader("/tmp/lmdb128"), {"stored_height": 128, "model_height": 32, "samples": 5000}
for decode_height in (None, 32):
    began = time.perf_counter()
    for i in range(5000):
        image, _ = reader.get(i, decode_height)
        resize_to_height(image, 32, 256)
    report[f"decode_height={decode_height}_us_per_sample"] = round((time.perf_counter() - began) / 5000 * 1e6, 1)
open(sys.argv[1], "w").write(json.dumps(report, indent=1) + "\n")
print(report)
EOF
  timed bench_mobile_lmdb_compile "${bench[@]}" --compile --out "$out/bench_mobile_lmdb_compile.json" -o "$lmdb"
  timed bench_mobile_lmdb_bucketed_compile "${bench[@]}" --compile --out "$out/bench_mobile_lmdb_bucketed_compile.json" \
    -o "$lmdb" data.train.bucket_by_length=true
elif [[ $stage == det ]]; then
  timed side_by_side python benchmarks/side_by_side.py --det-images "$extra/images" --det-labels "$extra/gt" \
    --det-files "$extra/files.txt" --workers "$workers" --seconds "$seconds" --out "$out/side_by_side.json"
  timed data_det_r18_1worker parts data_det_r18_1worker configs/det/dbnet_r18_icdar2015.yaml data \
    "data.train.images_dir=$extra/images" "data.train.labels=$extra/gt" "data.train.files=$extra/files.txt" \
    data.train.num_workers=1
fi
