import pytest

from ekagen.data.text import clean_report, tokenize
from ekagen.data.vocab import Vocabulary


def test_iu_cleaning_matches_r2gen_form():
    raw = "The heart is normal in size.  The mediastinum is unremarkable.. 1. No acute disease."
    assert clean_report(raw) == ("the heart is normal in size . the mediastinum is unremarkable "
                                 ". no acute disease .")


def test_cleaning_strips_punctuation_and_keeps_anonymisation_tokens():
    cleaned = clean_report('XXXX opacity (left-sided); "patchy" / focal?')
    assert cleaned == "xxxx opacity leftsided patchy focal ."


def test_mimic_cleaning_removes_numbering_and_newlines():
    raw = "1. Lungs are clear.\n2. No effusion."
    assert clean_report(raw, "mimic_cxr") == "lungs are clear . no effusion ."


def test_empty_and_unknown_dataset():
    assert clean_report(" .. ") == ""
    with pytest.raises(ValueError, match="unknown dataset"):
        clean_report("x", "chexpert")


def test_vocab_min_freq_order_and_round_trip(tmp_path):
    reports = ["a b b .", "b c .", "d ."]
    vocab = Vocabulary.build(reports, min_freq=2, max_length=6)
    assert vocab.itos[4:] == ["." , "b"]  # '.' 3x, 'b' 3x -> alphabetical tie break
    ids = vocab.encode("b a zz .")
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert ids[2] == vocab.unk_id
    assert vocab.decode(ids) == "b <unk> <unk> ."
    vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again.itos == vocab.itos and again.max_length == 6


def test_encode_truncates_but_keeps_eos():
    vocab = Vocabulary.build(["a b c d e f g ."], min_freq=1, max_length=5)
    ids = vocab.encode("a b c d e f g .")
    assert len(ids) == 5 and ids[-1] == vocab.eos_id
    assert tokenize("a b .") == ["a", "b", "."]


def test_bad_vocab_file_names_the_file(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="vocab.json"):
        Vocabulary.load(bad)
