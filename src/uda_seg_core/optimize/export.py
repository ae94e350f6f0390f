"""Export a checkpoint to ONNX (fp32, or INT8 by static quantisation), ready to serve.

    uda-seg export --checkpoint runs/x/best.pt --format onnx --out model.onnx
    uda-seg export --checkpoint runs/x/best.pt --format onnx --mode logits --size 720x960 \\
        --out m.onnx
    uda-seg export --checkpoint runs/x/best.pt --format onnx --int8 \
        --calibration data/synthetic/camvid --out model_int8.onnx

Two output modes:
- 'pred' (default): class ids (N, H, W) uint8, the argmax inside the graph, so a consumer
  needs no post-processing and the output is a quarter of int32 ids' bytes; the logits the
  argmax reads are a second output, 'logits', which ONNX Runtime computes anyway and copies
  out only when asked (the node's confidence image; a softmax inside the graph would cost
  every frame, asked or not);
- 'logits': (N, C, H, W) float32 scores (for ensembling, confidence, or other argmaxes).

The file is self-describing: `metadata_props` hold JSON strings for class names, palette,
the label set (`label_set`, its `headline_classes`, the `ignore_index` of the masks),
normalisation (mean/std on the 0-1 scale, RGB), input size and output kind, so the
ONNX Runtime backend of `Segmenter` (and the ROS node) loads a .onnx with no flags.
Batch, height and width are dynamic by default (the same file serves any camera size;
ONNX Runtime was measured no slower than with fixed shapes); `--size` is the size the
export is checked and calibrated at, recorded as metadata 'input_size', and
`--static-shape` fixes all three axes to (1, 3, H, W).

INT8 uses onnxruntime.quantization.quantize_static: QDQ format, per-channel symmetric
int8 weights, uint8 activations, calibrated (MinMax by default) on real frames of the
dataset passed through the evaluation preprocessing (resize to the export size, then the
checkpoint's normalisation). After export the command compares the ONNX model with the
eager one on the same inputs and prints the pixel agreement of the argmax.
"""
from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from uda_seg_core.config import DataConfig, Normalisation, parse_size
from uda_seg_core.data import IMAGE_SUFFIXES, detect_format, eval_transform, natural_key, read_rgb
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.labels import IGNORE_INDEX
from uda_seg_core.models import (
    class_ids,
    freeze_same_padding,
    has_dynamic_padding,
    load_model,
)

log = logging.getLogger(__name__)

ONNX_FORMAT = "uda_seg.onnx/1"
INPUT_NAME = "image"
OUTPUT_NAMES = {"pred": ("class_ids", "logits"), "logits": ("logits",)}
MODES = tuple(OUTPUT_NAMES)
DEFAULT_OPSET = 17
# Agreement between the exported fp32 graph and eager PyTorch below this fraction of
# pixels means the export is wrong, not merely rounded differently.
FP32_MIN_AGREEMENT = 0.99
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class ExportError(RuntimeError):
    """An export that cannot be done as asked (bad size, no calibration frames, ...)."""


class _Logits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, aux_mode="eval")


