"""Live evaluation: stamp matching, and play -> (node) -> evaluate across real processes."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from helpers.fixtures import blocks, camvid_names, write_tiny_camvid
from helpers.ros import NodeProcess, ros_env, wait_for
from uda_seg_core.metrics import ConfusionMatrix
from uda_seg_tools.live_eval import LiveEvaluation, merge_node_stats


def _frames(n=4, shape=(6, 8), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 12, shape).astype(np.uint8),
             rng.integers(0, 12, shape).astype(np.uint8))
            for _ in range(n)]


def test_matching_by_stamp_is_order_independent_and_equals_one_confusion_matrix():
    frames = _frames()
    direct = ConfusionMatrix()
    for label, mask in frames:
        direct.update(mask, label)
    live = LiveEvaluation()
    # Masks of frames 2 and 3 arrive before their labels; frame 1's label comes last.
    live.add_label((0, 0), frames[0][0])
    live.add_mask((2, 0), frames[2][1], latency_s=0.010)
    live.add_mask((0, 0), frames[0][1], latency_s=0.020)
    live.add_mask((1, 0), frames[1][1], latency_s=0.030)
    live.add_label((2, 0), frames[2][0])
    live.add_mask((3, 0), frames[3][1], latency_s=0.040)
    live.add_label((3, 0), frames[3][0])
    live.add_label((1, 0), frames[1][0])
    result = live.result()
    assert result["frames_matched"] == 4 and result["frames_missed"] == 0
    assert result["masks_without_label"] == 0
    assert result["confusion_matrix"] == direct.mat.tolist()
    assert math.isclose(result["miou"], direct.miou(), abs_tol=1e-12)
    assert math.isclose(result["accuracy"], direct.pixel_accuracy, abs_tol=1e-12)
    assert result["e2e_latency_ms"]["count"] == 4
    assert math.isclose(result["e2e_latency_ms"]["p50"], 25.0)


def test_a_label_set_names_the_classes_and_its_headline():
    """A model of a user's 3-class set is scored over its classes: its names in the
    result, the headline mIoU over its headline classes, the text saying how many."""
    from uda_seg_tools.live_eval import format_result

    labels = {"name": "lanes", "names": ["road", "car", "other"],
              "palette": [[1, 1, 1], [2, 2, 2], [3, 3, 3]], "headline": ["road", "car"]}
    live = LiveEvaluation(label_set=labels)
    label = np.array([[0, 0, 1, 2]], np.uint8)
    live.add_label((0, 0), label)
    live.add_mask((0, 0), np.array([[0, 0, 1, 1]], np.uint8))
    result = live.result()
    assert list(result["per_class_iou"]) == ["road", "car", "other"]
    assert result["miou"] == pytest.approx((1.0 + 0.5) / 2) and result["headline_classes"] == 2
    assert "(2 classes)" in format_result(result) and "(3)" in format_result(result)


def test_each_mask_is_scored_against_the_label_of_its_own_stamp():
    """Mutant: off-by-one pairing (a mask scored against the label that arrived before its
    own, or the oldest label still waiting). Labels run ahead of masks here, as they do
    when the node lags: three are pending when the first mask arrives."""
    frames = _frames(5, seed=3)
    direct = ConfusionMatrix()
    for label, mask in frames:
        direct.update(mask, label)
    live = LiveEvaluation()
    for i in range(3):
        live.add_label((i, 0), frames[i][0])
    for i in (1, 0, 2):
        live.add_mask((i, 0), frames[i][1])
    for i in (3, 4):
        live.add_label((i, 0), frames[i][0])
        live.add_mask((i, 0), frames[i][1])
    result = live.result()
    assert result["frames_matched"] == 5
    assert result["confusion_matrix"] == direct.mat.tolist()


def test_missed_frames_duplicates_and_size_mismatches_are_counted_not_scored():
    frames = _frames(3)
    live = LiveEvaluation()
    for i, (label, _) in enumerate(frames):
        live.add_label((i, 0), label)
    live.add_mask((0, 0), frames[0][1])
    live.add_mask((0, 0), frames[1][1])  # a second mask for frame 0 must not count again
    live.add_mask((1, 0), np.zeros((3, 4), np.uint8))  # half size: reported, left out
    live.add_mask((9, 0), frames[2][1], latency_s=1e6)  # no such label; implausible latency
    result = live.result()
    assert result["frames_matched"] == 1
    assert result["duplicate_masks"] == 1
    assert result["size_mismatch"] == 1 and "output_size" in result["size_mismatch_detail"]
    assert result["frames_missed"] == 1  # frame 2
    assert result["masks_without_label"] == 1
    assert result["e2e_latency_ms"]["count"] == 0
    only = ConfusionMatrix()
    only.update(frames[0][1], frames[0][0])
    assert math.isclose(result["miou"], only.miou(), abs_tol=1e-12)


def test_a_repeated_label_stamp_is_a_duplicate_not_a_missed_frame():
    label = np.ones((2, 2), np.uint8)
    live = LiveEvaluation()
    live.add_label((1, 0), label)
    live.add_mask((1, 0), label)
    live.add_label((1, 0), label)  # a looped bag played with --no-restamp repeats stamps
    result = live.result()
    assert result["frames_matched"] == 1 and result["frames_missed"] == 0
    assert result["duplicate_labels"] == 1 and result["frames_labelled"] == 1


def test_pending_frames_are_bounded():
    live = LiveEvaluation(max_pending=3)
    for i in range(10):
        live.add_label((i, 0), np.zeros((2, 2), np.uint8))
    assert len(live.labels) == 3
    assert live.result()["frames_missed"] == 10


def test_node_stats_are_merged_or_their_absence_explained(tmp_path):
    stats = tmp_path / "stats.json"
    assert "stats_file" in merge_node_stats({}, stats)["node_error"]
    stats.write_text(json.dumps({"fps": 12.5}))
    assert merge_node_stats({}, stats)["node"] == {"fps": 12.5}


# ------------------------------------------------------------------ across real processes


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    from uda_seg_tools.bag import write_camvid_bag

    root = tmp_path_factory.mktemp("live")
    write_tiny_camvid(root / "camvid", {"test": camvid_names(5)}, size=(48, 64), frames=blocks)
    write_camvid_bag(root / "camvid", root / "bag", fps=20.0)
    return root


def _bag_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "uda_seg_tools.bag_cli", *args]


def test_player_and_evaluator_pair_every_label_with_itself(tiny_bag, tmp_path):
    """The labels topic doubles as the mask topic: every frame must match, at 100%."""
    out, ready = tmp_path / "live.json", tmp_path / "ready"
    evaluator = NodeProcess.start(_bag_cli("evaluate", "--mask-topic", "/camera/labels",
                                           "--expect", "5",
                                           "--timeout", "40", "--out", str(out),
                                           "--ready-file", str(ready)),
                                  tmp_path / "eval.log")
    try:
        # Its mask subscription alone (same topic) would satisfy the player's wait for a
        # subscriber; the ready file says the labels subscription exists too.
        wait_for(ready.exists, timeout=40, message="the evaluator's ready file")
        play = subprocess.run(_bag_cli("play", str(tiny_bag / "bag"), "--rate", "2",
                                       "--topics", "/camera/labels", "--wait-subscribers", "30"),
                              check=False, env=ros_env(), capture_output=True, text=True,
                              timeout=60)
        assert play.returncode == 0, play.stderr
        assert "played 0 images (5 messages" in play.stdout
        assert evaluator.proc.wait(40) == 0, evaluator.output()
    finally:
        evaluator.stop()
    result = json.loads(out.read_text())
    assert result["frames_matched"] == 5 and result["frames_missed"] == 0
    assert result["accuracy"] == 1.0 and result["miou"] == 1.0
    # Restamped to the publish time, so the observed latency is small and real.
    assert result["e2e_latency_ms"]["count"] == 5
    assert 0 <= result["e2e_latency_ms"]["p99"] < 5000


def test_live_confusion_matrix_through_the_node_equals_offline_evaluation(tiny_bag, trained_model,
                                                                          tmp_path):
    """bag -> player -> segmentation_node -> evaluator gives `uda-seg evaluate`'s confusion
    matrix, count for count (not an mIoU within a tolerance).

    Mutants: the node swapping red and blue before the network; the evaluator pairing a
    mask with the label of the frame before. The model is trained (its classes follow
    colour), so a swap changes most of its mask. The node runs at the frames' own size
    (no resize on either side) and the player waits for each mask before the next image
    (--pace-on), so no frame is dropped.
    """
    from uda_seg_core.cli import main as uda_seg

    ckpt = trained_model.checkpoint
    stats = tmp_path / "node_stats.json"
    node = NodeProcess.start(
        [sys.executable, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
         "-p", f"model_path:={ckpt}", "-p", "device:=cpu", "-p", "input_width:=64",
         "-p", "input_height:=48", "-p", "input_qos:=reliable", "-p", "warmup_iters:=1",
         "-p", f"stats_file:={stats}", "-r", "image:=/camera/image_raw"],
        tmp_path / "node.log")
    out = tmp_path / "live.json"
    evaluator = NodeProcess.start(_bag_cli("evaluate", "--expect", "5", "--timeout", "60",
                                           "--out", str(out)), tmp_path / "eval.log")
    try:
        node.wait_for_output("ready", timeout=120)
        play = subprocess.run(_bag_cli("play", str(tiny_bag / "bag"), "--pace-on",
                                       "segmentation/class_mask", "--wait-subscribers", "30"),
                              check=False, env=ros_env(), capture_output=True, text=True,
                              timeout=90)
        assert play.returncode == 0, play.stderr
        assert "0 pace timeouts" in play.stdout, play.stdout
        assert evaluator.proc.wait(60) == 0, evaluator.output()
    finally:
        try:
            evaluator.stop()
        finally:  # the node is stopped even when the evaluator hangs
            assert node.stop() == 0, node.output()
    live = json.loads(out.read_text())
    assert live["frames_matched"] == 5 and live["frames_missed"] == 0, live
    node_stats = json.loads(stats.read_text())
    assert node_stats["counters"]["processed"] == 5 and node_stats["counters"]["dropped"] == 0

    offline_dir = tmp_path / "offline"
    assert uda_seg(["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_bag / "camvid"),
                    "--split", "test", "--device", "cpu", "--out", str(offline_dir)]) == 0
    offline = json.loads((offline_dir / "metrics.json").read_text())
    assert offline["pixels"] == live["pixels"] == 5 * 48 * 64
    assert live["confusion_matrix"] == offline["confusion_matrix"]
    assert live["miou"] == offline["miou"] and live["accuracy"] == offline["accuracy"]
