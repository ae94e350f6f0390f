"""Segmenter: one RGB frame in, one class-id mask out (no ROS).

The steps are separate methods so callers can time each one (the ROS node records
decode / preprocess / inference / postprocess separately):

    seg = Segmenter.from_checkpoint("runs/x/best.pt", device="auto", input_size=(360, 480))
    seg.warmup(3)
    batch = seg.preprocess(rgb)                  # HxWx3 uint8 -> 1x3xhxw float32, normalised
    ids = seg.infer(batch)[0]                    # hxw uint8 class ids
    mask = seg.postprocess(ids, rgb.shape[:2])   # back to HxW (nearest) if output_size='input'
    colour, blend = seg.colorize(mask), seg.overlay(rgb, mask, alpha=0.5)
    mask = seg.segment(rgb, tracker)             # the three steps, each timed in a LatencyTracker
    masks = seg.segment_batch([rgb_a, rgb_b], tracker)  # several frames, one network run

Inference runs behind a small backend interface (`infer(batch) -> ids`) chosen from the
`BACKENDS` registry, by name or, with backend='auto', by the model file's extension.
The PyTorch backend is built in; others (ONNX Runtime) register themselves with
`register_backend` from their own module, listed in `OPTIONAL_BACKEND_MODULES`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from uda_seg_core import runtime
from uda_seg_core.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, Normalisation
from uda_seg_core.inference.latency import LatencyTracker, TrackerGroup
from uda_seg_core.labels import CLASS_NAMES, IGNORE_INDEX, PALETTE, ids_to_rgb

PRECISIONS = ("fp32", "fp16")
DEFAULT_INPUT_SIZE = (360, 480)  # CamVid's frames; a model that records no size runs at this
MAX_CLASSES = IGNORE_INDEX  # a mono8 mask holds ids 0-254; 255 is 'ignore', never a class
OUTPUT_SIZES = ("input", "network")


class SegmenterError(ValueError):
    """A Segmenter that cannot be built as asked (device, precision, backend, sizes)."""


@dataclass
class ModelInfo:
    """What a backend knows about its model besides the weights."""

    class_names: list[str]
    palette: np.ndarray  # (C, 3) uint8 RGB
    mean: list[float]  # RGB, on the 0-1 scale
    std: list[float]
    source: str = ""  # the file it came from
    # (height, width) the model is meant to run at, where its file records one (an exported
    # model's metadata 'input_size', a checkpoint's inference.input_size); None: it does not
    input_size: tuple[int, int] | None = None

    def normalisation(self) -> Normalisation:
        return Normalisation(tuple(self.mean), tuple(self.std))


class Backend(Protocol):
    """The one thing a backend does: a normalised batch in, class ids out."""

    name: str
    device: str
    info: ModelInfo

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) normalised -> uint8 (N, H, W) class ids."""
        ...


# factory(path, *, device, precision, channels_last[, threads]) -> Backend; `device` is
# resolved ('cpu', 'cuda', 'cuda:1'), `precision` is one of PRECISIONS, `threads` (passed
# only when > 0) the CPU threads its runtime may use.
BackendFactory = Callable[..., Backend]
BACKENDS: dict[str, BackendFactory] = {}
EXTENSIONS: dict[str, str] = {}  # '.pt' -> 'torch'
# Imported on demand so they can register; a missing optional dependency is no error
# until that backend is asked for.
OPTIONAL_BACKEND_MODULES = ("uda_seg_core.inference.onnx_backend",)
_IMPORT_ERRORS: dict[str, str] = {}  # module -> why it could not register


def register_backend(name: str, factory: BackendFactory, extensions: Sequence[str] = ()) -> None:
    """Make `factory` available as backend `name`, and the default for `extensions`."""
    BACKENDS[name] = factory
    for ext in extensions:
        EXTENSIONS[ext.lower()] = name


