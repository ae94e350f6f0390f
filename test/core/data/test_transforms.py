"""Joint transforms: labels only move, flips are joint, Table III rows load, seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers.fixtures import write_tiny_camvid
from uda_seg_core.config import IMAGENET, AugmentationConfig, DataConfig, load_config
from uda_seg_core.data import build_dataset, seed_worker, set_epoch
from uda_seg_core.data.transforms import build_transforms as _build_transforms
from uda_seg_core.study.experiments import TABLE_III_AUGMENTATIONS as TABLE_III
from uda_seg_core.study.experiments import table_iii_yaml


def build_transforms(*args, **kwargs):
    return _build_transforms(*args, normalisation=IMAGENET, **kwargs)


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
OFF = {"hflip": 0.0, "blur_sigma": [], "linear_contrast": [], "noise_std": [], "multiply": []}


def sample(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3),
                        dtype=np.uint8), rng.integers(0, 12, (h, w)).astype(np.uint8)


def denormalise(x: torch.Tensor) -> np.ndarray:
    return (x.numpy().transpose(1, 2, 0) * STD + MEAN) * 255


def test_table_iii_rows_load_from_yaml(tmp_path):
    for row in TABLE_III:
        path = tmp_path / f"{row}.yaml"
        path.write_text(table_iii_yaml(row))
        aug = load_config(path).augmentation
        build_transforms(aug, DataConfig(crop_size=[16, 16]), train=True, seed=0)(*sample())
    aug5 = load_config(tmp_path / "aug5.yaml").augmentation
    assert (aug5.hflip == 0.5 and aug5.blur_sigma == [1.0, 2.0]
            and aug5.linear_contrast == [0.75, 1.5])
    assert aug5.noise_std == [0.0, 0.05 * 255] and aug5.noise_p == 0.5
    assert aug5.multiply == [0.8, 1.2] and aug5.multiply_p == 0.5
    assert load_config(tmp_path / "baseline.yaml").augmentation.hflip == 0.0
    # The default is the paper's choice, Aug 3.
    default = AugmentationConfig()
    assert {k: getattr(default, k) for k in TABLE_III["aug3"]} == TABLE_III["aug3"]


def test_labels_stay_valid_through_scale_crop_and_padding():
    image, label = sample(20, 30)
    aug = AugmentationConfig(scales=[0.5, 0.75, 1.5, 1.75], hflip=0.5, blur_sigma=[0.0, 3.0],
                             linear_contrast=[0.75, 1.5], noise_std=[0, 12.75], multiply=[0.8, 1.2])
    tf = build_transforms(aug, DataConfig(crop_size=[24, 40]), train=True, seed=3)
    padded = False
    for i in range(12):
        tf.reseed(i)
        x, y = tf(image, label)
        assert x.shape == (3, 24, 40) and x.dtype == torch.float32
        assert y.shape == (24, 40) and y.dtype == torch.int64
        values = set(torch.unique(y).tolist())
        assert values <= set(range(12)) | {255}
        padded |= 255 in values
    assert padded  # a 0.5 scale of 20x30 cannot fill 24x40


def test_scaling_never_interpolates_labels():
    image, _ = sample(30, 30)
    label = np.where(np.add.outer(np.arange(30), np.arange(30)) % 7 < 3, 3, 7).astype(np.uint8)
    tf = build_transforms(AugmentationConfig(scales=[1.37, 0.61], **OFF), DataConfig(crop_size=[]),
                          train=True, seed=0)
    for i in range(4):
        tf.reseed(i)
        _, y = tf(image, label)
        assert set(torch.unique(y).tolist()) == {3, 7}  # no 5 from blending 3 and 7


def test_flip_moves_image_and_label_together():
    image, label = sample()
    image[..., 0] = label * 20  # the red channel spells out the label
    aug = AugmentationConfig(**{**OFF, "hflip": 1.0})
    x, y = build_transforms(aug, DataConfig(crop_size=[24, 32]), train=True, seed=0)(image, label)
    np.testing.assert_array_equal(y.numpy(), label[:, ::-1])
    np.testing.assert_allclose(denormalise(x)[..., 0], y.numpy() * 20, atol=0.01)


def test_pixel_augmentations_never_touch_labels():
    image, label = sample()
    aug = AugmentationConfig(scales=[1.0], hflip=0.0, blur_sigma=[2.0, 3.0], blur_p=1.0,
                             linear_contrast=[0.75, 0.8], noise_std=[10, 12], noise_p=1.0,
                             multiply=[1.1, 1.2], multiply_p=1.0)
    tf = build_transforms(aug, DataConfig(crop_size=[24, 32]), train=True, seed=1)
    x, y = tf(image, label)
    np.testing.assert_array_equal(y.numpy(), label)
    assert np.abs(denormalise(x) - image).mean() > 5  # the image did change


def test_crop_padding_is_black_image_and_ignored_label():
    image, label = sample(10, 10)
    x, y = build_transforms(AugmentationConfig(**OFF), DataConfig(crop_size=[16, 16]), train=True,
                            seed=0)(image, label)
    assert (y == 255).sum() == 16 * 16 - 100
    pad = denormalise(x)[y.numpy() == 255]
    np.testing.assert_allclose(pad, 0, atol=0.01)


def test_eval_resizes_only_the_image_and_normalises():
    """Bug guarded: an eval_size that also shrinks the label would measure mIoU at the
    network's resolution, not at the frame's (thin poles and signs vanish from the score)."""
    image = np.full((24, 32, 3), (MEAN * 255).round().astype(np.uint8), np.uint8)
    label = np.zeros((24, 32), np.uint8)
    label[:, 16:] = 9
    x, y = build_transforms(AugmentationConfig(), DataConfig(eval_size=[12, 20]),
                            train=False)(image, label)
    assert x.shape == (3, 12, 20) and y.shape == (24, 32)
    assert np.array_equal(y.numpy(), label)
    assert float(x.abs().max()) < 0.01  # the mean colour normalises to zero


def test_seeded_per_sample_and_epoch():
    image, label = sample()
    aug = AugmentationConfig(scales=[0.75, 1.0, 1.25], noise_std=[5, 10], multiply=[0.8, 1.2])
    tf = build_transforms(aug, DataConfig(crop_size=[16, 16]), train=True, seed=7)

    def run(index, epoch):
        tf.set_epoch(epoch)
        tf.reseed(index)
        return tf(image, label)

    a, b = run(3, 0), run(3, 0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(run(4, 0)[0], a[0])
    assert not torch.equal(run(3, 1)[0], a[0])
    free = build_transforms(aug, DataConfig(crop_size=[16, 16]), train=True)
    assert not torch.equal(free(image, label)[0], free(image, label)[0])


def test_dataloader_workers_do_not_change_the_augmentation(tmp_path):
    write_tiny_camvid(tmp_path, {"train": [f"0001TP_{i:06d}" for i in range(6)]}, size=(20, 24))
    aug = AugmentationConfig(scales=[0.75, 1.25], noise_std=[5, 10], multiply=[0.8, 1.2])
    tf = build_transforms(aug, DataConfig(crop_size=[16, 16]), train=True, seed=11)
    ds = build_dataset("camvid", tmp_path, "train", transform=tf)

    def epoch(workers: int, number: int) -> torch.Tensor:
        set_epoch(ds, number)
        loader = DataLoader(ds, batch_size=3, num_workers=workers, worker_init_fn=seed_worker,
                            persistent_workers=False)
        return torch.cat([b["image"] for b in loader])

    inline = epoch(0, 0)
    assert torch.equal(inline, epoch(2, 0))
    assert not torch.equal(inline, epoch(2, 1))
    # Persistent workers see set_epoch too (the epoch lives in shared memory).
    loader = DataLoader(ds, batch_size=3, num_workers=2, worker_init_fn=seed_worker,
                        persistent_workers=True)
    seen = []
    for number in (0, 1):
        set_epoch(ds, number)
        seen.append(torch.cat([b["image"] for b in loader]))
    assert torch.equal(seen[0], inline) and torch.equal(seen[1], epoch(0, 1))


def test_bad_ranges_name_the_field():
    with pytest.raises(ValueError, match="augmentation.blur_sigma"):
        build_transforms(AugmentationConfig(blur_sigma=[3.0, 1.0]), DataConfig(), train=True)
    with pytest.raises(ValueError, match="data.crop_size"):
        build_transforms(AugmentationConfig(), DataConfig(crop_size=[16]), train=True)
