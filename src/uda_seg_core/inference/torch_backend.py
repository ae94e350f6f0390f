"""PyTorch backend of `Segmenter`: serves a uda_seg checkpoint (.pt / .pth).

    seg = Segmenter.from_checkpoint("runs/x/best.pt")          # picked by the extension
    backend = TorchBackend.from_checkpoint("best.pt", device="cuda", precision="fp16")
    ids = backend.infer(batch)      # float32 (N, 3, H, W) normalised -> uint8 (N, H, W)

The only inference module that imports torch. `Segmenter` imports it by name, and only
when a checkpoint is served (`segmenter.BUILT_IN_BACKENDS`), so a vehicle that serves an
exported .onnx never needs torch installed. Also here: `BackendModule`, any backend
dressed as a torch module for `metrics.evaluate_model`, and `resolve_device`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uda_seg_core import runtime
from uda_seg_core.config import IMAGENET_MEAN, IMAGENET_STD
from uda_seg_core.inference.segmenter import (
    Backend,
    ModelInfo,
    SegmenterError,
    check_class_limit,
    recorded_size,
    register_backend,
)
from uda_seg_core.labels import CLASS_NAMES, PALETTE


def resolve_device(device: str = "auto") -> str:
    """`runtime.resolve_device` (the one definition), raising SegmenterError."""
    return runtime.resolve_device(device, error=SegmenterError)


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) scores -> (N, H, W) float32 probability of the top class."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1)


class TorchBackend:
    """A PyTorch model in 'pred' mode (argmax inside the graph) under inference_mode."""

    name = "torch"
    has_confidence = True  # the logits are there: `infer_with_confidence` works
    confidence_note = ""

    def __init__(self, model, info: ModelInfo, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, threads: int = 0):
        device = resolve_device(device)
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
        # Late on purpose: the model loader brings torchvision and timm (seconds to import
        # on a busy machine).
        from uda_seg_core.models import load_model

        device = resolve_device(device)  # a bad device fails before the model loads
        model, ckpt = load_model(path, map_location="cpu")
        info = info_from_checkpoint(ckpt, path)
        check_class_count(network_classes(model), info, ckpt.get("model_config", {}), path)
        return cls(model, info, device, precision, channels_last, threads)

    def _input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, dtype=self._dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(self._input(batch))
            # a model without 'pred' mode returns logits; uint8 on the device either way:
            # 8x less to copy back than int64
            out = out.argmax(dim=1) if out.ndim == 4 else out
            return out.to(torch.uint8).cpu().numpy()

    def infer_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (N, H, W) class ids, float32 (N, H, W) probability of that class)."""
        with torch.inference_mode():
            x = self._input(batch)
            if "scores" in getattr(self.model, "AUX_MODES", ()):
                # as the exported graph does (optimize/export.py): ids from the upsampled
                # logits, the probability from the head's own scores, upsampled
                scores = self.model(x, aux_mode="scores")
                logits = F.interpolate(scores, size=x.shape[-2:], mode="bilinear",
                                       align_corners=False)
                confidence = F.interpolate(max_softmax(scores)[:, None], size=x.shape[-2:],
                                           mode="bilinear", align_corners=False)[:, 0]
            else:
                logits = self.model(x, aux_mode="eval") if hasattr(self.model, "aux_mode") \
                    else self.model(x)
                if isinstance(logits, dict):  # torchvision segmentation models
                    logits = logits["out"]
                confidence = max_softmax(logits)
            ids = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
            return ids, confidence.float().cpu().numpy()


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


def info_from_checkpoint(ckpt: dict, path: str | Path = "") -> ModelInfo:
    """Class names, palette, label set and normalisation stored in a uda_seg checkpoint."""
    names = list(ckpt.get("class_names") or CLASS_NAMES)
    palette = ckpt.get("palette")
    palette = PALETTE[: len(names)] if palette is None else np.asarray(palette, dtype=np.uint8)
    size = (ckpt.get("config") or {}).get("inference", {}).get("input_size")
    label_set = ckpt.get("label_set")
    return ModelInfo(class_names=names, palette=palette.reshape(-1, 3),
                     mean=list(ckpt.get("mean", IMAGENET_MEAN)),
                     std=list(ckpt.get("std", IMAGENET_STD)), source=str(path),
                     input_size=recorded_size(size),
                     label_set=label_set if isinstance(label_set, dict) else None)


class BackendModule(torch.nn.Module):
    """Any backend dressed as a module (normalised batch -> class ids), so that
    `metrics.evaluate_model` measures an exported model exactly as it measures a network."""

    def __init__(self, backend: Backend, num_classes: int | None = None):
        super().__init__()
        self.backend = backend
        self.num_classes = int(num_classes or len(backend.info.class_names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.backend.infer(x.detach().cpu().numpy())))


register_backend("torch", TorchBackend.from_checkpoint, (".pt", ".pth"))
