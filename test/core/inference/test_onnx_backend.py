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
