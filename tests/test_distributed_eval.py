"""Scale-out on CPU (gloo, 2 processes): `ocrforge test` on two processes gives one process's results for every
task, a non-finite loss on one rank stops both, and a run resumes on another number of processes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import pytest
import torch
from conftest import synth_pages, synth_words, tiny_cls_config, tiny_det_config, tiny_rec_config
from omegaconf import OmegaConf

from ocrforge.config import load_config
from ocrforge.data.collate import SkipSafeDataset
from ocrforge.engine.data import build_dataloader
from ocrforge.engine.module import TaskModule, build_task
from ocrforge.engine.samplers import EpochIndexSampler, LengthBucketBatchSampler
from ocrforge.runners.test import test as run_test
from ocrforge.runners.train import train
from ocrforge.tasks.cls.synth import SynthOrientationDataset

DDP = ["train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"]

# A loss for the tests, imported through the config's `plugins` (so the ranks Lightning starts have it too):
# cross-entropy that, while training, records each batch's sample indices per rank and is NaN on `nan_rank`.
PLUGIN = '''
import json, os
import torch
from ocrforge.registry import CLS_LOSSES


@CLS_LOSSES.register("test_recorded_ce")
class RecordedCE(torch.nn.Module):
    def __init__(self, folder: str = "", nan_rank: int = -1) -> None:
        super().__init__()
        self.folder, self.nan_rank = folder, nan_rank

    def forward(self, outputs: dict, batch: dict) -> dict:
        loss = torch.nn.functional.cross_entropy(outputs["logits"], batch["label"])
        if self.training:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            if rank == self.nan_rank:
                loss = loss * float("nan")
            if self.folder:
                os.makedirs(self.folder, exist_ok=True)
                with open(os.path.join(self.folder, f"rank{rank}.jsonl"), "a") as handle:
                    handle.write(json.dumps(batch["index"].tolist()) + "\\n")
        return {"loss": loss}
'''


def _launch(args: list[str], cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess:
    """A command of its own process group, all of which is killed if it outlives ``timeout``: a rank left waiting in
    a collective is exactly the failure these tests guard against."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OCRFORGE_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"still running after {timeout} s (a rank waiting for another?):\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def _cli_commands(tmp_path: Path, commands: list[list[str]]) -> subprocess.CompletedProcess:
    """Several `ocrforge` commands one after the other in one pair of DDP processes: Lightning starts rank 1 by
    re-running this script, which then runs the same commands; two interpreters instead of two per command."""
    script = tmp_path / "run_cli.py"
    script.write_text("import json, sys\nfrom ocrforge.cli import main\n"
                      "sys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))\n")
    return _launch([str(script), json.dumps(commands)], tmp_path)


# --- ocrforge test on two processes ------------------------------------------------------------------------------
def _cls_case(tmp: Path) -> dict:
    """13 line images of two orientations and one corrupt file in a folder per class: one sample can not be loaded
    and counts as wrong, whichever process reads it."""
    root = tmp / "cls_images"
    data = SynthOrientationDataset(12, mode="line", seed=7)
    for i in range(12):
        folder = root / data.classes[data[i]["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:02d}.png"), data[i]["image"][:, :, ::-1])
    (root / "180" / "zz_corrupt.png").write_bytes(b"not an image")
    test = {"type": "ImageFolder", "root": str(root), "batch_size": 4, "num_workers": 0}
    return {"config": tiny_cls_config(tmp / "cls", data={"test": test}), "rows": ["predictions.jsonl"],
            "files": ["confusion_matrix.json", "confusion_matrix.png"]}


def _rec_case(tmp: Path) -> dict:
    data = {"max_text_length": 10, "charset": {"dict": "printable"}, "train": synth_words(8, seed=0, batch_size=4,
            max_len=8), "val": None, "test": synth_words(11, seed=2, batch_size=4, max_len=8)}
    return {"config": tiny_rec_config(tmp / "rec", data=data), "rows": ["predictions.jsonl", "worst_errors.jsonl"],
            "files": []}


