"""CameraInfo of the masks (camera_info.py) and the latched class list (label_info.py):
pure functions on messages, no node.

    .venv/bin/pytest test/ros/test_camera_info.py -q
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header, String

from uda_seg_core.inference import place
from uda_seg_core.labels import CLASS_NAMES, PALETTE
from uda_seg_ros.camera_info import MaskCameraInfoError, camera_info_topic, mask_camera_info
from uda_seg_ros.label_info import LABEL_INFO_TYPE, label_info_message

FRAME, NET = (180, 320), (48, 64)


def camera(width: int = 320, height: int = 180) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob",
                      d=[-0.2, 0.05, 0.001, 0.0, 0.0])
    info.k = [210.0, 0.5, 161.0, 0.0, 205.0, 88.0, 0.0, 0.0, 1.0]
    info.r = np.eye(3).ravel()
    info.p = [210.0, 0.5, 161.0, -21.0, 0.0, 205.0, 88.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def header(frame_id: str = "cam") -> Header:
    head = Header(frame_id=frame_id)
    head.stamp.sec, head.stamp.nanosec = 12, 345
    return head


def project(k, points: np.ndarray) -> np.ndarray:
    k = np.asarray(k).reshape(3, 3)
    uvw = points @ k.T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_a_3d_point_lands_where_the_mask_has_it(mode):
    """The scaled K projects a point where the frame's K projects it, moved by the
    Placement (resize, pad, crop) onto the mask: the mask's camera model is the frame's.
    Mutants: cx scaled without the pad / crop offset, fx and fy swapped, P left alone."""
    info = camera()
    p = place(FRAME, NET, mode)
    out = mask_camera_info(info, p, header(), FRAME)
    assert (out.width, out.height) == (64, 48) and out.header == header()
    points = np.random.default_rng(0).uniform([-3, -2, 4], [3, 2, 30], (50, 3))
    in_frame = project(info.k, points)
    expected = np.array([p.to_network(u, v) for u, v in in_frame])
    np.testing.assert_allclose(project(out.k, points), expected, atol=1e-9)
    np.testing.assert_allclose(project(np.asarray(out.p).reshape(3, 4)[:, :3], points),
                               expected, atol=1e-9)
    sx, _ = p.scale
    assert out.p[3] == pytest.approx(-21.0 * sx)  # Tx = -fx' * baseline
    assert list(out.d) == list(info.d) and np.array_equal(out.r, info.r)


def test_the_letterbox_numbers():
    out = mask_camera_info(camera(), place(FRAME, NET, "letterbox"), header(), FRAME)
    # 1/5, pixel centres aligned: 161 -> (161.5) / 5 - 0.5; 88 -> 6 + 88.5 / 5 - 0.5
    np.testing.assert_allclose(out.k, [42.0, 0.1, 31.8, 0, 41.0, 23.2, 0, 0, 1])


def test_a_mask_on_the_frame_pixels_keeps_the_camera_info():
    """output_size input: the camera's own CameraInfo with the image's header, binning and
    region of interest included."""
    info = camera()
    info.binning_x = info.binning_y = 2
    out = mask_camera_info(info, None, header("x"), FRAME)
    assert out.header.frame_id == "x" and np.array_equal(out.k, info.k)
    assert (out.binning_x, out.width) == (2, 320)


def test_camera_infos_that_cannot_describe_the_mask_are_refused():
    with pytest.raises(MaskCameraInfoError, match="camera_info is 640x360 but the image is "
                                                  "320x180"):
        mask_camera_info(camera(640, 360), None, header(), FRAME)
    binned = camera()
    binned.binning_x = 2
    with pytest.raises(MaskCameraInfoError, match="binning or a region of interest.*"
                                                  "output_size input"):
        mask_camera_info(binned, place(FRAME, NET, "letterbox"), header(), FRAME)


def test_camera_info_beside_the_image_topic():
    assert camera_info_topic("/cam/image_raw") == "/cam/camera_info"
    assert camera_info_topic("/image") == "/camera_info"
    assert camera_info_topic("/front/left/image_rect/") == "/front/left/camera_info"


def test_label_info_names_the_classes_in_id_order():
    """Here (no vision_msgs among the pip wheels) it is a std_msgs/String of JSON."""
    assert LABEL_INFO_TYPE is String
    msg = label_info_message(CLASS_NAMES, PALETTE, header())
    data = json.loads(msg.data)
    assert data == {"class_names": list(CLASS_NAMES), "palette": PALETTE.tolist(),
                    "ignore": 255}
