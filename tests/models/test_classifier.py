from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ekagen.diagnosis.train import classifier_loss
from ekagen.models.classifier import (
    DiagnosisBot,
    build_classifier,
    load_classifier,
    load_pretrained,
    save_classifier,
)


def test_resnet18_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_classifier("resnet18", num_classes=3)
    images = torch.rand(8, 1, 32, 32)
    targets = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1],
                            [1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.float32)
    weights = torch.ones_like(targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = classifier_loss(model(images), targets, weights)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    with torch.no_grad():
        predicted = torch.sigmoid(model(images)) >= 0.5
    assert torch.equal(predicted, targets.bool())


def test_ignored_labels_do_not_contribute():
    logits = torch.tensor([[5.0, -3.0]])
    target = torch.tensor([[0.0, 0.0]])
    only_second = classifier_loss(logits, target, torch.tensor([[0.0, 1.0]]))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(-3.0),
                                                                    torch.tensor(0.0))
    torch.testing.assert_close(only_second, expected)


@pytest.mark.parametrize("backbone,size", [("densenet121", 32), ("swin_t", 64)])
def test_non_resnet_backbones_forward_and_backward(backbone, size):
    torch.manual_seed(0)
    model = build_classifier(backbone)
    images = torch.rand(2, 1, size, size)
    fmap, logits = model.features_and_logits(images)
    assert logits.shape == (2, 14) and fmap.dim() == 4 and fmap.shape[0] == 2
    model(images).sum().backward()
    assert model.head.weight.grad is not None
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.features_and_logits(images)[1])


def test_grayscale_is_replicated_to_rgb():
    model = build_classifier("resnet18").eval()
    gray = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(gray), model(gray.expand(-1, 3, -1, -1)))


def test_unknown_backbone_is_an_error():
    with pytest.raises(ValueError, match="vgg16"):
        build_classifier("vgg16")


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth.*not found"):
        build_classifier("resnet18", pretrained=str(tmp_path / "nope.pth"))


def test_imagenet_style_state_dict_loads_and_head_is_reinitialised(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)  # 1000-class head, like ImageNet
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}},
               path)
    model = build_classifier("resnet18", pretrained=str(path))
    torch.testing.assert_close(model.net.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.net.layer4[1].bn2.running_var,
                               reference.layer4[1].bn2.running_var)
    assert model.head.weight.shape == (14, 512)
    # safetensors works too and reports the dropped head
    st = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(st))
    assert sorted(load_pretrained(DiagnosisBot("resnet18"), st)) == ["fc.bias", "fc.weight"]


def test_incompatible_pretrained_file_is_a_clear_error(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit backbone 'densenet121'"):
        build_classifier("densenet121", pretrained=str(path))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights"):
        build_classifier("resnet18", pretrained=str(junk))


def test_save_and_load_without_training_code(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("resnet18").eval()
    save_classifier(model, tmp_path, image_size=32)
    config = json.loads((tmp_path / "model.json").read_text())
    assert config["backbone"] == "resnet18" and config["image_size"] == 32
    assert config["input"]["mean"] == [0.485, 0.456, 0.406] and len(config["classes"]) == 14
    loaded, _ = load_classifier(tmp_path)
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))
