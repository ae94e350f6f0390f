"""The DDS transport for camera-sized messages: a shared-memory segment that holds them.

    from uda_seg_ros.transport import use_large_frame_transport
    use_large_frame_transport()   # before rclpy.init: this process's participant uses it

Fast DDS (ROS 2's default RMW) gives each participant a 512 KiB shared-memory segment.
A 480x360 rgb8 frame (518 kB) fills it, so a publisher that sends anything else before
the subscriber has copied the frame (its label, the next frame) reuses the frame's buffer
and the frame is lost without an error: `uda-seg-bag play` of CamVid at 30 fps lost about
40% of its frames to a process subscribed to images and labels. The profile next to this
module (fastdds_large_frames.xml, also installed to share/uda_seg_ros/config/) keeps the
default transports with a 16 MiB segment.

`use_large_frame_transport` points FASTDDS_DEFAULT_PROFILES_FILE at that profile, unless
the user already chose (FASTDDS_DEFAULT_PROFILES_FILE, the older
FASTRTPS_DEFAULT_PROFILES_FILE, or FASTDDS_BUILTIN_TRANSPORTS set), or the RMW is not
Fast DDS, or UDA_SEG_FASTDDS_PROFILE=0. It only changes the environment, so it must run
before the process creates its first participant (rclpy.init).
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE = Path(__file__).with_name("fastdds_large_frames.xml")
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
# Any of these set means the user picked the transports: leave them alone.
USER_CHOICES = (PROFILE_VARIABLE, "FASTRTPS_DEFAULT_PROFILES_FILE",
                "FASTDDS_BUILTIN_TRANSPORTS")
OPT_OUT = "UDA_SEG_FASTDDS_PROFILE"  # 0: keep Fast DDS's defaults


def use_large_frame_transport(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the large-frame profile where nothing else is
    chosen; the profile's path when set, None when the environment was left as it was."""
    env = os.environ if environ is None else environ
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return None
    if env.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if any(env.get(name) for name in USER_CHOICES):
        return None
    if not PROFILE.is_file():
        raise FileNotFoundError(f"{PROFILE} is missing from the uda_seg_ros install; reinstall "
                                f"the package, or set {OPT_OUT}=0 to use Fast DDS's defaults")
    env[PROFILE_VARIABLE] = str(PROFILE)
    return str(PROFILE)
