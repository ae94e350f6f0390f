"""ONNX Runtime backend of `Segmenter`: runs a file written by `uda-seg export`.

    seg = Segmenter.from_checkpoint("model.onnx")             # picked by the extension
    seg = Segmenter.from_checkpoint("model.onnx", backend="tensorrt", device="cuda")
    backend = OnnxRuntimeBackend("model.onnx", device="cpu", threads=2)
    ids = backend.infer(batch)          # float32 (N, 3, H, W) normalised -> uint8 (N, H, W)

Everything the caller needs to prepare frames comes from the file's metadata_props
(class names, palette, normalisation; `backend.info`), so a .onnx loads with no extra
flags. Needs numpy and onnxruntime, never torch. A pred-mode graph written by `uda-seg
export` also outputs the logits its argmax reads (free unless fetched), from which
`infer_with_confidence` computes each pixel's top-class probability; a logits-mode graph
gives both; an older pred graph gives ids only (`has_confidence` False, and
`confidence_note` says why). Importing this module registers two `Segmenter` backends:
'onnxruntime' (the default for .onnx files; CUDA execution provider on a 'cuda' device,
or on 'auto' when this onnxruntime build has it, else the CPU) and 'tensorrt' (TensorRT,
then CUDA, then CPU for the operators TensorRT does not take).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.config import IMAGENET_MEAN, IMAGENET_STD
from uda_seg_core.inference.segmenter import (
    ModelInfo,
    SegmenterError,
    max_softmax,
    recorded_size,
    register_backend,
)
from uda_seg_core.labels import CLASS_NAMES, PALETTE
from uda_seg_core.reporting import available_cores

log = logging.getLogger(__name__)

EXTENSIONS = (".onnx",)
LOGITS_OUTPUT = "logits"  # the second output of a pred-mode graph (optimize/export.py)
EXPORT_HINT = ("export the checkpoint with `uda-seg export --checkpoint CKPT --out model.onnx` "
               "(or `uda-seg deploy`), which records class names, palette, normalisation and "
               "input size in the file")
SPIN_ENV = "UDA_SEG_ORT_SPIN"  # "1": let ONNX Runtime's worker threads spin between runs


class OnnxBackendError(SegmenterError):
    """An ONNX file that cannot be served (missing, not a segmentation graph, bad input)."""


def provider_device(providers: list) -> str:
    """The device the first of `providers` runs on: 'cuda:N' / 'cuda' or 'cpu'."""
    first = providers[0] if providers else "CPUExecutionProvider"
    name, options = (first, {}) if isinstance(first, str) else first
    if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        index = options.get("device_id", 0)
        return f"cuda:{index}" if index else "cuda"
    return "cpu"


def choose_providers(device: str = "cpu", tensorrt: bool = False) -> list:
    """Execution providers for `device`, restricted to what this onnxruntime build offers.

    'cpu' -> CPU; 'auto' -> CUDA when present, then CPU; 'cuda' / 'cuda:N' -> CUDA (an
    error if absent), then CPU. `tensorrt` puts TensorRT first (an error if absent). Only
    an explicit request gets TensorRT: it builds an engine for minutes on first use (then
    caches it), which a node starting on a vehicle should not do unasked.
    """
    import onnxruntime as ort  # optional: imported only when this backend is used

    available = set(ort.get_available_providers())
    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise OnnxBackendError(f"unknown device '{device}'; choose from auto, cpu, cuda, cuda:N")
    device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    chosen: list = []
    if tensorrt:
        if "TensorrtExecutionProvider" not in available or device == "cpu":
            raise OnnxBackendError(
                f"backend 'tensorrt' needs a GPU device and onnxruntime-gpu built with TensorRT; "
                f"this onnxruntime offers {sorted(available)} and the device is '{device}'. Use "
                f"backend 'onnxruntime' instead")
        cache = str(Path.home() / ".cache" / "uda_seg_trt")
        chosen.append(("TensorrtExecutionProvider", {"device_id": device_id,
                                                     "trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": cache}))
    if device != "cpu" and "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": device_id}))
    elif device.startswith("cuda"):
        raise OnnxBackendError(f"device '{device}' but this onnxruntime offers only "
                               f"{sorted(available)}; install onnxruntime-gpu or use device 'cpu'")
    chosen.append("CPUExecutionProvider")
    return chosen


def resolve_threads(threads: int = 0) -> int:
    """The intra-op thread count: `threads` when > 0, else $OMP_NUM_THREADS when set (one
    knob for torch and ONNX Runtime in a process), else every core this process may use
    (its affinity mask; ONNX Runtime's own default counts the machine's physical cores)."""
    if threads and int(threads) > 0:
        return int(threads)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def spinning_enabled() -> bool:
    """Whether ONNX Runtime's worker threads may spin: off unless UDA_SEG_ORT_SPIN=1."""
    return os.environ.get(SPIN_ENV, "0").strip() == "1"