def _load_optional_backends() -> None:
    for module in OPTIONAL_BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _IMPORT_ERRORS[module] = f"{module}: {exc}"


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """The registered backend name for `path` ('auto' looks at the extension)."""
    _load_optional_backends()
    if backend == "auto":
        suffix = Path(path).suffix.lower()
        if suffix not in EXTENSIONS:
            raise SegmenterError(
                f"cannot tell the backend of {path} from its extension {suffix!r}; known: "
                f"{', '.join(f'{e} -> {b}' for e, b in sorted(EXTENSIONS.items()))}; "
                f"or pass backend= one of {', '.join(sorted(BACKENDS))}{_unavailable()}"
            )
        return EXTENSIONS[suffix]
    if backend not in BACKENDS:
        raise SegmenterError(
            f"unknown inference backend {backend!r}; available here: {', '.join(sorted(BACKENDS))} "
            f"(or 'auto' to choose from the file extension){_unavailable()}"
        )
    return backend


def _unavailable() -> str:
    failed = [why for why in _IMPORT_ERRORS.values() if "No module named 'uda_seg_core" not in why]
    return f"; not loaded: {'; '.join(failed)}" if failed else ""


def resolve_device(device: str = "auto") -> str:
    """`runtime.resolve_device` (the one definition), raising SegmenterError."""
    return runtime.resolve_device(device, error=SegmenterError)