def _det_case(tmp: Path) -> dict:
    data = {"eval_resize": {"limit_side_len": 160, "limit_type": "max"},
            "train": synth_pages(4, seed=0, batch_size=2, side=160), "val": None,
            "test": synth_pages(5, seed=3, batch_size=2, side=160),
            # An untrained detector finds regions only at low thresholds: predictions to compare.
            "postprocess": {"thresh": 0.2, "box_thresh": 0.2}}
    return {"config": tiny_det_config(tmp / "det", data=data), "rows": ["predictions.jsonl"], "files": []}


def _untrained_checkpoint(config: Path) -> Path:
    """The checkpoint `ocrforge test` reads, of a freshly initialised model (what it scores does not matter here)."""
    module = TaskModule(OmegaConf.to_container(load_config(config)), pretrained=False)
    path = config.with_suffix(".ckpt")
    torch.save({"state_dict": module.state_dict(),
                "hyper_parameters": {"config": OmegaConf.to_container(module.cfg)}}, path)
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _approx(value: object) -> object:
    """Floats compared to 1e-6: a network's scores move in their last bits with the batch a sample is in."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-6, abs=1e-9)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _single_test_folder(work_dir: Path) -> Path:
    (folder,) = work_dir.glob("tests/*_test_*")  # one folder, written by rank 0 only
    return folder


@pytest.fixture(scope="module")
def distributed_tests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each task's checkpoint tested in this process, then on two processes (one launch for the three tasks)."""
    tmp = tmp_path_factory.mktemp("dist_test")
    cases = {"cls": _cls_case(tmp), "rec": _rec_case(tmp), "det": _det_case(tmp)}
    commands = []
    for name, case in cases.items():
        case["checkpoint"] = _untrained_checkpoint(case["config"])
        case["single"] = run_test(load_config(case["config"]), case["checkpoint"], save_preds=True,
                                  show_dir=tmp / name / "show_single")
        case["ddp_work_dir"] = tmp / name / "ddp"
        commands.append(["test", str(case["config"]), str(case["checkpoint"]), "--save-preds", "--show-dir",
                         str(tmp / name / "show_ddp"), "--work-dir", str(case["ddp_work_dir"]), "-o", *DDP])
    done = _cli_commands(tmp, commands)
    assert done.returncode == 0, done.stdout[-6000:]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("task", ["cls", "rec", "det"])
def test_two_process_test_gives_the_single_process_results(distributed_tests: dict[str, dict], task: str) -> None:
    """An odd number of samples over two processes: no sample is counted twice (DistributedSampler would pad) or
    lost, metrics are reduced exactly, and predictions, skipped samples and pictures come back from both ranks."""
    case = distributed_tests[task]
    single_dir = Path(case["single"]["run_dir"])
    ddp_dir = _single_test_folder(case["ddp_work_dir"])
    assert json.loads((ddp_dir / "env.json").read_text())["processes"] == 2
    assert json.loads((single_dir / "env.json").read_text())["processes"] == 1
    single, ddp = (json.loads((d / "metrics.json").read_text()) for d in (single_dir, ddp_dir))
    # The loss sums other batches' means (and DB's hard negatives are mined per batch): equal but for rounding.
    # Counted metrics are equal.
    assert ddp["metrics"].pop("loss") == pytest.approx(single["metrics"].pop("loss"), rel=1e-4)
    assert ddp["metrics"] == single["metrics"]
    for key in ("skipped_samples", "data_counts", "unevaluated_samples"):
        assert ddp[key] == single[key], key
    for name in case["files"]:
        assert (ddp_dir / name).read_bytes() == (single_dir / name).read_bytes(), name
    for name in case["rows"]:
        assert _rows(ddp_dir / name) == _approx(_rows(single_dir / name)), name
    rows = _rows(ddp_dir / "predictions.jsonl")
    assert [row["index"] for row in rows] == list(range(len(rows)))  # each sample once, in dataset order
    shown = _folder_files(case["ddp_work_dir"].parent / "show_ddp")
    assert shown and shown == _folder_files(case["ddp_work_dir"].parent / "show_single")
    if task == "cls":
        assert ddp["metrics"]["num_samples"] == 13 and ddp["metrics"]["num_unevaluated"] == 1
        assert ddp["skipped_samples"]["while_loading"] == {"unreadable_image": 1}
    if task == "rec":
        assert ddp["metrics"]["num_samples"] == 11


