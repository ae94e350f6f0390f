"""ONNX Runtime backend of `Segmenter`: runs a file written by `uda-seg export`.

    from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend("model.onnx", device="cpu", threads=2)
    ids = backend.infer(batch)          # float32 (N, 3, H, W) normalised -> uint8 (N, H, W)
    backend.mean, backend.std, backend.class_names, backend.palette, backend.input_size

Everything the caller needs to prepare frames comes from the file's metadata_props
(class names, palette, normalisation, input size), so a .onnx loads with no extra flags.
Execution providers, best first: TensorRT and CUDA when this onnxruntime build has them
and the device asks for a GPU ('auto', 'cuda', 'cuda:N', 'tensorrt'), then the CPU.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from uda_seg_core.data.labels import CLASS_NAMES, PALETTE

log = logging.getLogger(__name__)

EXTENSIONS = (".onnx",)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class OnnxBackendError(RuntimeError):
    """An ONNX file that cannot be served (missing, not a segmentation graph, bad input)."""


def choose_providers(device: str = "auto") -> list:
    """Execution providers for `device`, restricted to what this onnxruntime build offers.

    'cpu' -> CPU; 'auto' -> CUDA when present, then CPU; 'cuda' / 'cuda:N' -> CUDA (an
    error if absent), then CPU; 'tensorrt' -> TensorRT, CUDA, CPU. 'auto' leaves TensorRT
    out on purpose: it builds an engine for minutes on first use, which a node starting
    on a vehicle should not do unasked.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    device = (device or "auto").lower()
    device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    chosen: list = []
    if device == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise OnnxBackendError(f"device 'tensorrt' but this onnxruntime offers only {sorted(available)}; "
                                   f"install onnxruntime-gpu with TensorRT, or use 'cuda' or 'cpu'")
        chosen.append(("TensorrtExecutionProvider", {"device_id": device_id,
                                                     "trt_engine_cache_enable": True}))
    if device != "cpu" and "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": device_id}))
    elif device.startswith("cuda"):
        raise OnnxBackendError(f"device '{device}' but this onnxruntime offers only {sorted(available)}; "
                               f"install onnxruntime-gpu or use device 'cpu'")
    elif device not in ("auto", "cpu", "tensorrt"):
        raise OnnxBackendError(f"unknown device '{device}'; choose from auto, cpu, cuda, cuda:N, tensorrt")
    chosen.append("CPUExecutionProvider")
    return chosen


def _decode(props: dict[str, str]) -> dict:
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    return out


class OnnxRuntimeBackend:
    """Segmentation with an ONNX Runtime session; `infer` returns uint8 class ids."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0,
                 providers: list | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxBackendError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        # The ROS node hands frames over from its own worker thread; ORT's spinning
        # threads would then burn the cores the rest of the pipeline needs.
        if os.environ.get("UDA_SEG_ORT_SPIN", "1") == "0":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chosen = providers if providers is not None else choose_providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # InvalidGraph, InvalidProtobuf, NoSuchFile...
            raise OnnxBackendError(
                f"onnxruntime cannot load {self.path}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from exc
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise OnnxBackendError(f"{self.path}: expected one (N, 3, H, W) input, got "
                                   f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.metadata = _decode(self.session.get_modelmeta().custom_metadata_map)
        rank = len(outputs[0].shape)
        self.output_kind = self.metadata.get("output") or ("class_ids" if rank == 3 else "logits")
        if self.output_kind not in ("class_ids", "logits"):
            raise OnnxBackendError(f"{self.path}: metadata 'output' is {self.output_kind!r}; "
                                   f"expected 'class_ids' or 'logits'")
        shape = inputs[0].shape
        fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_batch = fixed_batch
        size = self.metadata.get("input_size")
        if size is None and all(isinstance(v, int) for v in shape[2:]):
            size = list(shape[2:])
        self.input_size = tuple(size) if size else None
        if "mean" not in self.metadata:
            log.warning("%s has no uda_seg metadata (not written by `uda-seg export`); assuming "
                        "ImageNet normalisation and the 12 paper classes", self.path)
        self.mean = list(self.metadata.get("mean", IMAGENET_MEAN))
        self.std = list(self.metadata.get("std", IMAGENET_STD))
        self.class_names = list(self.metadata.get("class_names", CLASS_NAMES))
        self.palette = np.asarray(self.metadata.get("palette", PALETTE.tolist()), dtype=np.uint8)
        self.precision = self.metadata.get("precision", "fp32")

    def __repr__(self) -> str:
        return (f"OnnxRuntimeBackend({self.path.name}, {self.precision}, "
                f"providers={self.providers}, input={self.input_size})")

    def _as_array(self, batch) -> np.ndarray:
        if hasattr(batch, "detach"):  # a torch tensor, possibly on a GPU
            batch = batch.detach().cpu().numpy()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise OnnxBackendError(f"expected a (N, 3, H, W) batch, got shape {batch.shape}")
        if self.input_size and tuple(batch.shape[2:]) != tuple(self.input_size):
            raise OnnxBackendError(
                f"{self.path.name} was exported for {self.input_size[0]}x{self.input_size[1]} input "
                f"but got {batch.shape[2]}x{batch.shape[3]}; resize frames to the model's input_size "
                f"or re-export with `uda-seg export --size HxW`"
            )
        return batch

    def run_raw(self, batch) -> np.ndarray:
        """The graph's own output: uint8 ids (pred mode) or float32 logits (logits mode)."""
        batch = self._as_array(batch)
        if self.fixed_batch and batch.shape[0] != self.fixed_batch:
            parts = [self.session.run([self.output_name], {self.input_name: batch[i:i + 1]})[0]
                     for i in range(batch.shape[0])]
            return np.concatenate(parts, axis=0)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def infer(self, batch) -> np.ndarray:
        """float32 (N, 3, H, W) normalised -> uint8 (N, H, W) class ids."""
        out = self.run_raw(batch)
        if self.output_kind == "logits":
            out = out.argmax(axis=1)
        return out.astype(np.uint8, copy=False)


def register(register_backend) -> None:
    """Plug this backend into a Segmenter backend registry."""
    register_backend("onnxruntime", OnnxRuntimeBackend, EXTENSIONS)
