"""Checkpoints: atomic writes, data-only loading, clear errors, self-describing models."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from helpers.fixtures import tiny_config
from uda_seg_core.checkpoint import CheckpointError, atomic_save, load_checkpoint, save_checkpoint
from uda_seg_core.config import Config
from uda_seg_core.labels import CLASS_NAMES
from uda_seg_core.models import fit_to_state_dict, load_model


@pytest.fixture(scope="module")
def model():
    from uda_seg_core.models import build_segmentation_model

    return build_segmentation_model(tiny_config().model)


def test_round_trip_rebuilds_the_model_alone(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, tiny_config())
    loaded, ckpt = load_model(path)
    assert ckpt["class_names"] == list(CLASS_NAMES)
    assert len(ckpt["palette"]) == 12 and ckpt["mean"] == [0.485, 0.456, 0.406]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.rand(1, 3, 64, 96)
    model.eval(), loaded.eval()
    model.aux_mode = loaded.aux_mode = "eval"
    assert torch.allclose(model(x), loaded(x))


def test_wrong_backbone_or_class_count_names_both(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, tiny_config())
    with pytest.raises(CheckpointError, match=r"backbone='resnet18'.*backbone='resnet101'"):
        load_model(path, expect=tiny_config(**{"model.backbone": "resnet101"}).model)
    expect = tiny_config().model
    expect.num_classes = 19
    with pytest.raises(CheckpointError, match=r"num_classes=12.*num_classes=19"):
        load_model(path, expect=expect)


def test_not_a_checkpoint_or_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a zip")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a uda_seg checkpoint"):
        load_checkpoint(other)


def test_code_in_a_checkpoint_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "uda_seg.checkpoint/1", "state_dict": {}, "x": nn.ReLU()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"format": "uda_seg.checkpoint/1", "state_dict": {"w": torch.ones(3)}}, path)
    # A writer killed in the middle of torch.save: the previous file must survive intact.
    script = textwrap.dedent(f"""
        import os, torch
        from uda_seg_core import checkpoint
        real_save = torch.save
        def dying_save(obj, fh):
            fh.write(b"partial bytes")
            fh.flush()
            os._exit(9)
        checkpoint.torch.save = dying_save
        checkpoint.atomic_save({{"state_dict": {{"w": torch.zeros(3)}}}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert proc.returncode == 9
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(3))
    leftovers = [p for p in os.listdir(tmp_path) if p != "last.pt"]
    assert all(p.endswith(".tmp") for p in leftovers)  # a temp file, never the target


def test_fit_to_state_dict_reshapes_pruned_layers():
    def net(c):
        return nn.Sequential(nn.Conv2d(3, c, 3), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.Conv2d(c, c, 3, groups=c), nn.Conv2d(c, 5, 1))

    pruned = net(4)
    full = net(8)
    fit_to_state_dict(full, pruned.state_dict())
    full.load_state_dict(pruned.state_dict())
    assert full[3].groups == 4
    x = torch.rand(1, 3, 9, 9)
    pruned.eval(), full.eval()
    assert torch.allclose(full(x), pruned(x))


def test_empty_or_garbage_file_is_one_line_naming_the_file(tmp_path):
    """Issue 14 #5. Mutants: an empty .pt reaching torch.load, whose EOFError has no
    message (the old `str(exc).splitlines()[0]` raised IndexError: 'list index out of
    range'); torch's paragraph advising weights_only=False passed on for garbage."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 3)
    truncated = tmp_path / "truncated.pt"
    torch.save({"format": "uda_seg.checkpoint/1", "state_dict": {"w": torch.zeros(64)}},
               truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    for path, words in ((empty, "is empty (0 bytes)"), (garbage, "not a PyTorch checkpoint"),
                        (truncated, "cannot read checkpoint")):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        text = str(info.value)
        assert str(path) in text and words in text and "\n" not in text, text
        assert "weights_only` set to `False`" not in text


def test_a_checkpoint_needs_both_its_format_and_its_weights(tmp_path):
    """Bugs guarded (surviving mutants of `make mutants`): the check joined with `and`, so a
    file with the format but no weights, or weights without the format (another project's
    file), would be loaded and fail later, far from the file's name."""
    from uda_seg_core.checkpoint import FORMAT

    for name, payload in (("no_weights", {"format": FORMAT}),
                          ("no_format", {"state_dict": {"w": torch.zeros(1)}}),
                          ("other_format", {"format": "x/1", "state_dict": {}})):
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match=f"{name}.pt is not a uda_seg checkpoint"):
            load_checkpoint(path)


def test_checkpoint_config_takes_the_stored_config_and_normalisation():
    """Bugs guarded (surviving mutants): the stored config ignored (defaults always) or
    required (a checkpoint without one fails), and the stored mean / std ignored: the
    network would be fed frames normalised differently from its training."""
    from uda_seg_core.checkpoint import checkpoint_config
    from uda_seg_core.config import to_dict

    cfg = tiny_config(**{"model.backbone": "resnet34"})
    stored = checkpoint_config({"config": to_dict(cfg), "mean": [0.1, 0.2, 0.3],
                                "std": [0.4, 0.5, 0.6]})
    assert stored.model.backbone == "resnet34"
    assert stored.data.mean == [0.1, 0.2, 0.3] and stored.data.std == [0.4, 0.5, 0.6]
    bare = checkpoint_config({})
    assert bare.model.backbone == Config().model.backbone
    assert bare.data.mean == Config().data.mean and bare.data.std == Config().data.std
