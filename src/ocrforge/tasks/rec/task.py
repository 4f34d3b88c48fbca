"""Recognition task: charset, crops -> fixed-height padded tensors, Recognizer, CTC/attention loss, metrics."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import LoaderSchema, image_size_field, model_spec, registry_node, split_data_spec
from ...data.charset import Charset
from ...data.collate import COUNT_KEY, chw_tensor
from ...data.images import SampleSkipped, border_colour, normalise
from ...errors import ConfigError
from ...registry import LOSSES, MODELS, TASKS
from ..base import Task, TaskSamples
from . import datasets as _datasets  # noqa: F401  (registers the datasets)
from . import loss as _loss  # noqa: F401  (registers the loss)
from . import model as _model  # noqa: F401  (registers the model)
from .finetune import remap_charset_rows
from .heads import AttentionHead, CTCHead
from .inference import attention_greedy, ctc_greedy, resize_pad, resize_to_height
from .metric import RecognitionMetric
from .visualize import save_prediction_grids


@dataclass
class CharsetSchema:
    # A built-in name (digits, lowercase, printable, printable_space) or a dictionary file (one char per line).
    dict: str = "printable"
    use_space_char: bool = False
    lowercase: bool = False
    oov: str = "skip"  # error | skip | unknown


@dataclass
class RecDataSchema:
    image_size: list[int] = image_size_field([32, 128])  # [H, max W]
    color: str = "RGB"  # channel order the model reads: RGB, or BGR (models imported from PaddleOCR)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    max_text_length: int = 25
    charset: CharsetSchema = field(default_factory=CharsetSchema)
    train: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    val: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    test: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label: one per character plus a blank between each repeated pair."""
    return len(ids) + sum(1 for a, b in itertools.pairwise(ids) if a == b)


class RecSamples(TaskSamples):
    """Raw crops -> augmented, resized, padded uint8 tensors and encoded labels (all in DataLoader workers).

    Labels are skipped and counted when empty, outside the dictionary (policy ``skip``), longer than
    ``max_text_length``, or too long for the model's output sequence (CTC could not align them). With
    ``own_width`` (length-bucketed training) a crop keeps its own width and the collate function pads the batch
    to its widest crop, so the output sequence is checked at the crop's width.
    """

    def __init__(self, raw: Dataset, task: RecognitionTask, augment: Any, own_width: bool = False) -> None:
        super().__init__(raw, task, augment)
        self.own_width = own_width

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw[index]
        counts: Counter = Counter()
        task = self.task
        ids = task.charset.encode_label(sample["label"], counts)
        if isinstance(ids, str):
            raise SampleSkipped(ids)
        if len(ids) > task.max_text_length:
            raise SampleSkipped("label_too_long")
        if ctc_min_frames(ids) > task.output_frames:
            raise SampleSkipped("label_too_long_for_model")
        image = self.augmented(sample["image"])
        out = {"ids": ids, "text": task.charset.normalize(sample["label"]), "index": index, "path": sample["path"],
               COUNT_KEY: {k: v for k, v in counts.items() if v}}
        if not self.own_width:
            return {"image": chw_tensor(resize_pad(image, task.height, task.max_width)[0]), **out}
        resized = resize_to_height(image, task.height, task.max_width)
        if task.frames_by_width and ctc_min_frames(ids) > task.frames_by_width[task.batch_width(resized.shape[1])]:
            raise SampleSkipped("label_too_long_for_crop_width")
        return {"image": chw_tensor(resized), "pad_colour": torch.from_numpy(border_colour(image)), **out}


