"""How a frame becomes the network input and how the mask comes back (Segmenter's
resize_mode: stretch | letterbox | crop), with frames of a known pattern.

The backend here is a real one of a trivial kind: a pixel is class 1 where its normalised
red value is above 0 (brighter than the mean), else 0, so the mask is the pattern itself
and any misplacement shows pixel by pixel.

    .venv/bin/pytest test/core/inference/test_resize_modes.py -q
"""
from __future__ import annotations

import numpy as np
import pytest

from uda_seg_core.inference import ModelInfo, Placement, Segmenter, SegmenterError, place

NET = (48, 64)  # 4:3, as the paper's networks
FRAME = (180, 320)  # 16:9: letterbox scales by 1/5 exactly (64 / 320), 36 rows + 2 x 6 pad


class RedAboveMean:
    """Class 1 where the normalised red is above 0, class 0 elsewhere; the probability of
    that class grows with the distance from 0."""

    name = "red_above_mean"
    device = "cpu"
    has_confidence = True

    def __init__(self):
        self.info = ModelInfo(class_names=["dark", "red"], palette=np.array([[0, 0, 0],
                                                                             [255, 0, 0]]),
                              mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
        self.seen: list[np.ndarray] = []

    def infer(self, batch):
        self.seen.append(batch)
        return (batch[:, 0] > 0).astype(np.uint8)

    def infer_with_confidence(self, batch):
        return self.infer(batch), (0.5 + np.abs(np.tanh(batch[:, 0])) / 2).astype(np.float32)


def pattern(h: int, w: int, block: int) -> np.ndarray:
    """Red / black checkerboard of `block`-pixel squares, plus a red 2-block-wide bar on the
    left edge, so a shift or a flip of the mask changes pixels."""
    ys, xs = np.mgrid[0:h, 0:w]
    red = ((ys // block + xs // block) % 2 == 0) | (xs < 2 * block)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[red, 0] = 255
    return rgb


def segmenter(mode: str, output_size: str = "input") -> Segmenter:
    return Segmenter(RedAboveMean(), NET, output_size=output_size, resize_mode=mode)


def test_placements_of_a_16_9_frame_in_a_4_3_network():
    """Mutants: letterbox scaling by the larger ratio (it would crop), the pad all on one
    side, crop not centred."""
    assert place(FRAME, NET, "stretch") == Placement(FRAME, NET, (0, 0, 320, 180), (0, 0, 64, 48))
    letterbox = place(FRAME, NET, "letterbox")
    assert letterbox.source == (0, 0, 320, 180) and letterbox.target == (0, 6, 64, 36)
    assert letterbox.scale == (0.2, 0.2) and letterbox.pads and not letterbox.crops
    crop = place(FRAME, NET, "crop")
    assert crop.source == (40, 0, 240, 180) and crop.target == (0, 0, 64, 48)
    assert crop.crops and not crop.pads
    # a 4:3 frame: letterbox and crop are the plain resize
    for mode in ("letterbox", "crop"):
        assert place((360, 480), NET, mode) == place((360, 480), NET, "stretch")
    with pytest.raises(SegmenterError, match="resize_mode must be one of"):
        place(FRAME, NET, "fit")
    with pytest.raises(SegmenterError, match="resize_mode must be one of"):
        Segmenter(RedAboveMean(), NET, resize_mode="fit")


def test_points_map_centre_to_centre():
    """The frame's centre is the network's centre in every mode; letterbox shifts y by the
    pad, crop shifts x by the crop's offset (pixel centres at integers)."""
    for mode in ("stretch", "letterbox", "crop"):
        p = place(FRAME, NET, mode)
        assert p.to_network(159.5, 89.5) == pytest.approx((31.5, 23.5))
    assert place(FRAME, NET, "letterbox").to_network(2.0, 2.0) == pytest.approx((0.0, 6.0))
    assert place(FRAME, NET, "crop").to_network(40.0, 0.0)[0] == pytest.approx(-0.5 + 0.5 * 64
                                                                                / 240)


def test_letterbox_pads_with_the_mean_colour_and_keeps_the_aspect_ratio():
    """The pad is 0 after normalising (the mean colour: what the network's own zero padding
    shows it at a border); the frame fills the middle rows undistorted. Mutant: a black
    pad ((0 - 0.5) / 0.25 = -2 after normalising)."""
    seg = segmenter("letterbox")
    rgb = pattern(*FRAME, block=20)
    batch = seg.preprocess(rgb)
    assert batch.shape == (1, 3, *NET)
    assert not batch[0, :, :6].any() and not batch[0, :, 42:].any()
    # the frame's squares stay square: 20 px -> 4 network pixels both ways
    red = batch[0, 0, 6:42] > 0
    np.testing.assert_array_equal(red, pattern(36, 64, block=4)[..., 0] > 0)


def test_a_16_9_frame_through_letterbox_gives_a_mask_on_the_frame_pixels():
    """The issue's check: the mask of a 16:9 frame of a known pattern lines up with the
    frame pixel for pixel (the pattern is on the 5-pixel grid that the 1/5 resize keeps).
    Mutants: the pad not cut away before resizing back (the mask shifted and squashed by
    6 network rows), the mask resized as a whole (stretch's way back)."""
    rgb = pattern(*FRAME, block=20)
    mask = segmenter("letterbox").segment(rgb)
    assert mask.shape == FRAME and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (rgb[..., 0] > 0).astype(np.uint8))


def test_letterbox_at_network_size_marks_the_pad_255():
    rgb = pattern(*FRAME, block=20)
    mask = segmenter("letterbox", output_size="network").segment(rgb)
    assert mask.shape == NET
    assert (mask[:6] == 255).all() and (mask[42:] == 255).all()
    np.testing.assert_array_equal(mask[6:42], (pattern(36, 64, block=4)[..., 0] > 0))


def test_crop_sees_the_centre_and_leaves_the_rest_255():
    """Mutants: the sides filled with a class instead of 255, the crop taken from the
    left edge (the left bar would then be in the mask)."""
    rgb = pattern(*FRAME, block=30)
    mask = segmenter("crop").segment(rgb)
    assert mask.shape == FRAME
    assert (mask[:, :40] == 255).all() and (mask[:, 280:] == 255).all()
    inside, truth = mask[:, 40:280], (rgb[:, 40:280, 0] > 0).astype(np.uint8)
    # 240 -> 64 is not a whole factor: compare away from the squares' edges (4 px)
    ys, xs = np.mgrid[0:180, 40:280]
    interior = (np.minimum(ys % 30, 29 - ys % 30) >= 4) & (np.minimum(xs % 30, 29 - xs % 30) >= 4)
    np.testing.assert_array_equal(inside[interior], truth[interior])


def test_stretch_keeps_the_old_behaviour():
    """stretch is the plain resize both ways (the Segmenter's default, as training
    evaluates): the network sees the frame squashed to 4:3."""
    seg = segmenter("stretch")
    assert Segmenter(RedAboveMean(), NET).resize_mode == "stretch"
    rgb = pattern(*FRAME, block=20)
    batch = seg.preprocess(rgb)
    assert batch[0, 0].min() < 0 and batch[0, 0, :6].any()  # no pad rows
    assert seg.segment(rgb).shape == FRAME


def test_confidence_is_laid_out_like_the_mask():
    """The probability image has the mask's geometry; 0 where the mask is 255."""
    rgb = pattern(*FRAME, block=30)
    for mode, output_size in (("crop", "input"), ("letterbox", "network")):
        seg = segmenter(mode, output_size)
        ((mask, conf),) = seg.segment_batch_with_confidence([rgb])
        np.testing.assert_array_equal(mask, seg.segment(rgb))
        assert conf.shape == mask.shape and conf.dtype == np.float32
        assert (conf[mask == 255] == 0).all() and (conf[mask != 255] >= 0.5).all()


def test_overlay_on_letterbox_and_crop_masks():
    """At network size the overlay is drawn on the network's view of the frame (the pad
    in the mean colour); where the mask is 255 the image shows unchanged."""
    rgb = pattern(*FRAME, block=20)
    seg = segmenter("letterbox", output_size="network")
    mask = seg.segment(rgb)
    blend = seg.overlay(rgb, mask, 1.0)
    assert blend.shape == (*NET, 3)
    np.testing.assert_array_equal(blend[:6], np.full((6, 64, 3), 128, np.uint8))  # mean 0.5
    np.testing.assert_array_equal(blend[6:42], seg.colorize(mask)[6:42])
    crop = segmenter("crop")
    mask = crop.segment(rgb)
    blend = crop.overlay(rgb, mask, 1.0)
    np.testing.assert_array_equal(blend[:, :40], rgb[:, :40])
    np.testing.assert_array_equal(blend[:, 40:280], crop.colorize(mask)[:, 40:280])
