import pytest
import torch

from ekagen.decoding import (
    _banned_tokens,
    beam_decode,
    greedy_decode,
    greedy_decode_uncached,
)
from ekagen.models.generator import build_generator
from tests.conftest import config, model_config

BOS, EOS = 1, 2


@pytest.fixture(scope="module", params=[("paper", False), ("memory", False), ("paper", True),
                                        ("memory", True)], ids=lambda p: f"{p[0]}-copy{p[1]}")
def model(request):
    torch.manual_seed(0)
    fusion, copy = request.param
    cfg = model_config(d_model=32, encoder_layers=1, decoder_layers=2, heads=4, ffn=64,
                          dropout=0.0, max_length=24, fusion=fusion, copy=copy)
    net = build_generator(cfg, vocab_size=12, views=2).eval()
    with torch.no_grad():  # make eos likely after a few steps so early stopping is exercised
        net.head[-1].bias[EOS] += 2.0
    return net


def _inputs(batch=5):
    g = torch.Generator().manual_seed(1)
    knowledge = torch.randint(3, 12, (batch, 9), generator=g)
    knowledge[1:, 6:] = 0  # padded knowledge, as the IEK lookup pads shorter reports
    return torch.randn(batch, 2, 32, 32, generator=g), knowledge


def _binding_threshold(model, images, knowledge) -> float:
    """A threshold between the batch's first-step P(eos) values, so the gate binds on some
    rows and not on others whatever the random weights."""
    with torch.no_grad():
        context = model.context(images, knowledge, 2)
        logits = model.decode(context, torch.full((len(images), 1), BOS))[:, -1]
        p = torch.softmax(logits.float(), -1)[:, EOS].sort().values
    return float(p[len(p) // 2 - 1] + p[len(p) // 2]) / 2


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "eos_threshold"])
def test_cached_and_uncached_decoding_give_identical_tokens(model, gated):
    images, knowledge = _inputs()
    eos_threshold = _binding_threshold(model, images, knowledge) if gated else 0.0
    cached = greedy_decode(model, images, knowledge, BOS, EOS, max_length=20,
                           eos_threshold=eos_threshold)
    uncached = greedy_decode_uncached(model, images, knowledge, BOS, EOS, max_length=20,
                                      eos_threshold=eos_threshold)
    assert cached == uncached
    assert any(seq[-1] == EOS and len(seq) < 20 for seq in cached)  # some stopped early


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "eos_threshold"])
def test_beam_one_equals_greedy(model, gated):
    images, knowledge = _inputs()
    eos_threshold = _binding_threshold(model, images, knowledge) if gated else 0.0
    assert beam_decode(model, images, knowledge, BOS, EOS, beam_size=1, max_length=20,
                       eos_threshold=eos_threshold) == \
        greedy_decode(model, images, knowledge, BOS, EOS, max_length=20,
                      eos_threshold=eos_threshold)


def test_eos_threshold_ends_only_when_the_end_is_likely_enough(model):
    """Each report ends at the first step whose P(eos) reaches the threshold; before that the
    best other token is taken."""
    images, knowledge = _inputs()
    threshold = _binding_threshold(model, images, knowledge)
    with torch.no_grad():
        gated = greedy_decode(model, images, knowledge, BOS, EOS, max_length=20,
                              eos_threshold=threshold)
        context = model.context(images, knowledge, 20)
        for i, seq in enumerate(gated):
            tokens = torch.tensor([[BOS, *seq]])
            probs = torch.softmax(model.decode(context.select(torch.tensor([i])),
                                               tokens[:, :-1])[0].float(), -1)
            p_eos = probs[:, EOS]
            ended = seq[-1] == EOS
            assert bool((p_eos[: len(seq) - ended] < threshold).all())
            if ended:
                assert float(p_eos[-1]) >= threshold
            for t, token in enumerate(seq[: len(seq) - ended]):
                others = probs[t].clone()
                others[EOS] = -1
                assert token == int(others.argmax())
    assert {len(seq) == 1 for seq in gated} == {True, False}  # it ended some rows, not all


def test_eos_threshold_is_checked():

    with pytest.raises(ValueError, match="eos_threshold"):
        config("decode", eos_threshold=1.0)


def test_beam_search_scores_at_least_greedy(model):
    images, knowledge = _inputs(3)

    def logprob(seqs):
        context = model.context(images, knowledge, 8)
        total = []
        for i, seq in enumerate(seqs):
            tokens = torch.tensor([[BOS, *seq]])
            logits = model.decode(context.select(torch.tensor([i])), tokens[:, :-1])
            lp = torch.log_softmax(logits, -1)[0, torch.arange(len(seq)), tokens[0, 1:]]
            total.append(float(lp.sum()))
        return total

    with torch.no_grad():
        greedy = greedy_decode(model, images, knowledge, BOS, EOS, max_length=6)
        beam = beam_decode(model, images, knowledge, BOS, EOS, beam_size=4, max_length=6)
        for g, b in zip(logprob(greedy), logprob(beam), strict=True):
            assert b >= g - 1e-4


def test_no_repeat_ngram_blocks_repeats(model):
    images, knowledge = _inputs()
    with torch.no_grad():
        model.head[-1].bias[EOS] -= 10.0  # force long outputs that would repeat
        try:
            outs = beam_decode(model, images, knowledge, BOS, EOS, beam_size=2, max_length=20,
                               no_repeat_ngram=2)
            greedy = greedy_decode(model, images, knowledge, BOS, EOS, max_length=20,
                                   no_repeat_ngram=2)
        finally:
            model.head[-1].bias[EOS] += 10.0
    for seq in outs + greedy:
        bigrams = list(zip(seq, seq[1:], strict=False))
        assert len(bigrams) == len(set(bigrams))


def test_banned_tokens():
    assert _banned_tokens([5, 6, 5], 2) == {6}
    assert _banned_tokens([5, 6, 7], 3) == set()
    assert _banned_tokens([4, 4], 1) == {4}
