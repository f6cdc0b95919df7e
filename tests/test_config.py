import pytest

from ekagen.config import DataConfig, as_flat_dict, load_params, section
from tests.conftest import REPO


def test_repository_params_map_onto_dataclasses():
    params = load_params(REPO / "params.yaml")
    cfg = section(params, "data", DataConfig)
    assert cfg.source == "iu_phantom" and cfg.views == [0, 1]
    assert as_flat_dict(cfg, "data.")["data.phantom.uncertain"] == cfg.phantom.uncertain


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match="viewz"):
        section({"data": {"viewz": [0]}}, "data", DataConfig)


@pytest.mark.parametrize("key,value", [("image_size", "big"), ("skip_bad_records", "yes"),
                                       ("views", 1), ("split_fractions", ["a"])])
def test_wrong_types_are_errors(key, value):
    with pytest.raises(ValueError, match=f"data.{key}"):
        section({"data": {key: value}}, "data", DataConfig)


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_iek_hamming_limit():
    from ekagen.config import IekConfig

    assert IekConfig(max_hamming=-1).hamming_limit is None
    assert IekConfig(max_hamming=2).hamming_limit == 2


def test_iek_rule_is_checked():
    from ekagen.config import IekConfig

    assert IekConfig().rule == "likelihood"
    with pytest.raises(ValueError, match="iek.rule"):
        IekConfig(rule="majority")
