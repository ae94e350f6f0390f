"""Segmenter: one RGB frame in, one class-id mask out (no ROS, no torch).

The steps are separate methods so callers can time each one (the ROS node records
decode / preprocess / inference / postprocess separately):

    seg = Segmenter.from_checkpoint("model.onnx", device="auto", resize_mode="letterbox")
    seg.warmup(3)
    batch = seg.preprocess(rgb)                  # HxWx3 uint8 -> 1x3xhxw float32, normalised
    ids = seg.infer(batch)[0]                    # hxw uint8 class ids
    mask = seg.postprocess(ids, rgb.shape[:2])   # back onto the frame if output_size='input'
    colour, blend = seg.colorize(mask), seg.overlay(rgb, mask, alpha=0.5)
    mask = seg.segment(rgb, tracker)             # the three steps, each timed in a LatencyTracker
    masks = seg.segment_batch([rgb_a, rgb_b], tracker)  # several frames, one network run
    pairs = seg.segment_batch_with_confidence(frames)   # [(mask, top-class probability), ...]

How a frame becomes the network's input (`resize_mode`, `Placement`): 'stretch' resizes
it to the network size whatever its aspect ratio; 'letterbox' keeps the aspect ratio,
scales the whole frame to fit and pads the rest with the normalisation's mean colour (0
after normalising: what the network's own zero padding shows it at every border, so the
pad adds no edge of its own); 'crop' keeps the aspect ratio, scales the frame to cover
the network input and takes the centre. The mask goes back onto the frame's pixels
(nearest, pixel centres aligned): the letterbox pad is cut away, and frame pixels the
network never saw (outside a crop) are IGNORE_INDEX (255, never a class). With
output_size 'network' the mask stays at the network size, the pad 255.

Inference runs behind a small backend interface (`infer(batch) -> ids`) chosen from the
`BACKENDS` registry, by name or, with backend='auto', by the model file's extension.
The built-in backends (PyTorch for .pt/.pth, ONNX Runtime for .onnx, TensorRT) are
imported by module name when first asked for (`BUILT_IN_BACKENDS`), so serving an .onnx
never imports torch, and a missing package is named with its fix only when its backend
is needed. Others register themselves with `register_backend`.
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

from uda_seg_core.config import InferenceConfig, Normalisation
from uda_seg_core.inference.latency import LatencyTracker, TrackerGroup
from uda_seg_core.labels import CLASS_NAMES, IGNORE_INDEX, NAMED_CLASSES, PRESET, ids_to_rgb

PRECISIONS = ("fp32", "fp16")
DEFAULT_INPUT_SIZE = (360, 480)  # CamVid's frames; a model that records no size runs at this
MAX_CLASSES = IGNORE_INDEX  # a mono8 mask holds ids 0-254; 255 is 'ignore', never a class
OUTPUT_SIZES = ("input", "network")
RESIZE_MODES = ("stretch", "letterbox", "crop")
# The library's default is what training's evaluation transform does (a plain resize), so
# numbers measured through a Segmenter compare with training's; the ROS node defaults to
# 'letterbox' (uda_seg_ros.parameters), which keeps a camera's aspect ratio.
DEFAULT_RESIZE_MODE = "stretch"
# The pip extra that brings torch and the model code (setup.py).
TRAIN_EXTRA = "pip install 'uda_seg_ros[train]'"


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
    # the label set the model was trained with (`labels.LabelSet.to_record`: headline
    # classes, dataset maps), where its file records one; None: a file from before label
    # sets, whose classes are the paper's
    label_set: dict | None = None

    def normalisation(self) -> Normalisation:
        return Normalisation(tuple(self.mean), tuple(self.std))

    def label_set_name(self) -> str:
        return str((self.label_set or {}).get("name") or PRESET)

    def headline_classes(self) -> list[int]:
        """The classes a headline mIoU of this model averages: its label set's; for a file
        without one, the paper's 11 named classes where it has the 12 classes, else all."""
        names = list(self.class_names)
        recorded = (self.label_set or {}).get("headline")
        if recorded and all(n in names for n in recorded):
            return sorted(names.index(n) for n in recorded)
        return list(NAMED_CLASSES) if tuple(names) == CLASS_NAMES else list(range(len(names)))