@TASKS.register("rec")
class RecognitionTask(Task):
    name = "rec"
    data_schema = RecDataSchema

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        c = cfg.data.charset
        self.charset = Charset.load(c.dict, use_space_char=c.use_space_char, lowercase=c.lowercase, oov=c.oov)
        self.max_text_length = int(cfg.data.max_text_length)
        self.height, self.max_width = (int(v) for v in cfg.data.image_size)
        self.output_frames = 0  # set by build_model: frames the model emits for a max-width crop
        self.frames_by_width: dict[int, int] = {}  # set by build_model for length-bucketed CTC training

    @classmethod
    def adopt_from_checkpoint(cls, config: dict, stored: dict) -> None:
        return None  # the charset is part of the config; a different one is a fine-tune (see remap_state)

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        spec = model_spec(OmegaConf.to_container(self.cfg.model))
        head = spec.get("head") or {}
        if head.get("type") == "attention" and head.get("max_length", 26) < self.max_text_length + 1:
            raise ConfigError(f"model.head.max_length must be at least data.max_text_length + 1 "
                              f"({self.max_text_length + 1})")
        model = MODELS.build(spec, num_classes=self.charset.num_classes)
        bucketed = self.bucketed("train")
        widths = sorted({self.batch_width(w) for w in range(1, self.max_width + 1)}) if bucketed else [self.max_width]
        frames = self._ctc_frames(model, widths)
        self.output_frames = frames.get(self.max_width, self.max_text_length + 1)
        self.frames_by_width = frames if bucketed else {}
        return model

    def bucketed(self, split: str) -> bool:
        node = self.split_node(split)
        return split == "train" and node is not None and bool(split_data_spec(node)[1]["bucket_by_length"])

    def batch_width(self, widest: int) -> int:
        """Width a length-bucketed batch is padded to: its widest crop rounded up to a multiple of 8 (fewer
        distinct shapes for cuDNN's autotuner), at most ``max_width``."""
        return min(self.max_width, -(-widest // 8) * 8)

    @torch.no_grad()
    def _ctc_frames(self, model: nn.Module, widths: list[int]) -> dict[int, int]:
        """Frames the CTC head emits at each input width, probed (no formula fits every backbone); empty for a
        model without one (an attention decoder emits up to ``max_length + 1`` steps whatever the width)."""
        was_training = model.training
        model.eval()
        frames = {}
        for width in widths:
            out = model(torch.zeros(1, 3, self.height, width))
            if "logits" not in out:
                break
            frames[width] = out["logits"].shape[1]
        model.train(was_training)
        return frames

    def injected_dataset_args(self) -> dict[str, Any]:
        return {"charset": self.charset}

    def build_dataset(self, split: str) -> Dataset | None:
        raw = self.raw_dataset(split)
        if raw is None:
            return None
        if not self.output_frames:
            self.build_model()  # the output length decides which labels fit
        return RecSamples(raw, self, self.augmentation(split), own_width=self.bucketed(split))

    def collate(self, samples: list[dict]) -> dict:
        lengths = torch.tensor([len(s["ids"]) for s in samples], dtype=torch.long)
        longest = int(lengths.max()) if len(samples) else 0
        ids = torch.zeros(len(samples), max(longest, 1), dtype=torch.long)
        # Attention targets: the characters, then eos, then -100 (ignored by the loss).
        tokens = torch.full((len(samples), longest + 1), -100, dtype=torch.long)
        for i, s in enumerate(samples):
            ids[i, : len(s["ids"])] = torch.tensor(s["ids"], dtype=torch.long)
            tokens[i, : len(s["ids"])] = ids[i, : len(s["ids"])]
            tokens[i, len(s["ids"])] = self.charset.num_classes + 1
        return {"image": self._stack_images(samples),
                "targets": {"ids": ids, "lengths": lengths, "tokens": tokens},
                "text": [s["text"] for s in samples], "index": torch.tensor([s["index"] for s in samples]),
                "path": [s["path"] for s in samples]}

    def _stack_images(self, samples: list[dict]) -> torch.Tensor:
        if "pad_colour" not in samples[0]:
            return torch.stack([s["image"] for s in samples])
        # Crops at their own width: pad to the batch's widest with each crop's border colour, as resize_pad would.
        width = self.batch_width(max(s["image"].shape[2] for s in samples))
        images = torch.empty(len(samples), 3, self.height, width, dtype=torch.uint8)
        for row, s in zip(images, samples, strict=True):
            own = s["image"].shape[2]
            row[:, :, :own] = s["image"]
            row[:, :, own:] = s["pad_colour"][:, None, None]
        return images

    def build_loss(self) -> nn.Module:
        spec = OmegaConf.to_container(self.cfg.loss) if self.cfg.get("loss") else {"type": "rec"}
        return LOSSES.build(spec)

    def build_metric(self) -> RecognitionMetric:
        return RecognitionMetric(lambda outputs: [r["text"] for r in self.decode(outputs)])

    def default_monitor(self) -> tuple[str, str]:
        return "val/acc", "max"

    # --- running --------------------------------------------------------------------------------------------
    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch), batch["targets"])

    def forward_eval(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch), batch["targets"])

    def decode(self, outputs: dict[str, torch.Tensor]) -> list[dict]:
        if "probs" in outputs:
            return ctc_greedy(outputs["probs"].float().cpu().numpy(), self.charset.tokens)
        # The same numpy decoding as an exported model's ``attn_probs``.
        return attention_greedy(outputs["attn_logits"].float().softmax(-1).cpu().numpy(), self.charset.tokens)

    def predictions(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        from rapidfuzz.distance import Levenshtein

        decoded = self.decode(outputs)
        for pred, gt, index, path in zip(decoded, batch["text"], batch["index"].tolist(), batch["path"],
                                         strict=True):
            pred.update(gt=gt, index=index, path=path, correct=pred["text"] == gt,
                        ned=Levenshtein.normalized_distance(pred["text"], gt))
        return decoded

    def save_test_artifacts(self, metrics: dict, predictions: list[dict], out_dir: Path,
                            show_dir: Path | None, worst: int = 50) -> None:
        errors = sorted((p for p in predictions if not p["correct"]), key=lambda p: (-p["ned"], p["index"]))
        with open(out_dir / "worst_errors.jsonl", "w", encoding="utf-8") as handle:
            for pred in errors[:worst]:
                row = {k: pred[k] for k in ("path", "gt", "text", "score", "ned")}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if show_dir is not None:
            raw = self.raw_dataset("test")
            save_prediction_grids(predictions, lambda p: raw[p["index"]]["image"], show_dir)

    # --- fine-tuning with another dictionary ----------------------------------------------------------------
    def remap_state(self, state: dict[str, torch.Tensor], stored: dict | None,
                    model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        if not stored or stored.get("task") != "rec":
            return state, None
        c = stored["data"]["charset"]
        source = Charset.load(c["dict"], use_space_char=c.get("use_space_char", False),
                              lowercase=c.get("lowercase", False), oov=c.get("oov", "skip"))
        if source.tokens == self.charset.tokens:
            return state, None
        return remap_charset_rows(state, model.state_dict(), source.tokens, self.charset.tokens)

    # --- inference and export -------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        padded, _ = resize_pad(image, self.height, self.max_width)
        return normalise(padded, self.mean, self.std, self.color)

    def _decoder(self) -> str:
        """``attention`` when the main head is an attention decoder, else ``ctc`` (an attention ``aux_head`` is
        guidance only: it is neither exported nor used to decode)."""
        head = self.cfg.model.get("head") or {}
        return "attention" if head.get("type") == "attention" else "ctc"

    def export_module(self, model: nn.Module) -> nn.Module:
        expected = AttentionHead if self._decoder() == "attention" else CTCHead
        if not isinstance(getattr(model, "head", None), expected):
            raise ConfigError("ONNX export needs a Recognizer whose head is `ctc` or `attention`")
        return _RecAttentionInference(model) if expected is AttentionHead else _RecInference(model)

    def onnx_output_names(self) -> Sequence[str]:
        return ["attn_probs"] if self._decoder() == "attention" else ["probs"]

    def onnx_dynamic_axes(self) -> dict[str, dict[int, str]]:
        if self._decoder() == "attention":
            return {"image": {0: "batch", 3: "width"}, "attn_probs": {0: "batch"}}  # always max_length + 1 steps
        return {"image": {0: "batch", 3: "width"}, "probs": {0: "batch", 1: "frames"}}

    def onnx_metadata(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"task": "rec", "decoder": self._decoder(), "input_size": [self.height, self.max_width],
                "mean": list(d.mean), "std": list(d.std), "tokens": self.charset.tokens,
                "lowercase": self.charset.lowercase, "padding": "right, crop border colour", "color": self.color,
                "layout": "NCHW"}

    def onnx_extra_metadata(self) -> dict[str, str]:
        """RapidOCR's ``character``: it splits the value into lines and adds blank in front and space at the end,
        so only a charset laid out that way (space last and nowhere else, no ``<unk>``, no line-break-like
        characters) can be described to it."""
        chars = self.charset.chars
        body = chars[:-1]
        if (not chars or chars[-1] != " " or " " in body or self.charset.unknown_id is not None
                or "\n".join(body).splitlines() != body):
            return {}
        return {"character": "\n".join(body)}


class _RecInference(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(image)["probs"],)


class _RecAttentionInference(nn.Module):
    """Backbone, neck, then the attention decoder for all ``max_length + 1`` steps (no early exit: a traced loop
    must not depend on the data), as class probabilities; numpy decoding stops at eos."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        frames = self.model.neck(self.model.backbone(image))
        head = self.model.head
        return (head.greedy_steps(frames, head.max_length + 1).float().softmax(-1),)
