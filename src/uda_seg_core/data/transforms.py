"""Joint image/label transforms: the paper's augmentations (Table III) and normalisation.

Training: random scale from `augmentation.scales`, random crop to `data.crop_size`
(padding: image 0, label IGNORE_INDEX), horizontal flip, Gaussian blur, linear contrast,
additive Gaussian noise, multiply, then the network's input normalisation
(`config.Normalisation`: the backbone's weights decide it, `config.input_normalisation`).
Evaluation: optional resize of the image (never the label) to `data.eval_size`, the
network's input size, then normalisation; metrics stay at the label's own resolution.
Labels are only moved (nearest-neighbour scaling, crop, flip), never interpolated or
recoloured.

    from uda_seg_core.data.transforms import build_transforms
    tf = build_transforms(cfg.augmentation, cfg.data, train=True, seed=cfg.train.seed,
                          normalisation=input_normalisation(cfg))
    image_t, label_t = tf(image_uint8_rgb, label_uint8)     # float32 3xHxW, int64 HxW

With a seed, a sample's augmentation depends only on (seed, epoch, sample index): the
dataset calls `tf.reseed(index)` before each sample and `data.set_epoch(ds, epoch)`
changes the epoch, so results do not depend on the number of DataLoader workers.

Table III rows as YAML (`augmentation:` section; all six in
`study.experiments.TABLE_III_AUGMENTATIONS`), e.g. Aug 5:
    hflip: 0.5
    blur_sigma: [1.0, 2.0]
    linear_contrast: [0.75, 1.5]
    noise_std: [0.0, 12.75]   # 0.05 * 255
    noise_p: 0.5
    multiply: [0.8, 1.2]
    multiply_p: 0.5
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from uda_seg_core.config import AugmentationConfig, DataConfig, Normalisation
from uda_seg_core.labels import IGNORE_INDEX


def _range(values: list[float], field: str) -> tuple[float, float] | None:
    """[] -> None (off), [v] -> (v, v), [lo, hi] -> (lo, hi); anything else is an error."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0]), float(values[0])
    if len(values) == 2 and values[0] <= values[1]:
        return float(values[0]), float(values[1])
    raise ValueError(f"augmentation.{field} must be [] (off), [value] or [low, high] with "
                     f"low <= high, got {values}")


def _size(values: list[int], field: str) -> tuple[int, int] | None:
    if not values:
        return None
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"data.{field} must be [] or [height, width] > 0, got {values}")
    return int(values[0]), int(values[1])


def resize_pair(image: np.ndarray, label: np.ndarray | None, size: tuple[int, int]):
    """Image bilinear, label nearest (pixel-centre aligned, so it stays on the image)."""
    h, w = size
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return image, label