class Backend(Protocol):
    """The one thing a backend must do: a normalised batch in, class ids out.

    A backend that can also give the probability of each pixel's class sets
    `has_confidence` and has `infer_with_confidence(batch) -> (ids, float32 (N, H, W))`;
    one that cannot may say why in `confidence_note`.
    """

    name: str
    device: str
    info: ModelInfo

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) normalised -> uint8 (N, H, W) class ids."""
        ...


# factory(path, *, device, precision, channels_last[, threads]) -> Backend. `device` is the
# caller's choice ('auto' | 'cpu' | 'cuda' | 'cuda:N'): the backend resolves it (torch asks
# torch, ONNX Runtime its execution providers) and reports the one it uses as `.device`;
# `precision` is one of PRECISIONS, `threads` (passed only when > 0) the CPU threads its
# runtime may use.
BackendFactory = Callable[..., Backend]
BACKENDS: dict[str, BackendFactory] = {}
EXTENSIONS: dict[str, str] = {}  # '.pt' -> 'torch'
# name -> (the module that registers it when imported, the extensions it serves, what to
# install when that module cannot be imported). Imported by name (importlib), only when
# the backend is asked for: the torch backend is the only inference module importing torch.
BUILT_IN_BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "torch": ("uda_seg_core.inference.torch_backend", (".pt", ".pth"),
              f"a PyTorch checkpoint is served with torch, which this install lacks: install "
              f"the training extra ({TRAIN_EXTRA}), or export the checkpoint to ONNX where "
              f"torch is installed (`uda-seg export --checkpoint CKPT --out model.onnx`, or "
              f"`uda-seg deploy`) and serve the .onnx"),
    "onnxruntime": ("uda_seg_core.inference.onnx_backend", (".onnx",),
                    "install onnxruntime (pip install onnxruntime; onnxruntime-gpu for CUDA)"),
    "tensorrt": ("uda_seg_core.inference.onnx_backend", (),
                 "install onnxruntime-gpu built with TensorRT"),
}
for _name, (_, _extensions, _) in BUILT_IN_BACKENDS.items():
    EXTENSIONS.update(dict.fromkeys(_extensions, _name))


def register_backend(name: str, factory: BackendFactory, extensions: Sequence[str] = ()) -> None:
    """Make `factory` available as backend `name`, and the default for `extensions`."""
    BACKENDS[name] = factory
    for ext in extensions:
        EXTENSIONS[ext.lower()] = name


def known_backends() -> list[str]:
    return sorted(set(BACKENDS) | set(BUILT_IN_BACKENDS))


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """The backend name for `path` ('auto' looks at the extension); imports nothing."""
    if backend == "auto":
        suffix = Path(path).suffix.lower()
        if suffix not in EXTENSIONS:
            raise SegmenterError(
                f"cannot tell the backend of {path} from its extension {suffix!r}; known: "
                f"{', '.join(f'{e} -> {b}' for e, b in sorted(EXTENSIONS.items()))}; "
                f"or pass backend= one of {', '.join(known_backends())}"
            )
        return EXTENSIONS[suffix]
    if backend not in BACKENDS and backend not in BUILT_IN_BACKENDS:
        raise SegmenterError(
            f"unknown inference backend {backend!r}; available: {', '.join(known_backends())} "
            f"(or 'auto' to choose from the file extension)"
        )
    return backend


def _missing(name: str, path: str | Path, exc: ImportError) -> SegmenterError:
    hint = BUILT_IN_BACKENDS.get(name, ("", (), f"install what backend {name!r} needs"))[2]
    return SegmenterError(f"cannot serve {path} with the {name} backend ({exc}): {hint}")


def backend_factory(name: str, path: str | Path = "model") -> BackendFactory:
    """The factory of backend `name`, importing its module first if it is a built-in one
    not loaded yet; a package it lacks is a SegmenterError that says what to install."""
    if name not in BACKENDS and name in BUILT_IN_BACKENDS:
        try:
            importlib.import_module(BUILT_IN_BACKENDS[name][0])
        except ImportError as exc:
            raise _missing(name, path, exc) from exc
    return BACKENDS[name]


def check_class_limit(classes: int, source: str | Path = "model") -> None:
    if classes > MAX_CLASSES:
        raise SegmenterError(
            f"{source}: {classes} classes do not fit the mono8 class mask (ids 0-{MAX_CLASSES - 1}"
            f", {IGNORE_INDEX} is reserved): at most {MAX_CLASSES} classes are served")


def recorded_size(size) -> tuple[int, int] | None:
    """A model file's recorded (height, width), or None where it records none usable."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return (h, w) if h > 0 and w > 0 else None


