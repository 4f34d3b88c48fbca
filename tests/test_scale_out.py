"""Scale-out, run as users run it: tools/dist_train.sh and dist_test.sh (torchrun, 2 CPU processes on gloo), a busy
port, a rank that fails, SLURM pre-emption (SIGUSR1 / SIGTERM sent to a real training process, a fake `scontrol` on
PATH), and the container entrypoint (as root, without Docker).

Every process a test starts carries OCRFORGE_TEST_TAG in its environment, so what is left running afterwards --
a rank orphaned by a failure -- is found in /proc whoever started it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import QUIET, REPO, tiny_cls_config
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ocrforge.engine.callbacks import EndLaunchedRanksOnFailure

pytestmark = pytest.mark.slow  # launchers, several processes, signals

TOOLS = REPO / "tools"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"

# A tiny classifier plugin (loaded by every rank through --plugins) that records, per process, the hashes of the
# training batches it saw and, at exit, its parameters: the per-rank view a Lightning checkpoint (rank 0 only)
# cannot give.
RANK_PLUGIN = '''
import atexit
import hashlib
import os

import torch
from torch import nn

RANK = os.environ["RANK"]


class RankRecordingNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)
        self.seen: list[str] = []
        self.initial = {k: v.detach().clone() for k, v in self.named_parameters()}
        if os.environ.get("RANK_DUMP_DIR"):
            atexit.register(self._dump)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        if self.training:
            self.seen.append(hashlib.sha1(images.detach().cpu().numpy().tobytes()).hexdigest())
        return {"logits": self.fc(self.features(images))}

    def _dump(self) -> None:
        final = {k: v.detach().clone() for k, v in self.named_parameters()}
        torch.save({"initial": self.initial, "final": final, "seen": self.seen},
                   os.path.join(os.environ["RANK_DUMP_DIR"], f"rank{RANK}.pt"))
'''


def _plugin_config(tmp_path: Path, **sections) -> Path:
    """The tiny config training RankRecordingNet (in ``tmp_path/plugins``) instead of the built-in classifier."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "rank_recording.py").write_text(RANK_PLUGIN)
    path = tiny_cls_config(tmp_path, **QUIET, **sections)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"] = {"type": "RankRecordingNet"}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _env(tag: str, **extra: str) -> dict[str, str]:
    """This environment less what would make a run distributed or SLURM-managed already, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in (
               "OCRFORGE_RUN_DIR", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
               "MASTER_PORT", "NODE_RANK", "GROUP_RANK")}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable, "OCRFORGE_TEST_TAG": tag, **extra}


def _tagged(tag: str) -> list[int]:
    """Live processes started under ``tag`` (a zombie's environment is unreadable, and it runs nothing)."""
    marker = f"OCRFORGE_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _assert_none_left(tag: str) -> None:
    deadline = time.monotonic() + 10  # a SIGKILLed rank may take a moment to be gone
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _tagged(tag)
    for pid in left:  # don't let a failure here leave them running for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


def _run(cmd: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:  # the launcher is killed; what it started would stay
        _assert_none_left(env["OCRFORGE_TEST_TAG"])
        raise


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 2-process CPU training through tools/dist_train.sh: 48 samples, 24 per rank in batches of 16, 2 epochs
    (4 optimiser steps), a validation after each epoch."""
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "dumps").mkdir()
    cfg = _plugin_config(tmp, train={"max_epochs": 2, "progress_bar": False})
    tag = uuid.uuid4().hex
    done = _run([str(TOOLS / "dist_train.sh"), str(cfg), "2", "--plugins", str(tmp / "plugins")],
                _env(tag, PORT=str(_free_port()), RANK_DUMP_DIR=str(tmp / "dumps")))
    _assert_none_left(tag)
    return {"tmp": tmp, "cfg": cfg, "done": done}


def test_dist_train_two_cpu_ranks_share_one_run_folder_and_identical_weights(dist_run: dict) -> None:
    done, tmp = dist_run["done"], dist_run["tmp"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "distributed_backend=gloo" in done.stdout + done.stderr  # no GPU: CPU processes
    (run,) = (tmp / "work_dirs" / "tests").iterdir()  # no folder of rank 1's own, not even an empty one
    # Both ranks name rank 0's folder. Searched anywhere in the output: the two processes share one pipe, and one's
    # text can land on a line the other left open.
    assert re.findall(r"run folder: (\S+)", done.stdout) == [str(run)] * 2
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 4

    ranks = [torch.load(tmp / "dumps" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    # each trained on a shard of its own (4 different batches between them) ...
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 4 and not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for name, value in ranks[0]["final"].items():
        assert not torch.equal(value, ranks[0]["initial"][name]), name  # ... the weights moved ...
        assert torch.equal(value, ranks[1]["final"][name]), name  # ... in step on both ranks, bit for bit
        assert torch.equal(value, checkpoint["state_dict"][f"model.{name}"]), name  # and are what was saved
    # (BatchNorm running statistics are per rank between steps: DDP broadcasts rank 0's at each forward)


def test_dist_test_evaluates_the_checkpoint_on_two_processes(dist_run: dict) -> None:
    tmp = dist_run["tmp"]
    (last,) = (tmp / "work_dirs" / "tests").glob("tiny_*/checkpoints/last.ckpt")
    tag = uuid.uuid4().hex
    done = _run([str(TOOLS / "dist_test.sh"), str(dist_run["cfg"]), str(last), "2"],
                _env(tag, PORT=str(_free_port())))
    _assert_none_left(tag)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    results = [json.loads(p.read_text()) for p in (tmp / "work_dirs" / "tests").glob("tiny_test_*/metrics.json")]
    assert results and all(r["checkpoint"] == str(last) for r in results)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_dist_train_on_a_busy_port_says_so_in_one_line_and_starts_nothing(tmp_path: Path, busy_port: int) -> None:
    tag = uuid.uuid4().hex
    done = _run([str(TOOLS / "dist_train.sh"), str(tiny_cls_config(tmp_path, **QUIET)), "2"],
                _env(tag, PORT=str(busy_port)), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"tools/dist_train.sh: error: PORT {busy_port} cannot be listened on here (Address already in use; another "
        f"training run?). Choose a free port, the same on every node, e.g. PORT={busy_port + 1} "
        "tools/dist_train.sh ...")
    assert not (tmp_path / "work_dirs").exists()
    _assert_none_left(tag)


def test_devices_2_on_a_busy_master_port_is_a_clear_error_before_rank_1_starts(tmp_path: Path,
                                                                               busy_port: int) -> None:
    """Lightning's own launcher (one command, --devices 2): rank 0 would fail to listen after starting rank 1,
    which then waited 20+ minutes for it."""
    tag = uuid.uuid4().hex
    cfg = tiny_cls_config(tmp_path, train={"accelerator": "cpu", "strategy": "ddp", "progress_bar": False}, **QUIET)
    done = _run([sys.executable, "-m", "ocrforge.cli", "train", str(cfg), "--devices", "2"],
                _env(tag, MASTER_PORT=str(busy_port)), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"ocrforge train: error: port {busy_port} (MASTER_PORT) is already in use" in done.stderr
    assert f"set MASTER_PORT to a free port, e.g. MASTER_PORT={busy_port + 1}" in done.stderr
    assert "Traceback" not in done.stderr
    _assert_none_left(tag)


def test_a_failing_rank_ends_the_others(tmp_path: Path) -> None:
    """Rank 1 fails as its interpreter starts (sitecustomize); rank 0, left alone, would go on to wait for it at
    the rendezvous: torchrun ends it."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        'import os, sys\nif os.environ.get("RANK") == "1":\n    sys.exit("rank 1 fails on purpose")\n')
    tag = uuid.uuid4().hex
    started = time.monotonic()
    done = _run([str(TOOLS / "dist_train.sh"), str(tiny_cls_config(tmp_path, **QUIET)), "2"],
                _env(tag, PORT=str(_free_port()), PYTHONPATH=str(tmp_path / "site")), timeout=180)
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr
    _assert_none_left(tag)
    assert time.monotonic() - started < 60  # ended, not timed out


def test_a_failing_launcher_rank_ends_the_ranks_it_started() -> None:
    """``--devices N``: rank 0 re-runs the command for the other ranks; failing (a port taken between its check
    and its bind, a device error) before they connect, it kills them -- they would wait for it 30 minutes. A stop
    by SIGTERM or Ctrl-C is passed on by Lightning instead (the ranks save and stop)."""
    killed: list[int] = []
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(kill=killed.append)))
    callback = EndLaunchedRanksOnFailure()
    for stop in (SIGTERMException(), KeyboardInterrupt()):
        callback.on_exception(trainer, None, stop)
    assert killed == []
    callback.on_exception(trainer, None, RuntimeError("EADDRINUSE"))
    assert killed == [signal.SIGKILL]


