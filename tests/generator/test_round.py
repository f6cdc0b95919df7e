"""A GID round through the shared engine on a handful of synthetic studies: it resumes after
an interruption instead of restarting, and round 1 distils from a frozen teacher."""

import numpy as np
import pytest
import torch

from ekagen.data.vocab import Vocabulary
from ekagen.generation.data import ReportStudies, encode_reports
from ekagen.generation.train import round_fingerprint, train_round
from ekagen.models.generator import build_generator
from tests.conftest import config, model_config

REPORTS = ["the heart is enlarged .", "no pleural effusion .", "the lungs are clear .",
           "there is a right pleural effusion .", "the heart is normal .", "no pneumothorax ."]


class Interrupt(Exception):
    pass


def _data():
    vocab = Vocabulary.build(REPORTS, 1, 12)
    tokens = encode_reports(REPORTS, vocab, 12)
    images = (np.random.default_rng(0).random((6, 1, 32, 32)) * 255).astype(np.uint8)
    packed = np.packbits(np.ones((6, 1, 32 * 32), dtype=bool), axis=-1)
    knowledge = np.tile(tokens[:1], (6, 1))
    return vocab, {"train": ReportStudies(images, packed, np.arange(4), tokens, knowledge),
                   "val": ReportStudies(images, packed, np.arange(4, 6), tokens, knowledge)}


CFG = model_config(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, ffn=64,
                   dropout=0.1, max_length=12)
TRAIN = config("train", epochs=3, batch_size=2, lr=1e-3, backbone_lr=1e-4)
RUNTIME = config("runtime", device="cpu")


def _writer(vocab):
    """Validation decodes through the test-time path: an empty knowledge base, the
    pipeline's adm and iek settings, decoding cut at 8 tokens."""
    from ekagen.inference import ReportWriter
    from ekagen.knowledge.iek import KnowledgeBase

    return ReportWriter(None, vocab, KnowledgeBase([], [], [], [], {}, {}, 12), config("iek"),
                        config("adm"), config("decode", max_length=8))


def _model(seed=0):
    torch.manual_seed(seed)
    return build_generator(CFG, 20, views=1)


def test_round_resumes_after_interruption(tmp_path):
    vocab, data = _data()
    refs = REPORTS[4:]
    fp = round_fingerprint(CFG, TRAIN, "r0")
    full = train_round(_model(), data, refs, _writer(vocab), TRAIN, config("gid"), RUNTIME, 0,
                       None, str(tmp_path / "a"), fp, progress=False)

    def boom(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_round(_model(), data, refs, _writer(vocab), TRAIN, config("gid"), RUNTIME, 0,
                    None, str(tmp_path / "b"), fp, on_epoch_end=boom, progress=False)
    resumed = train_round(_model(seed=7), data, refs, _writer(vocab), TRAIN, config("gid"),
                          RUNTIME, 0, None, str(tmp_path / "b"), fp, progress=False)
    assert resumed.resumed_from == 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    for record in full.history:  # the default selection metric: CE micro-F1 + BLEU-4
        assert record["val_ce_bleu4"] == pytest.approx(
            record["val_ce_micro_f1"] + record["val_bleu4"], abs=2e-6)
    best = max(full.history, key=lambda r: (r["val_ce_bleu4"], r["epoch"]))
    assert full.best_epoch == best["epoch"]


def test_round_with_weight_averaging_trains_alike_and_exports_the_average(tmp_path):
    from dataclasses import replace

    vocab, data = _data()
    refs = REPORTS[4:]
    plain = train_round(_model(), data, refs, _writer(vocab), TRAIN, config("gid"), RUNTIME, 0,
                        None, None, "plain", progress=False)
    averaged_cfg = replace(TRAIN, ema_decay=0.5)
    averaged = train_round(_model(), data, refs, _writer(vocab), averaged_cfg, config("gid"),
                           RUNTIME, 0, None, None, "ema", progress=False)
    # the average changes what is validated and kept, not the optimisation
    assert [r["train_loss"] for r in plain.history] == \
        [r["train_loss"] for r in averaged.history]
    decoder = [k for k in plain.model.state_dict() if k.startswith("decoder")]
    assert decoder and any(not torch.equal(plain.model.state_dict()[k],
                                           averaged.model.state_dict()[k]) for k in decoder)


def test_teacher_round_adds_distillation_and_keeps_teacher_frozen(tmp_path):
    vocab, data = _data()
    teacher = _model(seed=3).eval()
    before = [p.detach().clone() for p in teacher.parameters()]
    records = []
    result = train_round(_model(), data, REPORTS[4:], _writer(vocab),
                         config("train", **{**TRAIN.__dict__, "epochs": 1}),
                         config("gid", delta=0.5), RUNTIME, 0, teacher, None, "t",
                         on_epoch_end=records.append, progress=False)
    record = records[0]
    assert record["train_kd"] > 0
    assert record["train_loss"] == pytest.approx(record["train_ce"] + 0.5 * record["train_kd"],
                                                 rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    assert not any(p.requires_grad for p in teacher.parameters())
    assert result.best_epoch == 1


def _tables():
    import pandas as pd

    from ekagen.knowledge.iek import KnowledgeBase
    from ekagen.observations import OBSERVATIONS

    labels = np.zeros((6, len(OBSERVATIONS)))
    labels[:, OBSERVATIONS.index("No Finding")] = 1
    labels[[0, 3], OBSERVATIONS.index("No Finding")] = 0
    labels[0, OBSERVATIONS.index("Cardiomegaly")] = 1
    labels[3, OBSERVATIONS.index("Pleural Effusion")] = 1
    labels[5, OBSERVATIONS.index("Pleural Effusion")] = -1  # uncertain: not a finding
    studies = pd.DataFrame(labels, columns=list(OBSERVATIONS))
    studies.insert(0, "id", [f"s{i}" for i in range(6)])
    studies["report"] = REPORTS
    studies["split"] = ["train"] * 4 + ["val"] * 2
    diagnosis = studies[["id", *OBSERVATIONS]].copy()
    for name in OBSERVATIONS:  # as load_study_diagnosis writes them
        diagnosis[f"prob:{name}"] = (studies[name] == 1).astype(float)
    return studies, diagnosis, KnowledgeBase([], [], [], [], {}, {}, 12)


@pytest.mark.parametrize("repeat, train_rows", [(1, [0, 1, 2, 3]), (3, [0, 0, 0, 1, 2, 3, 3, 3])])
def test_findings_repeat_lists_training_studies_with_a_finding_more_often(repeat, train_rows):
    from ekagen.generation.data import build_datasets

    studies, diagnosis, kb = _tables()
    vocab = Vocabulary.build(REPORTS, 1, 12)
    images = np.zeros((6, 1, 32, 32), dtype=np.uint8)
    data = build_datasets(studies, images, None, diagnosis, kb, vocab, 12, 1.0, 0,
                          findings_repeat=repeat)
    assert data["train"].rows.tolist() == train_rows
    assert data["val"].rows.tolist() == [4, 5]  # validation is never re-weighted
    with pytest.raises(ValueError, match="findings_repeat must be >= 1"):
        config("train", findings_repeat=0)
