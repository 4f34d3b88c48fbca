"""Recognition heads: CTC (per-frame classes) and an attention decoder (autoregressive characters).

A head declares what the rest of the task needs of it (``RecHead``): the task, the loss module, export and the
numpy/ONNX decoding call those declarations instead of asking which head it is, so a new head is one class here
(or in a plugin), its config and its tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...models.layers import multihead_attention
from ...registry import REC_HEADS


class RecHead(nn.Module, ABC):
    """What a recognition head declares (as MMOCR's heads own their loss and post-processor).

    Class attributes, read from the config before any model exists (export names, ONNX metadata, the loss):

    - ``decoder_name``: the numpy decoder (``rec/inference.py``'s ``DECODERS``) that turns the export outputs into
      text, the same for PyTorch and ONNX Runtime outputs; the ONNX metadata records it as ``decoder``.
    - ``export_outputs``: the ONNX outputs, in order, as ``export_forward`` returns them. The eval ``forward``
      returns them under the same names too, so that one decoder reads both.
    - ``export_axes``: their dynamic axes besides the input's.
    - ``loss_name``: the name of its loss term (logged, and weighted by the loss module's ``weights``).
    - ``frames_follow_width``: its output frames run along the input's width (axis 1 of the first export output),
      so a label must fit the frames of its crop; CTC's do, an attention decoder's steps do not.

    Methods: ``forward(frames, targets)`` (training and eval outputs), ``export_forward(frames)``, the class's
    ``loss(outputs, targets, label_smoothing)`` and ``check_task(max_text_length)`` (the task's data against the
    head's settings, for the head that decodes).
    """

    decoder_name: ClassVar[str]
    export_outputs: ClassVar[tuple[str, ...]]
    export_axes: ClassVar[dict[str, dict[int, str]]]
    loss_name: ClassVar[str]
    frames_follow_width: ClassVar[bool] = False

    @abstractmethod
    def export_forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``export_outputs`` of the neck's ``frames``, computed by operations a traced graph can hold."""

    @classmethod
    @abstractmethod
    def loss(cls, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             label_smoothing: float = 0.0) -> torch.Tensor | None:
        """This head's loss term on the model's ``outputs``; None when they hold none of this head's (an
        ``aux_head`` runs in training only). ``label_smoothing`` is the loss config's, for cross-entropy terms."""

    def check_task(self, max_text_length: int) -> None:
        """Raise ConfigError when this head cannot read labels of ``data.max_text_length`` characters."""
        return None


@REC_HEADS.register(aliases=("ctc",))
class CTCHead(RecHead):
    """Per-frame class scores; class 0 is the CTC blank. Outputs logits in training, probabilities otherwise."""

    config_injected = ("in_channels", "num_classes")
    decoder_name = "ctc"
    export_outputs = ("probs",)
    export_axes: ClassVar[dict[str, dict[int, str]]] = {"probs": {0: "batch", 1: "frames"}}
    loss_name = "ctc"
    frames_follow_width = True

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        logits = self.fc(self.dropout(frames))
        return {"logits": logits} if self.training else {"logits": logits, "probs": logits.float().softmax(-1)}

    def export_forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.fc(self.dropout(frames)).float().softmax(-1),)

    @classmethod
    def loss(cls, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             label_smoothing: float = 0.0) -> torch.Tensor | None:
        """CTC on ``logits``, outside autocast: its log-space sums lose too much in bf16/fp16. Labels that cannot
        fit the output sequence never reach it (the dataset skips and counts them), so ``zero_infinity`` only
        guards the rest."""
        if "logits" not in outputs:
            return None
        with torch.autocast(outputs["logits"].device.type, enabled=False):
            log_probs = outputs["logits"].float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
            # Lengths as host ints: given as device tensors, CTC copies them back (a host sync per call).
            frames = (log_probs.shape[0],) * log_probs.shape[1]
            lengths = targets.get("length_list") or tuple(targets["lengths"].tolist())
            return F.ctc_loss(log_probs, targets["ids"], frames, lengths, blank=0, reduction="mean",
                              zero_infinity=True)


@REC_HEADS.register(aliases=("attention",))
class AttentionHead(RecHead):
    """A small transformer decoder over the neck's frames (PP-OCRv5-style guidance beside CTC, or alone).

    Tokens: the charset's ids 1..C-1 for characters (0, the CTC blank, is unused), then ``bos`` = C and
    ``eos`` = C + 1. Training uses teacher forcing on ``targets['tokens']``; inference decodes greedily.
    """

    config_injected = ("in_channels", "num_classes")
    decoder_name = "attention"
    export_outputs = ("attn_probs",)
    export_axes: ClassVar[dict[str, dict[int, str]]] = {"attn_probs": {0: "batch"}}  # always max_length + 1 steps
    loss_name = "attention"

    def __init__(self, in_channels: int, num_classes: int, dim: int = 128, layers: int = 1, heads: int = 4,
                 max_length: int = 26, dropout: float = 0.1) -> None:
        super().__init__()
        self.bos, self.eos, self.max_length = num_classes, num_classes + 1, max_length
        self.memory = nn.Linear(in_channels, dim)
        self.embed = nn.Embedding(num_classes + 2, dim)
        self.position = nn.Parameter(torch.zeros(1, max_length + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        # The parameters (and checkpoint keys) of a pre-norm nn.TransformerDecoder; _decode runs them.
        layer = nn.TransformerDecoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Linear(dim, num_classes + 2)

    def _decode(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``self.decoder``'s forward with a causal mask (pre-norm layers, as built), through ``multihead_attention``
        so that training, inference and the ONNX graph share one computation whose memory length stays dynamic."""
        for layer in self.decoder.layers:
            h = layer.norm1(x)
            x = x + layer.dropout1(multihead_attention(layer.self_attn, h, h, causal=True))
            x = x + layer.dropout2(multihead_attention(layer.multihead_attn, layer.norm2(x), memory, causal=False))
            x = x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(x))))))
        return x

    def _step_logits(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.out(self._decode(self.embed(tokens) + self.position[:, : tokens.shape[1]], memory))

    def greedy_steps(self, frames: torch.Tensor, steps: int, stop_at_eos: bool = False) -> torch.Tensor:
        """Greedy decoding from ``bos``, each step fed the argmax of the previous ones: logits [N, steps, C + 2]
        (``steps`` <= ``max_length + 1``, the positions the head knows).

        ``stop_at_eos`` ends early once every row has emitted eos (fewer steps come back). Export leaves it off:
        a traced graph needs a loop whose length does not depend on the data; steps after eos are ignored by
        decoding, and the causal mask keeps the earlier steps' logits the same either way."""
        memory = self.memory(frames)
        # bos for every row, computed from the memory rather than a shape: the exporter folds shape-derived
        # constants (full_like) to the export batch size after some necks (PP-OCR's SVTR).
        tokens = (memory[:, :1, 0] * 0).long() + self.bos
        logits = []
        for _ in range(steps):
            logits.append(self._step_logits(tokens, memory)[:, -1])
            tokens = torch.cat([tokens, logits[-1].argmax(-1, keepdim=True)], dim=1)
            if stop_at_eos and bool((tokens[:, 1:] == self.eos).any(dim=1).all()):
                break
        return torch.stack(logits, dim=1)

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        if targets is not None and self.training:
            bos = torch.full_like(targets["tokens"][:, :1], self.bos)
            inputs = torch.cat([bos, targets["tokens"][:, :-1].clamp(min=0)], dim=1)[:, : self.max_length + 1]
            return {"attn_logits": self._step_logits(inputs, self.memory(frames))}
        logits = self.greedy_steps(frames, self.max_length + 1, stop_at_eos=True)
        return {"attn_logits": logits, "attn_probs": logits.float().softmax(-1)}

    def export_forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """All ``max_length + 1`` steps (no early exit: a traced loop must not depend on the data), as class
        probabilities; numpy decoding stops at eos."""
        return (self.greedy_steps(frames, self.max_length + 1).float().softmax(-1),)

    @classmethod
    def loss(cls, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             label_smoothing: float = 0.0) -> torch.Tensor | None:
        """Cross entropy of ``attn_logits`` against ``targets['tokens']`` (characters, eos, then -100: ignored)."""
        if "attn_logits" not in outputs:
            return None
        logits, tokens = outputs["attn_logits"], targets["tokens"]
        steps = min(logits.shape[1], tokens.shape[1])
        return F.cross_entropy(logits[:, :steps].float().flatten(0, 1), tokens[:, :steps].flatten(),
                               ignore_index=-100, label_smoothing=label_smoothing)

    def check_task(self, max_text_length: int) -> None:
        # Decoding reads at most max_length + 1 steps: the characters and eos.
        if self.max_length < max_text_length + 1:
            raise ConfigError(f"model.head.max_length must be at least data.max_text_length + 1 "
                              f"({max_text_length + 1})")
