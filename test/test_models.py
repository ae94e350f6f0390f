"""BiSeNet shapes, modes, gradients, parameter groups and weight loading; discriminators'
structure, sizes and compute. Tiny CPU inputs only."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from uda_seg_core.config import ModelConfig
from uda_seg_core.models import (
    BACKBONES,
    DISCRIMINATORS,
    BiSeNet,
    build_discriminator,
    build_segmentation_model,
    count_macs,
    count_parameters,
)
from uda_seg_core.models.backbones import torchvision_cache_path

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


def test_pretrained_from_local_file(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = BiSeNet(backbone="resnet18", pretrained=str(path))
    for name, tensor in model.context_path.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name


def test_pretrained_wrong_backbone_names_path_and_keys(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError) as err:
        BiSeNet(backbone="resnet18", pretrained=str(path))
    message = str(err.value)
    assert (str(path) in message and "unexpected keys: layer1.0.bn3" in message
            and "wrong shapes" in message)


def test_pretrained_bad_file_and_missing_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        BiSeNet(backbone="resnet18", pretrained=str(path))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        BiSeNet(backbone="resnet18", pretrained=str(tmp_path / "nowhere.pth"))


@pytest.fixture
def empty_torch_hub(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_pretrained_torchvision_cache_never_downloads(empty_torch_hub):
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        BiSeNet(backbone="resnet18", pretrained="torchvision")
    cached = torchvision_cache_path("resnet18")
    assert cached.parent == empty_torch_hub / "checkpoints" and cached.name.startswith("resnet18-")
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), cached)
    model = BiSeNet(backbone="resnet18", pretrained="torchvision")
    assert torch.equal(model.context_path.conv1.weight, reference.conv1.weight)


# --- discriminators -------------------------------------------------------------------

D_INPUT = (2, 12, 64, 96)
ADAPTSEGNET_CHANNELS = [(12, 64), (64, 128), (128, 256), (256, 512), (512, 1)]


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_output_shape_and_gradient(name):
    torch.manual_seed(0)
    d = build_discriminator(name, num_classes=12)
    x = torch.randn(*D_INPUT).softmax(1).requires_grad_()
    out = d(x)
    assert out.shape == (2, 1, 2, 3)  # 64x96 halved five times
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())
    assert DISCRIMINATORS[name](num_classes=12)(x).shape == out.shape


def test_fcd_is_adaptsegnet_layer_for_layer():
    d = build_discriminator("fcd", num_classes=12)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == ADAPTSEGNET_CHANNELS
    for c in convs:
        assert (c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
                and c.bias is not None)
    kinds = [type(m).__name__ for m in d]
    assert kinds == ["Conv2d", "LeakyReLU"] * 4 + ["Conv2d"]
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_dropout_after_each_conv_and_activation(name):
    assert not any(isinstance(m, nn.Dropout) for m in build_discriminator(name, 12).modules())
    d = build_discriminator(name, 12, dropout=0.01)
    kinds = [type(m).__name__ for m in d]
    assert kinds.count("Dropout") == 4 and kinds[-1] != "Dropout"
    assert all(kinds[i - 1] == "LeakyReLU" for i, kind in enumerate(kinds) if kind == "Dropout")
    assert all(m.p == 0.01 for m in d if isinstance(m, nn.Dropout))


def test_tfd_is_factorised_and_runs_small_convolutions():
    import tltorch

    d = build_discriminator("tfd", num_classes=12, rank=0.5)
    convs = [m for m in d if isinstance(m, tltorch.FactorizedConv)]
    assert len(convs) == 5
    assert all(c.factorization == "tucker" and c.implementation == "factorized" for c in convs)
    assert [(c.in_channels, c.out_channels) for c in convs] == ADAPTSEGNET_CHANNELS
    assert all(c.rank[2:] == (4, 4) for c in convs)  # Tucker-2: the 4x4 spatial modes are kept
    # Forward = dense convolution with the reconstructed kernel = tensorly-torch's own
    # factorised forward, up to float rounding.
    from tltorch.functional.convolution import tucker_conv

    x = torch.randn(1, 64, 32, 32)
    conv = convs[1]
    dense = torch.nn.functional.conv2d(x, conv.weight.to_tensor(), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv(x), tucker_conv(x, conv.weight, conv.bias, stride=2, padding=1))


@pytest.mark.parametrize("name", ["tfd", "dwd"])
def test_tfd_and_dwd_are_smaller_and_cheaper_than_fcd(name):
    fcd = build_discriminator("fcd", num_classes=12)
    other = build_discriminator(name, num_classes=12)
    assert count_parameters(other) < count_parameters(fcd)
    assert count_macs(other, D_INPUT) < 0.7 * count_macs(fcd, D_INPUT)


def test_count_macs_of_a_known_convolution():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 10, 20)) == 10 * 20 * 8 * 3 * 9
    depthwise = nn.Conv2d(8, 8, 4, 2, 1, groups=8)
    assert count_macs(depthwise, (1, 8, 16, 16)) == 8 * 8 * 8 * 16


def test_factorised_rank_is_validated():
    with pytest.raises(ValueError, match="rank"):
        build_discriminator("tfd", 12, rank=2.0)
    with pytest.raises(ValueError, match="fcd"):
        build_discriminator("xyz", 12)
