"""End-to-end OCR on ICDAR 2015-format data: ``ocrforge ocr`` results (JSON lines) against the ground truth.

A predicted word counts when its polygon matches a care ground-truth word one-to-one (the detection metric's ICDAR
2015 matching, IoU > 0.5) and its text equals the transcription, ignoring case and symbols (the usual word-spotting
relaxation); precision, recall and hmean are over all care words and all predicted words outside don't-care regions.
Usage: python benchmarks/ocr_end_to_end.py RESULTS.jsonl GT_DIR [--out summary.json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ocrforge.data.converters.det_labels import read_icdar2015
from ocrforge.tasks.det.metric import evaluate_image, hmean_from_counts


def normalised(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results")
    parser.add_argument("gt_dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    totals = Counter()
    for line in Path(args.results).read_text(encoding="utf-8").splitlines():
        result = json.loads(line)
        regions = read_icdar2015(Path(args.gt_dir) / f"gt_{Path(result['path']).stem}.txt", Counter())
        words = result["words"]
        counts = evaluate_image([r.points for r in regions], [r.ignore for r in regions],
                                [np.asarray(w["polygon"], dtype=np.float32) for w in words])
        totals["images"] += 1
        totals["num_gt"] += counts.num_gt
        totals["num_pred"] += counts.num_pred
        totals["det_matched"] += counts.matched
        totals["e2e_matched"] += sum(normalised(words[p]["text"]) == normalised(regions[g].text)
                                     for g, p in counts.pairs)
    summary = {"images": totals["images"], "care_words": totals["num_gt"], "predicted_words": totals["num_pred"],
               "detection": hmean_from_counts(totals["det_matched"], totals["num_gt"], totals["num_pred"]),
               "end_to_end_ignore_case_symbols": hmean_from_counts(totals["e2e_matched"], totals["num_gt"],
                                                                   totals["num_pred"])}
    text = json.dumps(summary, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
