"""The typed schema every config is validated against.

Sections that a registry builds (``model``, ``loss``, datasets, ``optimizer``, ``scheduler``) are checked against the
constructor signature of the registered ``type``; the rest is described by the dataclasses below. The ``data`` section
belongs to the task: each task class names its own dataclass in ``data_schema``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def registry_node(registry: str, default_type: str | None = None, extra: type | None = None,
                  injected: tuple[str, ...] = ()) -> Any:
    """A field whose value is ``{type: NAME, **kwargs}`` built by ``registry``.

    ``extra`` names a dataclass with keys accepted beside the constructor's (e.g. DataLoader settings);
    ``injected`` names constructor arguments the engine passes itself, which a config must not set.
    """
    default = {"type": default_type} if default_type else None
    return field(
        default_factory=(lambda: dict(default)) if default else (lambda: None),
        metadata={"registry": registry, "extra": extra, "injected": injected},
    )


@dataclass
class LoaderSchema:
    """DataLoader settings that sit beside a dataset's own keys in ``data.train`` / ``data.val`` / ``data.test``."""

    batch_size: int = 32
    num_workers: int = 2
    shuffle: bool | None = None
    drop_last: bool = False
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int | None = None
    # Training batches of similar label length, each padded only to its widest crop (recognition with label files
    # or LMDB, whose labels are known before loading).
    bucket_by_length: bool = False
    # Per-split augmentation pipeline: a list of {type: ..., **kwargs} from the transform registry.
    transforms: list[dict[str, Any]] = field(default_factory=list, metadata={"registry_list": "transform"})


@dataclass
class TrainSchema:
    max_epochs: int | None = 10
    max_steps: int = -1
    max_time: str | None = None  # "DD:HH:MM:SS": stop (saving last.ckpt) when the wall-clock budget is spent
    # auto: bf16 autocast on a GPU that has bf16, fp32 elsewhere. Or Lightning's names: 32 | 32-true | bf16-mixed |
    # 16-mixed | bf16-true | 16-true | 64 (ints are accepted).
    precision: Literal["auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64", "64-true",
                       32, 16, 64] = "auto"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"
    val_check_interval: float = 1.0  # <= 1: a fraction of each epoch; > 1: every that many training batches
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 20
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    # Stop (and say so) after this many consecutive non-finite losses; single ones are skipped, not trained on.
    max_nonfinite_steps: int = 20
    progress_bar: bool = True
    # Convolutions in NHWC memory layout (faster under bf16/fp16 on tensor-core GPUs: DBNet-R18 1.8x on an H200).
    channels_last: bool = False
    # torch.compile the model's forward for training (checkpoint keys unchanged); the first steps compile.
    compile: bool = False
    # Keep BatchNorm layers in eval mode while training (frozen running statistics, MMDetection's norm_eval): for
    # fine-tuning imported deploy-form models at small batches, whose batch statistics are far from the stored ones.
    norm_eval: bool = False
    # Lightning's profiler: simple (time per hook, data waiting included, printed at the end) | advanced | pytorch.
    profiler: Literal["simple", "advanced", "pytorch"] | None = None


@dataclass
class EmaSchema:
    enabled: bool = False
    decay: float = 0.999
    # Ramp the decay up from 0 in the first steps so early EMA weights are not stuck at initialisation.
    warmup: bool = True


@dataclass
class CheckpointSchema:
    monitor: str | None = None
    mode: str = "max"
    save_top_k: int = 3
    save_last: bool = True
    every_n_epochs: int = 1


@dataclass
class WandbSchema:
    enabled: bool = False
    project: str | None = None
    offline: bool = True


@dataclass
class MlflowSchema:
    enabled: bool = False
    tracking_uri: str | None = None
    experiment: str | None = None


@dataclass
class LoggingSchema:
    tensorboard: bool = True
    csv: bool = True
    wandb: WandbSchema = field(default_factory=WandbSchema)
    mlflow: MlflowSchema = field(default_factory=MlflowSchema)


@dataclass
class OnnxSchema:
    opset: int = 17
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    dynamic_axes: dict[str, Any] | None = None
    # [N, C, H, W] of the example input; the task derives it from the data section when left empty.
    input_shape: list[int] | None = None
    tolerance: float = 1e-4
    dynamo: bool = False


@dataclass
class ExportSchema:
    onnx: OnnxSchema = field(default_factory=OnnxSchema)


@dataclass
class AutoScaleLrSchema:
    enabled: bool = False
    base_batch_size: int | None = None


@dataclass
class RootSchema:
    task: str = "cls"
    project: str = "default"
    exp_name: str = "exp"
    work_dir: str = "work_dirs"
    seed: int = 42
    deterministic: bool = False
    custom_imports: list[str] = field(default_factory=list)
    model: dict[str, Any] = registry_node("model")
    loss: dict[str, Any] = registry_node("loss")
    data: dict[str, Any] = field(default_factory=dict)  # validated by the task's data_schema
    optimizer: dict[str, Any] = registry_node("optimizer", "adamw", injected=("params",))
    scheduler: dict[str, Any] = registry_node("scheduler", "cosine",
                                             injected=("optimizer", "total_steps", "steps_per_epoch"))
    train: TrainSchema = field(default_factory=TrainSchema)
    ema: EmaSchema = field(default_factory=EmaSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    logging: LoggingSchema = field(default_factory=LoggingSchema)
    export: ExportSchema = field(default_factory=ExportSchema)
    auto_scale_lr: AutoScaleLrSchema = field(default_factory=AutoScaleLrSchema)
    load_from: str | None = None


LOADER_KEYS = frozenset(f.name for f in dataclasses.fields(LoaderSchema))


def split_data_spec(spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.<split>`` -> (dataset spec with ``type``, DataLoader settings with schema defaults filled in)."""
    spec = dict(spec)
    loader = {k: spec.pop(k) for k in list(spec) if k in LOADER_KEYS}
    return spec, {**dataclasses.asdict(LoaderSchema()), **loader}