class TorchBackend:
    """A PyTorch model in 'pred' mode (argmax inside the graph) under inference_mode."""

    name = "torch"

    def __init__(self, model, info: ModelInfo, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, threads: int = 0):
        if precision == "fp16" and not device.startswith("cuda"):
            raise SegmenterError(
                f"precision 'fp16' runs on CUDA only, but the device is {device!r}; use fp32"
            )
        self.device = device
        self.info = info
        self.precision = precision
        # torch's intra-op pool is per process: `threads` > 0 sets it, 0 leaves what the
        # process has (torch's default: $OMP_NUM_THREADS, else the physical cores). How its
        # OpenMP threads wait (OMP_WAIT_POLICY) is fixed when torch loads: README, "Fast
        # inference".
        if threads and int(threads) > 0:
            torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()
        self.channels_last = channels_last
        self._torch = torch
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        model = model.eval().to(device)
        if precision == "fp16":
            model = model.half()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if hasattr(model, "aux_mode"):
            model.aux_mode = "pred"
        self.model = model

    def __repr__(self) -> str:
        return (f"TorchBackend({self.info.source or 'model'}, {self.precision} on {self.device}, "
                f"threads={self.threads})")

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                        channels_last: bool = False, threads: int = 0) -> TorchBackend:
        # Late on purpose: the model loader brings torchvision (seconds to import on a busy
        # machine), which only .pt models need; a node serving ONNX never imports it.
        from uda_seg_core.models import load_model

        model, ckpt = load_model(path, map_location="cpu")
        info = info_from_checkpoint(ckpt, path)
        check_class_count(network_classes(model), info, ckpt.get("model_config", {}), path)
        return cls(model, info, device, precision, channels_last, threads)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.to(self.device, dtype=self._dtype, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.model(x)
            # a model without 'pred' mode returns logits; uint8 on the device either way:
            # 8x less to copy back than int64
            out = out.argmax(dim=1) if out.ndim == 4 else out
            return out.to(torch.uint8).cpu().numpy()


def network_classes(model) -> int:
    """How many classes `model` scores: the channels of its logits on a small blank input
    (what the weights say, whatever the checkpoint's metadata claims)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.zeros(1, 3, 64, 64)
            out = model(x, aux_mode="eval") if hasattr(model, "aux_mode") else model(x)
    finally:
        model.train(was_training)
    if isinstance(out, dict):  # torchvision segmentation models
        out = out["out"]
    return int(out.shape[1])


def check_class_count(outputs: int, info: ModelInfo, model_config: dict,
                      path: str | Path) -> None:
    """The network's output count must be the declared class count, and fit a mono8 mask
    (ids 0-254; 255 stays 'ignore'): a mismatch would publish ids that name no class."""
    declared = len(info.class_names)
    stored = model_config.get("num_classes", declared)
    if outputs != declared or outputs != stored:
        raise SegmenterError(
            f"{path}: the network outputs {outputs} classes but the checkpoint declares "
            f"{declared} class names (model_config.num_classes={stored}); the checkpoint is "
            f"inconsistent: re-save it from its training run")
    check_class_limit(outputs, path)


def check_class_limit(classes: int, source: str | Path = "model") -> None:
    if classes > MAX_CLASSES:
        raise SegmenterError(
            f"{source}: {classes} classes do not fit the mono8 class mask (ids 0-{MAX_CLASSES - 1}"
            f", {IGNORE_INDEX} is reserved): at most {MAX_CLASSES} classes are served")


def info_from_checkpoint(ckpt: dict, path: str | Path = "") -> ModelInfo:
    """Class names, palette and normalisation stored in a uda_seg checkpoint."""
    names = list(ckpt.get("class_names") or CLASS_NAMES)
    palette = ckpt.get("palette")
    palette = PALETTE[: len(names)] if palette is None else np.asarray(palette, dtype=np.uint8)
    size = (ckpt.get("config") or {}).get("inference", {}).get("input_size")
    return ModelInfo(class_names=names, palette=palette.reshape(-1, 3),
                     mean=list(ckpt.get("mean", IMAGENET_MEAN)),
                     std=list(ckpt.get("std", IMAGENET_STD)), source=str(path),
                     input_size=recorded_size(size))


def recorded_size(size) -> tuple[int, int] | None:
    """A model file's recorded (height, width), or None where it records none usable."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return (h, w) if h > 0 and w > 0 else None


register_backend("torch", TorchBackend.from_checkpoint, (".pt", ".pth"))


class BackendModule(torch.nn.Module):
    """Any backend dressed as a module (normalised batch -> class ids), so that
    `metrics.evaluate_model` measures an exported model exactly as it measures a network."""

    def __init__(self, backend: Backend, num_classes: int | None = None):
        super().__init__()
        self.backend = backend
        self.num_classes = int(num_classes or len(backend.info.class_names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.backend.infer(x.detach().cpu().numpy())))


def check_sizes(input_size: Sequence[int], output_size: str) -> None:
    if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
        raise SegmenterError(f"input_size must be [height, width] > 0, got {list(input_size)}")
    if output_size not in OUTPUT_SIZES:
        raise SegmenterError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")


class Segmenter:
    """Pre-processing, a backend, and post-processing for one frame at a time."""

    def __init__(self, backend: Backend, input_size: Sequence[int] | None = None,
                 output_size: str = "input"):
        """`input_size` (height, width) the network runs at; None: the size the model file
        records (`ModelInfo.input_size`: what `uda-seg deploy` / `export` measured it at),
        else DEFAULT_INPUT_SIZE."""
        info = backend.info
        if input_size is None:
            input_size = getattr(info, "input_size", None) or DEFAULT_INPUT_SIZE
        check_sizes(input_size, output_size)
        check_class_limit(len(info.class_names), info.source or "model")
        self.backend = backend
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_size = output_size
        self.class_names = list(info.class_names)
        self.palette = np.asarray(info.palette, dtype=np.uint8)
        self.normalisation = info.normalisation()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", precision: str = "fp32",
                        input_size: Sequence[int] | None = None, output_size: str = "input",
                        backend: str = "auto", channels_last: bool = False,
                        threads: int = 0) -> Segmenter:
        """Load a model file (.pt/.pth checkpoint, or an exported model whose backend is
        registered) onto `device` ('auto' | 'cpu' | 'cuda' | 'cuda:N'); `threads` CPU
        threads for its runtime (0: the backend's default, see each backend)."""
        if precision not in PRECISIONS:
            raise SegmenterError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        check_sizes(input_size or DEFAULT_INPUT_SIZE, output_size)  # before the model load
        path = Path(path)
        if not path.is_file():
            raise SegmenterError(f"model file not found: {path}")
        name = resolve_backend(path, backend)
        # `threads` only when asked for: a factory written before it existed still loads
        extra = {"threads": int(threads)} if threads else {}
        engine = BACKENDS[name](path, device=resolve_device(device), precision=precision,
                                channels_last=channels_last, **extra)
        return cls(engine, input_size, output_size)

    @classmethod
    def from_config(cls, path: str | Path, cfg: InferenceConfig) -> Segmenter:
        return cls.from_checkpoint(path, cfg.device, cfg.precision, cfg.input_size,
                                   cfg.output_size, cfg.backend, threads=cfg.threads)

    @property
    def device(self) -> str:
        return self.backend.device

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (1, 3, h, w) float32 at the network size, normalised."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise SegmenterError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        height, width = self.input_size
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        return self.normalisation.apply(rgb)[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, h, w) float32 -> (N, h, w) uint8 class ids."""
        return self.backend.infer(batch)

    def postprocess(self, ids: np.ndarray, original_hw: Sequence[int]) -> np.ndarray:
        """Class ids at the network size -> HxW uint8 at the input size (nearest) when
        output_size is 'input', unchanged when it is 'network'."""
        ids = np.asarray(ids, dtype=np.uint8)
        height, width = int(original_hw[0]), int(original_hw[1])
        if self.output_size == "input" and ids.shape != (height, width):
            ids = cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray(ids)

    def colorize(self, ids: np.ndarray) -> np.ndarray:
        """HxW class ids -> HxWx3 uint8 RGB with the model's palette."""
        return ids_to_rgb(ids, self.palette)

    def overlay(self, rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The colour mask blended over the image: (1 - alpha) * rgb + alpha * colour."""
        if not 0.0 <= alpha <= 1.0:
            raise SegmenterError(f"overlay alpha must be in [0, 1], got {alpha}")
        colour = self.colorize(ids)
        if rgb.shape[:2] != ids.shape:  # output_size 'network': draw on the resized image
            rgb = cv2.resize(rgb, (ids.shape[1], ids.shape[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.addWeighted(np.ascontiguousarray(rgb), 1.0 - alpha, colour, alpha, 0.0)

    def warmup(self, iterations: int = 3) -> None:
        """Run the network on a blank frame so the first real frame pays no set-up cost."""
        blank = np.zeros((1, 3, *self.input_size), dtype=np.float32)
        for _ in range(max(0, int(iterations))):
            self.infer(blank)

    def segment(self, rgb: np.ndarray, tracker: LatencyTracker | TrackerGroup | None = None
                ) -> np.ndarray:
        """preprocess -> infer -> postprocess; each step timed in `tracker` when given."""
        return self.segment_batch([rgb], tracker)[0]

    def segment_batch(self, frames: Sequence[np.ndarray],
                      tracker: LatencyTracker | TrackerGroup | None = None) -> list[np.ndarray]:
        """Several RGB frames (any sizes) through one network run: each is resized to the
        network size, the batch is inferred at once, and each mask goes back to its own
        frame's size. Each step is timed once for the whole batch in `tracker`."""
        if not frames:
            return []
        timer = tracker if tracker is not None else _UNTIMED
        with timer.measure("preprocess"):
            batch = np.concatenate([self.preprocess(rgb) for rgb in frames])
        with timer.measure("inference"):
            ids = self.infer(batch)
        with timer.measure("postprocess"):
            return [self.postprocess(mask, rgb.shape[:2]) for mask, rgb in zip(ids, frames)]


class _Untimed:
    @staticmethod
    @contextmanager
    def measure(stage: str) -> Iterator[None]:
        yield


_UNTIMED = _Untimed()
