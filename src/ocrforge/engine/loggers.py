"""Loggers from the config (TensorBoard, CSV, W&B, MLflow); a resumed run continues its own logs as one curve."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig


def build_loggers(cfg: DictConfig, run_dir: Path, resume_step: int | None = None) -> list[Any]:
    """The configured loggers; a resumed run (``resume_step``: the checkpoint's step) continues the run's newest
    TensorBoard and CSV logs rather than starting new versions, dropping what was logged after that step."""
    from lightning.pytorch import loggers

    log_cfg = cfg.logging
    out: list[Any] = []
    if log_cfg.tensorboard:
        # Lightning logs optimiser step s as step s - 1, so the resumed session logs from ``resume_step`` on; with
        # purge_step TensorBoard hides what a killed session wrote from there.
        resumed = {} if resume_step is None else {"version": _newest_version(run_dir / "tensorboard"),
                                                  "purge_step": resume_step}
        out.append(loggers.TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False,
                                             **resumed))
    if log_cfg.csv:
        if resume_step is None:
            out.append(loggers.CSVLogger(save_dir=str(run_dir), name="csv"))
        else:
            out.append(ContinuedCSVLogger(save_dir=str(run_dir), name="csv", version=_newest_version(run_dir / "csv"),
                                          keep_before_step=resume_step))
    if log_cfg.wandb.enabled:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise RuntimeError("logging.wandb.enabled needs the wandb package: pip install 'ocrforge[wandb]'") from None
        out.append(loggers.WandbLogger(save_dir=str(run_dir), project=log_cfg.wandb.project or cfg.project,
                                       name=run_dir.name, offline=log_cfg.wandb.offline))
    if log_cfg.mlflow.enabled:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise RuntimeError("logging.mlflow.enabled needs the mlflow package: "
                               "pip install 'ocrforge[mlflow]'") from None
        uri = log_cfg.mlflow.tracking_uri or (run_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked; a local, serverless store is what this option is for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(loggers.MLFlowLogger(experiment_name=log_cfg.mlflow.experiment or cfg.project,
                                        run_name=run_dir.name, tracking_uri=uri))
    return out


def _newest_version(folder: Path) -> int | None:
    """``version_N`` with the largest N under ``folder``; None (the logger's own choice) when there is none."""
    found = [int(p.name.removeprefix("version_")) for p in folder.glob("version_*")
             if p.name.removeprefix("version_").isdigit()]
    return max(found) if found else None


class _ContinuedWriter(ExperimentWriter):
    """Appends to an existing ``metrics.csv``: its rows before ``keep_before_step`` stay, later ones (logged by a
    session killed after its last checkpoint, trained again now) go, and its columns are kept."""

    def __init__(self, log_dir: str, keep_before_step: int) -> None:
        super().__init__(log_dir=log_dir)
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            keys, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if not row.get("step") or float(row["step"]) < keep_before_step]
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = keys

    def _check_log_dir_exists(self) -> None:
        """Continuing the folder is the point: no warning that its files will be replaced."""


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing on into a run's existing ``version_N/metrics.csv`` (see _ContinuedWriter)."""

    def __init__(self, *args: Any, keep_before_step: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_before_step = keep_before_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self._keep_before_step)
        return self._experiment
