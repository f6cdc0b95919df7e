import pytest
import torch

from ekagen.models.generator import GeneratorConfig, build_generator

TINY = dict(d_model=32, encoder_layers=1, decoder_layers=2, heads=4, ffn=64, dropout=0.0,
            max_length=16)


@pytest.mark.parametrize("knowledge", [True, False])
def test_forward_shapes_with_and_without_knowledge(knowledge):
    model = build_generator(GeneratorConfig(**TINY, knowledge=knowledge), vocab_size=30, views=2)
    images, tokens = torch.randn(3, 2, 32, 32), torch.randint(0, 30, (3, 10))
    logits = model(images, tokens, torch.randint(0, 30, (3, 16)))
    assert logits.shape == (3, 10, 30)
    has_fusion = any(layer.fusion is not None for layer in model.decoder)
    assert has_fusion is knowledge


def test_knowledge_changes_the_output_only_when_enabled():
    torch.manual_seed(0)
    images, tokens = torch.randn(2, 1, 32, 32), torch.randint(3, 30, (2, 8))
    k1, k2 = torch.randint(3, 30, (2, 16)), torch.randint(3, 30, (2, 16))
    for enabled in (True, False):
        model = build_generator(GeneratorConfig(**TINY, knowledge=enabled), 30, views=1).eval()
        with torch.no_grad():
            differs = not torch.allclose(model(images, tokens, k1), model(images, tokens, k2))
        assert differs is enabled


def test_wrong_view_count_and_long_sequence_are_errors():
    model = build_generator(GeneratorConfig(**TINY), vocab_size=30, views=2)
    with pytest.raises(ValueError, match="2 view"):
        model(torch.randn(1, 1, 32, 32), torch.randint(0, 30, (1, 4)))
    with pytest.raises(ValueError, match="max_length"):
        model(torch.randn(1, 2, 32, 32), torch.randint(0, 30, (1, 17)))


def test_padding_does_not_leak_into_earlier_positions():
    model = build_generator(GeneratorConfig(**TINY), vocab_size=30, views=1).eval()
    images = torch.randn(1, 1, 32, 32)
    short = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, 0, 0]])
    with torch.no_grad():
        a, b = model(images, short), model(images, padded)
    assert torch.allclose(a, b[:, :4], atol=1e-5)


def test_paper_preset():
    cfg = GeneratorConfig.paper()
    assert (cfg.backbone, cfg.encoder_layers, cfg.decoder_layers, cfg.ffn) == \
        ("resnet101", 6, 6, 2048)
