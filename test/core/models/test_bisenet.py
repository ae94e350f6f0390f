"""BiSeNet (models/bisenet.py): shapes, modes, gradients, parameter groups, building from
the config. Tiny CPU inputs only."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uda_seg_core.config import ModelConfig
from uda_seg_core.models import (
    BACKBONES,
    BiSeNet,
    build_segmentation_model,
)

SIZES = [(64, 96), (60, 92)]  # the second is not divisible by 32


@pytest.fixture(scope="module", params=list(BACKBONES))
def model(request):
    torch.manual_seed(0)
    return BiSeNet(num_classes=12, backbone=request.param)


@pytest.mark.parametrize("size", SIZES)
def test_bisenet_shapes_every_backbone_and_mode(model, size):
    x = torch.randn(2, 3, *size)
    model.train()
    outputs = model(x)
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert all(out.shape == (2, 12, *size) for out in outputs)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        pred = model(x, aux_mode="pred")
    assert logits.shape == (2, 12, *size)
    assert pred.shape == (2, *size) and pred.dtype == torch.int64
    assert torch.equal(pred, logits.argmax(1))


def test_aux_mode_attribute_overrides_training_flag():
    model = BiSeNet(backbone="resnet18", aux_mode="eval").train()
    assert model(torch.randn(1, 3, 64, 96)).shape == (1, 12, 64, 96)
    model.aux_mode = "pred"
    assert model(torch.randn(1, 3, 64, 96)).shape == (1, 64, 96)
    with pytest.raises(ValueError, match="aux_mode"):
        model(torch.randn(1, 3, 64, 96), aux_mode="logits")


def test_batch_of_one_trains():
    # The attention vectors have no BatchNorm, so a 1-image batch works in train mode.
    model = BiSeNet(backbone="resnet18").train()
    main, aux16, aux32 = model(torch.randn(1, 3, 60, 92))
    assert main.shape == aux16.shape == aux32.shape == (1, 12, 60, 92)


def test_gradients_reach_both_paths_and_all_heads():
    torch.manual_seed(0)
    model = BiSeNet(backbone="resnet18").train()
    main, aux16, aux32 = model(torch.randn(2, 3, 64, 96))
    (main.square().mean() + aux16.square().mean() + aux32.square().mean()).backward()
    for name, modules in model.module_groups().items():
        grads = [p.grad for m in modules for p in m.parameters()]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum().item() for g in grads) > 0, name
    assert model.spatial_path[0][0].weight.grad.abs().sum() > 0
    assert model.context_path.conv1.weight.grad.abs().sum() > 0


def test_module_groups_cover_every_parameter_once():
    model = BiSeNet(backbone="resnet18")
    grouped = [id(p) for modules in model.module_groups().values() for m in modules
               for p in m.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert set(model.module_groups()) == {"spatial_path", "context_path", "arm", "ffm", "heads"}


def test_param_groups_no_decay_on_norms_and_biases():
    model = BiSeNet(backbone="resnet18")
    decay, no_decay = model.param_groups(1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    decay_ids = {id(p) for p in decay["params"]}
    assert not no_decay_ids & decay_ids
    assert len(no_decay_ids) + len(decay_ids) == len(list(model.parameters()))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert id(m.weight) in no_decay_ids and id(m.bias) in no_decay_ids
        if isinstance(m, nn.Conv2d):
            assert id(m.weight) in decay_ids
            if m.bias is not None:
                assert id(m.bias) in no_decay_ids
    torch.optim.SGD(model.param_groups(1e-4), lr=0.01, momentum=0.9)  # accepted as-is


def test_build_from_config():
    model = build_segmentation_model(ModelConfig(backbone="resnet34", num_classes=5))
    assert isinstance(model, BiSeNet) and model.backbone == "resnet34"
    assert model.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 5, 64, 96)
    with pytest.raises(ValueError, match="resnet18"):
        BiSeNet(backbone="resnet19")


# --- discriminators -------------------------------------------------------------------

