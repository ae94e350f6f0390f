"""The served model's classes as one latched message: what a consumer of the masks reads
once to know what each id means.

    msg = label_info_message(segmenter.class_names, segmenter.palette, header)

`vision_msgs/LabelInfo` (class_map of VisionClass id + name; what Nav2's semantic
segmentation layer and other perception stacks read) where vision_msgs is importable: it
is in every ROS 2 distribution's apt repository (ros-<distro>-vision-msgs), but not among
the ROS 2 wheels on the Python package index. Elsewhere `std_msgs/String` holding JSON,
`{"class_names": [...], "palette": [[r, g, b], ...], "ignore": 255}`. `LABEL_INFO_TYPE`
says which this process uses; the topic's type tells a consumer.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from std_msgs.msg import String

from uda_seg_core.labels import IGNORE_INDEX

try:
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:  # not among the pip-installable ROS 2 wheels
    LabelInfo = VisionClass = None

LABEL_INFO_TYPE = String if LabelInfo is None else LabelInfo


def label_info_json(class_names: Sequence[str], palette, ignore: int = IGNORE_INDEX) -> str:
    """{"class_names": [...], "palette": [[r, g, b], ...], "ignore": 255} (ids are indices)."""
    return json.dumps({"class_names": list(class_names),
                       "palette": [[int(v) for v in colour] for colour in palette],
                       "ignore": int(ignore)})


def label_info_message(class_names: Sequence[str], palette, header=None,
                       msg_type=LABEL_INFO_TYPE):
    """A `msg_type` message (vision_msgs/LabelInfo or std_msgs/String) naming the classes."""
    if msg_type is String:
        return String(data=label_info_json(class_names, palette))
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=i, class_name=str(name))
                     for i, name in enumerate(class_names)]
    msg.threshold = 0.0  # every pixel gets its top class; the confidence image has the rest
    return msg
