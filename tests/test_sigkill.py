"""SIGKILL at random moments, resume after each: every resume starts, nothing written is lost, the end is exact.

Each training session is a real process running ``ocrforge train`` (the CLI's ``main``), killed with SIGKILL. The
sessions are forked from a multiprocessing fork server that has imported ocrforge once: an exec'd ``ocrforge`` spends
seconds importing torch and Lightning, which would make 20+ kills take many minutes on 2 cores. The server has run no
torch work (OpenMP thread pools do not survive a fork), unlike this pytest process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_same_training_state, tiny_cls_config

pytestmark = pytest.mark.slow  # 22 training sessions

KILLS = 21
FORK = multiprocessing.get_context("forkserver")


def _session(argv: list[str], log: str) -> None:
    from ocrforge.cli import main

    out = open(log, "w", buffering=1)  # line-buffered: a killed session's log still holds its last lines
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out  # pytest's capture objects were inherited
    for handler in logging.getLogger("lightning.pytorch").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(out)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out.flush()
    os._exit(code or 0)


def _start(cfg: Path, exp: str, resume: bool, log: Path) -> multiprocessing.Process:
    argv = ["train", str(cfg), "-o", f"exp_name={exp}"] + (["--resume"] if resume else [])
    process = FORK.Process(target=_session, args=(argv, str(log)))
    process.start()
    return process


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def _last(work: Path, exp: str) -> Path | None:
    found = sorted(work.glob(f"tests/{exp}_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _kill_when(process: multiprocessing.Process, work: Path, exp: str, mode: str, rng: random.Random) -> bool:
    """SIGKILL ``process`` at a moment chosen by ``mode``: after a random delay, while a checkpoint is being written
    or after a few checkpoints were written. Returns whether a write was under way when the kill came."""
    deadline = time.monotonic() + 20
    delay_until = time.monotonic() + rng.uniform(0.05, 2.0)
    # A write can be missed (the poll sleeps); then the kill comes at the delay's end after all.
    give_up = time.monotonic() + rng.uniform(2.0, 4.0)
    writes_wanted, seen_mtime, folder = rng.randint(1, 4), None, None
    stale_gone = False  # a .tmp the previous kill left is removed when this session starts: wait for a new one
    while process.is_alive() and time.monotonic() < deadline:
        if folder is None:
            folders = sorted(work.glob(f"tests/{exp}_*/checkpoints"), key=lambda p: p.stat().st_mtime)
            folder = folders[-1] if folders else None
        writing = folder is not None and (folder / "last.ckpt.tmp").exists()
        stale_gone = stale_gone or (folder is not None and not writing)
        if mode == "in_write" and writing and stale_gone:
            break
        if folder is not None and mode == "after_writes":
            try:
                mtime = (folder / "last.ckpt").stat().st_mtime_ns
            except FileNotFoundError:
                mtime = seen_mtime
            if mtime != seen_mtime:
                seen_mtime, writes_wanted = mtime, writes_wanted - 1
            if writes_wanted <= 0:
                break
        if (mode == "delay" and time.monotonic() >= delay_until) or time.monotonic() >= give_up:
            break
        time.sleep(0.0002)
    process.kill()
    process.join()
    return folder is not None and (folder / "last.ckpt.tmp").exists()


def test_sigkill_at_random_moments_then_resume_ends_exactly_as_an_uninterrupted_run(tmp_path: Path) -> None:
    FORK.set_forkserver_preload(["ocrforge.cli", "ocrforge.runners.train"])
    cfg = tiny_cls_config(tmp_path, ema={"enabled": True, "decay": 0.9}, checkpoint={"every_n_steps": 1},
                          train={"max_epochs": 12, "progress_bar": False},
                          logging={"tensorboard": False, "csv": False})
    work = tmp_path / "work_dirs"
    straight = _start(cfg, "straight", False, tmp_path / "straight.log")
    straight.join()
    assert straight.exitcode == 0, (tmp_path / "straight.log").read_text()[-2000:]
    expected = torch.load(_last(work, "straight"), weights_only=False)

    rng = random.Random(0)
    modes = ["delay", "in_write", "after_writes"]
    kills, in_write, previous = 0, 0, -1
    for life in range(KILLS + 10):
        if kills >= KILLS:
            break
        log = tmp_path / f"life{life}.log"
        before = _last(work, "killed")
        written = _step(before) if before is not None else -1
        process = _start(cfg, "killed", before is not None, log)
        was_writing = _kill_when(process, work, "killed", modes[life % 3], rng)
        if process.exitcode == 0:
            break  # finished before the kill came
        output = log.read_text() if log.exists() else ""  # killed before it opened its log
        assert process.exitcode == -9 and "Traceback" not in output, output[-2000:]
        kills, in_write = kills + 1, in_write + was_writing
        last = _last(work, "killed")
        if last is not None:
            step = _step(last)  # it loads: never truncated
            # Written every step: what survives is at most the step being trained (or saved) when the kill came.
            assert step >= max(written, previous), f"life {life}: last.ckpt went back to step {step}"
            previous = step
    assert kills >= KILLS and in_write >= 3, (kills, in_write)

    final = _start(cfg, "killed", True, tmp_path / "final.log")
    final.join()
    assert final.exitcode == 0, (tmp_path / "final.log").read_text()[-2000:]
    got = torch.load(_last(work, "killed"), weights_only=False)
    assert expected["global_step"] == 36
    assert_same_training_state(expected, got, "after the kills")
    # A kill during a run's very first write leaves that folder with a temp file and no checkpoint, and the next life
    # starts a fresh folder (nothing to resume): only the folder that trained to the end must hold no temp file.
    assert not list(_last(work, "killed").parent.glob("*.tmp"))
