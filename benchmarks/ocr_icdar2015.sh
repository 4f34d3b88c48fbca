#!/usr/bin/env bash
# Real-data check of the whole OCR pipeline: a recogniser trained on synthetic words only (ppocr_mobile_synth,
# shortened) and the detector of benchmarks/det_icdar2015.sh, run by `ocrforge ocr` on the 200 ICDAR 2015 validation
# images from checkpoints (PyTorch) and from exported ONNX models (ONNX Runtime only), then scored end to end.
# Usage: benchmarks/ocr_icdar2015.sh rec OUT [WORDS]            (train the recogniser)
#        benchmarks/ocr_icdar2015.sh ocr IMAGES_DIR GT_DIR OUT DET_CKPT   (run and score both back-ends)
set -euo pipefail
ocrforge=(python -m ocrforge.cli)

if [[ $1 == rec ]]; then
  out=$2 words=${3:-600000}
  "${ocrforge[@]}" train configs/rec/ppocr_mobile_synth.yaml --work-dir "$out/rec" --amp -o train.progress_bar=false \
    data.train.num_samples="$words" data.train.num_workers=7 train.max_time="${MAX_TIME:-null}" | tee "$out/rec.log"
  exit
fi

images=$2 gt=$3 out=$4 det=$5
rec=$(ls "$out"/rec/rec/ppocr_mobile_synth_*/checkpoints/last.ckpt)
mkdir -p "$out/val_images"
while read -r name; do ln -sf "$(realpath "$images/$name")" "$out/val_images/$name"; done < configs/det/splits/icdar2015_val.txt
"${ocrforge[@]}" export "$det" --out "$out/det.onnx" > "$out/det_export.json"
"${ocrforge[@]}" export "$rec" --out "$out/rec.onnx" > "$out/rec_export.json"
for backend in ckpt onnx; do
  if [[ $backend == ckpt ]]; then models=(--det "$det" --rec "$rec" --device cuda); else models=(--det "$out/det.onnx" --rec "$out/rec.onnx"); fi
  start=$(date +%s.%N)
  "${ocrforge[@]}" ocr "$out/val_images" "${models[@]}" --out "$out/ocr_$backend.jsonl" --show-dir "$out/show_$backend"

  python -c "import sys; print(f'{200 / (float(sys.argv[2]) - float(sys.argv[1])):.1f} images/s')" "$start" "$(date +%s.%N)" \
    | tee "$out/speed_$backend.txt"
  python benchmarks/ocr_end_to_end.py "$out/ocr_$backend.jsonl" "$gt" --out "$out/e2e_$backend.json"
done
python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {b: [json.loads(l) for l in (out / f"ocr_{b}.jsonl").read_text().splitlines()] for b in ("ckpt", "onnx")}
words = {b: [[w["text"] for w in r["words"]] for r in rows[b]] for b in rows}
same = sum(a == b for a, b in zip(words["ckpt"], words["onnx"]))
print(f"images with identical words on both back-ends: {same}/{len(words['ckpt'])}")
(out / "backend_agreement.txt").write_text(f"{same}/{len(words['ckpt'])}\n")
EOF
