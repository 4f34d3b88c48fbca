"""The recognition configs that read data/ run as shipped after the one data command their header documents.

Each test takes that command from the config's header, runs it through the CLI with ``data/`` moved into tmp_path
and a tiny N, then trains the shipped config for two steps with every ``data/`` path pointed at the same place
(and loader sizes overridden, so the shipped batch sizes and worker counts do not matter).
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_converters import _char_tree  # the seed-004 folder-per-character tree, broken rows included

from ocrforge.cli import main
from ocrforge.config import load_config

REC = REPO / "configs" / "rec"
pytestmark = pytest.mark.slow  # each test makes a data set and trains a shipped config on it


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch: pytest.MonkeyPatch):
    """Tiny batches: a second intra-op thread costs more than it saves (CRNN's LSTM ran 10x slower on 2 busy
    cores); an explicit OMP_NUM_THREADS keeps the trainer's tune_cpu_threads from raising the count again."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def data_command(config: Path) -> list[list[str]]:
    """The header's data command (the first ``#   ocrforge …`` line), split at ``&&`` into argument lists."""
    line = next(x[1:].strip() for x in config.read_text(encoding="utf-8").splitlines()
                if x.startswith("#   ocrforge ") and " train " not in x)
    commands = [shlex.split(part) for part in line.split("&&")]
    assert all(c[0] == "ocrforge" for c in commands), line
    return [c[1:] for c in commands]


def into(tmp_path: Path, value: str) -> str:
    """``data/x`` (and ``data``) of the repository root -> the same place under tmp_path."""
    assert value == "data" or value.startswith("data/"), value
    return str(tmp_path / value[len("data/"):]) if value != "data" else str(tmp_path)


def run_data_command(config: Path, tmp_path: Path, nums: list[int | None]) -> None:
    """Run the header's command(s) into tmp_path, with ``--num`` cut to ``nums`` (one per command)."""
    commands = data_command(config)
    assert len(commands) == len(nums)
    for argv, num in zip(commands, nums):
        argv = [into(tmp_path, a) if a.startswith("data/") else a for a in argv]
        assert ("--num" in argv) == (num is not None), argv
        if num is not None:
            argv[argv.index("--num") + 1] = str(num)
        assert main(argv) == 0, argv


def redirect(config: Path, tmp_path: Path) -> list[str]:
    """Overrides pointing every data/ path of the shipped config (label files, LMDB roots, data root, dictionary)
    at tmp_path; asserts the shipped config reads only under data/."""
    cfg = load_config(config)
    out = []
    for split in ("train", "val"):
        spec = cfg.data[split]
        for key in ("label_files", "roots"):
            if key in spec:
                out.append(f"data.{split}.{key}=[{','.join(repr(into(tmp_path, p)) for p in spec[key])}]")
        if spec.get("data_root") is not None:
            out.append(f"data.{split}.data_root='{into(tmp_path, spec.data_root)}'")
    if cfg.data.charset.dict.startswith("data/"):
        out.append(f"data.charset.dict='{into(tmp_path, cfg.data.charset.dict)}'")
    return out


def fast(train_batch: int, val_batch: int = 8) -> list[str]:
    return ["train.max_steps=2", "train.max_epochs=1", "train.val_check_interval=1.0", "train.progress_bar=false",
            "train.log_every_n_steps=1",
            f"data.train.batch_size={train_batch}", f"data.val.batch_size={val_batch}",
            "data.train.num_workers=0", "data.val.num_workers=0"]


def train_run(config: Path, work: Path, overrides: list[str], *extra: str) -> Path:
    assert main(["train", str(config), "--work-dir", str(work), *extra, "-o", *overrides]) == 0
    (run,) = work.glob("*/*/metrics.json")
    metrics = json.loads(run.read_text())
    assert metrics["final"]["val/num_samples"] > 0  # the validation split was read and scored
    return run.parent


def test_crnn_label_files(tmp_path: Path) -> None:
    config = REC / "crnn_label_files.yaml"
    run_data_command(config, tmp_path / "data", [16, 8])
    train_run(config, tmp_path / "work", [*redirect(config, tmp_path / "data"), *fast(8)])


def test_crnn_lmdb(tmp_path: Path) -> None:
    config = REC / "crnn_lmdb.yaml"
    run_data_command(config, tmp_path / "data", [16, 8])
    assert (tmp_path / "data" / "synth_rec_lmdb" / "data.mdb").is_file()
    train_run(config, tmp_path / "work", [*redirect(config, tmp_path / "data"), *fast(8)])


def test_mobile_fine_tune_with_custom_dict(tmp_path: Path) -> None:
    config = REC / "ppocr_mobile_finetune_custom_dict.yaml"
    data = tmp_path / "data"
    _char_tree(data)  # data/binarized_data/<id>/<char>_<n>.png + data/finetune_data/{samples.csv,id2char.json}
    run_data_command(config, data, [None])
    dictionary = (data / "train_data" / "custom_dict.txt").read_text(encoding="utf-8").splitlines()
    n_train = len((data / "train_data" / "train_list.txt").read_text(encoding="utf-8").splitlines())
    overrides = [*redirect(config, data), *fast(math.ceil(n_train / 2))]  # two steps make one epoch: val runs

    # A "pretrained" checkpoint of the same model with another dictionary: shares 紅, lacks the rest, has 魚.
    source_dict = tmp_path / "pretrained_dict.txt"
    source_dict.write_text("紅\n魚\n", encoding="utf-8")
    source = train_run(config, tmp_path / "pretrain", [*overrides, f"data.charset.dict='{source_dict}'"])

    run = train_run(config, tmp_path / "work", overrides,
                    "--load-from", str(source / "checkpoints" / "last.ckpt"))
    report = json.loads((run / "load_from_report.json").read_text(encoding="utf-8"))
    remap = report["charset_remap"]
    assert remap["kept_chars"] == 1 and remap["dropped_chars"] == ["魚"]
    assert sorted(remap["new_chars"]) == sorted(set(dictionary) - {"紅"})
    assert report["missing"] == [] and report["unexpected"] == [] and report["shape_mismatched"] == []
