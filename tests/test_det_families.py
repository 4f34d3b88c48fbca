"""A detection family owns its targets, post-processing and loss, configured next to its head; configs and
checkpoints of the layout before (``data.targets`` / ``data.postprocess``) and ONNX files whose post-processing has
no type still validate, load, train, test and decode as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, write_config
from omegaconf import OmegaConf

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.engine.module import build_task
from ocrforge.errors import ConfigError
from ocrforge.runners.predict import infer, load_backend
from ocrforge.tasks.det import inference as det_inference
from ocrforge.tasks.det.dbnet.postprocess import DBPostProcess
from ocrforge.tasks.det.dbnet.targets import DBTargets
from ocrforge.tasks.det.synth_pages import SynthPagesDataset

TARGETS = {"min_text_size": 4, "shrink_ratio": 0.5}
POSTPROCESS = {"thresh": 0.2, "box_thresh": 0.2, "unclip_ratio": 1.8}


def db_config(tmp_path: Path, name: str, legacy: bool) -> Path:
    """A tiny DBNet config with the same family arguments in the new place or in ``data`` (the layout before)."""
    page = {"type": "SynthPages", "height": 160, "width": 160, "num_workers": 0}
    model = {"type": "DBNet", "backbone": {"type": "timm_det", "name": "lcnet_050"},
             "neck": {"type": "db_fpn", "channels": 32}}
    data = {"image_size": [128, 128], "eval_resize": {"limit_side_len": 160, "limit_type": "max"},
            "train": {**page, "num_samples": 8, "seed": 0, "batch_size": 4},
            "test": {**page, "num_samples": 3, "seed": 3, "batch_size": 2}}
    if legacy:
        data.update(targets=TARGETS, postprocess=POSTPROCESS)
    else:
        model.update(targets={"type": "DBTargets", **TARGETS}, postprocess={"type": "DBPostProcess", **POSTPROCESS})
    cfg = {"task": "det", "project": "tests", "exp_name": name, "work_dir": str(tmp_path / "work_dirs"),
           "model": model, "data": data, "optimizer": {"type": "adamw", "lr": 0.003},
           "train": {"max_epochs": 1, "progress_bar": False}}
    return write_config(tmp_path / f"{name}.yaml", cfg, {})


def test_the_layout_before_maps_onto_the_family_next_to_the_head(tmp_path: Path) -> None:
    new, old = (build_task(load_config(db_config(tmp_path, n, legacy))) for n, legacy in (("new", False),
                                                                                          ("old", True)))
    assert old.targets == new.targets == DBTargets(**TARGETS)
    assert old.postprocess == new.postprocess == DBPostProcess(**POSTPROCESS)
    assert old.exporter().metadata() == new.exporter().metadata()
    assert old.exporter().metadata()["postprocess"] == {"type": "DBPostProcess", **vars(DBPostProcess(**POSTPROCESS))}
    # the effective config (what a checkpoint stores) has them in their new place
    assert OmegaConf.to_container(old.cfg.model.targets) == {"type": "DBTargets", **TARGETS}
    assert old.cfg.data.targets is None and old.cfg.data.postprocess is None


def test_the_family_supplies_what_the_config_leaves_out(tmp_path: Path) -> None:
    path = db_config(tmp_path, "plain", legacy=False)
    cfg = load_config(path, ["model.targets=null", "model.postprocess=null"])
    task = build_task(cfg)
    assert task.targets == DBTargets() and task.postprocess == DBPostProcess()
    assert type(task.build_loss()).__name__ == "DBLoss"
    psenet = build_task(load_config(path, ["model.type=PSENet", "model.head={type: PSEHead}"]))
    assert type(psenet.targets).__name__ == "PSETargets" and type(psenet.build_loss()).__name__ == "PSELoss"
    assert psenet.exporter().output_names() == ["kernels"]


def test_family_config_errors_name_the_key(tmp_path: Path) -> None:
    path = db_config(tmp_path, "bad", legacy=False)
    with pytest.raises(ConfigError, match=r"model\.postprocess\.box_tresh: .*did you mean 'box_thresh'"):
        load_config(path, ["model.postprocess.box_tresh=0.5"])
    with pytest.raises(ConfigError, match=r"model\.targets\.type: unknown targets type 'PSETargts'.*'PSETargets'"):
        load_config(path, ["model.targets={type: PSETargts}"])
    with pytest.raises(ConfigError, match=r"model\.postprocess\.box_type: expected Literal\['quad', 'poly'\]"):
        load_config(path, ["model.postprocess.box_type=circle"])
    with pytest.raises(ConfigError, match=r"model\.targets: need 0 <= thresh_min < thresh_max"):
        build_task(load_config(path, ["model.targets.thresh_min=0.8", "model.targets.thresh_max=0.2"]))
    legacy = db_config(tmp_path, "bad_old", legacy=True)
    with pytest.raises(ConfigError, match=r"data\.targets \(now model\.targets\): .*shrink_ration"):
        build_task(load_config(legacy, ["data.targets.shrink_ration=0.3"]))


def _train(config: Path) -> Path:
    assert main(["train", str(config)]) == 0
    (run,) = (config.parent / "work_dirs" / "tests").glob(f"{config.stem}_2*")
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_configs_and_checkpoints_of_the_layout_before_train_and_test_identically(tmp_path: Path) -> None:
    new_cfg, old_cfg = db_config(tmp_path, "new", legacy=False), db_config(tmp_path, "old", legacy=True)
    new_ckpt, old_ckpt = _train(new_cfg), _train(old_cfg)
    new_state = torch.load(new_ckpt, map_location="cpu", weights_only=False)
    old_state = torch.load(old_ckpt, map_location="cpu", weights_only=False)
    for key, value in new_state["state_dict"].items():
        assert torch.equal(value, old_state["state_dict"][key]), key
    # A checkpoint written before the move stores the family's arguments in ``data``, with every default filled in.
    stored = old_state["hyper_parameters"]["config"]
    stored["data"]["targets"] = {k: v for k, v in stored["model"].pop("targets").items() if k != "type"}
    stored["data"]["postprocess"] = {k: v for k, v in stored["model"].pop("postprocess").items() if k != "type"}
    before = tmp_path / "before.ckpt"
    torch.save(old_state, before)
    rows = {}
    for name, config, ckpt in (("new", new_cfg, new_ckpt), ("old", old_cfg, before)):
        assert main(["test", str(config), str(ckpt), "--save-preds"]) == 0
        (run,) = (tmp_path / "work_dirs" / "tests").glob(f"{name}_test_*")
        rows[name] = (run / "predictions.jsonl").read_text()
    assert rows["new"] == rows["old"] and json.loads(rows["new"].splitlines()[0])["num_gt"] > 0
    # predict and export read the checkpoint's own config
    image = SynthPagesDataset(num_samples=1, seed=3, height=160, width=160)[0]["image"]
    (run_new, meta_new), (run_old, meta_old) = load_backend(new_ckpt), load_backend(before)
    assert meta_old == meta_new and meta_old["postprocess"]["type"] == "DBPostProcess"
    assert infer(det_inference, run_old, meta_old, [image]) == infer(det_inference, run_new, meta_new, [image])


def test_postprocessing_without_a_type_decodes_as_db() -> None:
    prob = np.zeros((1, 1, 64, 96), np.float32)
    prob[0, 0, 20:40, 10:50] = 0.9
    meta = {"limit_side_len": 96, "limit_type": "max", "postprocess": {"thresh": 0.3, "box_thresh": 0.5}}
    typed = {**meta, "postprocess": {"type": "DBPostProcess", **meta["postprocess"]}}
    untyped = det_inference.decode_outputs({"prob": prob}, meta, [(64, 96)])
    assert untyped == det_inference.decode_outputs({"prob": prob}, typed, [(64, 96)])
    assert len(untyped[0]["polygons"]) == 1


def test_postprocessing_imports_no_torch() -> None:
    code = ("import sys, numpy as np\n"
            "from ocrforge.tasks.det import inference\n"
            "meta = {'limit_side_len': 64, 'limit_type': 'max'}\n"
            "maps = np.full((1, 3, 64, 64), 0.9, np.float32)\n"
            "for post in ({'type': 'DBPostProcess'}, {'type': 'PSEPostProcess'}):\n"
            "    inference.decode_outputs({'prob': maps[:, :1], 'kernels': maps}, {**meta, 'postprocess': post},"
            " [(64, 64)])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
