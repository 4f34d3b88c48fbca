"""Recognition samples: raw crops -> augmented, resized, padded uint8 tensors and encoded labels (in DataLoader
workers), and the collate function that batches them."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from ...data.collate import COUNT_KEY, chw_tensor
from ...data.images import SampleSkipped, border_colour, resize_to_height
from ..base import TaskSamples
from .inference import resize_pad

if TYPE_CHECKING:
    from .task import RecognitionTask


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label: one per character plus a blank between each repeated pair."""
    return len(ids) + sum(1 for a, b in itertools.pairwise(ids) if a == b)


class RecSamples(TaskSamples):
    """Labels are skipped and counted when empty, outside the dictionary (policy ``skip``), longer than
    ``max_text_length``, or, for a head whose output frames follow the input width (CTC), too long for the
    model's output sequence (CTC could not align them). With ``own_width`` (length-bucketed training) a crop keeps
    its own width and the collate function pads the batch to its widest crop, so the output sequence is checked at
    the crop's width.
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
        if task.output_frames is not None and ctc_min_frames(ids) > task.output_frames:
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


def collate(samples: list[dict], task: RecognitionTask) -> dict:
    """Images (padded to the batch's widest crop when they kept their own width) and targets: ``ids`` [B, L] and
    ``lengths`` (CTC's; also as ``length_list``, plain ints that stay on the host when the batch moves to the GPU,
    so CTC need not copy them back), ``tokens`` [B, L + 1]: the characters, then eos, then -100 (ignored by the
    loss) (an attention decoder's)."""
    lengths = torch.tensor([len(s["ids"]) for s in samples], dtype=torch.long)
    longest = int(lengths.max()) if len(samples) else 0
    ids = torch.zeros(len(samples), max(longest, 1), dtype=torch.long)
    tokens = torch.full((len(samples), longest + 1), -100, dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, : len(s["ids"])] = torch.tensor(s["ids"], dtype=torch.long)
        tokens[i, : len(s["ids"])] = ids[i, : len(s["ids"])]
        tokens[i, len(s["ids"])] = task.charset.num_classes + 1
    return {"image": _stack_images(samples, task),
            "targets": {"ids": ids, "lengths": lengths, "length_list": tuple(lengths.tolist()), "tokens": tokens},
            "text": [s["text"] for s in samples], "index": torch.tensor([s["index"] for s in samples]),
            "path": [s["path"] for s in samples]}


def _stack_images(samples: list[dict], task: RecognitionTask) -> torch.Tensor:
    if "pad_colour" not in samples[0]:
        return torch.stack([s["image"] for s in samples])
    # Crops at their own width: pad to the batch's widest with each crop's border colour, as resize_pad would.
    width = task.batch_width(max(s["image"].shape[2] for s in samples))
    images = torch.empty(len(samples), 3, task.height, width, dtype=torch.uint8)
    for row, s in zip(images, samples, strict=True):
        own = s["image"].shape[2]
        row[:, :, :own] = s["image"]
        row[:, :, own:] = s["pad_colour"][:, None, None]
    return images
