"""sensor_msgs/CameraInfo for the masks: the input camera's, moved onto the mask's pixels.

    info = mask_camera_info(camera_info, segmenter.output_placement(rgb.shape[:2]), header)

A mask on the frame's own pixels (output_size 'input', any resize_mode) has the frame's
geometry: its CameraInfo is the camera's, with the image's header. A mask at the network
size (output_size 'network') is the frame scaled (and, with letterbox, shifted by the pad;
with crop, shifted by the crop's offset): K and P are scaled by the network pixels per
frame pixel, and the principal point is mapped as a point (`Placement.to_network`: pixel
centres at integers, as CameraInfo's K has them, and the resize maps centre onto centre,
u' + 0.5 = (u + 0.5) s; image_proc's resize scales cx by s alone, half a pixel off). The
distortion coefficients (on normalised coordinates) and R do not change. A camera whose
CameraInfo uses binning or a region of interest describes a sensor the image is cut from;
its K and P cannot be moved onto a network-size mask this way (`MaskCameraInfoError`).
"""
from __future__ import annotations

from sensor_msgs.msg import CameraInfo, RegionOfInterest

from uda_seg_core.inference.segmenter import Placement


class MaskCameraInfoError(ValueError):
    """A CameraInfo that cannot describe the mask (a size other than the image's, ...)."""


def camera_info_topic(image_topic: str) -> str:
    """image_transport's rule: the CameraInfo beside an image topic ('/cam/image_raw' ->
    '/cam/camera_info')."""
    return image_topic.rstrip("/").rsplit("/", 1)[0] + "/camera_info"


def _uses_roi_or_binning(info: CameraInfo) -> bool:
    roi = info.roi
    return (info.binning_x > 1 or info.binning_y > 1
            or any((roi.x_offset, roi.y_offset, roi.width, roi.height)))


def mask_camera_info(info: CameraInfo, placement: Placement | None, header,
                     frame_hw: tuple[int, int]) -> CameraInfo:
    """The CameraInfo of a mask made from a `frame_hw` frame whose CameraInfo is `info`:
    `placement` None for a mask on the frame's pixels, else the frame's Placement in the
    network input (the mask is at the network size). `header`: the image's."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    if (int(info.height), int(info.width)) != (height, width):
        raise MaskCameraInfoError(
            f"its camera_info is {info.width}x{info.height} but the image is {width}x{height}")
    out = CameraInfo(distortion_model=info.distortion_model, d=list(info.d), k=info.k.copy(),
                     r=info.r.copy(), p=info.p.copy(), binning_x=info.binning_x,
                     binning_y=info.binning_y, roi=info.roi)
    out.header = header
    out.height, out.width = height, width
    if placement is None:
        return out
    if _uses_roi_or_binning(info):
        raise MaskCameraInfoError(
            "its camera_info uses binning or a region of interest, which a network-size mask "
            "cannot keep; use output_size input (the mask on the image's pixels)")
    sx, sy = placement.scale
    k, p = out.k, out.p
    k[2], k[5] = placement.to_network(k[2], k[5])
    k[0], k[1], k[4] = k[0] * sx, k[1] * sx, k[4] * sy
    p[2], p[6] = placement.to_network(p[2], p[6])
    p[0], p[1], p[3] = p[0] * sx, p[1] * sx, p[3] * sx  # p[3] = -fx' * baseline: scales with fx
    p[5], p[7] = p[5] * sy, p[7] * sy
    out.height, out.width = placement.network
    out.binning_x = out.binning_y = 0
    out.roi = RegionOfInterest()
    return out
