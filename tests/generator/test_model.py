from dataclasses import replace

import pytest
import torch

from ekagen.models.generator import build_generator
from tests.conftest import model_config

TINY = dict(d_model=32, encoder_layers=1, decoder_layers=2, heads=4, ffn=64, dropout=0.0,
            max_length=16)


@pytest.mark.parametrize("fusion", ["paper", "memory"])
@pytest.mark.parametrize("knowledge", [True, False])
def test_forward_shapes_with_and_without_knowledge(knowledge, fusion):
    model = build_generator(model_config(**TINY, knowledge=knowledge, fusion=fusion),
                            vocab_size=30, views=2)
    images, tokens = torch.randn(3, 2, 32, 32), torch.randint(0, 30, (3, 10))
    logits = model(images, tokens, torch.randint(0, 30, (3, 16)))
    assert logits.shape == (3, 10, 30)
    has_fusion = any(layer.fusion is not None for layer in model.decoder)
    assert has_fusion is (knowledge and fusion == "paper")
    assert (model.knowledge_source is not None) is (knowledge and fusion == "memory")


@pytest.mark.parametrize("fusion", ["paper", "memory"])
def test_knowledge_changes_the_output_only_when_enabled(fusion):
    torch.manual_seed(0)
    images, tokens = torch.randn(2, 1, 32, 32), torch.randint(3, 30, (2, 8))
    k1, k2 = torch.randint(3, 30, (2, 16)), torch.randint(3, 30, (2, 16))
    for enabled in (True, False):
        cfg = model_config(**TINY, knowledge=enabled, fusion=fusion)
        model = build_generator(cfg, 30, views=1).eval()
        with torch.no_grad():
            differs = not torch.allclose(model(images, tokens, k1), model(images, tokens, k2))
        assert differs is enabled


def test_wrong_view_count_and_long_sequence_are_errors():
    model = build_generator(model_config(**TINY), vocab_size=30, views=2)
    with pytest.raises(ValueError, match="2 view"):
        model(torch.randn(1, 1, 32, 32), torch.randint(0, 30, (1, 4)))
    with pytest.raises(ValueError, match="max_length"):
        model(torch.randn(1, 2, 32, 32), torch.randint(0, 30, (1, 17)))


def test_padding_does_not_leak_into_earlier_positions():
    model = build_generator(model_config(**TINY), vocab_size=30, views=1).eval()
    images = torch.randn(1, 1, 32, 32)
    short = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, 0, 0]])
    with torch.no_grad():
        a, b = model(images, short), model(images, padded)
    assert torch.allclose(a, b[:, :4], atol=1e-5)


def test_fusion_forms_differ_in_what_position_zero_can_see():
    """The paper's per-position fusion hides knowledge beyond t from position t (causal);
    the memory form lets the first position read the whole knowledge report."""
    torch.manual_seed(0)
    images, tokens = torch.randn(1, 1, 32, 32), torch.tensor([[1, 5, 6, 7]])
    early = torch.tensor([[4, 9, 9, 9, 9, 9, 2]])
    late = torch.tensor([[4, 9, 9, 9, 9, 11, 2]])  # differs only at position 5
    for fusion, first_changes in (("paper", False), ("memory", True)):
        model = build_generator(model_config(**TINY, fusion=fusion), 30, views=1).eval()
        with torch.no_grad():
            a, b = model(images, tokens, early), model(images, tokens, late)
        assert (not torch.allclose(a[:, 0], b[:, 0])) is first_changes, fusion


def test_memory_fusion_ignores_knowledge_padding():
    torch.manual_seed(0)
    model = build_generator(model_config(**TINY, fusion="memory"), 30, views=1).eval()
    assert all(layer.fusion is None for layer in model.decoder)
    images, tokens = torch.randn(2, 1, 32, 32), torch.tensor([[1, 5, 6], [1, 7, 8]])
    knowledge = torch.tensor([[4, 9, 2, 0, 0], [4, 9, 10, 11, 2]])
    with torch.no_grad():
        both = model(images, tokens, knowledge)
        alone = model(images[:1], tokens[:1], knowledge[:1, :3])  # no padding at all
    assert torch.allclose(both[:1], alone, atol=1e-5)


@pytest.mark.parametrize("fusion", ["paper", "memory"])
def test_copy_output_is_a_distribution_that_pads_never_receive(fusion):
    torch.manual_seed(0)
    model = build_generator(model_config(**TINY, fusion=fusion, copy=True), 30, views=1).eval()
    images, tokens = torch.randn(2, 1, 32, 32), torch.tensor([[1, 5, 6], [1, 7, 8]])
    knowledge = torch.tensor([[1, 9, 9, 12, 2, 0], [1, 3, 4, 2, 0, 0]])
    with torch.no_grad():
        model.copy_gate.bias.fill_(-30.0)  # g ~ 0: the output is the pointer alone
        logp = model(images, tokens, knowledge)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 3), atol=1e-5)
    p = logp.exp()
    # all the mass lies on the row's knowledge tokens, none on padding (id 0) or other ids
    for row in range(2):
        ids = sorted(set(knowledge[row].tolist()) - {0})
        assert p[row][:, ids].sum(-1).min() > 0.999
        assert p[row][:, 0].max() < 1e-6
    with torch.no_grad():
        model.copy_query.weight.zero_(), model.copy_query.bias.zero_()
        uniform = model(images, tokens, knowledge).exp()
    # a flat pointer: a token's mass is its share of the real knowledge tokens (9 twice of 5)
    assert torch.allclose(uniform[0, :, 9], torch.full((3,), 2 / 5), atol=1e-4)
    assert torch.allclose(uniform[1, :, 3], torch.full((3,), 1 / 4), atol=1e-4)


def test_copy_with_padding_only_knowledge_falls_back_to_the_vocabulary():
    torch.manual_seed(0)
    model = build_generator(model_config(**TINY, copy=True), 30, views=1)
    images, tokens = torch.randn(2, 1, 32, 32), torch.tensor([[1, 5, 6], [1, 7, 8]])
    knowledge = torch.tensor([[1, 9, 2], [0, 0, 0]])
    logp = model(images, tokens, knowledge)
    logp[:, :, 5].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 3), atol=1e-5)
    with torch.no_grad():  # the padding-only row is the plain vocabulary distribution
        context = model.context(images, knowledge, 3)
        plain = replace(context, copy_ids=None, copy_keys=None, copy_mask=None)
        expected = torch.log_softmax(model.decode(plain, tokens)[1], -1)
        assert torch.allclose(model.decode(context, tokens)[1], expected, atol=1e-5)


def test_copy_is_inactive_without_knowledge():
    torch.manual_seed(0)
    cfg = model_config(**TINY, copy=True, knowledge=False)
    model = build_generator(cfg, 30, views=1).eval()
    assert not hasattr(model, "copy_gate")
    out = model(torch.randn(1, 1, 32, 32), torch.tensor([[1, 5]]), torch.tensor([[1, 5, 2]]))
    assert out.shape == (1, 2, 30)


def test_unknown_fusion_is_an_error():
    with pytest.raises(ValueError, match="model.fusion"):
        model_config(fusion="concat")
