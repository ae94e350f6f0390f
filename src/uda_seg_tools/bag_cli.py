"""CamVid as a rosbag2 file: `uda-seg-bag write | play | evaluate`.

    uda-seg-bag write --camvid data/synthetic/camvid --split test --out runs/camvid_test_bag
    ros2 bag play runs/camvid_test_bag            # on a ROS 2 install, or without one:
    uda-seg-bag play runs/camvid_test_bag --remap /camera/image_raw:=image
    uda-seg-bag evaluate --expect 24 --out live.json

`write` (bag.py) turns a CamVid split into a bag: rgb8 (or JPEG) frames on
/camera/image_raw and mono8 class-id labels on /camera/labels, an image and its label
under one header stamp. `play` (bag_player.py) publishes a bag through rclpy with its
recorded timing; `evaluate` (live_eval.py) scores a running node's class masks against
the bag's labels, paired by stamp. `play` and `evaluate` need rclpy; `write` does not.
"""
from __future__ import annotations

import argparse
import sys

from uda_seg_tools import bag, bag_player, live_eval
from uda_seg_tools.bag import BagError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uda-seg-bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bag.add_arguments(sub.add_parser(
        "write", help="write a CamVid split as a rosbag2 directory",
        description="Write a CamVid split (colour-label or SegNet layout) as a rosbag2 "
        "directory: rgb8 images + mono8 class-id labels, same stamps."))
    bag_player.add_arguments(sub.add_parser(
        "play", help="publish a bag through rclpy with its recorded timing",
        description=bag_player.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    live_eval.add_arguments(sub.add_parser(
        "evaluate", help="live mIoU: match class masks to labels by header stamp",
        description=live_eval.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


COMMANDS = {"write": bag.run, "play": bag_player.run, "evaluate": live_eval.run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BagError as exc:
        print(f"uda-seg-bag {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
