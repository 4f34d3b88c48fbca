"""Classification heads: linear, and the CosFace / ArcFace margin heads used for metric learning (as in
DocClassifier's lcnet050_cosface_96)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import CLS_HEADS


@CLS_HEADS.register(aliases=("linear",))
class LinearHead(nn.Module):
    config_injected = ("in_features", "num_classes")
    export_outputs = ("logits",)  # what an exported model returns, in order

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(self.dropout(features))}


class _MarginHead(nn.Module, ABC):
    """Projects features to an L2-normalised embedding and scores it by scaled cosine against class centres.

    With labels (training) the target class's cosine gets the margin; without labels the logits are the plain
    scaled cosines, so evaluation and export never see the margin.
    """

    config_injected = ("in_features", "num_classes")
    export_outputs = ("logits", "embedding")

    def __init__(self, in_features: int, num_classes: int, embedding_size: int = 128, scale: float = 30.0,
                 margin: float = 0.35) -> None:
        super().__init__()
        self.neck = nn.Sequential(nn.Linear(in_features, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))
        self.centres = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.centres)
        self.scale, self.margin = scale, margin

    @abstractmethod
    def apply_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each subclass is one margin formula applied to the target class's cosine."""

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        embedding = F.normalize(self.neck(features), dim=1)
        cosine = embedding @ F.normalize(self.centres, dim=1).t()
        if labels is not None and self.training:
            cosine = self.apply_margin(cosine.float(), labels)
        return {"logits": cosine * self.scale, "embedding": embedding}


@CLS_HEADS.register(aliases=("cosface",))
class CosFaceHead(_MarginHead):
    """Large-margin cosine loss (CosFace): cos(θ_y) − m."""

    def apply_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cosine - self.margin * F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)


@CLS_HEADS.register(aliases=("arcface",))
class ArcFaceHead(_MarginHead):
    """Additive angular margin (ArcFace): cos(θ_y + m), with the usual fallback where θ_y + m passes π."""

    def __init__(self, in_features: int, num_classes: int, embedding_size: int = 128, scale: float = 30.0,
                 margin: float = 0.5) -> None:
        super().__init__(in_features, num_classes, embedding_size, scale, margin)

    def apply_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        threshold, fallback = math.cos(math.pi - self.margin), math.sin(math.pi - self.margin) * self.margin
        sine = torch.sqrt((1.0 - cosine.pow(2)).clamp(1e-7, 1.0))
        phi = cosine * cos_m - sine * sin_m
        phi = torch.where(cosine > threshold, phi, cosine - fallback)
        one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return one_hot * phi + (1.0 - one_hot) * cosine