class _IdsAndLogits(nn.Module):
    """ClassIds' class ids, and the scores they come from: BiSeNet's at the head's own
    resolution (1/8: 64x fewer values to hand out than the upsampled logits, which an INT8
    graph would otherwise dequantise on every frame, fetched or not: 1.1 ms of 13 here);
    the logits themselves for other networks. The confidence is upsampled from them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if "scores" in getattr(self.model, "AUX_MODES", ()):
            scores = self.model(x, aux_mode="scores")
            logits = F.interpolate(scores, size=x.shape[-2:], mode="bilinear",
                                   align_corners=False)
            return class_ids(logits), scores
        out = self.model(x, aux_mode="eval") if hasattr(self.model, "aux_mode") else self.model(x)
        if isinstance(out, dict):  # torchvision segmentation models
            out = out["out"]
        return class_ids(out), out


def export_graph(model: nn.Module, mode: str) -> nn.Module:
    """The eval-mode module whose forward is what the ONNX file computes."""
    if mode not in MODES:
        raise ExportError(f"unknown mode '{mode}'; choose from: {', '.join(MODES)}")
    wrapped = _IdsAndLogits(model) if mode == "pred" else _Logits(model)
    return wrapped.eval()


def metadata_from_checkpoint(ckpt: dict, mode: str, size: tuple[int, int],
                             precision: str = "fp32") -> dict[str, str]:
    """metadata_props of an exported model: every value is a JSON string."""
    model_cfg = ckpt.get("model_config", {})
    values = {
        "uda_seg.format": ONNX_FORMAT,
        "class_names": list(ckpt["class_names"]),
        "palette": [list(map(int, c)) for c in ckpt["palette"]],
        "mean": [float(v) for v in ckpt["mean"]],
        "std": [float(v) for v in ckpt["std"]],
        "input_size": list(size),
        "output": "class_ids" if mode == "pred" else "logits",
        "mode": mode,
        "precision": precision,
        "backbone": model_cfg.get("backbone", ""),
        "num_classes": int(model_cfg.get("num_classes", len(ckpt["class_names"]))),
    }
    if isinstance(ckpt.get("label_set"), dict):  # the classes the weights were trained on
        labels = ckpt["label_set"]
        names = values["class_names"]
        values["label_set"] = labels
        values["headline_classes"] = [names.index(n) for n in labels.get("headline", names)
                                      if n in names]
        values["ignore_index"] = IGNORE_INDEX
    if "pruning" in ckpt:
        values["pruning"] = ckpt["pruning"]
    return {key: json.dumps(value) for key, value in values.items()}


def read_metadata(path: str | Path) -> dict:
    """The decoded metadata_props of an ONNX file (values parsed from JSON)."""
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out


def write_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_onnx(model: nn.Module, path: str | Path, *, mode: str = "pred",
                size: tuple[int, int] = (360, 480), metadata: dict[str, str] | None = None,
                dynamic_shape: bool = True, opset: int = DEFAULT_OPSET) -> Path:
    """Trace `model` (a BiSeNet) in `mode` at `size` (H, W) and write an ONNX file.

    An encoder that pads TF-"same" (EfficientNet-Lite) is traced with its padding frozen
    for `size` (on a copy): the graph is exact at that size, the size its metadata records
    and the Segmenter feeds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if has_dynamic_padding(model):
        model = copy.deepcopy(model)
        freeze_same_padding(model, tuple(size))
    graph = export_graph(model, mode)
    example = torch.zeros(1, 3, *size)
    outputs = OUTPUT_NAMES[mode]
    axes = {"class_ids": {0: "batch", 1: "height", 2: "width"},
            "logits": {0: "batch", 2: "height", 3: "width"}}
    dynamic_axes = None
    if dynamic_shape:
        dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                        **{name: axes[name] for name in outputs}}
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no onnxscript; its deprecation
        # notice and tracer warnings about shape arithmetic are expected here.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=list(outputs), dynamic_axes=dynamic_axes,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    if metadata:
        write_metadata(path, metadata)
    return path


# --- calibration -------------------------------------------------------------------------

