import dataclasses

import pytest
import yaml

from ekagen.config import (
    SECTIONS,
    DataConfig,
    Schedule,
    as_flat_dict,
    load_params,
    section,
    validate_params,
)
from tests.conftest import REPO, config


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_map_onto_dataclasses():
    sections = validate_params(load_params(REPO / "params.yaml"))
    cfg = sections["data"]
    assert cfg.source == "iu_phantom" and cfg.views == [0, 1]
    assert as_flat_dict(cfg, "data.")["data.phantom.uncertain"] == cfg.phantom.uncertain
    assert set(sections) == set(_params()) - {"seed"}


def test_params_yaml_is_the_only_source_of_defaults():
    """No schema field has a default of its own, so code cannot run on values that
    params.yaml does not hold."""
    for name, cls in SECTIONS.items():
        defaulted = [f.name for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING]
        assert defaulted == [], f"{name} has dataclass defaults {defaulted}"


def test_a_missing_key_is_an_error_naming_it():
    data = _params()["data"]
    del data["image_size"]
    with pytest.raises(ValueError, match=r"data: missing key\(s\) \['image_size'\]"):
        section({"data": data}, "data", DataConfig)


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match="viewz"):
        section({"data": {**_params()["data"], "viewz": [0]}}, "data", DataConfig)


@pytest.mark.parametrize("key,value", [("image_size", "big"), ("skip_bad_records", "yes"),
                                       ("views", 1), ("split_fractions", ["a"]),
                                       ("source", "dicomdir")])
def test_wrong_types_and_choices_are_errors(key, value):
    with pytest.raises(ValueError, match=f"data.{key}"):
        section({"data": {**_params()["data"], key: value}}, "data", DataConfig)


@pytest.mark.parametrize("text,expected", [(True, True), (False, False), ("auto", "auto"),
                                           ("true", True), ("false", False)])
def test_auto_true_false_fields_take_yaml_booleans(text, expected):
    """YAML reads `faiss_gpu: true` (and `-S runtime.faiss_gpu=true`) as a boolean."""
    value = config("runtime", faiss_gpu=text).faiss_gpu
    assert value == expected and type(value) is type(expected)


def test_auto_true_false_fields_reject_other_values():
    with pytest.raises(ValueError, match=r"faiss_gpu: expected one of auto \| true \| false"):
        config("runtime", faiss_gpu="yes")


def test_whole_file_from_yaml_text_with_bool_toggle(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("faiss_gpu: auto", "faiss_gpu: true")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert validate_params(load_params(path))["runtime"].faiss_gpu is True


@pytest.mark.parametrize("section_name,key,value,message", [
    ("train", "scheduler", "linear", "scheduler must be constant, cosine or step"),
    ("train", "scheduler", "step:0:0.1", "epochs must be >= 1"),
    ("train", "knowledge_gt_fraction", 1.5, "knowledge_gt_fraction must be in"),
    ("train", "ema_decay", 1.0, "ema_decay must be in"),
    ("train", "adam_beta2", 1.0, "adam_beta2 must be in"),
    ("train", "findings_repeat", 0, "findings_repeat must be >= 1"),
    ("train", "select_metric", "rouge", "select_metric: expected one of"),
    ("classifier", "optimizer", "sgd", "optimizer must be adamw or sgd:<momentum"),
    ("classifier", "threshold", "fixed:1.5", "the value must be in"),
    ("classifier", "threshold", "median", "threshold must be youden, f1 or fixed"),
    ("model", "fusion", "concat", "fusion: expected one of"),
    ("model", "heads", 7, "multiple of heads"),
    ("model", "dilation", True, "cannot dilate"),
    ("decode", "eos_threshold", 1.0, "eos_threshold must be in"),
    ("adm", "skip_classes", ["Nodule"], "unknown observation"),
    ("gid", "student_init", "random", "student_init: expected one of"),
    ("iek", "rule", "majority", "iek.rule: expected one of"),
    ("runtime", "device", "tpu", "device must be auto, cpu, cuda"),
    ("evaluate", "ce_labeler", "chexpert", "ce_labeler: expected one of"),
    ("evaluate", "ce_labeler", "chexbert", "needs evaluate.chexbert_checkpoint"),
    ("evaluate", "bootstrap_resamples", 0, "bootstrap_resamples must be >= 1"),
])
def test_each_section_validates_its_rules(section_name, key, value, message):
    with pytest.raises(ValueError, match=message):
        config(section_name, **{key: value})


def test_schedules_and_optimizers_parse():
    assert Schedule.parse("step:20:0.1") == Schedule("step", 20, 0.1)
    assert config("train").schedule.kind == "cosine"
    assert config("train", scheduler="constant").schedule == Schedule("constant")
    assert config("classifier").momentum is None
    assert config("classifier", optimizer="sgd:0.9").momentum == 0.9


def test_frozen_bn_needs_weights():
    with pytest.raises(ValueError, match="frozen_bn needs backbone_weights"):
        config("model", backbone_weights="", frozen_bn=True)


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_iek_hamming_limit():
    assert config("iek", max_hamming=-1).hamming_limit is None
    assert config("iek", max_hamming=2).hamming_limit == 2
