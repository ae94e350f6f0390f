"""Segmenter on a tiny random-init checkpoint: each step, the backend registry, and the
errors for devices, precisions and files that cannot work.

    .venv/bin/pytest test/core/inference/test_segmenter.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uda_seg_core.config import InferenceConfig
from uda_seg_core.inference import (
    BACKENDS,
    EXTENSIONS,
    LatencyTracker,
    ModelInfo,
    Segmenter,
    SegmenterError,
    register_backend,
    resolve_backend,
    resolve_device,
)
from uda_seg_core.models import load_model

H, W = 48, 64
CUSTOM_PALETTE = [[10 * i, 255 - 10 * i, 7] for i in range(12)]


@pytest.fixture(scope="module")
def ckpt(make_checkpoint):
    # Metadata stored in the checkpoint must reach the Segmenter, not the defaults.
    return make_checkpoint(palette=CUSTOM_PALETTE, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.1])


@pytest.fixture(scope="module")
def seg(ckpt):
    return Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(H, W))


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_metadata_comes_from_the_checkpoint(seg):
    assert seg.class_names[0] == "Bicyclist" and len(seg.class_names) == 12
    np.testing.assert_array_equal(seg.palette, np.array(CUSTOM_PALETTE, dtype=np.uint8))
    assert seg.device == "cpu" and seg.backend.name == "torch"


def test_preprocess_normalises_with_the_checkpoint_mean_and_std(seg):
    rgb = image(H, W)
    batch = seg.preprocess(rgb)
    assert batch.shape == (1, 3, H, W) and batch.dtype == np.float32 and batch.flags.c_contiguous
    expected = (rgb / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.1]
    np.testing.assert_allclose(batch[0].transpose(1, 2, 0), expected, atol=1e-5)


def test_preprocess_resizes_to_the_network_size(seg):
    rgb = np.full((96, 128, 3), 51, dtype=np.uint8)  # uniform: resizing keeps the value
    batch = seg.preprocess(rgb)
    assert batch.shape == (1, 3, H, W)
    np.testing.assert_allclose(batch[0, 0], (0.2 - 0.5) / 0.2, atol=1e-5)
    with pytest.raises(SegmenterError, match="HxWx3 uint8"):
        seg.preprocess(rgb.astype(np.float32))
    with pytest.raises(SegmenterError, match="HxWx3 uint8"):
        seg.preprocess(rgb[..., 0])


def test_infer_matches_the_model_argmax(seg, ckpt):
    batch = seg.preprocess(image(H, W, seed=1))
    ids = seg.infer(batch)
    assert ids.shape == (1, H, W) and ids.dtype == np.uint8
    model, _ = load_model(ckpt)
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(batch), aux_mode="eval")
    np.testing.assert_array_equal(ids[0], logits.argmax(1)[0].numpy())


def test_postprocess_resizes_back_with_nearest(seg):
    ids = np.random.default_rng(2).integers(0, 12, (H, W), dtype=np.uint8)
    back = seg.postprocess(ids, (96, 128))
    assert back.shape == (96, 128) and back.dtype == np.uint8
    np.testing.assert_array_equal(back[::2, ::2], ids)  # nearest: no new class ids appear
    np.testing.assert_array_equal(seg.postprocess(ids, (H, W)), ids)


def test_output_size_network_keeps_the_network_mask(ckpt):
    seg = Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(H, W), output_size="network")
    rgb = image(120, 160, seed=3)
    mask = seg.segment(rgb)
    assert mask.shape == (H, W)
    blend = seg.overlay(rgb, mask, 0.5)  # the image is resized to the mask for the overlay
    assert blend.shape == (H, W, 3)


def test_segment_chains_the_steps_and_times_them(seg):
    rgb = image(60, 80, seed=4)
    tracker = LatencyTracker()
    mask = seg.segment(rgb, tracker)
    manual = seg.postprocess(seg.infer(seg.preprocess(rgb))[0], (60, 80))
    np.testing.assert_array_equal(mask, manual)
    np.testing.assert_array_equal(seg.segment(rgb), manual)
    assert mask.shape == (60, 80) and int(mask.max()) < 12
    for stage in ("preprocess", "inference", "postprocess"):
        assert tracker.percentiles(stage)["count"] == 1


def test_segment_batch_equals_one_frame_at_a_time(seg):
    """Mutants: masks of a batch returned in another order, each resized to the first
    frame's size, or the batch run through the network once per frame (three inference
    samples instead of one)."""
    frames = [image(60, 80, seed=4), image(30, 40, seed=5), image(H, W, seed=6)]
    tracker = LatencyTracker()
    masks = seg.segment_batch(frames, tracker)
    assert [m.shape for m in masks] == [(60, 80), (30, 40), (H, W)]
    for rgb, mask in zip(frames, masks):
        np.testing.assert_array_equal(mask, seg.segment(rgb))
    for stage in ("preprocess", "inference", "postprocess"):
        assert tracker.percentiles(stage)["count"] == 1
    assert seg.segment_batch([]) == []


def test_colorize_and_overlay(seg):
    ids = np.array([[0, 1], [11, 5]], dtype=np.uint8)
    colour = seg.colorize(ids)
    np.testing.assert_array_equal(colour, np.array(CUSTOM_PALETTE, dtype=np.uint8)[ids])
    rgb = image(2, 2, seed=5)
    np.testing.assert_array_equal(seg.overlay(rgb, ids, 0.0), rgb)
    np.testing.assert_array_equal(seg.overlay(rgb, ids, 1.0), colour)
    half = seg.overlay(rgb, ids, 0.5).astype(int)
    assert np.abs(half - (rgb.astype(int) + colour) / 2).max() <= 1
    with pytest.raises(SegmenterError, match="alpha"):
        seg.overlay(rgb, ids, 1.5)


def test_warmup_and_channels_last_give_the_same_masks(seg, ckpt):
    seg.warmup(2)
    cl = Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(H, W), channels_last=True)
    rgb = image(H, W, seed=6)
    np.testing.assert_array_equal(cl.segment(rgb), seg.segment(rgb))


def test_from_config(ckpt):
    cfg = InferenceConfig(device="cpu", input_size=[32, 64], output_size="network")
    seg = Segmenter.from_config(ckpt, cfg)
    assert seg.input_size == (32, 64) and seg.segment(image(50, 50)).shape == (32, 64)


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SegmenterError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(ckpt):
    for device in ("cuda", "cuda:1"):
        with pytest.raises(SegmenterError,
                           match=f"device '{device}'.*CUDA is not available.*'cpu'"):
            Segmenter.from_checkpoint(ckpt, device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_agrees_with_fp32_on_cpu(ckpt, seg):
    gpu = Segmenter.from_checkpoint(ckpt, device="cuda", precision="fp16", input_size=(H, W))
    rgb = image(H, W, seed=7)
    agree = (gpu.segment(rgb) == seg.segment(rgb)).mean()
    assert agree > 0.95  # fp16 may flip near-tied pixels of a random network


def test_bad_settings_name_the_problem(ckpt, tmp_path):
    with pytest.raises(SegmenterError, match="precision 'fp16' runs on CUDA only"):
        Segmenter.from_checkpoint(ckpt, device="cpu", precision="fp16")
    with pytest.raises(SegmenterError, match="precision must be one of"):
        Segmenter.from_checkpoint(ckpt, device="cpu", precision="int4")
    with pytest.raises(SegmenterError, match="model file not found"):
        Segmenter.from_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(SegmenterError, match="input_size"):
        Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(0, 64))
    with pytest.raises(SegmenterError, match="output_size"):
        Segmenter.from_checkpoint(ckpt, device="cpu", output_size="original")
    with pytest.raises(SegmenterError, match="unknown inference backend 'no_such_engine'"):
        Segmenter.from_checkpoint(ckpt, device="cpu", backend="no_such_engine")
    weird = tmp_path / "model.bin"
    weird.write_bytes(b"x")
    with pytest.raises(SegmenterError, match=r"extension '\.bin'.*\.pt -> torch"):
        Segmenter.from_checkpoint(weird)


class ConstantBackend:
    """A real (trivial) backend: every pixel is class 3. Exercises the registry."""

    name = "constant"

    def __init__(self, path, *, device, precision, channels_last):
        self.device = device
        self.info = ModelInfo(class_names=["a", "b", "c", "d"],
                              palette=np.eye(4, 3, dtype=np.uint8) * 200,
                              mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], source=str(path))

    def infer(self, batch):
        return np.full((batch.shape[0], *batch.shape[2:]), 3, dtype=np.uint8)


def test_registered_backend_is_chosen_by_extension(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "constant", ConstantBackend)
    monkeypatch.setitem(EXTENSIONS, ".const", "constant")
    path = tmp_path / "m.const"
    path.write_bytes(b"")
    assert resolve_backend(path) == "constant"
    seg = Segmenter.from_checkpoint(path, device="cpu", input_size=(8, 8))
    assert seg.class_names == ["a", "b", "c", "d"]
    assert (seg.segment(image(10, 12)) == 3).all()
    assert resolve_backend(path, "torch") == "torch"  # an explicit name wins over the extension


def test_register_backend_adds_name_and_extensions(monkeypatch):
    monkeypatch.setattr("uda_seg_core.inference.segmenter.BACKENDS", dict(BACKENDS))
    monkeypatch.setattr("uda_seg_core.inference.segmenter.EXTENSIONS", dict(EXTENSIONS))
    from uda_seg_core.inference import segmenter

    register_backend("constant", ConstantBackend, [".C1", ".c2"])
    assert segmenter.BACKENDS["constant"] is ConstantBackend
    assert segmenter.EXTENSIONS[".c1"] == "constant" and segmenter.EXTENSIONS[".c2"] == "constant"


def save_with_classes(path, outputs: int, declared: int | None = None, **extra):
    """A random BiSeNet-R18 with `outputs` classifier channels, saved as declaring
    `declared` classes (its model_config and class names)."""
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.config import Config
    from uda_seg_core.models import build_segmentation_model

    cfg = Config()
    cfg.model.backbone = "resnet18"
    cfg.model.num_classes = outputs
    model = build_segmentation_model(cfg.model)
    cfg.model.num_classes = outputs if declared is None else declared
    return save_checkpoint(path, model, cfg, **extra)


def test_a_checkpoint_whose_classifier_disagrees_with_its_classes_is_refused(tmp_path):
    """Issue 14 #6. Mutant: no check of the network's output count, so a classifier with
    19 outputs declaring 12 classes loads (its head is reshaped to fit the weights) and
    serves ids up to 18 that name no class."""
    path = save_with_classes(tmp_path / "inconsistent.pt", outputs=19, declared=12)
    with pytest.raises(SegmenterError, match=r"outputs 19 classes but .* declares 12") as info:
        Segmenter.from_checkpoint(path, device="cpu", input_size=(H, W))
    assert str(path) in str(info.value)


def test_more_than_255_classes_are_refused_not_wrapped(tmp_path):
    """Issue 14 #6. Mutants: a 300-class model served with its ids wrapped modulo 256 in
    the mono8 mask (class 299 published as 43); the limit off by one (255 classes, ids
    0-254, must still be served; 256 must not)."""
    names = [f"c{i}" for i in range(300)]
    palette = [[i % 256, 0, 0] for i in range(300)]
    big = save_with_classes(tmp_path / "c300.pt", 300, class_names=names, palette=palette)
    with pytest.raises(SegmenterError, match=r"300 classes do not fit the mono8 class mask"):
        Segmenter.from_checkpoint(big, device="cpu", input_size=(H, W))
    undeclared = save_with_classes(tmp_path / "c300_12names.pt", 300)  # names default to 12
    with pytest.raises(SegmenterError, match="outputs 300 classes but"):
        Segmenter.from_checkpoint(undeclared, device="cpu", input_size=(H, W))
    info = ModelInfo(class_names=names[:256], palette=np.zeros((256, 3), np.uint8),
                     mean=[0.0] * 3, std=[1.0] * 3)
    backend = ConstantBackend("x", device="cpu", precision="fp32", channels_last=False)
    backend.info = info
    with pytest.raises(SegmenterError, match="256 classes"):
        Segmenter(backend, (8, 8))
    backend.info = ModelInfo(class_names=names[:255], palette=np.zeros((255, 3), np.uint8),
                             mean=[0.0] * 3, std=[1.0] * 3)
    assert len(Segmenter(backend, (8, 8)).class_names) == 255
