"""uda_seg_tools: what a developer runs around the node, never what a vehicle runs.

`make demo` (demo.py), the `uda-seg-bag` command (bag_cli.py: write, play, evaluate) and
the private ROS 2 domain their node processes run on (ros_domain.py). Above uda_seg_ros
in the layers: it may import the node package, the node package never imports it.
"""