# --- training --------------------------------------------------------------------------------------------------
def _plugin(tmp_path: Path) -> Path:
    path = tmp_path / "recorded_loss.py"
    path.write_text(PLUGIN)
    return path


@pytest.mark.slow
def test_a_nonfinite_streak_on_one_rank_stops_both_with_the_error(tmp_path: Path) -> None:
    """Rank 1's loss is always NaN, rank 0's never: both count the same streak and stop at the same step with the
    same error (before, rank 1 raised alone and rank 0 was killed, or waited, in the next step's collective). The
    learning rate is scaled for the global batch of both processes."""
    cfg = tiny_cls_config(tmp_path, plugins=[str(_plugin(tmp_path))], loss={"type": "test_recorded_ce", "nan_rank": 1},
                          auto_scale_lr={"base_batch_size": 8},
                          train={"max_nonfinite_steps": 2, "progress_bar": False, "max_epochs": 3})
    done = _launch(["-m", "ocrforge.cli", "train", str(cfg), "--auto-scale-lr", "-o", *DDP], tmp_path)
    assert done.returncode != 0, done.stdout[-4000:]
    (run,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed", status
    assert "3 consecutive non-finite losses" in status["error"] and "(on 1 of 2 processes)" in status["error"]
    assert "global batch 32 (16 x 2 processes x 1 accumulated) / base 8 -> lr x 4" in done.stdout


def _trained(folder: Path) -> list[list[int]]:
    """The batches each rank trained, step by step, ranks side by side: [[rank 0's, rank 1's …], …]."""
    per_rank = [[json.loads(line) for line in path.read_text().splitlines()]
                for path in sorted(folder.glob("rank*.jsonl"))]
    assert len({len(batches) for batches in per_rank}) == 1  # the ranks step together
    return [list(step) for step in zip(*per_rank, strict=True)]


def _order(epoch: int, seed: int, n: int = 40) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()


@pytest.mark.slow
def test_resume_on_two_processes_then_on_one_continues_at_the_right_sample(tmp_path: Path) -> None:
    """40 samples in batches of 4 a process, two epochs: 3 steps on one process, resumed on two up to step 9 (the
    rest of epoch 1 and two steps of epoch 2), resumed on one to the end. Every sample is trained once an epoch, in
    the epoch's order, and the run ends at the step one process would have: 3 + 4 + 2 + 6."""
    record = tmp_path / "trained"
    cfg = tiny_cls_config(tmp_path, plugins=[str(_plugin(tmp_path))],
                          loss={"type": "test_recorded_ce", "folder": str(record / "one")},
                          train={"max_epochs": 2, "max_steps": 3, "progress_bar": False})
    text = cfg.read_text().replace("num_samples: 48", "num_samples: 40").replace("batch_size: 16", "batch_size: 4")
    cfg.write_text(text.replace("num_samples: 24", "num_samples: 8"))
    first = train(load_config(cfg))
    seed = int(load_config(cfg).seed)

    done = _launch(["-m", "ocrforge.cli", "train", str(cfg), "--resume", first.last_checkpoint, "-o", *DDP,
                    "train.max_steps=9", f"loss.folder={record / 'two'}"], tmp_path)
    assert done.returncode == 0, done.stdout[-6000:]
    state = torch.load(first.last_checkpoint, weights_only=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        last = train(load_config(cfg, ["train.max_steps=-1", f"loss.folder={record / 'one_again'}"]),
                     resume=first.last_checkpoint)

    one, two, again = (_trained(record / name) for name in ("one", "two", "one_again"))
    assert [len(steps) for steps in (one, two, again)] == [3, 6, 6]
    epoch1, epoch2 = _order(0, seed), _order(1, seed)
    assert [i for step in one for i in step[0]] == epoch1[:12]
    for rank in range(2):  # the rest of epoch 1 shared out (14 each: 4 + 4 + 4 + 2), then epoch 2 from its start
        assert [i for step in two[:4] for i in step[rank]] == epoch1[12:][rank::2]
        assert [i for step in two[4:] for i in step[rank]] == epoch2[:16][rank::2]
    assert [i for step in again for i in step[0]] == epoch2[16:]
    assert (state["global_step"], state["TaskDataModule"]) == (9, {"epoch": 1, "batches_done": 4, "world_size": 2})
    assert last.metrics["global_step"] == 15 and last.metrics["epochs"] == 2
    assert "resumed on 2 processes a run that trained on 1 process:" in done.stdout  # the batch size changed
    assert any("resumed on 1 process a run that trained on 2 processes:" in str(w.message) for w in caught)


def test_ranks_train_disjoint_shards_with_per_sample_augmentation(tmp_path: Path) -> None:
    """The two ranks of a DDP run draw disjoint halves of a synthetic training set (a pure function of the index),
    and each sample's augmentation is seeded by (seed, epoch, index): distinct across ranks and workers, and the
    same as one process would draw for it."""
    task = build_task(load_config(tiny_cls_config(tmp_path, data={"train": {
        "type": "SynthOrientation", "mode": "line", "num_samples": 10, "seed": 0, "batch_size": 2,
        "num_workers": 2, "transforms": [{"type": "ColorJitter", "brightness": 0.5}]}})))
    one = {index: image for batch in build_dataloader(task, "train", training=True, seed=3)
           for index, image in zip(batch["index"].tolist(), batch["image"], strict=True)}
    shards = [[(index, image) for batch in build_dataloader(task, "train", training=True, seed=3, num_replicas=2,
                                                             rank=rank)
               for index, image in zip(batch["index"].tolist(), batch["image"], strict=True)] for rank in range(2)]
    indices = [{index for index, _ in shard} for shard in shards]
    assert indices[0].isdisjoint(indices[1]) and indices[0] | indices[1] == set(range(10))
    for shard in shards:
        for index, image in shard:
            assert torch.equal(image, one[index]), index
    again = SkipSafeDataset(task.build_dataset("train"), seed=4)[(0, 0)]["image"]  # another seed, another draw
    assert not torch.equal(again, one[0])


@pytest.mark.parametrize("bucketed", [False, True])
def test_a_resumed_epoch_is_shared_out_among_another_number_of_processes(bucketed: bool) -> None:
    """Both training samplers: ranks that trained 2 batches each, then the rest of the epoch on 1, 2 or 3 processes:
    every sample once, bar the padding that evens out the new shares (as DistributedSampler pads)."""
    n, batch = 25, 2

    def batches(world: int, rank: int, skip: int) -> list[list[int]]:
        if bucketed:
            sampler = LengthBucketBatchSampler(list(range(n)), batch, num_replicas=world, rank=rank, seed=1,
                                               skip_batches=skip)
            drawn = [[index for _, index in b] for b in sampler]
        else:
            sampler = EpochIndexSampler(range(n), num_replicas=world, rank=rank, seed=1, skip=skip * batch)
            order = [index for _, index in sampler]
            drawn = [order[i:i + batch] for i in range(0, len(order), batch)]
        assert (len(drawn) if bucketed else sum(map(len, drawn))) == sampler.resumed_length()
        return drawn

    for before in (1, 2, 3):
        trained = [i for rank in range(before) for b in batches(before, rank, 0)[:2] for i in b]
        for after in (1, 2, 3):
            rest = [i for rank in range(after) for b in batches(after, rank, 2 * before) for i in b]
            assert set(trained) | set(rest) == set(range(n)), (before, after)
            assert len(trained) + len(rest) - n < after * batch, (before, after)  # padding only
