"""CheXbert labeler on a tiny checkpoint in the public layout (tests/labeler/tiny_chexbert.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ekagen.labeler.chexbert import CHEXBERT_CONDITIONS, clean_report, load_chexbert
from ekagen.observations import OBSERVATIONS
from tests.labeler.tiny_chexbert import HEAD_CLASSES, save_checkpoint, write_tiny_chexbert

NAN = float("nan")
# head order of the public checkpoint (CheXbert src/constants.py CONDITIONS), written out here so
# that a wrong order in the module cannot also be the test's expectation
HEAD_ORDER = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices", "No Finding",
)
# CheXbert class -> project value, written out independently of the module under test
FOUR_WAY = {0: NAN, 1: 1.0, 2: 0.0, 3: -1.0}
TWO_WAY = {0: NAN, 1: 1.0}

TEXTS = [
    "No acute cardiopulmonary abnormality.",
    "Mild cardiomegaly. Small bilateral pleural effusions, left greater than right.",
    "",
    "Patchy right basilar opacity may represent atelectasis or pneumonia. " * 6,
    "The lungs are clear.\n\nNo pneumothorax.",
    "Right PICC line terminates in the SVC. Healing left rib fractures. Sternotomy wires.",
    "Edema",
    "Interval removal of the endotracheal tube. Persistent retrocardiac consolidation; "
    "superimposed infection cannot be excluded. Moderate interstitial edema has improved. "
    "Heart size is stable. Calcified granuloma in the right upper lobe. " * 3,
    "Stable",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_chexbert(tmp_path_factory.mktemp("chexbert"), seed=3)


@pytest.fixture(scope="module")
def labeler(tiny: tuple[Path, Path]):
    return load_chexbert(*tiny)


@pytest.fixture(scope="module")
def frame(labeler) -> pd.DataFrame:
    return labeler.label(TEXTS, batch_size=4)


def _state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state_dict"]


def _vocab(bert_dir: Path) -> dict[str, int]:
    lines = (bert_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {token: i for i, token in enumerate(lines)}


def _hand_labels(checkpoint: Path, bert_dir: Path, ids: list[int]) -> dict[str, float]:
    """BertModel on ``ids`` -> [CLS] hidden state -> heads by hand -> argmax -> values."""
    from transformers import BertConfig, BertModel

    state = _state(checkpoint)
    bert = BertModel(BertConfig.from_json_file(str(bert_dir / "config.json")))
    prefix = "module.bert."
    bert.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    bert.eval()
    with torch.no_grad():
        cls = bert(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]
    values = {}
    for i, name in enumerate(HEAD_ORDER):
        weight = state[f"module.linear_heads.{i}.weight"]
        bias = state[f"module.linear_heads.{i}.bias"]
        winner = int(torch.argmax(weight @ cls + bias))
        values[name] = (TWO_WAY if name == "No Finding" else FOUR_WAY)[winner]
    return values


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_tiny_checkpoint_has_the_public_layout_and_is_reproducible(tmp_path: Path) -> None:
    first, bert_dir = write_tiny_chexbert(tmp_path / "a", seed=5)
    again, bert_again = write_tiny_chexbert(tmp_path / "b", seed=5)
    other, _ = write_tiny_chexbert(tmp_path / "c", seed=6)
    assert first.name == "chexbert.pth" and first.read_bytes() == again.read_bytes()
    for name in ("config.json", "vocab.txt"):
        assert (bert_dir / name).read_bytes() == (bert_again / name).read_bytes()
    assert first.read_bytes() != other.read_bytes()

    content = torch.load(first, map_location="cpu", weights_only=True)
    assert sorted(content) == ["epoch", "model_state_dict", "optimizer_state_dict"]
    assert isinstance(content["epoch"], int)
    state = content["model_state_dict"]
    assert all(key.startswith(("module.bert.", "module.linear_heads.")) for key in state)
    assert "module.bert.pooler.dense.weight" in state
    heads = [state[f"module.linear_heads.{i}.weight"].shape for i in range(14)]
    assert heads == [torch.Size([4, 32])] * 13 + [torch.Size([2, 32])]
    assert "module.linear_heads.14.weight" not in state
    vocab = _vocab(bert_dir)
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert state["module.bert.embeddings.word_embeddings.weight"].shape == (len(vocab), 32)


def test_head_order_is_the_public_one() -> None:
    assert CHEXBERT_CONDITIONS == HEAD_ORDER
    assert sorted(HEAD_ORDER) == sorted(OBSERVATIONS)


def test_frame_shape_columns_and_values(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(OBSERVATIONS)
    assert frame.shape == (len(TEXTS), 14)
    assert list(frame.index) == list(range(len(TEXTS)))
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    values = frame.to_numpy()
    assert np.isin(values[~np.isnan(values)], [1.0, 0.0, -1.0]).all()
    no_finding = frame["No Finding"].to_numpy()
    assert np.isin(no_finding[~np.isnan(no_finding)], [1.0]).all()
    # the tiny model tells reports apart, so the order tests below mean something
    assert len({tuple(np.nan_to_num(row, nan=9.0)) for row in values}) >= 4


@pytest.mark.parametrize("shift", range(4))
def test_each_head_lands_in_its_own_column(tiny: tuple[Path, Path], tmp_path: Path,
                                           shift: int) -> None:
    """Zero head weights and one large bias per head force a known class for every head."""
    checkpoint, bert_dir = tiny
    state = _state(checkpoint)
    forced = {}
    for i, (name, classes) in enumerate(zip(HEAD_ORDER, HEAD_CLASSES, strict=True)):
        winner = (i + shift) % classes
        state[f"module.linear_heads.{i}.weight"] = torch.zeros(classes, 32)
        bias = torch.zeros(classes)
        bias[winner] = 50.0
        state[f"module.linear_heads.{i}.bias"] = bias
        forced[name] = (TWO_WAY if classes == 2 else FOUR_WAY)[winner]
    rigged = save_checkpoint(tmp_path / "chexbert.pth", state)
    frame = load_chexbert(rigged, bert_dir).label(["Mild cardiomegaly.", "", "No effusion."])
    for name in OBSERVATIONS:
        assert all(_same(value, forced[name]) for value in frame[name]), name


def test_batching_and_order_do_not_change_labels(labeler, frame: pd.DataFrame) -> None:
    lengths = [len(ids) for ids in labeler.encode(TEXTS)]
    assert max(lengths) > 10 * min(lengths)
    single = labeler.label(TEXTS, batch_size=1)
    pd.testing.assert_frame_equal(single, labeler.label(TEXTS, batch_size=5))
    pd.testing.assert_frame_equal(single, frame)
    reordered = labeler.label(TEXTS[::-1], batch_size=3)
    pd.testing.assert_frame_equal(reordered, single.iloc[::-1].reset_index(drop=True))
    for i, text in enumerate(TEXTS):
        alone = labeler.label([text])
        pd.testing.assert_frame_equal(alone, single.iloc[[i]].reset_index(drop=True))


def test_batches_are_sorted_by_length_and_padded_per_batch(labeler) -> None:
    widths: list[int] = []
    hook = labeler.net.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[1]))
    try:
        labeler.label(TEXTS, batch_size=3)
    finally:
        hook.remove()
    lengths = sorted(len(ids) for ids in labeler.encode(TEXTS))
    assert widths == [lengths[2], lengths[5], lengths[8]]


def test_series_index_is_kept(labeler, frame: pd.DataFrame) -> None:
    series = pd.Series(TEXTS, index=[f"s{i}" for i in range(len(TEXTS))][::-1])
    labelled = labeler.label(series, batch_size=2)
    assert list(labelled.index) == list(series.index)
    np.testing.assert_array_equal(labelled.to_numpy(), frame.to_numpy())
    empty = labeler.label([])
    assert empty.shape == (0, 14) and list(empty.columns) == list(OBSERVATIONS)


def test_forward_pass_matches_a_hand_computation(tiny: tuple[Path, Path], labeler) -> None:
    checkpoint, bert_dir = tiny
    vocab = _vocab(bert_dir)
    text = "Mild Cardiomegaly.  No pleural\neffusion, right basilar atelectasis."
    words = ["mild", "cardiomegaly", ".", "no", "pleural", "effusion", ",", "right", "basilar",
             "atelectasis", "."]
    ids = [vocab["[CLS]"], *(vocab[w] for w in words), vocab["[SEP]"]]
    assert labeler.encode([text]) == [ids]
    row = labeler.label([text]).iloc[0]
    expected = _hand_labels(checkpoint, bert_dir, ids)
    assert all(_same(row[name], expected[name]) for name in OBSERVATIONS)


def test_empty_reports_are_cls_sep_through_the_model(tiny: tuple[Path, Path], labeler) -> None:
    vocab = _vocab(tiny[1])
    blanks = ["", "   \n\t ", None, float("nan"), pd.NA]
    assert labeler.encode(blanks) == [[vocab["[CLS]"], vocab["[SEP]"]]] * len(blanks)
    frame = labeler.label(blanks)
    expected = _hand_labels(*tiny, [vocab["[CLS]"], vocab["[SEP]"]])
    for _, row in frame.iterrows():
        assert all(_same(row[name], expected[name]) for name in OBSERVATIONS)


def test_cleaning_follows_chexbert(labeler) -> None:
    assert clean_report("  Mild\ncardiomegaly.\n\n  No   effusion. ") == (
        "Mild cardiomegaly. No effusion."
    )
    assert clean_report(None) == "" and clean_report(float("nan")) == ""
    variants = ["Mild cardiomegaly.\n\nNo  effusion.", " mild CARDIOMEGALY. no effusion.  "]
    frame = labeler.label(variants)
    pd.testing.assert_series_equal(frame.iloc[0], frame.iloc[1], check_names=False)
    with pytest.raises(TypeError, match="string"):
        labeler.label(["fine", 3])
    with pytest.raises(ValueError, match="batch_size"):
        labeler.label(["fine"], batch_size=0)


def test_long_report_is_truncated_to_512_tokens(tiny: tuple[Path, Path], labeler) -> None:
    vocab = _vocab(tiny[1])
    words = ("pleural effusion right lower lobe atelectasis no pneumothorax " * 100).split()
    assert len(words) == 800
    ids = labeler.encode([" ".join(words)])[0]
    assert len(ids) == 512
    assert ids[0] == vocab["[CLS]"] and ids[-1] == vocab["[SEP]"]
    assert ids[1:-1] == [vocab[w] for w in words[:510]]
    frame = labeler.label([" ".join(words), " ".join(words[:510]), "no effusion"], batch_size=2)
    pd.testing.assert_series_equal(frame.iloc[0], frame.iloc[1], check_names=False)


def test_other_checkpoint_layouts_load(tiny: tuple[Path, Path], tmp_path: Path,
                                       frame: pd.DataFrame) -> None:
    checkpoint, bert_dir = tiny
    state = _state(checkpoint)
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    with_buffers = dict(state)
    with_buffers["module.bert.embeddings.position_ids"] = torch.arange(512)[None]
    no_pooler = {k: v for k, v in state.items() if ".pooler." not in k}
    layouts = {
        "no_prefix": lambda p: save_checkpoint(p, plain),
        "bare_prefixed": lambda p: torch.save(state, p),
        "bare_plain": lambda p: torch.save(plain, p),
        "position_ids": lambda p: save_checkpoint(p, with_buffers),
        "no_pooler": lambda p: save_checkpoint(p, no_pooler),
        "legacy_format": lambda p: save_checkpoint(p, state, _use_new_zipfile_serialization=False),
    }
    for name, write in layouts.items():
        path = tmp_path / f"{name}.pth"
        write(path)
        got = load_chexbert(path, bert_dir).label(TEXTS, batch_size=4)
        pd.testing.assert_frame_equal(got, frame, obj=name)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_missing_checkpoint_says_where_to_get_it(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "chexbert.pth"
    with pytest.raises(FileNotFoundError) as info:
        load_chexbert(missing, tiny[1])
    message = str(info.value)
    assert str(missing) in message
    assert "download chexbert.pth from the CheXbert authors" in message
    assert "evaluate.chexbert_checkpoint" in message


@pytest.mark.parametrize("remove", ["folder", "config.json", "vocab.txt"])
def test_missing_bert_files_are_named(tiny: tuple[Path, Path], tmp_path: Path,
                                      remove: str) -> None:
    checkpoint, bert_dir = tiny
    broken = tmp_path / "bert"
    if remove != "folder":
        broken.mkdir()
        for name in ("config.json", "vocab.txt"):
            if name != remove:
                (broken / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError) as info:
        load_chexbert(checkpoint, broken)
    message = str(info.value)
    assert str(broken if remove == "folder" else broken / remove) in message
    assert "evaluate.chexbert_bert_dir" in message and "bert-base-uncased" in message


def _drop_head(state: dict, index: int) -> None:
    del state[f"module.linear_heads.{index}.weight"], state[f"module.linear_heads.{index}.bias"]


def _three_way(state: dict) -> None:
    state["module.linear_heads.4.weight"] = torch.zeros(3, 32)
    state["module.linear_heads.4.bias"] = torch.zeros(3)


def _thirteen_heads(state: dict) -> None:
    _drop_head(state, 13)
    state["module.linear_heads.12.weight"] = torch.zeros(2, 32)
    state["module.linear_heads.12.bias"] = torch.zeros(2)


@pytest.mark.parametrize(
    ("edit", "offending"),
    [
        (lambda s: _drop_head(s, 6), "linear_heads.6.weight"),
        (_three_way, "linear_heads.4.weight (3, 32)"),
        (lambda s: s.update({"module.extra_head.weight": torch.zeros(2)}), "extra_head.weight"),
        (_thirteen_heads, "linear_heads.13.weight"),
        (lambda s: s.pop("module.bert.encoder.layer.1.output.dense.bias"),
         "bert.encoder.layer.1.output.dense.bias"),
    ],
    ids=["missing_head", "three_way_head", "unknown_key", "thirteen_heads", "missing_bert_key"],
)
def test_checkpoint_that_does_not_fit_is_rejected(tiny: tuple[Path, Path], tmp_path: Path,
                                                  edit, offending: str) -> None:
    checkpoint, bert_dir = tiny
    state = _state(checkpoint)
    edit(state)
    bad = save_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(ValueError) as info:
        load_chexbert(bad, bert_dir)
    assert str(bad) in str(info.value) and offending in str(info.value)


def test_hidden_size_must_match_config(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, bert_dir = tiny
    state = _state(checkpoint)
    embeddings = "module.bert.embeddings.word_embeddings.weight"
    state[embeddings] = torch.zeros(state[embeddings].shape[0], 48)
    bad = save_checkpoint(tmp_path / "wide.pth", state)
    with pytest.raises(ValueError, match="hidden size is 48") as info:
        load_chexbert(bad, bert_dir)
    assert str(bad) in str(info.value) and str(bert_dir / "config.json") in str(info.value)


class _Payload:
    """Not a tensor container: a weights-only load must refuse to build it."""


def test_only_weights_are_unpickled(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    pickled = tmp_path / "object.pth"
    torch.save({"model_state_dict": _Payload()}, pickled)
    with pytest.raises(ValueError, match="weights-only") as info:
        load_chexbert(pickled, tiny[1])
    assert str(pickled) in str(info.value)
    odd = tmp_path / "numbers.pth"
    torch.save({"model_state_dict": {"module.bert.x": 1.0}}, odd)
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_chexbert(odd, tiny[1])