@pytest.mark.parametrize("script", ["slurm_train.sh", "slurm_test.sh"])
def test_slurm_scripts_start_one_task_per_gpu_under_srun(tmp_path: Path, script: str) -> None:
    """A fake `srun` records what the scripts ask for: GPUS tasks, GPUS_PER_NODE a node (fewer when GPUS is), the
    pre-emption signal for training, a failing task ending the rest, SRUN_ARGS split, `ocrforge ... --launcher
    slurm`."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path / "srun_args"}"\n')
    (tmp_path / "bin" / "srun").chmod(0o755)
    positional = ["dev", "ocr", "cfg.yaml", *(["model.ckpt"] if script == "slurm_test.sh" else []), "work"]
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "GPUS": "2",
           "CPUS_PER_TASK": "3", "SRUN_ARGS": "--time=1:00:00 --qos=high", "PYTHON": "python3"}
    done = subprocess.run([str(TOOLS / script), *positional, "-o", "seed=1"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    command = ["train", "cfg.yaml"] if script == "slurm_train.sh" else ["test", "cfg.yaml", "model.ckpt"]
    assert (tmp_path / "srun_args").read_text().splitlines() == [
        "-p", "dev", "--job-name=ocr", "--gres=gpu:2", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=3",
        "--kill-on-bad-exit=1", *(["--signal=USR1@90"] if script == "slurm_train.sh" else []), "--time=1:00:00",
        "--qos=high", "python3", "-u", "-m", "ocrforge.cli", *command, "--work-dir", "work", "--launcher", "slurm",
        "-o", "seed=1"]


# --- pre-emption --------------------------------------------------------------------------------------------------
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ocr", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
         "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
         "SLURM_NODELIST": "localhost"}


def _fake_scontrol(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose `scontrol` records its arguments in the returned file."""
    (tmp_path / "bin").mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    scontrol.chmod(0o755)
    return f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", calls


