"""Config loading: ``_base_`` inheritance, ``-o`` overrides, schema validation errors and schema defaults."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest
import yaml

from ocrforge.config import load_config, parse_override
from ocrforge.config.schema import EmaSchema, LoaderSchema, TrainSchema
from ocrforge.errors import ConfigError
from ocrforge.registry import CLS_DATASETS
from ocrforge.tasks.cls.task import ClsDataSchema

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "cls" / "orientation_lcnet050_synth.yaml"
RUNTIME = REPO / "configs" / "_base_" / "runtime.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def config_error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


# --- _base_ inheritance ---------------------------------------------------------------------------------------------


def test_base_list_deep_merges_mappings_and_replaces_lists(tmp_path):
    write(tmp_path / "_base_" / "common.yaml", """
        exp_name: from_common
        train: {max_epochs: 5, log_every_n_steps: 7, gradient_clip_val: 1.5}
        ema: {enabled: true, decay: 0.9}
        data:
          image_size: [64, 128, 3]
          mean: [0.1, 0.2, 0.3]
    """)
    write(tmp_path / "_base_" / "other.yaml", """
        exp_name: from_other
        seed: 7
    """)
    child = write(tmp_path / "child.yaml", """
        _base_: [_base_/common.yaml, _base_/other.yaml]
        train: {max_epochs: 2}
        data:
          image_size: [32, 48]
    """)
    cfg = load_config(child)
    # Child overrides one nested key, its siblings from the base survive.
    assert cfg.train.max_epochs == 2
    assert cfg.train.log_every_n_steps == 7
    assert cfg.train.gradient_clip_val == 1.5
    # Lists are replaced, never concatenated or merged element-wise.
    assert list(cfg.data.image_size) == [32, 48]
    assert list(cfg.data.mean) == [0.1, 0.2, 0.3]
    # Keys only in a base come through; a later base wins over an earlier one.
    assert cfg.seed == 7
    assert cfg.ema.enabled is True and cfg.ema.decay == 0.9
    assert cfg.exp_name == "from_other"
    assert "_base_" not in cfg


def test_base_as_single_string(tmp_path):
    write(tmp_path / "base.yaml", "seed: 11\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nproject: p\n")
    cfg = load_config(child)
    assert cfg.seed == 11 and cfg.project == "p"


def test_two_level_chain_resolves_paths_relative_to_each_file(tmp_path):
    write(tmp_path / "a" / "grand.yaml", """
        seed: 1
        project: grand
        train: {max_epochs: 5, log_every_n_steps: 3}
    """)
    write(tmp_path / "b" / "parent.yaml", """
        _base_: [../a/grand.yaml]
        project: parent
        train: {max_epochs: 4}
        checkpoint: {save_top_k: 1}
    """)
    child = write(tmp_path / "child.yaml", """
        _base_: [b/parent.yaml]
        train: {max_epochs: 3}
    """)
    cfg = load_config(child)
    assert cfg.seed == 1  # only in the grandparent
    assert cfg.project == "parent"  # parent beats grandparent
    assert cfg.checkpoint.save_top_k == 1  # only in the parent
    assert cfg.train.max_epochs == 3  # child beats both
    assert cfg.train.log_every_n_steps == 3  # sibling from the grandparent kept


def test_delete_replaces_mapping_instead_of_merging(tmp_path):
    write(tmp_path / "base.yaml", """
        model:
          type: Classifier
          backbone: lcnet_050
          drop_rate: 0.2
          head: {type: CosFaceHead, embedding_size: 64, margin: 0.3}
    """)
    child = write(tmp_path / "child.yaml", """
        _base_: [base.yaml]
        model:
          head: {_delete_: true, type: LinearHead, dropout: 0.1}
    """)
    cfg = load_config(child)
    assert dict(cfg.model.head) == {"type": "LinearHead", "dropout": 0.1}
    assert cfg.model.drop_rate == 0.2 and cfg.model.backbone == "lcnet_050"  # outer mapping still merged


def test_without_delete_another_type_replaces_and_the_same_type_merges(tmp_path):
    write(tmp_path / "base.yaml", """
        model:
          type: Classifier
          head: {type: CosFaceHead, embedding_size: 64}
    """)
    child = write(tmp_path / "child.yaml", """
        _base_: [base.yaml]
        model:
          head: {type: LinearHead}
    """)
    assert dict(load_config(child).model.head) == {"type": "LinearHead"}  # CosFaceHead's arguments do not leak
    same = write(tmp_path / "same.yaml", """
        _base_: [base.yaml]
        model:
          head: {type: CosFaceHead, margin: 0.3}
    """)
    assert dict(load_config(same).model.head) == {"type": "CosFaceHead", "embedding_size": 64, "margin": 0.3}


def test_circular_base_is_a_config_error(tmp_path):
    write(tmp_path / "a.yaml", "_base_: [b.yaml]\nseed: 1\n")
    write(tmp_path / "b.yaml", "_base_: [a.yaml]\nseed: 2\n")
    message = config_error(tmp_path / "a.yaml")
    assert "circular" in message
    assert "a.yaml" in message and "b.yaml" in message


def test_self_referencing_base_is_a_config_error(tmp_path):
    path = write(tmp_path / "self.yaml", "_base_: [self.yaml]\n")
    assert "circular" in config_error(path)


def test_shared_base_twice_is_not_circular(tmp_path):
    write(tmp_path / "common.yaml", "seed: 3\ntrain: {log_every_n_steps: 4}\n")
    write(tmp_path / "left.yaml", "_base_: [common.yaml]\nproject: left\n")
    write(tmp_path / "right.yaml", "_base_: [common.yaml]\nexp_name: right\n")
    child = write(tmp_path / "child.yaml", "_base_: [left.yaml, right.yaml]\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.project, cfg.exp_name, cfg.train.log_every_n_steps) == (3, "left", "right", 4)


def test_missing_base_file_is_a_config_error(tmp_path):
    child = write(tmp_path / "child.yaml", "_base_: [nowhere/base.yaml]\n")
    message = config_error(child)
    assert "not found" in message and "base.yaml" in message


# --- command-line overrides -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "expected", "kind"),
    [
        ("train.max_epochs=3", ("train", "max_epochs"), 3, int),
        ("optimizer.lr=1e-3", ("optimizer", "lr"), 0.001, float),
        ("train.val_check_interval=0.25", ("train", "val_check_interval"), 0.25, float),
        ("data.image_size=[48,96]", ("data", "image_size"), [48, 96], list),
        ("train.gradient_clip_val=null", ("train", "gradient_clip_val"), None, type(None)),
        ("ema.enabled=true", ("ema", "enabled"), True, bool),
        ("train.progress_bar=false", ("train", "progress_bar"), False, bool),
        ("train.precision=bf16-mixed", ("train", "precision"), "bf16-mixed", str),
    ],
)
def test_override_values_are_parsed_as_yaml(tmp_path, override, key, expected, kind):
    path = write(tmp_path / "cfg.yaml", "optimizer: {type: AdamW}\n")
    cfg = load_config(path, [override])
    value = cfg[key[0]][key[1]]
    if kind is list:
        value = list(value)
    assert isinstance(value, kind)
    assert value == expected


def test_overrides_apply_after_bases_and_keep_siblings(tmp_path):
    write(tmp_path / "base.yaml", "train: {max_epochs: 5, log_every_n_steps: 3}\n")
    child = write(tmp_path / "child.yaml", """
        _base_: [base.yaml]
        train: {max_epochs: 4}
        data: {image_size: [64, 64]}
    """)
    cfg = load_config(child, ["train.max_epochs=9", "data.image_size.1=80", "ema.decay=0.5"])
    assert cfg.train.max_epochs == 9
    assert cfg.train.log_every_n_steps == 3
    assert list(cfg.data.image_size) == [64, 80]  # a list element addressed by index
    assert cfg.ema.decay == 0.5 and cfg.ema.enabled == EmaSchema().enabled


def test_later_override_wins(tmp_path):
    path = write(tmp_path / "cfg.yaml", "seed: 1\n")
    assert load_config(path, ["seed=2", "seed=3"]).seed == 3


def test_unknown_key_via_override_is_rejected_and_attributed_to_command_line(tmp_path):
    path = write(tmp_path / "cfg.yaml", "train: {max_epochs: 2}\n")
    message = config_error(path, ("train.max_epoch=3",))
    assert "command line (-o)" in message
    assert "train.max_epoch" in message
    assert "max_epochs" in message  # the suggestion
    assert str(path) not in message  # the file itself is fine


def test_wrong_type_via_override_is_attributed_to_command_line(tmp_path):
    path = write(tmp_path / "cfg.yaml", "train: {max_epochs: 2}\n")
    message = config_error(path, ("train.max_epochs=ten",))
    assert "command line (-o): train.max_epochs" in message
    assert "int" in message


def test_plus_prefix_adds_a_new_key_on_purpose(tmp_path):
    path = write(tmp_path / "cfg.yaml", "train: {max_epochs: 2}\n")
    cfg = load_config(path, ["+train.new_key=3", "+note=hello"])
    assert cfg.train.new_key == 3
    assert cfg.note == "hello"
    assert cfg.train.max_epochs == 2


def test_plus_prefix_only_exempts_the_named_key(tmp_path):
    path = write(tmp_path / "cfg.yaml", "train: {max_epochs: 2}\n")
    message = config_error(path, ("+train.new_key=3", "train.other_key=4"))
    assert "train.other_key" in message
    assert "train.new_key" not in message


def test_plus_prefix_adds_a_new_nested_section(tmp_path):
    path = write(tmp_path / "cfg.yaml", "seed: 1\n")
    cfg = load_config(path, ["+some.new_key=3"])
    assert cfg.some.new_key == 3


def test_parse_override_basics():
    assert parse_override("a.b.c=1") == ("a.b.c", 1, False)
    assert parse_override("+a.b=[1, 2]") == ("a.b", [1, 2], True)
    assert parse_override("a.b=x=y") == ("a.b", "x=y", False)  # only the first '=' splits
    value = parse_override("lr=1e-3")[1]
    assert isinstance(value, float) and value == pytest.approx(1e-3)


@pytest.mark.parametrize("item", ["train.max_epochs", "", "=3", "+=3"])
def test_parse_override_malformed_is_a_config_error(item):
    with pytest.raises(ConfigError) as info:
        parse_override(item)
    assert "command line (-o)" in str(info.value)


def test_override_without_equals_is_a_config_error_in_load_config(tmp_path):
    path = write(tmp_path / "cfg.yaml", "seed: 1\n")
    assert "key.path=value" in config_error(path, ("train.max_epochs",))


# --- validation errors ----------------------------------------------------------------------------------------------


def test_unknown_key_names_file_key_path_and_suggestion(tmp_path):
    path = write(tmp_path / "cfg.yaml", "train: {max_epoch: 10}\n")
    message = config_error(path)
    assert str(path) in message
    assert "train.max_epoch:" in message
    assert "did you mean 'max_epochs'" in message


def test_unknown_top_level_key_suggests_section(tmp_path):
    path = write(tmp_path / "cfg.yaml", "trian: {max_epochs: 10}\n")
    message = config_error(path)
    assert "trian" in message and "did you mean 'train'" in message


def test_error_in_a_base_file_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", "train: {max_epoch: 10}\n")
    child = write(tmp_path / "child.yaml", "_base_: [base.yaml]\nseed: 1\n")
    message = config_error(child)
    assert f"{base.resolve()}: train.max_epoch" in message
    assert str(child.resolve()) not in message


@pytest.mark.parametrize("value", ["ten", "true", "2.5", "[1]"])
def test_wrong_type_names_expected_type(tmp_path, value):
    path = write(tmp_path / "cfg.yaml", f"train: {{max_epochs: {value}}}\n")
    message = config_error(path)
    assert "train.max_epochs" in message
    assert "expected int" in message


def test_int_is_accepted_where_float_is_expected(tmp_path):
    path = write(tmp_path / "cfg.yaml", "ema: {decay: 1}\ntrain: {gradient_clip_val: 2}\n")
    cfg = load_config(path)
    assert cfg.ema.decay == 1 and cfg.train.gradient_clip_val == 2


def test_float_syntax_in_yaml_file_is_a_float(tmp_path):
    path = write(tmp_path / "cfg.yaml", "optimizer: {type: AdamW, lr: 1e-3}\n")
    lr = load_config(path).optimizer.lr
    assert isinstance(lr, float) and lr == pytest.approx(1e-3)


def test_unknown_key_in_registry_node_suggests_constructor_argument(tmp_path):
    path = write(tmp_path / "cfg.yaml", "model: {type: Classifier, backboen: lcnet_050}\n")
    message = config_error(path)
    assert "model.backboen" in message
    assert "did you mean 'backbone'" in message


def test_wrong_type_of_registry_argument(tmp_path):
    path = write(tmp_path / "cfg.yaml", "optimizer: {type: AdamW, lr: fast}\n")
    message = config_error(path)
    assert "optimizer.lr" in message and "expected float" in message


def test_unknown_key_in_nested_head_node(tmp_path):
    path = write(tmp_path / "cfg.yaml", "model: {type: Classifier, head: {type: CosFaceHead, embeding_size: 3}}\n")
    message = config_error(path)
    assert "model.head.embeding_size" in message
    assert "did you mean 'embedding_size'" in message


@pytest.mark.parametrize(
    ("section", "typo", "suggestion"),
    [("optimizer", "adamww", "AdamW"), ("scheduler", "cosin", "CosineLR"),
     ("loss", "cross_entopy", "CrossEntropyLoss"), ("model", "Clasifier", "Classifier")],
)
def test_unknown_registry_type_suggests_closest(tmp_path, section, typo, suggestion):
    path = write(tmp_path / "cfg.yaml", f"{section}: {{type: {typo}}}\n")
    message = config_error(path)
    assert f"{section}.type" in message
    assert f"'{typo}'" in message
    assert f"did you mean '{suggestion}'" in message


def test_unknown_registry_type_adamx_gets_a_suggestion(tmp_path):
    # 'adamx' is equally close to 'Adam' and 'AdamW'; difflib picks 'Adam', either is a sensible hint.
    message = config_error(write(tmp_path / "cfg.yaml", "optimizer: {type: adamx}\n"))
    assert "did you mean 'Adam" in message
    assert "known: Adam, AdamW, SGD)" in message  # the current names, not the old ones


def test_components_are_looked_up_in_the_registries_of_the_config_task(tmp_path):
    path = write(tmp_path / "cfg.yaml", """
        task: rec
        model: {type: Recognizer, neck: {type: DBFPN}, head: {type: LinearHead}, aux_head: {type: attention}}
        loss: {type: CrossEntropyLoss}
        data:
          train: {type: SynthOrientationDataset}
    """)
    message = config_error(path)
    for fragment in ("model.neck.type: unknown neck type 'DBFPN' for task rec ('DBFPN' is a det neck)",
                     "model.head.type: unknown head type 'LinearHead' for task rec ('LinearHead' is a cls head)",
                     "loss.type: unknown loss type 'CrossEntropyLoss' for task rec ('CrossEntropyLoss' is a cls loss)",
                     "data.train.type: unknown dataset type 'SynthOrientationDataset' for task rec "
                     "('SynthOrientationDataset' is a cls dataset)"):
        assert fragment in message
    assert "aux_head" not in message  # an old name of a rec head, in a rec config
    det = config_error(write(tmp_path / "det.yaml", "task: det\nmodel: {type: Classifier}\n"))
    assert "model.type: unknown model type 'Classifier' for task det ('Classifier' is a cls model)" in det


def test_injected_constructor_arguments_cannot_be_set(tmp_path):
    path = write(tmp_path / "cfg.yaml", """
        model: {type: Classifier, num_classes: 3}
        scheduler: {type: CosineLR, total_steps: 100}
    """)
    message = config_error(path)
    assert "model.num_classes" in message
    assert "scheduler.total_steps" in message


@pytest.mark.parametrize(("typo", "suggestion"), [("num_sample", "num_samples"), ("batch_sise", "batch_size"),
                                                 ("num_worker", "num_workers")])
def test_unknown_key_in_data_split_suggests_dataset_or_loader_key(tmp_path, typo, suggestion):
    path = write(tmp_path / "cfg.yaml", f"""
        task: cls
        data:
          train: {{type: SynthOrientationDataset, mode: page, {typo}: 4}}
    """)
    message = config_error(path)
    assert f"data.train.{typo}" in message
    assert f"did you mean '{suggestion}'" in message


def test_data_split_checks_types_literals_and_required_arguments(tmp_path):
    path = write(tmp_path / "cfg.yaml", """
        task: cls
        data:
          train: {type: ImageFolderDataset, batch_size: 8}
          val: {type: SynthOrientationDataset, mode: diagonal, shuffle: maybe}
    """)
    message = config_error(path)
    assert "data.train.root" in message and "required" in message
    assert "data.val.mode" in message
    assert "data.val.shuffle" in message
    assert "3 problems" in message


def test_data_section_of_the_task_schema_is_checked(tmp_path):
    path = write(tmp_path / "cfg.yaml", "task: cls\ndata: {image_sise: [32, 32]}\n")
    message = config_error(path)
    assert "data.image_sise" in message and "did you mean 'image_size'" in message


def test_data_section_is_checked_when_task_is_left_at_its_default(tmp_path):
    path = write(tmp_path / "cfg.yaml", "data:\n  train: {type: SynthOrientationDataset, num_sample: 4}\n")
    message = config_error(path)
    assert "data.train.num_sample" in message


def test_unknown_task_suggests_closest(tmp_path):
    message = config_error(write(tmp_path / "cfg.yaml", "task: clss\n"))
    assert "task" in message and "did you mean 'cls'" in message


def test_missing_config_file_is_a_config_error(tmp_path):
    message = config_error(tmp_path / "does_not_exist.yaml")
    assert "not found" in message and "does_not_exist.yaml" in message


def test_bad_yaml_syntax_is_a_config_error_naming_the_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "train: {max_epochs: 3\nseed: 1\n")
    message = config_error(path)
    assert str(path) in message and "cannot parse YAML" in message


def test_duplicate_yaml_key_is_a_config_error(tmp_path):
    path = write(tmp_path / "dup.yaml", "seed: 1\nseed: 2\n")
    assert "duplicate key" in config_error(path)


def test_top_level_list_is_a_config_error(tmp_path):
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    assert "must be a mapping" in config_error(path)


def test_all_problems_are_listed_in_one_error(tmp_path):
    path = write(tmp_path / "cfg.yaml", """
        task: cls
        train: {max_epoch: 3, precision: [16]}
        model: {type: Classifier, backboen: lcnet_050}
        optimizer: {type: adamww}
        data:
          train: {type: SynthOrientationDataset, num_sample: 4}
    """)
    message = config_error(path, ("ema.decai=0.5",))
    assert message.startswith("invalid config (6 problems)")
    for fragment in ("train.max_epoch", "train.precision", "model.backboen", "optimizer.type",
                     "data.train.num_sample", "command line (-o): ema.decai"):
        assert fragment in message
    assert len(message.splitlines()) == 7  # header + one line per problem


def test_empty_file_is_a_valid_config_of_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "empty.yaml", ""))
    assert cfg.task == "cls"
    assert cfg.train.max_epochs == TrainSchema().max_epochs


# --- effective config -------------------------------------------------------------------------------------------------


def test_effective_config_has_schema_defaults_filled_in(tmp_path):
    path = write(tmp_path / "cfg.yaml", """
        task: cls
        ema: {enabled: true}
        data: {image_size: [32, 32]}
    """)
    cfg = load_config(path)
    assert cfg.train.precision == TrainSchema().precision
    assert cfg.train.max_nonfinite_steps == TrainSchema().max_nonfinite_steps
    assert cfg.ema.enabled is True and cfg.ema.decay == EmaSchema().decay  # partial section merged with defaults
    assert list(cfg.data.mean) == ClsDataSchema().mean  # from the cls task's data schema
    assert list(cfg.data.std) == ClsDataSchema().std
    assert list(cfg.data.image_size) == [32, 32]
    assert cfg.data.classes is None
    assert cfg.optimizer.type == "AdamW" and cfg.scheduler.type == "CosineLR"
    assert cfg.logging.wandb.offline is True


def test_shipped_orientation_config_loads(tmp_path):
    cfg = load_config(SHIPPED)
    shipped = yaml.safe_load(SHIPPED.read_text())
    runtime = yaml.safe_load(RUNTIME.read_text())
    assert cfg.task == "cls"
    assert cfg.train.max_epochs == shipped["train"]["max_epochs"]
    assert cfg.train.log_every_n_steps == runtime["train"]["log_every_n_steps"]  # from _base_/runtime.yaml
    assert cfg.checkpoint.save_top_k == runtime["checkpoint"]["save_top_k"]
    assert cfg.train.precision == TrainSchema().precision  # from the schema
    assert cfg.ema.decay == shipped["ema"]["decay"] and cfg.ema.warmup == EmaSchema().warmup
    assert dict(cfg.data.train) == shipped["data"]["train"]
    dataset_args = set(inspect.signature(CLS_DATASETS.get(cfg.data.train.type)).parameters)
    assert set(cfg.data.train) - {"type"} <= dataset_args | set(vars(LoaderSchema()))


def test_shipped_config_with_overrides(tmp_path):
    cfg = load_config(SHIPPED, ["train.max_epochs=1", "data.train.num_samples=16", "data.image_size=[32,32]"])
    assert cfg.train.max_epochs == 1
    assert cfg.data.train.num_samples == 16
    assert cfg.data.train.mode == "page"  # sibling kept
    assert list(cfg.data.image_size) == [32, 32]
