from pathlib import Path

import numpy as np
import pytest
import torch

from ekagen.evaluation.run import score_systems
from ekagen.generation.rounds import round_teacher
from tests.conftest import config, model_config


def test_round_teacher_rules():
    gid = config("gid", rounds={"r0": {"teacher": "none", "after": "x"},
                            "r1": {"teacher": "r0", "after": "data/gid/r0"},
                            "r2": {"teacher": "r1", "after": "data/gid/r0"},
                            "r3": {"teacher": "r9"}})
    assert round_teacher(gid, "r0", Path("data/gid")) is None
    assert round_teacher(gid, "r1", Path("data/gid")) == "r0"
    with pytest.raises(ValueError, match="after must be 'data/gid/r1'"):
        round_teacher(gid, "r2", Path("data/gid"))
    with pytest.raises(ValueError, match="is not another round"):
        round_teacher(gid, "r3", Path("data/gid"))
    with pytest.raises(ValueError, match="no round 'r7'"):
        round_teacher(gid, "r7", Path("data/gid"))


def test_evaluation_fails_loudly_when_a_study_is_missing():
    refs = ["the heart is normal .", "no effusion .", "the lungs are clear ."]
    with pytest.raises(RuntimeError, match="2 reports for 3 test studies"):
        score_systems({"ekagen": refs[:2]}, refs, meteor=False)
    scored = score_systems({"ekagen": refs}, refs, meteor=False)
    flat, labels = scored.flat, scored.labels
    assert flat["test_studies"] == 3 and flat["ekagen.bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(labels["ekagen"], labels["reference"], equal_nan=True)


def test_student_starts_from_the_teacher_only_when_shapes_match():
    from ekagen.generation.rounds import start_from_teacher
    from ekagen.models.generator import build_generator

    tiny = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, ffn=64, max_length=16)
    torch.manual_seed(0)
    teacher = build_generator(model_config(**tiny, fusion="memory"), 20, views=1)
    student = build_generator(model_config(**tiny, fusion="memory"), 20, views=1)
    start_from_teacher(student, teacher, Path("data/gid/r0"))
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(),
                                                 teacher.state_dict().values(), strict=True))
    other = build_generator(model_config(**tiny, fusion="paper"), 20, views=1)
    with pytest.raises(ValueError, match="data/gid/r0.*architecture"):
        start_from_teacher(other, teacher, Path("data/gid/r0"))
    with pytest.raises(ValueError, match="student_init"):
        config("gid", student_init="random")


def test_cosine_schedule_decays_to_zero_over_the_round_and_step_is_per_epoch():
    from ekagen.generation.train import scheduler_factory

    param = torch.nn.Parameter(torch.zeros(1))
    make, interval = scheduler_factory(config("train", lr=1.0, scheduler="cosine"), epochs=2)
    opt = torch.optim.SGD([param], lr=1.0)
    sched = make(opt, 5)  # 5 batches an epoch, 2 epochs
    rates = []
    for _ in range(10):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert interval == "step" and rates[4] == pytest.approx(0.5) and rates[-1] == pytest.approx(0)
    assert scheduler_factory(config("train", scheduler="step:1:0.5"), 2)[1] == "epoch"
    assert scheduler_factory(config("train", scheduler="constant"), 2)[0] is None


def test_generator_folder_from_an_older_schema_is_an_error_naming_the_key(tmp_path):
    import json

    from ekagen.data.vocab import Vocabulary
    from ekagen.generation.checkpoint import load_generator, save_generator
    from ekagen.models.generator import build_generator

    tiny = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, ffn=64, max_length=16)
    vocab = Vocabulary.build(["the heart is normal ."], 1, 16)
    model = build_generator(model_config(**tiny, fusion="paper"), len(vocab), views=1)
    save_generator(model, tmp_path, vocab, config("adm"), config("iek"), {})
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved["adm"] == config("adm").__dict__ and saved["iek"] == config("iek").__dict__
    del saved["model"]["copy"]
    (tmp_path / "model.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['copy'\]"):
        load_generator(tmp_path)


def test_copy_model_round_trips_through_its_folder(tmp_path):
    import torch

    from ekagen.data.vocab import Vocabulary
    from ekagen.generation.checkpoint import load_generator, save_generator
    from ekagen.models.generator import build_generator

    tiny = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, ffn=64, max_length=16)
    vocab = Vocabulary.build(["the heart is normal ."], 1, 16)
    torch.manual_seed(0)
    model = build_generator(model_config(**tiny, copy=True), len(vocab), views=1).eval()
    save_generator(model, tmp_path, vocab, config("adm"), config("iek"), {})
    loaded, _, _ = load_generator(tmp_path)
    assert loaded.cfg.copy is True
    images, tokens = torch.rand(1, 1, 32, 32), torch.tensor([[1, 4, 5]])
    knowledge = torch.tensor([[1, 4, 5, 6, 2]])
    with torch.no_grad():
        assert torch.allclose(model(images, tokens, knowledge), loaded(images, tokens, knowledge))


def test_template_statistics_tell_a_greedy_loop_from_another_finding():
    from ekagen.generation.train import template_statistics

    normal = "the heart is normal . the lungs are clear ."
    looped = "the heart is normal . the lungs are clear . the lungs are clear ."
    finding = "the heart is normal . there is a small left effusion ."
    stats = template_statistics([normal, normal, normal, looped, finding, finding])
    assert stats == {"val_distinct_reports": 3.0, "val_top_report_share": 0.5,
                     "val_repeat_share": pytest.approx(1 / 6, abs=1e-6)}
    assert template_statistics([])["val_distinct_reports"] == 0.0


def test_adamw_takes_the_configured_second_moment_decay():
    from torch import nn

    from ekagen.generation.train import optimizer_factory

    net = nn.Module()
    net.backbone, net.head = nn.Linear(2, 2), nn.Linear(2, 2)
    optimizer = optimizer_factory(config("train", adam_beta2=0.98, backbone_lr=0.0))(net)
    assert [g["betas"] for g in optimizer.param_groups] == [(0.9, 0.98)]
    assert not net.backbone.weight.requires_grad  # backbone_lr 0 still freezes the CNN
