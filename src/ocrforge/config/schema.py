"""The typed schema every config is validated against.

Sections that a registry builds (``model``, ``loss``, datasets, ``optimizer``, ``scheduler``) are checked against the
constructor signature of the registered ``type``; the rest is described by the dataclasses below. The ``data`` section
belongs to the task: each task class names its own dataclass in ``data_schema``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# A value check: None when the value is fine, else what is wrong with it ("must be at least 1, got 0"). Checks run
# at validation time, after the type check, so that a bad value is a ConfigError naming file and key instead of a
# torch or Lightning traceback once training starts.
Check = Callable[[Any], "str | None"]


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        ok = value is None or (math.isfinite(value) and value >= low)
        return None if ok else f"must be at least {low}, got {value}"

    return check


def above(low: float) -> Check:
    def check(value: Any) -> str | None:
        ok = value is None or (math.isfinite(value) and value > low)
        return None if ok else f"must be a finite number above {low}, got {value}"

    return check


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        ok = value is None or (math.isfinite(value) and low <= value <= high)
        return None if ok else f"must be between {low} and {high}, got {value}"

    return check


def fraction_or_count(zero_ok: bool) -> Check:
    """A fraction of an epoch up to 1, or a whole number of batches above 1 (Lightning's ``val_check_interval`` and
    ``limit_*_batches``); 0 only where ``zero_ok`` (a limit of 0 batches turns that loop off)."""

    def check(value: Any) -> str | None:
        if not (math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
            return (f"must be {'at least' if zero_ok else 'above'} 0 (a fraction of an epoch up to 1, or a number "
                    f"of batches), got {value}")
        if value > 1 and value != int(value):
            return f"above 1 it is a number of batches and must be a whole number, got {value}"
        return None

    return check


def checked(default: Any, check: Check) -> Any:
    """A plain field whose value must also pass ``check``."""
    return field(default=default, metadata={"check": check})


def _height_width(value: Any) -> str | None:
    if len(value) != 2 or not all(v >= 1 for v in value):
        return f"must be [height, width], two positive integers, got {value}"
    return None


def image_size_field(default: list[int]) -> Any:
    """``data.image_size`` of every task: [H, W] (a wrong length failed only in the sanity check, IndexError)."""
    return field(default_factory=lambda: list(default), metadata={"check": _height_width})


def registry_node(registry: str, default_type: str | None = None, extra: type | None = None,
                  injected: tuple[str, ...] = (), checks: Mapping[str, Check] | None = None,
                  supplied: tuple[str, ...] = ()) -> Any:
    """A field whose value is ``{type: NAME, **kwargs}`` built by ``registry``: a registry's name ("optimizer"), or a
    kind whose registry is the config's task's ("model", "loss", "dataset": the cls, rec or det one).

    ``extra`` names a dataclass with keys accepted beside the constructor's (e.g. DataLoader settings);
    ``injected`` names constructor arguments the engine passes itself, which a config must not set; ``supplied``
    names arguments a task passes too, which a config may still set (to the same value: a plugin model's
    ``num_classes``) but need not; ``checks`` apply to constructor arguments of that name, whichever type is
    registered (e.g. every optimizer's ``lr``).
    """
    default = {"type": default_type} if default_type else None
    return field(
        default_factory=(lambda: dict(default)) if default else (lambda: None),
        metadata={"registry": registry, "extra": extra, "injected": injected, "checks": dict(checks or {}),
                  "supplied": supplied},
    )


@dataclass
class LoaderSchema:
    """DataLoader settings that sit beside a dataset's own keys in ``data.train`` / ``data.val`` / ``data.test``."""

    batch_size: int = checked(32, at_least(1))
    num_workers: int = checked(2, at_least(0))
    shuffle: bool | None = None
    drop_last: bool = False
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int | None = checked(None, at_least(1))
    # Training batches of similar label length, each padded only to its widest crop (recognition with label files
    # or LMDB, whose labels are known before loading).
    bucket_by_length: bool = False
    # Per-split augmentation pipeline: a list of {type: ..., **kwargs} from the transform registry.
    transforms: list[dict[str, Any]] = field(default_factory=list, metadata={"registry_list": "transform"})


def _weights_source(value: Any) -> str | None:
    if value is None or Path(value).is_file():
        return None
    from .ppocr_zoo import ZOO, lookup

    if lookup(value) is not None:
        return None
    return (f"no such file: {value} (a .pth state dict, an ocrforge .ckpt, or a PP-OCR model name: "
            f"{', '.join(ZOO)})")


@dataclass
class ModelWeightsSchema:
    """Keys of the ``model`` section that ocrforge reads itself, beside the model constructor's."""

    # Weights loaded into the whole model as soon as it is built (``ocrforge.build_model``, training): a .pth state
    # dict, an ocrforge .ckpt or a PP-OCR model name, with a loaded/missing/shape-mismatched report. A boolean
    # ``pretrained`` stays the model's own argument (the Classifier's timm ImageNet weights).
    pretrained: str | None = checked(None, _weights_source)


def model_spec(model: Mapping) -> dict[str, Any]:
    """The ``model`` section as constructor arguments: a weights ``pretrained`` is ocrforge's, not the model's."""
    spec = dict(model)
    if not isinstance(spec.get("pretrained"), bool):
        spec.pop("pretrained", None)
    return spec


def pretrained_weights(model: Mapping) -> str | None:
    """``model.pretrained`` when it names weights to load (see ``ModelWeightsSchema``), else None."""
    value = model.get("pretrained")
    return value if isinstance(value, str) else None


@dataclass
class TrainSchema:
    max_epochs: int | None = checked(10, at_least(-1))  # None or -1: no epoch limit
    max_steps: int = checked(-1, at_least(-1))
    max_time: str | None = None  # "DD:HH:MM:SS": stop (saving last.ckpt) when the wall-clock budget is spent
    # auto: bf16 autocast on a GPU that has bf16, fp32 elsewhere. Or Lightning's names: 32 | 32-true | bf16-mixed |
    # 16-mixed | bf16-true | 16-true | 64 (ints are accepted).
    precision: Literal["auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64", "64-true",
                       32, 16, 64] = "auto"
    accumulate_grad_batches: int = checked(1, at_least(1))
    gradient_clip_val: float | None = checked(None, at_least(0))
    gradient_clip_algorithm: str = "norm"
    # <= 1: a fraction of each epoch; > 1: every that many training batches (at most an epoch's: checked by train())
    val_check_interval: float = checked(1.0, fraction_or_count(zero_ok=False))
    check_val_every_n_epoch: int = checked(1, at_least(1))
    log_every_n_steps: int = checked(20, at_least(1))
    limit_train_batches: float = checked(1.0, fraction_or_count(zero_ok=True))
    limit_val_batches: float = checked(1.0, fraction_or_count(zero_ok=True))
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = checked(1, at_least(1))
    strategy: str = "auto"
    # DDP on GPUs: BatchNorm statistics over the global batch instead of each process's own (small per-GPU batches,
    # e.g. detection). Ignored, with a warning, on CPU: torch's SyncBatchNorm runs on GPUs only.
    sync_batchnorm: bool = False
    # Stop (and say so) after this many consecutive non-finite losses; single ones are skipped, not trained on.
    max_nonfinite_steps: int = checked(20, at_least(0))
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
    decay: float = checked(0.999, between(0, 1))
    # Ramp the decay up from 0 in the first steps so early EMA weights are not stuck at initialisation.
    warmup: bool = True


@dataclass
class CheckpointSchema:
    monitor: str | None = None
    mode: str = "max"
    save_top_k: int = checked(3, at_least(-1))  # -1: keep every checkpoint
    save_last: bool = True
    every_n_epochs: int = checked(1, at_least(0))
    # last.ckpt is also written at every validation and at the end; these add writes in between (None: off).
    every_n_steps: int | None = checked(None, at_least(1))
    every_minutes: float | None = checked(None, above(0))


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


def _names(count: int | None = None) -> Check:
    """A list of distinct non-empty names, ``count`` of them when given (null: the task's own)."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if count is not None and len(value) != count:
            return f"takes {count} name{'s' * (count > 1)} (every task's model has one input), got {value}"
        if not value or not all(value) or len(set(value)) != len(value):
            return f"must be distinct non-empty names, got {value}"
        return None

    return check


def _dynamic_axes(value: Any) -> str | None:
    """torch.onnx's form: input/output name -> {axis index: axis name} or [axis indices]."""
    for name, axes in (value or {}).items():
        indices = list(axes) if isinstance(axes, (Mapping, list)) else None
        if indices is None or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
            return f"'{name}': expected {{axis index: name}} or [axis indices], got {axes!r}"
        if isinstance(axes, Mapping) and not all(isinstance(n, str) and n for n in axes.values()):
            return f"'{name}': axis names must be non-empty strings, got {axes!r}"
    return None


@dataclass
class OnnxSchema:
    # Checked against the installed onnx package when exporting (`ocrforge export --opset N`).
    opset: int = checked(17, at_least(7))
    input_names: list[str] | None = checked(None, _names(1))
    # Names of the graph's outputs, one per exported output (see ``outputs``); null: the task's own names.
    output_names: list[str] | None = checked(None, _names())
    # Which of the task's outputs the graph returns, in this order; null: all of them. [embedding]: the
    # L2-normalised embedding alone, for metric-learning classifiers (CosFaceHead / ArcFaceHead).
    outputs: list[str] | None = checked(None, _names())
    # Keyed by input/output name (the graph's, or the task's before renaming); null: the task's own axes.
    dynamic_axes: dict[str, Any] | None = checked(None, _dynamic_axes)
    # [N, C, H, W] of the example input; the task derives it from the data section when left empty.
    input_shape: list[int] | None = None
    tolerance: float = checked(1e-4, at_least(0))
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
    # Modules imported for their registrations (found on sys.path, in the working directory, the config's folder or
    # import_paths); like plugins, their undecorated nn.Module classes register under their class names.
    custom_imports: list[str] = field(default_factory=list)
    # Plugin folders (or .py files), relative to the config file; every module in them is imported and every
    # nn.Module subclass defined there registered by class name (--plugins DIR adds one). The effective config,
    # and so every checkpoint, records them as absolute paths: export, predict, test and ocr need no flag.
    plugins: list[str] = field(default_factory=list)
    # Extra folders searched for custom_imports; the effective config adds those they were found in.
    import_paths: list[str] = field(default_factory=list)
    # cls and rec pass num_classes (the class count, the charset size) to every model; a plugin model may take it.
    model: dict[str, Any] = registry_node("model", extra=ModelWeightsSchema, supplied=("num_classes",))
    loss: dict[str, Any] = registry_node("loss")
    data: dict[str, Any] = field(default_factory=dict)  # validated by the task's data_schema
    optimizer: dict[str, Any] = registry_node("optimizer", "AdamW", injected=("params",),
                                             checks={"lr": above(0), "weight_decay": at_least(0)})
    scheduler: dict[str, Any] = registry_node("scheduler", "CosineLR",
                                             injected=("optimizer", "total_steps", "steps_per_epoch"))
    train: TrainSchema = field(default_factory=TrainSchema)
    ema: EmaSchema = field(default_factory=EmaSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    logging: LoggingSchema = field(default_factory=LoggingSchema)
    export: ExportSchema = field(default_factory=ExportSchema)
    auto_scale_lr: AutoScaleLrSchema = field(default_factory=AutoScaleLrSchema)
    load_from: str | None = None
    # Accept a load_from file of which no tensor fits the model (otherwise an error: it would train from scratch).
    load_from_partial: bool = False


LOADER_KEYS = frozenset(f.name for f in dataclasses.fields(LoaderSchema))


def split_data_spec(spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.<split>`` -> (dataset spec with ``type``, DataLoader settings with schema defaults filled in)."""
    spec = dict(spec)
    loader = {k: spec.pop(k) for k in list(spec) if k in LOADER_KEYS}
    return spec, {**dataclasses.asdict(LoaderSchema()), **loader}