def check_sizes(input_size: Sequence[int], output_size: str,
                resize_mode: str = DEFAULT_RESIZE_MODE) -> None:
    if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
        raise SegmenterError(f"input_size must be [height, width] > 0, got {list(input_size)}")
    if output_size not in OUTPUT_SIZES:
        raise SegmenterError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")
    if resize_mode not in RESIZE_MODES:
        raise SegmenterError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")


# --- geometry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """How a frame lies in the network input: the frame region the network sees (`source`:
    x, y, width, height in frame pixels) is resized onto `target` (x, y, width, height in
    network pixels). Outside `target` the network sees padding; outside `source` the frame
    is not seen. Stretch: both whole; letterbox: source whole, target centred; crop: source
    centred, target whole."""

    frame: tuple[int, int]  # (height, width)
    network: tuple[int, int]
    source: tuple[int, int, int, int]
    target: tuple[int, int, int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Network pixels per frame pixel, (x, y)."""
        return self.target[2] / self.source[2], self.target[3] / self.source[3]

    @property
    def pads(self) -> bool:
        return self.target[2:] != (self.network[1], self.network[0])

    @property
    def crops(self) -> bool:
        return self.source[2:] != (self.frame[1], self.frame[0])

    def to_network(self, x: float, y: float) -> tuple[float, float]:
        """A point in frame pixels -> the same point in network pixels. Pixel centres are
        at integer coordinates (as in CameraInfo's K), and the resize maps centre onto
        centre (OpenCV's INTER_LINEAR and INTER_NEAREST_EXACT): u' + 0.5 = (u + 0.5) * s."""
        sx, sy = self.scale
        return (self.target[0] + (x - self.source[0] + 0.5) * sx - 0.5,
                self.target[1] + (y - self.source[1] + 0.5) * sy - 0.5)


