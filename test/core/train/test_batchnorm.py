"""BatchNorm re-estimation as a library function (train.batchnorm)."""
from __future__ import annotations

import torch

from helpers.fixtures import tiny_config, write_domains
from uda_seg_core.models import build_segmentation_model
from uda_seg_core.train.batchnorm import recalibrate_batchnorm


def test_target_only_reestimation_needs_no_source_data(tmp_path):
    """Guards against re-estimation that always reads the source domain: adapting a
    network's normalisation to the target must work where only target images exist."""
    _, camvid = write_domains(tmp_path, n=2)
    cfg = tiny_config(tmp_path, tmp_path / "no_source_here", camvid,
                      **{"data.target_format": "camvid", "train.batch_size": 1})
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model)
    before = model.spatial_path[0][1].running_mean.clone()
    layers = recalibrate_batchnorm(model, cfg, batches=2, device="cpu", with_target=True,
                                   source=False)
    assert layers > 0
    assert not torch.equal(before, model.spatial_path[0][1].running_mean)
    assert not model.training  # left in eval mode, ready to measure or save


def _first_norm_input_mean(model, images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of what the first BatchNorm of the spatial path receives."""
    seen = []
    hook = model.spatial_path[0][1].register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        model.eval()
        model(images)
    hook.remove()
    return seen[0]


def test_adapt_bn_command_moves_statistics_to_the_target_and_keeps_weights(tmp_path, capsys):
    """`uda-seg adapt-bn` writes a checkpoint whose BatchNorm statistics describe TARGET frames
    (closer to them than to the source's) and whose weights are unchanged. Mutants caught:
    re-estimation on source frames (source=True), a checkpoint written before the
    re-estimation, weights touched by a training step."""
    from uda_seg_core.checkpoint import load_checkpoint, save_checkpoint
    from uda_seg_core.cli import main
    from uda_seg_core.config import input_normalisation
    from uda_seg_core.data import build_dataset, eval_transform
    from uda_seg_core.models import build_model_from_checkpoint

    idda, camvid = write_domains(tmp_path, n=4)
    cfg = tiny_config(tmp_path, idda, camvid, **{"train.batch_size": 2})
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model)
    source_ckpt = save_checkpoint(tmp_path / "source.pt", model, cfg)
    out = tmp_path / "adapted.pt"
    assert main(["adapt-bn", "--checkpoint", str(source_ckpt), "--data", str(camvid),
                 "--out", str(out), "--batches", "4", "--device", "cpu"]) == 0
    assert "BatchNorm layers re-estimated" in capsys.readouterr().out
    adapted = load_checkpoint(out)
    assert adapted["adapt_bn"]["batches"] == 4
    original = load_checkpoint(source_ckpt)["state_dict"]
    for key, value in adapted["state_dict"].items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value, original[key]), key
    new_model = build_model_from_checkpoint(adapted)

    def batch(root, split):
        ds = build_dataset("auto", root, split, transform=eval_transform(
            cfg.data, normalisation=input_normalisation(cfg)))
        return torch.stack([ds[i]["image"] for i in range(len(ds))])

    target_mean = _first_norm_input_mean(new_model, batch(camvid, "train"))
    source_mean = _first_norm_input_mean(new_model, batch(idda, "all"))
    running = new_model.spatial_path[0][1].running_mean
    assert (running - target_mean).norm() < (running - source_mean).norm()


def test_adapt_bn_names_a_missing_target(tmp_path, capsys):
    from uda_seg_core.cli import main
    from uda_seg_core.config import Config

    torch.manual_seed(0)
    from uda_seg_core.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", build_segmentation_model(Config().model), Config())
    assert main(["adapt-bn", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert "uda-seg adapt-bn:" in err and "nowhere" in err
    assert not (tmp_path / "o.pt").exists()