def calibration_images(directory: str | Path) -> list[Path]:
    """Camera frames (no labels) under `directory`.

    A dataset root is reduced to the frames a user may calibrate on: CamVid's train split,
    IDDA's rgb/, or the CamVid train split of a make-synthetic output. Any other folder is
    searched recursively for images, skipping label folders.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ExportError(f"calibration folder not found: {root}")
    fmt = detect_format(root)
    if fmt == "synthetic":
        root = root / "camvid" / "train"
    elif fmt in ("camvid", "camvid_segnet") and (root / "train").is_dir():
        root = root / "train"
    elif fmt == "idda":
        root = root / "rgb"
    files = [
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any("label" in part.lower() or "annot" in part.lower()
                    for part in p.relative_to(root).parts[:-1])
    ]
    if not files:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root} to calibrate on; "
                          f"pass --calibration a folder of camera frames or a dataset root")
    return sorted(files, key=lambda p: natural_key(str(p)))


def preprocess_frames(files: Sequence[Path], size: tuple[int, int], mean: Sequence[float],
                      std: Sequence[float]) -> list[np.ndarray]:
    """Each file as a (1, 3, H, W) float32 batch, by the evaluation transform."""
    transform = eval_transform(DataConfig(eval_size=list(size)),
                               normalisation=Normalisation(tuple(mean), tuple(std)))
    return [transform(read_rgb(f), None)[0].unsqueeze(0).numpy() for f in files]


def pick_evenly(items: Sequence, count: int) -> list:
    """`count` items spread over the whole sequence (frames of a video are correlated)."""
    if count <= 0 or count >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


class FrameReader:
    """onnxruntime CalibrationDataReader over preprocessed frames (duck-typed)."""

    def __init__(self, frames: Iterable[np.ndarray], input_name: str = INPUT_NAME):
        self._frames = list(frames)
        self._input_name = input_name
        self._iter = iter(self._frames)

    def get_next(self) -> dict | None:
        frame = next(self._iter, None)
        return None if frame is None else {self._input_name: frame}

    def rewind(self) -> None:
        self._iter = iter(self._frames)


def quantize_int8(fp32_path: str | Path, out_path: str | Path, frames: Sequence[np.ndarray],
                  method: str = "minmax", per_channel: bool = True) -> Path:
    """Static INT8 (QDQ, per-channel int8 weights, uint8 activations) of an fp32 ONNX file.

    The argmax / uint8 cast at the end of a pred-mode graph stay as they are; metadata is
    copied from the fp32 file with precision set to 'int8'.
    """
    from onnxruntime.quantization import (  # optional: onnxruntime only where quantising
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # optional

    if not frames:
        raise ExportError("INT8 quantisation needs at least one calibration frame")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ExportError(f"unknown calibration method '{method}'; choose from: "
                          f"{', '.join(methods)}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="uda_seg_quant_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference + graph optimisation first, as onnxruntime recommends: BN is
        # folded into the convolutions so each conv quantises with its final weights.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        quantize_static(str(prepared), str(out_path), FrameReader(frames),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=methods[method])
    meta = {k: json.dumps(v) for k, v in read_metadata(fp32_path).items()}
    meta["precision"] = json.dumps("int8")
    meta["calibration"] = json.dumps({"frames": len(frames), "method": method,
                                      "per_channel": per_channel, "format": "QDQ"})
    write_metadata(out_path, meta)
    return out_path


# --- checking ----------------------------------------------------------------------------

def compare_with_eager(model: nn.Module, onnx_path: str | Path,
                       inputs: Sequence[np.ndarray], threads: int = 0) -> dict:
    """Run eager PyTorch and ONNX Runtime on the same batches.

    Returns the fraction of pixels whose class agrees, and for a logits model the largest
    absolute logit difference.
    """
    backend = OnnxRuntimeBackend(onnx_path, device="cpu", threads=threads)
    agree = total = 0
    max_abs = 0.0
    model = model.eval()
    for batch in inputs:
        with torch.no_grad():
            logits = model(torch.from_numpy(batch), aux_mode="eval")
        ids = class_ids(logits).numpy()
        got = backend.infer(batch)
        agree += int((got == ids).sum())
        total += ids.size
        if backend.output_kind == "logits":
            raw = backend.run_raw(batch)
            max_abs = max(max_abs, float(np.abs(raw - logits.numpy()).max()))
    result = {"agreement": agree / max(total, 1), "pixels": total}
    if backend.output_kind == "logits":
        result["max_abs_logit_diff"] = max_abs
    return result


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, mode: str = "pred",
                      size: tuple[int, int] | None = None, int8: bool = False,
                      calibration: str | Path | None = None, calibration_frames: int = 32,
                      calibration_method: str = "minmax", dynamic_shape: bool = True,
                      opset: int = DEFAULT_OPSET, check_frames: int = 4) -> dict:
    """Checkpoint -> ONNX (-> INT8); returns a summary with the agreement check."""
    model, ckpt = load_model(checkpoint)
    model.eval()
    if size is None:
        size = tuple(ckpt.get("config", {}).get("inference", {}).get("input_size", (360, 480)))
    size = parse_size(size)
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DIR: static quantisation calibrates the "
                          "activation ranges on real frames")
    out = Path(out)
    frames: list[np.ndarray] = []
    if calibration:
        files = calibration_images(calibration)
        frames = preprocess_frames(pick_evenly(files, calibration_frames), size, ckpt["mean"],
                                   ckpt["std"])
    metadata = metadata_from_checkpoint(ckpt, mode, size)
    summary: dict = {"checkpoint": str(checkpoint), "mode": mode, "size": list(size),
                     "precision": "int8" if int8 else "fp32"}
    if int8:
        with tempfile.TemporaryDirectory(prefix="uda_seg_export_") as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", mode=mode, size=size,
                               metadata=metadata, dynamic_shape=dynamic_shape, opset=opset)
            quantize_int8(fp32, out, frames, method=calibration_method)
        summary["calibration_frames"] = len(frames)
    else:
        export_onnx(model, out, mode=mode, size=size, metadata=metadata,
                    dynamic_shape=dynamic_shape, opset=opset)
    summary["out"] = str(out)
    if check_frames > 0:
        inputs = pick_evenly(frames, check_frames) if frames else [
            np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
            for _ in range(check_frames)
        ]
        summary["check"] = compare_with_eager(model, out, inputs)
    return summary