def place(frame_hw: Sequence[int], network_hw: Sequence[int],
          mode: str = DEFAULT_RESIZE_MODE) -> Placement:
    """The Placement of a frame of `frame_hw` in a network input of `network_hw`."""
    fh, fw = int(frame_hw[0]), int(frame_hw[1])
    nh, nw = int(network_hw[0]), int(network_hw[1])
    whole_frame, whole_network = (0, 0, fw, fh), (0, 0, nw, nh)
    if mode == "stretch":
        return Placement((fh, fw), (nh, nw), whole_frame, whole_network)
    if mode == "letterbox":
        s = min(nw / fw, nh / fh)
        tw, th = min(nw, max(1, round(fw * s))), min(nh, max(1, round(fh * s)))
        return Placement((fh, fw), (nh, nw), whole_frame, ((nw - tw) // 2, (nh - th) // 2, tw, th))
    if mode == "crop":
        s = max(nw / fw, nh / fh)
        sw, sh = min(fw, max(1, round(nw / s))), min(fh, max(1, round(nh / s)))
        return Placement((fh, fw), (nh, nw), ((fw - sw) // 2, (fh - sh) // 2, sw, sh),
                         whole_network)
    raise SegmenterError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) scores -> (N, H, W) float32 probability of the top class:
    1 / sum_c exp(l_c - max_c l_c) (no exp of a large score overflows)."""
    logits = np.asarray(logits, dtype=np.float32)
    top = logits.max(axis=1, keepdims=True)
    return (1.0 / np.exp(logits - top).sum(axis=1)).astype(np.float32, copy=False)


class Segmenter:
    """Pre-processing, a backend, and post-processing for one frame at a time."""

    def __init__(self, backend: Backend, input_size: Sequence[int] | None = None,
                 output_size: str = "input", resize_mode: str = DEFAULT_RESIZE_MODE):
        """`input_size` (height, width) the network runs at; None: the size the model file
        records (`ModelInfo.input_size`: what `uda-seg deploy` / `export` measured it at),
        else DEFAULT_INPUT_SIZE. `resize_mode`: RESIZE_MODES (the module docstring)."""
        info = backend.info
        if input_size is None:
            input_size = getattr(info, "input_size", None) or DEFAULT_INPUT_SIZE
        check_sizes(input_size, output_size, resize_mode)
        check_class_limit(len(info.class_names), info.source or "model")
        self.backend = backend
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_size = output_size
        self.resize_mode = resize_mode
        self.class_names = list(info.class_names)
        self.palette = np.asarray(info.palette, dtype=np.uint8)
        self.normalisation = info.normalisation()
        self.label_set_name = info.label_set_name()  # the set the model was trained with
        self.headline_classes = info.headline_classes()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", precision: str = "fp32",
                        input_size: Sequence[int] | None = None, output_size: str = "input",
                        backend: str = "auto", channels_last: bool = False,
                        threads: int = 0, resize_mode: str = DEFAULT_RESIZE_MODE) -> Segmenter:
        """Load a model file (.pt/.pth checkpoint, or an exported model whose backend is
        registered) onto `device` ('auto' | 'cpu' | 'cuda' | 'cuda:N'); `threads` CPU
        threads for its runtime (0: the backend's default, see each backend)."""
        if precision not in PRECISIONS:
            raise SegmenterError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        check_sizes(input_size or DEFAULT_INPUT_SIZE, output_size, resize_mode)  # before loading
        path = Path(path)
        if not path.is_file():
            raise SegmenterError(f"model file not found: {path}")
        name = resolve_backend(path, backend)
        factory = backend_factory(name, path)
        # `threads` only when asked for: a factory written before it existed still loads
        extra = {"threads": int(threads)} if threads else {}
        try:
            engine = factory(path, device=device or "auto", precision=precision,
                             channels_last=channels_last, **extra)
        except ModuleNotFoundError as exc:  # e.g. the model code's torchvision / timm
            raise _missing(name, path, exc) from exc
        return cls(engine, input_size, output_size, resize_mode)

    @classmethod
    def from_config(cls, path: str | Path, cfg: InferenceConfig,
                    resize_mode: str = DEFAULT_RESIZE_MODE) -> Segmenter:
        return cls.from_checkpoint(path, cfg.device, cfg.precision, cfg.input_size,
                                   cfg.output_size, cfg.backend, threads=cfg.threads,
                                   resize_mode=resize_mode)

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def has_confidence(self) -> bool:
        """Whether the backend gives each pixel's top-class probability."""
        return bool(getattr(self.backend, "has_confidence", False))

    @property
    def confidence_note(self) -> str:
        """Why there is no confidence, when there is none."""
        if self.has_confidence:
            return ""
        return (getattr(self.backend, "confidence_note", "")
                or f"the {self.backend.name} backend gives class ids only")

    def placement(self, frame_hw: Sequence[int]) -> Placement:
        """Where a frame of `frame_hw` (height, width) lies in the network input."""
        return place(frame_hw, self.input_size, self.resize_mode)

    def output_placement(self, frame_hw: Sequence[int]) -> Placement | None:
        """How the published mask relates to the frame: None when it lies on the frame's
        own pixels (output_size 'input'), else the Placement (output_size 'network')."""
        return None if self.output_size == "input" else self.placement(frame_hw)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (1, 3, h, w) float32 at the network size, normalised, placed
        as `resize_mode` says (padding: 0, the mean colour)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise SegmenterError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        p = self.placement(rgb.shape[:2])
        sx, sy, sw, sh = p.source
        tx, ty, tw, th = p.target
        region = rgb[sy:sy + sh, sx:sx + sw]
        if (sh, sw) != (th, tw):
            region = cv2.resize(region, (tw, th), interpolation=cv2.INTER_LINEAR)
        chw = self.normalisation.apply(region)
        if not p.pads:
            return chw[None]
        batch = np.zeros((1, 3, *self.input_size), dtype=np.float32)
        batch[0, :, ty:ty + th, tx:tx + tw] = chw
        return batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, h, w) float32 -> (N, h, w) uint8 class ids."""
        return self.backend.infer(batch)

    def infer_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, h, w) float32 -> ((N, h, w) uint8 ids, (N, h, w) float32 probability of
        each pixel's class)."""
        if not self.has_confidence:
            raise SegmenterError(f"no confidence from {self.backend.info.source or 'the model'}:"
                                 f" {self.confidence_note}")
        return self.backend.infer_with_confidence(batch)

    def postprocess(self, ids: np.ndarray, original_hw: Sequence[int]) -> np.ndarray:
        """Class ids at the network size -> HxW uint8 on the frame's pixels (nearest) when
        output_size is 'input' (255 where the network did not see the frame); at the
        network size when it is 'network' (255 on the letterbox pad)."""
        return self._to_output(np.asarray(ids, dtype=np.uint8), original_hw, IGNORE_INDEX)

    def postprocess_confidence(self, confidence: np.ndarray,
                               original_hw: Sequence[int]) -> np.ndarray:
        """The top-class probability, laid out as `postprocess` lays out the mask (0 where
        the mask is 255)."""
        return self._to_output(np.asarray(confidence, dtype=np.float32), original_hw, 0.0)

    def _to_output(self, values: np.ndarray, original_hw: Sequence[int], fill) -> np.ndarray:
        p = place(original_hw, values.shape[:2], self.resize_mode)
        sx, sy, sw, sh = p.source
        tx, ty, tw, th = p.target
        if self.output_size == "network":
            if not p.pads:
                return np.ascontiguousarray(values)
            out = np.full(values.shape, fill, dtype=values.dtype)
            out[ty:ty + th, tx:tx + tw] = values[ty:ty + th, tx:tx + tw]
            return out
        region = np.ascontiguousarray(values[ty:ty + th, tx:tx + tw])
        if (sh, sw) != (th, tw):
            region = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_NEAREST_EXACT)
        if not p.crops:
            return region
        out = np.full(p.frame, fill, dtype=values.dtype)
        out[sy:sy + sh, sx:sx + sw] = region
        return out

    def network_view(self, rgb: np.ndarray) -> np.ndarray:
        """The frame as the network sees it, at the network size (uint8 RGB; the pad in
        the mean colour): what a network-size mask lies on."""
        p = self.placement(rgb.shape[:2])
        sx, sy, sw, sh = p.source
        tx, ty, tw, th = p.target
        region = cv2.resize(rgb[sy:sy + sh, sx:sx + sw], (tw, th),
                            interpolation=cv2.INTER_LINEAR)
        if not p.pads:
            return region
        mean = np.clip(np.round(np.asarray(self.normalisation.mean) * 255), 0, 255)
        out = np.empty((*self.input_size, 3), dtype=np.uint8)
        out[:] = mean.astype(np.uint8)
        out[ty:ty + th, tx:tx + tw] = region
        return out

    def colorize(self, ids: np.ndarray) -> np.ndarray:
        """HxW class ids -> HxWx3 uint8 RGB with the model's palette (255: black)."""
        return ids_to_rgb(ids, self.palette)

    def overlay(self, rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The colour mask blended over the image: (1 - alpha) * rgb + alpha * colour; the
        image unchanged where the mask is 255 (not seen, or padding)."""
        if not 0.0 <= alpha <= 1.0:
            raise SegmenterError(f"overlay alpha must be in [0, 1], got {alpha}")
        colour = self.colorize(ids)
        if rgb.shape[:2] != ids.shape:  # output_size 'network': draw on the network's view
            rgb = self.network_view(rgb)
        rgb = np.ascontiguousarray(rgb)
        blend = cv2.addWeighted(rgb, 1.0 - alpha, colour, alpha, 0.0)
        unseen = ids == IGNORE_INDEX
        if unseen.any():
            blend[unseen] = rgb[unseen]
        return blend

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
        """Several RGB frames (any sizes) through one network run: each is placed in the
        network input, the batch is inferred at once, and each mask goes back to its own
        frame. Each step is timed once for the whole batch in `tracker`."""
        return [mask for mask, _ in self._run(frames, tracker, confidence=False)]

    def segment_batch_with_confidence(
            self, frames: Sequence[np.ndarray],
            tracker: LatencyTracker | TrackerGroup | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`segment_batch`, with each mask's top-class probability (float32, 0 where the
        mask is 255) laid out like the mask. Needs `has_confidence`."""
        return self._run(frames, tracker, confidence=True)

    def _run(self, frames: Sequence[np.ndarray], tracker, confidence: bool) -> list:
        if not frames:
            return []
        timer = tracker if tracker is not None else _UNTIMED
        with timer.measure("preprocess"):
            batch = np.concatenate([self.preprocess(rgb) for rgb in frames])
        with timer.measure("inference"):
            if confidence:
                ids, probs = self.infer_with_confidence(batch)
            else:
                ids, probs = self.infer(batch), [None] * len(frames)
        with timer.measure("postprocess"):
            return [(self.postprocess(mask, rgb.shape[:2]),
                     None if prob is None else self.postprocess_confidence(prob, rgb.shape[:2]))
                    for mask, prob, rgb in zip(ids, probs, frames)]


class _Untimed:
    @staticmethod
    @contextmanager
    def measure(stage: str) -> Iterator[None]:
        yield


_UNTIMED = _Untimed()


# Moved to torch_backend (they need torch); the old import path still works, by name.
_MOVED_TO_TORCH_BACKEND = ("BackendModule", "TorchBackend")


def __getattr__(name: str):
    if name in _MOVED_TO_TORCH_BACKEND:
        return getattr(importlib.import_module(BUILT_IN_BACKENDS["torch"][0]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
