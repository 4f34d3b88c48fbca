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
_PACKAGES = ("ocrforge", "torch", "torchvision", "lightning", "timm", "torchmetrics", "numpy", "opencv-python-headless",
             "pillow", "omegaconf", "onnx", "onnxruntime")


def new_run_dir(work_dir: str | Path, project: str, exp_name: str, suffix: str = "") -> Path:
    """Create a fresh run folder; a second run in the same second gets ``-1``, ``-2`` … rather than sharing one."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        path = Path(inherited)
        path.mkdir(parents=True, exist_ok=True)
        return path
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
