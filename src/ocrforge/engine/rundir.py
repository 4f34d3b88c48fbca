"""Run folders: ``<work_dir>/<project>/<exp_name>_<YYYY-MM-DD_HH-MM-SS>/``, never overwritten, with provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# Set by the launching process so that DDP workers started by Lightning (which re-run the command) share its folder.
RUN_DIR_ENV = "OCRFORGE_RUN_DIR"
# The name a rank of a torchrun / srun run holds until it learns rank 0's folder (see new_run_dir); never created.
AWAITING_RANK_ZERO = "awaiting-rank-0"
_PACKAGES = ("ocrforge", "torch", "torchvision", "lightning", "timm", "torchmetrics", "numpy", "opencv-python-headless",
             "pillow", "omegaconf", "onnx", "onnxruntime")


def new_run_dir(work_dir: str | Path, project: str, exp_name: str, suffix: str = "", *,
                create: bool = True) -> Path:
    """Create a fresh run folder; a second run in the same second gets ``-1``, ``-2`` … rather than sharing one.

    ``create=False`` is for the ranks other than 0 of a run that torchrun or srun started (each rank its own
    process, so no folder can be handed down as Lightning's launcher does through ``RUN_DIR_ENV``). Only rank 0
    chooses the folder, and the others cannot know it before the process group exists: they get a stand-in that
    nobody creates, and take rank 0's folder by broadcast once the trainer has connected the ranks (as Lightning's
    ModelCheckpoint does with its dirpath). Not a name derived on each rank from a value they share: the name holds
    rank 0's clock and a ``-1`` suffix that depends on what the file system held when it looked, which no launcher
    variable carries to the other ranks (or nodes), and a broadcast works the same under torchrun, srun or mpirun.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        path = Path(inherited)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not create:
        return Path(work_dir) / project / f"{exp_name}{suffix}_{AWAITING_RANK_ZERO}"
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    base = Path(work_dir) / project / f"{exp_name}{suffix}_{stamp}"
    path, n = base, 0
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    return path


def find_latest_checkpoint(work_dir: str | Path, project: str, exp_name: str) -> Path | None:
    """The most recently written ``last.ckpt`` of this experiment's runs (``<work_dir>/<project>/<exp_name>_*``)."""
    found = [p for p in (Path(work_dir) / project).glob(f"{exp_name}_*/checkpoints/last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def slurm_job_id() -> str | None:
    """This SLURM job's id as ``scontrol`` takes it (``<array job>_<task>`` for an array task); None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def requeued_checkpoint(work_dir: str | Path, project: str, exp_name: str) -> Path | None:
    """The checkpoint a requeued SLURM job continues from, or None if this is no requeued job's restart.

    A requeued job runs its command again (``SLURM_RESTART_COUNT`` counts the restarts) under the same job id. The
    start it interrupted wrote the job id and the ``last.ckpt`` to resume into its run folder's ``status.json``; the
    newest such folder of this experiment is the one to continue -- never another job's run, which ``--resume``'s
    newest ``last.ckpt`` could be.
    """
    job = slurm_job_id()
    if job is None or not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
        return None
    found = []
    for status in (Path(work_dir) / project).glob(f"{exp_name}_*/status.json"):
        try:
            data = json.loads(status.read_text())
        except (OSError, ValueError):  # not ours, or unreadable: it names no job
            continue
        if data.get("slurm_job_id") == job and data.get("resume_from") and Path(data["resume_from"]).is_file():
            found.append((status.stat().st_mtime, Path(data["resume_from"])))
    return max(found)[1] if found else None


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint lives in (``<run>/checkpoints/x.ckpt``), if it is one of ours."""
    candidate = ckpt.resolve().parent.parent
    return candidate if (candidate / "config.yaml").is_file() else None


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:  # Linux names the model in /proc/cpuinfo; elsewhere platform's answer is all there is
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_info() -> dict[str, Any]:
    import torch

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": devices,
        "packages": versions,
        "git_commit": _git_commit(),
        "command": sys.argv,
        "started": datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename) so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