def _last_written(cfg: Path) -> int | None:
    """When the run of ``cfg`` last wrote its last.ckpt (None: not yet)."""
    found = list((cfg.parent / "work_dirs" / "tests").glob("*/checkpoints/last.ckpt"))
    return found[0].stat().st_mtime_ns if found else None


def _train_until_signalled(cfg: Path, env: dict[str, str], signum: int, *args: str) -> tuple[int, str, Path]:
    """Start `ocrforge train`, send ``signum`` once it has written a checkpoint (training is under way), and
    return its exit code, its output and its run folder."""
    log = cfg.parent / f"train_{uuid.uuid4().hex[:6]}.log"
    before = _last_written(cfg)  # a resumed run: the checkpoint it starts from
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ocrforge.cli", "train", str(cfg), *args], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            deadline = time.monotonic() + 180
            while _last_written(cfg) in (None, before):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            process.send_signal(signum)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    (run,) = (cfg.parent / "work_dirs" / "tests").iterdir()
    return code, log.read_text(), run


def _long_run(tmp_path: Path) -> Path:
    """Far more steps than a test waits for; last.ckpt every 2 steps (the sign that training is under way)."""
    train = {"max_epochs": None, "max_steps": 10_000, "limit_val_batches": 0, "progress_bar": False}
    return tiny_cls_config(tmp_path, train=train, checkpoint={"every_n_steps": 2}, **QUIET)


def _step(checkpoint: str | Path) -> int:
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])


