"""The generator's trunk, initialised from DiagnosisBot, sees exactly DiagnosisBot's input."""

from __future__ import annotations

import torch

from ekagen.models.backbone import RadiographInput, build_backbone
from ekagen.models.classifier import build_classifier, save_classifier


def test_generator_trunk_reproduces_diagnosisbot_features(tmp_path):
    torch.manual_seed(0)
    bot = build_classifier("resnet18")
    for module in bot.modules():  # non-trivial BN statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    bot.eval()
    weights = save_classifier(bot, tmp_path, image_size=64)
    trunk = build_backbone("resnet18", dilation=False, frozen_bn=True, weights=str(weights))
    images = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        expected, _ = bot.features_and_logits(images)
        got = trunk(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_radiograph_input_is_imagenet_per_channel():
    grey = torch.full((1, 1, 2, 2), 0.5)
    out = RadiographInput()(grey)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_generator_backbone_features_match_diagnosisbot(tmp_path):
    """What the generator's encoder is fed, for images in [0, 1] (its callers' range)."""
    from ekagen.models.generator import build_generator
    from tests.conftest import model_config

    torch.manual_seed(1)
    bot = build_classifier("resnet18").eval()
    weights = save_classifier(bot, tmp_path, image_size=64)
    cfg = model_config(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, ffn=64,
                       backbone_weights=str(weights), frozen_bn=True)
    model = build_generator(cfg, vocab_size=20, views=2).eval()
    images = torch.rand(2, 2, 64, 64)
    with torch.no_grad():
        got = model.backbone_features(images)
        expected, _ = bot.features_and_logits(images.reshape(4, 1, 64, 64))
    torch.testing.assert_close(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