class JointTransform:
    """Callable (image uint8 RGB, label uint8 | None) -> (float32 tensor, int64 tensor | None)."""

    def __init__(self, aug: AugmentationConfig, data: DataConfig, train: bool,
                 seed: int | None = None, *, normalisation: Normalisation):
        self.train = train
        self.scales = [float(s) for s in aug.scales] or [1.0]
        if min(self.scales) <= 0:
            raise ValueError(f"augmentation.scales must be > 0, got {aug.scales}")
        self.hflip = float(aug.hflip)
        self.blur_sigma = _range(aug.blur_sigma, "blur_sigma")
        self.blur_p = float(aug.blur_p)
        self.contrast = _range(aug.linear_contrast, "linear_contrast")
        self.noise_std = _range(aug.noise_std, "noise_std")
        self.noise_p = float(aug.noise_p)
        self.multiply = _range(aug.multiply, "multiply")
        self.multiply_p = float(aug.multiply_p)
        self.crop_size = _size(data.crop_size, "crop_size")
        self.eval_size = _size(data.eval_size, "eval_size")
        self.normalisation = normalisation
        self.seed = seed
        # Shared memory, so set_epoch reaches DataLoader workers (persistent ones too).
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.rng = np.random.default_rng(seed)

    # -- seeding -------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def reseed(self, index: int) -> None:
        """Per-sample generator from (seed, epoch, index); no-op for an unseeded transform."""
        if self.seed is not None:
            self.rng = np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def reseed_stream(self, seed: int) -> None:
        """Used by `data.seed_worker`: give an unseeded transform a distinct stream per worker."""
        if self.seed is None:
            self.rng = np.random.default_rng(seed)

    # -- the paper's augmentations -----------------------------------------------------
    def random_scale(self, image, label):
        s = self.scales[0]
        if len(self.scales) > 1:
            s = self.scales[int(self.rng.integers(len(self.scales)))]
        if s == 1.0:
            return image, label
        h, w = image.shape[:2]
        return resize_pair(image, label, (max(1, round(h * s)), max(1, round(w * s))))

    def random_crop(self, image, label):
        ch, cw = self.crop_size
        h, w = image.shape[:2]
        if h < ch or w < cw:  # pad bottom/right: image black, label ignored
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            if label is not None:
                label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT,
                                           value=IGNORE_INDEX)
            h, w = image.shape[:2]
        y = int(self.rng.integers(h - ch + 1))
        x = int(self.rng.integers(w - cw + 1))
        image = image[y:y + ch, x:x + cw]
        if label is not None:
            label = label[y:y + ch, x:x + cw]
        return image, label

    def horizontal_flip(self, image, label):
        if self.hflip > 0 and self.rng.random() < self.hflip:
            image = image[:, ::-1]
            label = None if label is None else label[:, ::-1]
        return image, label

    def gaussian_blur(self, x: np.ndarray) -> np.ndarray:
        if self.blur_sigma is None or self.rng.random() >= self.blur_p:
            return x
        sigma = self.rng.uniform(*self.blur_sigma)
        if sigma < 0.01:  # sigma 0 (the low end of [0, 3]) means no blur
            return x
        return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma)

    def linear_contrast(self, x: np.ndarray) -> np.ndarray:
        if self.contrast is None:
            return x
        alpha = self.rng.uniform(*self.contrast)
        return np.clip(128.0 + alpha * (x - 128.0), 0, 255, out=x)

    def additive_gaussian_noise(self, x: np.ndarray) -> np.ndarray:
        if self.noise_std is None or self.rng.random() >= self.noise_p:
            return x
        std = self.rng.uniform(*self.noise_std)
        # One sample per pixel shared by the three channels (grey noise, like imgaug's default).
        noise = self.rng.standard_normal(x.shape[:2], dtype=np.float32)[..., None] * np.float32(std)
        return np.clip(x + noise, 0, 255, out=x)

    def multiply_brightness(self, x: np.ndarray) -> np.ndarray:
        if self.multiply is None or self.rng.random() >= self.multiply_p:
            return x
        return np.clip(x * np.float32(self.rng.uniform(*self.multiply)), 0, 255, out=x)

    # -----------------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, label: np.ndarray | None = None):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        if label is not None and label.shape != image.shape[:2]:
            raise ValueError(f"label shape {label.shape} does not match image {image.shape[:2]}")
        if self.train:
            image, label = self.random_scale(image, label)
            if self.crop_size is not None:
                image, label = self.random_crop(image, label)
            image, label = self.horizontal_flip(image, label)
            x = np.ascontiguousarray(image, dtype=np.float32)
            x = self.gaussian_blur(x)
            x = self.linear_contrast(x)
            x = self.additive_gaussian_noise(x)
            x = self.multiply_brightness(x)
        else:
            # Only the image goes to the network size: labels, and so every metric, stay
            # at the frame's own resolution (logits are upsampled to the label's size).
            if self.eval_size is not None and self.eval_size != image.shape[:2]:
                height, width = self.eval_size
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            x = image
        image_t = torch.from_numpy(self.normalisation.apply(x))
        label_t = None
        if label is not None:
            label_t = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        return image_t, label_t


def build_transforms(aug: AugmentationConfig, data: DataConfig, train: bool,
                     seed: int | None = None, *, normalisation: Normalisation) -> JointTransform:
    """The training (augmenting) or evaluation transform for one domain; `normalisation`
    is the network's (`config.input_normalisation(cfg)`, or a checkpoint's record)."""
    return JointTransform(aug, data, train, seed, normalisation=normalisation)