def session_options(threads: int, spinning: bool = False):
    """SessionOptions with the thread counts stated and spinning off by default.

    With spinning on, the intra-op pool keeps its cores busy for a while after every run:
    alone that saves little, but a second session (another camera, another perception
    process, a benchmark's reference) or the node's own threads then wait for cores that
    spin for nothing (README, "Fast inference": measured ratios).
    """
    import onnxruntime as ort  # optional: imported only when this backend is used

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1  # sequential execution: the inter-op pool is unused
    flag = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", flag)
    options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return options


def _decode(props: dict[str, str]) -> dict:
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    return out


class OnnxRuntimeBackend:
    """Segmentation with an ONNX Runtime session; `infer` returns uint8 class ids.

    The factory signature matches the Segmenter registry: (path, *, device, precision,
    channels_last, threads). `precision` must be 'fp32': an ONNX file's precision (fp32 or
    INT8) was fixed at export. `channels_last` is PyTorch's concern and ignored here.
    `threads`: intra-op threads (0: `resolve_threads`' default); worker threads do not spin
    between runs unless UDA_SEG_ORT_SPIN=1 (`session_options`).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, threads: int = 0, providers: list | None = None,
                 tensorrt: bool = False):
        import onnxruntime as ort  # optional: imported only when this backend is used

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxBackendError(f"ONNX model not found: {self.path}")
        if precision != "fp32":
            raise OnnxBackendError(
                f"precision {precision!r} does not apply to {self.path.name}: an ONNX model runs "
                f"in the precision it was exported with (use precision 'fp32', or export with "
                f"--int8)"
            )
        self.threads = resolve_threads(threads)
        self.spinning = spinning_enabled()
        options = session_options(self.threads, self.spinning)
        chosen = providers if providers is not None else choose_providers(device, tensorrt)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # InvalidGraph, InvalidProtobuf, NoSuchFile...
            raise OnnxBackendError(
                f"onnxruntime cannot load {self.path}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        self.providers = self.session.get_providers()
        self.device = provider_device(chosen)
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
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        # Only a graph with fixed height and width constrains the input; metadata's
        # input_size is the size the model was exported and checked at.
        self.fixed_size = tuple(shape[2:]) if all(isinstance(v, int) for v in shape[2:]) else None
        size = self.metadata.get("input_size") or self.fixed_size
        self.input_size = tuple(size) if size else None
        if "mean" not in self.metadata:
            log.warning("%s has no uda_seg metadata (not written by `uda-seg export`): assuming "
                        "ImageNet normalisation, the 12 paper classes and their colours; if the "
                        "model was trained otherwise its masks are wrong: %s", self.path,
                        EXPORT_HINT)
        names = list(self.metadata.get("class_names", CLASS_NAMES))
        palette = np.asarray(self.metadata.get("palette", PALETTE[: len(names)].tolist()),
                             dtype=np.uint8)
        label_set = self.metadata.get("label_set")
        self.info = ModelInfo(class_names=names, palette=palette.reshape(-1, 3),
                              mean=list(self.metadata.get("mean", IMAGENET_MEAN)),
                              std=list(self.metadata.get("std", IMAGENET_STD)),
                              source=str(self.path), input_size=recorded_size(self.input_size),
                              label_set=label_set if isinstance(label_set, dict) else None)
        logits = [o for o in outputs if len(o.shape) == 4]
        self.logits_name = (outputs[0].name if self.output_kind == "logits" else
                            next((o.name for o in logits if o.name == LOGITS_OUTPUT), None))
        self._check_classes(self._scored_classes())
        self.has_confidence = self.logits_name is not None
        self.confidence_note = "" if self.has_confidence else (
            f"{self.path.name} outputs class ids only (a pred-mode graph exported before "
            f"uda_seg added its '{LOGITS_OUTPUT}' output); re-export it with `uda-seg export` "
            f"or `uda-seg deploy` to get the confidence")
        self.precision = self.metadata.get("precision", "fp32")

    def _scored_classes(self) -> int | None:
        """The channels of the graph's logits: from its declared shape, else from one run
        on a small blank input (the exporter leaves the channel axis symbolic); None for a
        graph that outputs class ids only."""
        if self.logits_name is None:
            return None
        (output,) = [o for o in self.session.get_outputs() if o.name == self.logits_name]
        if isinstance(output.shape[1], int):
            return output.shape[1]
        h, w = self.fixed_size or (64, 64)
        blank = np.zeros((self.fixed_batch or 1, 3, h, w), dtype=np.float32)
        return int(self.session.run([self.logits_name], {self.input_name: blank})[0].shape[1])

    def _check_classes(self, scored) -> None:
        """The class names must match what the graph scores (its logits' channels, where
        the graph states them) and the metadata's num_classes: a mismatch would publish
        ids that name no class, or name classes wrongly."""
        names = len(self.info.class_names)
        declared = self.metadata.get("num_classes", names)
        if isinstance(scored, int) and scored != names:
            source = ("its metadata's class_names" if "class_names" in self.metadata else
                      "no class_names in its metadata, so the 12 paper classes are assumed")
            raise OnnxBackendError(
                f"{self.path}: the graph scores {scored} classes but has {names} class names "
                f"({source}); {EXPORT_HINT}")
        if declared != names:
            raise OnnxBackendError(
                f"{self.path}: metadata num_classes={declared} but {names} class_names; the "
                f"file's metadata is inconsistent: {EXPORT_HINT}")

    def __repr__(self) -> str:
        return (f"OnnxRuntimeBackend({self.path.name}, {self.precision}, "
                f"providers={self.providers}, input={self.input_size}, threads={self.threads}, "
                f"spinning={'on' if self.spinning else 'off'})")

    def _as_array(self, batch) -> np.ndarray:
        if hasattr(batch, "detach"):  # a torch tensor, possibly on a GPU
            batch = batch.detach().cpu().numpy()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise OnnxBackendError(f"expected a (N, 3, H, W) batch, got shape {batch.shape}")
        if self.fixed_size and tuple(batch.shape[2:]) != self.fixed_size:
            raise OnnxBackendError(
                f"{self.path.name} was exported for {self.fixed_size[0]}x{self.fixed_size[1]} "
                f"input but got {batch.shape[2]}x{batch.shape[3]}; resize frames to the model's "
                f"input_size or re-export with `uda-seg export --size HxW`"
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

    def infer_with_confidence(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (N, H, W) class ids, float32 (N, H, W) probability of that class), from
        the graph's logits (fetched only here: `infer` leaves them in the session)."""
        if not self.has_confidence:
            raise OnnxBackendError(self.confidence_note)
        batch = self._as_array(batch)
        if self.output_kind == "logits":
            logits = self.run_raw(batch)
            return logits.argmax(axis=1).astype(np.uint8), max_softmax(logits)
        names = [self.output_name, self.logits_name]
        if self.fixed_batch and batch.shape[0] != self.fixed_batch:
            runs = [self.session.run(names, {self.input_name: batch[i:i + 1]})
                    for i in range(batch.shape[0])]
            ids = np.concatenate([r[0] for r in runs])
            logits = np.concatenate([r[1] for r in runs])
        else:
            ids, logits = self.session.run(names, {self.input_name: batch})
        return ids.astype(np.uint8, copy=False), confidence_at(max_softmax(logits), ids.shape)


def confidence_at(confidence: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(N, h, w) top-class probabilities at the (N, H, W) of the class ids: a pred graph's
    second output is BiSeNet's scores at 1/8 (optimize/export.py), upsampled here
    (bilinear, pixel centres aligned as the graph's own upsample)."""
    height, width = int(shape[-2]), int(shape[-1])
    if confidence.shape[-2:] == (height, width):
        return confidence
    return np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR)
                     for c in confidence]).astype(np.float32, copy=False)


def tensorrt_backend(path: str | Path, **kwargs) -> OnnxRuntimeBackend:
    """The 'tensorrt' backend: ONNX Runtime with the TensorRT execution provider first."""
    return OnnxRuntimeBackend(path, tensorrt=True, **kwargs)


register_backend("onnxruntime", OnnxRuntimeBackend, EXTENSIONS)
register_backend("tensorrt", tensorrt_backend)
