"""Recognition pre- and post-processing in numpy + OpenCV only, shared by the PyTorch and ONNX Runtime paths.

Decoders are found by name (``DECODERS``): a head declares its ``decoder_name``, the ONNX metadata records it as
``decoder``, and ``decode_outputs`` looks it up, so neither path asks which head made the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...data.images import border_colour, normalise, pad_with, resize_to_height
from ...errors import ConfigError

BLANK = 0
UNKNOWN_TEXT = "\ufffd"


def resize_pad(image: np.ndarray, height: int, max_width: int, pad_to: int | None = None) -> tuple[np.ndarray, float]:
    """:func:`resize_to_height`, then padded on the right to ``pad_to`` (default ``max_width``) with the crop's border
    colour, so padding looks like the background the model trained on.
    Returns the uint8 image and the fraction of the width that holds text."""
    resized = resize_to_height(image, height, max_width)
    width = resized.shape[1]
    target = max_width if pad_to is None else max(pad_to, width)
    return pad_with(resized, border_colour(image), right=target - width), width / target


def prepare(image: np.ndarray, meta: dict) -> np.ndarray:
    """RGB uint8 crop -> float32 3xHxW at the exported input size."""
    height, width = meta["input_size"]
    padded, _ = resize_pad(image, height, width)
    return normalise(padded, meta["mean"], meta["std"], meta.get("color", "RGB"))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _text(ids: Sequence[int], tokens: Sequence[str]) -> str:
    return "".join(UNKNOWN_TEXT if tokens[i] == "<unk>" else tokens[i] for i in ids)


def ctc_greedy(probs: np.ndarray, tokens: Sequence[str]) -> list[dict]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Per-character confidence is the highest probability among the frames of that character; the word confidence
    is their mean, as PaddleOCR computes it (its ``drop_score`` of 0.5 assumes that; a product would fall below
    it on any long line). An empty prediction gets the mean blank probability instead of claiming 1.0.
    """
    results = []
    best = probs.argmax(axis=-1)
    for frames, ids in zip(probs, best, strict=True):
        chars, scores, previous = [], [], BLANK
        for t, index in enumerate(ids):
            if index != BLANK and index != previous:
                chars.append(int(index))
                scores.append(float(frames[t, index]))
            elif index != BLANK and index == previous:
                scores[-1] = max(scores[-1], float(frames[t, index]))
            previous = index
        word = float(np.mean(scores)) if scores else float(frames[:, BLANK].mean())
        results.append({"text": _text(chars, tokens), "score": word, "char_scores": scores})
    return results


def ctc_beam_search(probs: np.ndarray, tokens: Sequence[str], beam_width: int = 5) -> list[dict]:
    """CTC prefix beam search (no language model): keeps the ``beam_width`` most probable label prefixes,
    summing the probability of every alignment of a prefix, so it can beat best-path on ambiguous frames."""
    results = []
    for frames in probs:
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 0.0)}  # prefix -> (p ends in blank, in char)
        for frame in frames:
            candidates = np.argsort(-frame)[: beam_width + 1]
            nxt: dict[tuple[int, ...], list[float]] = {}
            for prefix, (p_blank, p_char) in beams.items():
                total = p_blank + p_char
                entry = nxt.setdefault(prefix, [0.0, 0.0])
                entry[0] += total * frame[BLANK]
                if prefix:
                    entry[1] += p_char * frame[prefix[-1]]  # repeated character without a blank: same prefix
                for c in candidates:
                    c = int(c)
                    if c == BLANK:
                        continue
                    extended = nxt.setdefault((*prefix, c), [0.0, 0.0])
                    extended[1] += (p_blank if prefix and prefix[-1] == c else total) * frame[c]
            ranked = sorted(nxt.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:beam_width]
            norm = sum(b + c for _, (b, c) in ranked) or 1.0  # rescale each frame so long inputs do not underflow
            beams = {k: (b / norm, c / norm) for k, (b, c) in ranked}
        prefix, (p_blank, p_char) = max(beams.items(), key=lambda kv: kv[1][0] + kv[1][1])
        results.append({"text": _text(prefix, tokens), "score": float(p_blank + p_char)})
    return results


