"""Recognition task: charset, crops -> fixed-height padded tensors, Recognizer, the heads' losses, metrics.

What depends on the head (its decoder, loss term, export outputs, label-length checks) is declared by the head
(``heads.RecHead``); this wiring only asks the configured head class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import model_spec, split_data_spec
from ...data.charset import Charset
from ...errors import ConfigError
from ...registry import REC_HEADS, REC_LOSSES, REC_MODELS, TASKS
from ..base import Task
from . import datasets as _datasets  # noqa: F401  (registers the datasets)
from . import loss as _loss  # noqa: F401  (registers the loss)
from . import model as _model  # noqa: F401  (registers the model)
from .export import RecExport
from .finetune import remap_charset_rows
from .heads import RecHead
from .inference import decode_outputs
from .metric import RecognitionMetric
from .model import DEFAULT_HEAD
from .samples import RecSamples, collate
from .schema import RecDataSchema
from .visualize import save_prediction_grids


@TASKS.register("rec")
class RecognitionTask(Task):
    name = "rec"
    data_schema = RecDataSchema
    export_class = RecExport
    inference_module = "ocrforge.tasks.rec.inference"

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        c = cfg.data.charset
        self.charset = Charset.load(c.dict, use_space_char=c.use_space_char, lowercase=c.lowercase, oov=c.oov)
        self.max_text_length = int(cfg.data.max_text_length)
        self.height, self.max_width = (int(v) for v in cfg.data.image_size)
        # Set by build_model where the head's output frames follow the input width (CTC): the frames of a
        # max-width crop, and of each batch width in length-bucketed training. None: labels need no frame check.
        self.output_frames: int | None = None
        self.frames_by_width: dict[int, int] = {}
        self._frames_known = False

    @classmethod
    def adopt_from_checkpoint(cls, config: dict, stored: dict) -> None:
        return None  # the charset is part of the config; a different one is a fine-tune (see remap_state)

    def head_class(self, key: str = "head") -> type[RecHead]:
        """The registered class of ``model.<key>`` (``head``, or ``aux_head`` where one is set): what it declares
        decides decoding, loss terms, export outputs and label checks."""
        spec = self.cfg.model.get(key) or DEFAULT_HEAD
        head = REC_HEADS.get(spec["type"])
        if not (isinstance(head, type) and issubclass(head, RecHead)):
            raise ConfigError(f"model.{key}.type: '{spec['type']}' is not a recognition head (a subclass of "
                              f"ocrforge.tasks.rec.heads.RecHead, which declares its decoder, loss and export "
                              f"outputs)")
        return head

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = REC_MODELS.build(model_spec(OmegaConf.to_container(self.cfg.model)),
                                 num_classes=self.charset.num_classes)
        head = getattr(model, "head", None)  # a Recognizer's (a plugin model may be built otherwise)
        if head is not None:
            head.check_task(self.max_text_length)
        if self.head_class().frames_follow_width:
            bucketed = self.bucketed("train")
            widths = sorted({self.batch_width(w) for w in range(1, self.max_width + 1)}) if bucketed \
                else [self.max_width]
            frames = self._output_frames(model, widths)
            self.output_frames = frames[self.max_width]
            self.frames_by_width = frames if bucketed else {}
        self._frames_known = True
        return model

    def bucketed(self, split: str) -> bool:
        node = self.split_node(split)
        return split == "train" and node is not None and bool(split_data_spec(node)[1]["bucket_by_length"])

    def batch_width(self, widest: int) -> int:
        """Width a length-bucketed batch is padded to: its widest crop rounded up to a multiple of 8 (fewer
        distinct shapes for cuDNN's autotuner), at most ``max_width``."""
        return min(self.max_width, -(-widest // 8) * 8)

    @torch.no_grad()
    def _output_frames(self, model: nn.Module, widths: list[int]) -> dict[int, int]:
        """Frames the head emits at each input width (axis 1 of its first export output), probed: no formula fits
        every backbone."""
        output = self.head_class().export_outputs[0]
        was_training = model.training
        model.eval()
        frames = {width: model(torch.zeros(1, 3, self.height, width))[output].shape[1] for width in widths}
        model.train(was_training)
        return frames

    def injected_dataset_args(self) -> dict[str, Any]:
        return {"charset": self.charset}

    def dataset_defaults(self, split: str) -> dict[str, Any]:
        """Training crops are decoded at reduced size where they are at least twice the input height (less than half
        the decoding time, measured); evaluation decodes in full, so metrics do not move with this."""
        return {"decode_height": self.height} if split == "train" else {}

    def build_dataset(self, split: str) -> Dataset | None:
        raw = self.raw_dataset(split)
        if raw is None:
            return None
        if not self._frames_known:
            self.build_model()  # the output length decides which labels fit
        return RecSamples(raw, self, self.augmentation(split), own_width=self.bucketed(split))

    def collate(self, samples: list[dict]) -> dict:
        return collate(samples, self)

    def build_loss(self) -> nn.Module:
        spec = OmegaConf.to_container(self.cfg.loss) if self.cfg.get("loss") else {"type": "RecognitionLoss"}
        # The heads whose terms the loss sums, for a loss that declares it takes them (a plugin loss need not).
        heads = [self.head_class(key) for key in ("head", "aux_head") if key == "head" or self.cfg.model.get(key)]
        wanted = getattr(REC_LOSSES.get(spec["type"]), "config_injected", ())
        return REC_LOSSES.build(spec, **({"heads": heads} if "heads" in wanted else {}))

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
        """Eval outputs -> text, by the numpy decoder of an exported model (the head's eval outputs include its
        export outputs)."""
        head = self.head_class()
        arrays = {name: outputs[name].float().cpu().numpy() for name in head.export_outputs}
        return decode_outputs(arrays, {"decoder": head.decoder_name, "tokens": self.charset.tokens})

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
