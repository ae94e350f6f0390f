"""The ONNX Runtime backend of Segmenter (inference/onnx_backend.py) on a tiny random-init
BiSeNet-R18 exported at 48x64: the torch backend's masks, providers, errors, threads.

    .venv/bin/pytest test/core/inference/test_onnx_backend.py -q
"""
from __future__ import annotations

import numpy as np
import pytest

from uda_seg_core.inference import Segmenter, SegmenterError, resolve_backend
from uda_seg_core.inference.onnx_backend import (
    OnnxBackendError,
    OnnxRuntimeBackend,
    choose_providers,
    confidence_at,
)
from uda_seg_core.optimize.export import export_checkpoint

H, W = 48, 64
PALETTE = [[20 * i, 250 - 20 * i, 3 * i] for i in range(12)]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.1]


@pytest.fixture(scope="module")
def ckpt(make_checkpoint):
    return make_checkpoint(palette=PALETTE, mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def pred_onnx(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_checkpoint(ckpt, out, mode="pred", size=(H, W), check_frames=0)
    return out


def test_segmenter_onnx_backend_matches_torch_backend(ckpt, pred_onnx):
    assert resolve_backend(pred_onnx) == "onnxruntime"
    seg_ort = Segmenter.from_checkpoint(pred_onnx, device="cpu", input_size=(H, W))
    seg_pt = Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(H, W))
    assert seg_ort.backend.name == "onnxruntime"
    # Normalisation, classes and palette come from the ONNX metadata alone.
    np.testing.assert_array_equal(seg_ort.palette, np.array(PALETTE, dtype=np.uint8))
    assert seg_ort.class_names == seg_pt.class_names
    assert seg_ort.normalisation == seg_pt.normalisation
    rgb = np.random.default_rng(4).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    a, b = seg_ort.segment(rgb), seg_pt.segment(rgb)
    assert a.shape == b.shape == (96, 128)
    assert (a != b).mean() < 0.01


def test_backend_parameter_overrides_the_extension(pred_onnx):
    seg = Segmenter.from_checkpoint(pred_onnx, device="cpu", input_size=(H, W),
                                    backend="onnxruntime")
    assert seg.backend.providers == ["CPUExecutionProvider"]
    with pytest.raises(SegmenterError, match="precision"):
        Segmenter.from_checkpoint(pred_onnx, device="cpu", precision="fp16", backend="onnxruntime")


def test_provider_choice_and_errors(pred_onnx, tmp_path):
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    assert choose_providers("auto")[-1] == "CPUExecutionProvider"
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(OnnxBackendError, match="tensorrt"):
            choose_providers("cpu", tensorrt=True)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(OnnxBackendError, match="onnxruntime-gpu"):
            choose_providers("cuda")
    with pytest.raises(OnnxBackendError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(OnnxBackendError, match="cannot load"):
        OnnxRuntimeBackend(bad)
    with pytest.raises(OnnxBackendError, match="batch"):
        OnnxRuntimeBackend(pred_onnx, device="cpu").infer(np.zeros((3, H, W), np.float32))


def test_onnx_runtime_threads_are_stated_and_spinning_is_off_unless_asked(pred_onnx, monkeypatch):
    """The session's thread count is explicit (threads, else $OMP_NUM_THREADS, else the
    usable cores) and its worker threads do not spin between runs unless UDA_SEG_ORT_SPIN=1.
    Mutant: spinning left at ONNX Runtime's default (on); the inter-op pool left spinning;
    the thread count left to ONNX Runtime (the machine's physical cores)."""
    from uda_seg_core.reporting import available_cores

    def entries(backend):
        opts = backend.session.get_session_options()
        return (opts.get_session_config_entry("session.intra_op.allow_spinning"),
                opts.get_session_config_entry("session.inter_op.allow_spinning"),
                opts.intra_op_num_threads)

    monkeypatch.delenv("UDA_SEG_ORT_SPIN", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert entries(OnnxRuntimeBackend(pred_onnx, device="cpu")) == ("0", "0", 1)
    assert entries(OnnxRuntimeBackend(pred_onnx, device="cpu", threads=3)) == ("0", "0", 3)
    seg = Segmenter.from_checkpoint(pred_onnx, device="cpu", input_size=(H, W), threads=2)
    assert seg.backend.threads == 2 and not seg.backend.spinning
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert entries(OnnxRuntimeBackend(pred_onnx, device="cpu"))[2] == available_cores()
    monkeypatch.setenv("UDA_SEG_ORT_SPIN", "1")
    assert entries(OnnxRuntimeBackend(pred_onnx, device="cpu", threads=1)) == ("1", "1", 1)


def test_confidence_comes_from_the_logits_output_and_matches_torch(ckpt, pred_onnx):
    """A pred-mode export carries BiSeNet's scores (before the final upsample) as a second
    output: the top-class probability from them, upsampled to the ids, equals the torch
    backend's, and the ids are the plain run's. Mutants: the probability of another class
    than the argmax's, a softmax over the wrong axis (pixels instead of classes)."""
    seg_ort = Segmenter.from_checkpoint(pred_onnx, device="cpu", input_size=(H, W))
    seg_pt = Segmenter.from_checkpoint(ckpt, device="cpu", input_size=(H, W))
    assert seg_ort.has_confidence and seg_pt.has_confidence
    rgb = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    ((mask, conf),) = seg_ort.segment_batch_with_confidence([rgb])
    np.testing.assert_array_equal(mask, seg_ort.segment(rgb))
    ((_, conf_pt),) = seg_pt.segment_batch_with_confidence([rgb])
    assert conf.shape == (96, 128) and conf.dtype == np.float32
    assert np.abs(conf - conf_pt).max() < 1e-3
    assert (conf >= 1.0 / 12 - 1e-6).all() and (conf <= 1.0).all()
    batch = seg_ort.preprocess(rgb)
    logits = seg_ort.backend.session.run(["logits"], {"image": batch})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = (e / e.sum(axis=1, keepdims=True)).max(axis=1)
    ids, confidence = seg_ort.infer_with_confidence(batch)
    assert logits.shape[-2:] == (ids.shape[-2] // 8, ids.shape[-1] // 8)  # BiSeNet's 1/8
    np.testing.assert_allclose(confidence, confidence_at(expected, ids.shape), rtol=1e-5)


def without_logits_output(src, dst):
    """`src` as an export from before pred graphs carried their logits: one output."""
    import onnx

    model = onnx.load(str(src))
    kept = [o for o in model.graph.output if o.name != "logits"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(dst))
    return dst


def test_an_older_pred_graph_has_no_confidence_and_says_why(pred_onnx, tmp_path):
    old = without_logits_output(pred_onnx, tmp_path / "old.onnx")
    seg = Segmenter.from_checkpoint(old, device="cpu", input_size=(H, W))
    assert not seg.has_confidence
    assert "class ids only" in seg.confidence_note and "uda-seg export" in seg.confidence_note
    with pytest.raises(SegmenterError, match="re-export"):
        seg.segment_batch_with_confidence([np.zeros((H, W, 3), np.uint8)])
    assert seg.segment(np.zeros((H, W, 3), np.uint8)).shape == (H, W)  # ids still served


def without_metadata(src, dst):
    import onnx

    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


def test_onnx_without_metadata_warns_and_names_the_fix(pred_onnx, tmp_path, caplog):
    bare = without_metadata(pred_onnx, tmp_path / "bare.onnx")
    with caplog.at_level("WARNING"):
        seg = Segmenter.from_checkpoint(bare, device="cpu", input_size=(H, W))
    assert "no uda_seg metadata" in caplog.text and "uda-seg export" in caplog.text
    assert len(seg.class_names) == 12  # the paper's classes assumed, as the warning says


def test_onnx_for_another_class_count_is_refused_naming_both_counts(tmp_path):
    """A 19-class network (Cityscapes-like) without metadata would be served with the 12
    paper class names: ids 12-18 would name nothing. Refused at load; so is metadata
    whose num_classes disagrees with its class names."""
    import json

    import torch

    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.config import Config
    from uda_seg_core.models import build_segmentation_model
    from uda_seg_core.optimize.export import write_metadata

    cfg = Config()
    cfg.model.backbone = "resnet18"
    cfg.model.num_classes = 19
    torch.manual_seed(0)
    names = [f"class{i}" for i in range(19)]
    ckpt = save_checkpoint(tmp_path / "c19.pt", build_segmentation_model(cfg.model), cfg,
                           class_names=names, palette=[[i, i, i] for i in range(19)])
    full = tmp_path / "c19.onnx"
    export_checkpoint(ckpt, full, size=(H, W), check_frames=0)
    assert len(Segmenter.from_checkpoint(full, device="cpu").class_names) == 19
    bare = without_metadata(full, tmp_path / "c19_bare.onnx")
    with pytest.raises(OnnxBackendError, match=r"scores 19 classes but has 12 class names.*"
                                               r"uda-seg export"):
        OnnxRuntimeBackend(bare, device="cpu")
    write_metadata(bare, {"num_classes": json.dumps(19), "class_names": json.dumps(names[:18]),
                          "mean": json.dumps([0.5] * 3), "std": json.dumps([0.2] * 3)})
    with pytest.raises(OnnxBackendError, match="scores 19 classes but has 18 class names"):
        OnnxRuntimeBackend(bare, device="cpu")