def attention_greedy(probs: np.ndarray, tokens: Sequence[str]) -> list[dict]:
    """An attention decoder's per-step probabilities [N, S, len(tokens) + 2] -> text, word score, per-character
    scores. Classes: ``tokens`` (0, the CTC blank, is never a character), then bos = len(tokens), eos = bos + 1.

    Argmax per step until eos; blank and bos steps are dropped. The word score is the product of the kept steps'
    probabilities, 0.0 for an empty prediction (nothing was read with any confidence)."""
    eos = len(tokens) + 1
    if probs.shape[-1] != eos + 1:
        raise ValueError(f"attention probabilities have {probs.shape[-1]} classes; {len(tokens)} tokens + bos + eos "
                         f"= {eos + 1} expected")
    results = []
    best = probs.argmax(axis=-1)
    for steps, ids in zip(probs, best, strict=True):
        chars, scores = [], []
        for t, index in enumerate(ids):
            if index == eos:
                break
            if BLANK < index < len(tokens):
                chars.append(int(index))
                scores.append(float(steps[t, index]))
        results.append({"text": _text(chars, tokens), "score": float(np.prod(scores)) if scores else 0.0,
                        "char_scores": scores})
    return results


# A decoder: the export outputs (by name) and the model's metadata (``tokens``, ``beam_width`` …) -> one
# ``{"text", "score", "char_scores"}`` per row.
Decoder = Callable[[dict[str, np.ndarray], dict], list[dict]]
DECODERS: dict[str, Decoder] = {}


def register_decoder(name: str) -> Callable[[Decoder], Decoder]:
    """Make a decoder known by the ``decoder_name`` that heads declare (a plugin head may bring its own)."""
    def decorator(decoder: Decoder) -> Decoder:
        if DECODERS.get(name, decoder) is not decoder:
            raise KeyError(f"a recognition decoder named '{name}' is registered already ({DECODERS[name]!r})")
        DECODERS[name] = decoder
        return decoder

    return decorator


@register_decoder("ctc")
def decode_ctc(outputs: dict[str, np.ndarray], meta: dict) -> list[dict]:
    """CTC ``probs`` [N, T, C]: best path, or prefix beam search when ``meta['beam_width']`` > 1 (its score is the
    kept beams' share, not a path product)."""
    beam_width = int(meta.get("beam_width") or 0)
    if beam_width > 1:
        return ctc_beam_search(outputs["probs"], meta["tokens"], beam_width)
    return ctc_greedy(outputs["probs"], meta["tokens"])


@register_decoder("attention")
def decode_attention(outputs: dict[str, np.ndarray], meta: dict) -> list[dict]:
    """An attention decoder's ``attn_probs`` [N, steps, C + 2], greedy."""
    if int(meta.get("beam_width") or 0) > 1:
        raise ConfigError("beam search decodes CTC recognisers only; this model has an attention decoder (greedy)")
    return attention_greedy(outputs["attn_probs"], meta["tokens"])


def decode_outputs(outputs: dict[str, np.ndarray], meta: dict, sizes: Sequence[tuple[int, int]] | None = None
                   ) -> list[dict]:
    """Softmaxed outputs (applied in the graph) -> text, word score, per-character scores, by the decoder that
    ``meta['decoder']`` names (``sizes``, the original crop sizes, are not needed)."""
    # Models exported before attention decoders existed record no decoder: they are all CTC.
    name = meta.get("decoder", "ctc")
    if name not in DECODERS:
        raise ConfigError(f"no recognition decoder '{name}' (known: {', '.join(sorted(DECODERS))}); import the "
                          f"module that registers it (register_decoder)")
    return DECODERS[name](outputs, meta)