def test_sigusr1_under_slurm_saves_and_requeues_and_the_requeued_job_resumes(tmp_path: Path) -> None:
    """SIGUSR1 (SLURM's warning before the time limit) to a real CPU run under SLURM: it saves, requeues and exits
    0; SLURM then runs the same command again, which resumes that run -- and SIGTERM does the same to it."""
    path, calls = _fake_scontrol(tmp_path)
    cfg, tag = _long_run(tmp_path), uuid.uuid4().hex
    env = _env(tag, PATH=path, MASTER_PORT=str(_free_port()), **SLURM)
    code, output, run = _train_until_signalled(cfg, env, signal.SIGUSR1, "--launcher", "slurm")
    assert code == 0, output
    assert calls.read_text() == "requeue 4242\n"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGUSR1" and status["requeued"] is True
    assert status["slurm_job_id"] == "4242"
    stopped_at = _step(status["resume_from"])
    assert stopped_at == status["global_step"] >= 2

    code, output, again = _train_until_signalled(cfg, {**env, "SLURM_RESTART_COUNT": "1"}, signal.SIGTERM,
                                                 "--launcher", "slurm")
    assert code == 0, output
    assert f"resuming {status['resume_from']}" in output and again == run  # the same run, continued
    assert calls.read_text() == "requeue 4242\n" * 2
    status = json.loads((run / "status.json").read_text())
    assert (status["signal"], status["requeued"], status["slurm_job_id"]) == ("SIGTERM", True, "4242")
    assert _step(status["resume_from"]) == status["global_step"] > stopped_at
    _assert_none_left(tag)


def test_sigterm_outside_slurm_saves_and_exits_0_without_requeue(tmp_path: Path) -> None:
    path, calls = _fake_scontrol(tmp_path)
    cfg, tag = _long_run(tmp_path), uuid.uuid4().hex
    code, output, run = _train_until_signalled(cfg, _env(tag, PATH=path), signal.SIGTERM)
    assert code == 0, output
    assert "SIGTERM: saved" in output
    assert not calls.exists()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert "slurm_job_id" not in status and "requeued" not in status
    assert _step(status["resume_from"]) == status["global_step"] >= 2
    _assert_none_left(tag)


# --- container entrypoint -----------------------------------------------------------------------------------------
def _unused_id(taken: Callable[[int], object]) -> int:
    for candidate in range(47000, 48000):
        try:
            taken(candidate)
        except KeyError:
            return candidate
    raise AssertionError("no free id")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="the entrypoint switches user: needs root")
@pytest.mark.skipif(not (shutil.which("useradd") and shutil.which("groupadd")), reason="no useradd / groupadd")
@pytest.mark.skipif(not (shutil.which("gosu") or shutil.which("setpriv")), reason="neither gosu nor setpriv")
def test_entrypoint_runs_the_command_as_the_host_user() -> None:
    """As in `docker run -e USER_ID=$(id -u) -e GROUP_ID=$(id -g)`: what the command writes belongs to that user.
    The user is created on this machine for the test and removed afterwards; a second start reuses it."""
    uid, gid = _unused_id(pwd.getpwuid), _unused_id(grp.getgrgid)
    shared = Path(tempfile.mkdtemp(prefix="ocrforge-entrypoint-"))  # outside pytest's root-only tmp folders
    shared.chmod(0o777)
    script = 'id -u > "$0/uid"; id -g > "$0/gid"; echo "$HOME" > "$0/home"; touch "$0/written" "$HOME/.cache-probe"'
    env = {"PATH": os.environ["PATH"], "USER_ID": str(uid), "GROUP_ID": str(gid)}
    try:
        for _ in range(2):  # the second start finds the user and group that the first created
            done = subprocess.run([str(ENTRYPOINT), "sh", "-c", script, str(shared)], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert (shared / "uid").read_text().split() == [str(uid)]
            assert (shared / "gid").read_text().split() == [str(gid)]
            written, home = (shared / "written").stat(), Path((shared / "home").read_text().strip())
            assert (written.st_uid, written.st_gid) == (uid, gid)
            assert home.stat().st_uid == uid and (home / ".cache-probe").stat().st_uid == uid
            (shared / "written").unlink()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        try:
            user = pwd.getpwuid(uid)
            subprocess.run(["userdel", user.pw_name], check=False, capture_output=True)
            shutil.rmtree(user.pw_dir, ignore_errors=True)
        except KeyError:
            pass
        try:
            subprocess.run(["groupdel", grp.getgrgid(gid).gr_name], check=False, capture_output=True)
        except KeyError:
            pass
