"""Run a launch file with a plain `launch.LaunchService`, as a program embedding launch does
(no ros2cli): used by test_real_launch.py, which needs its own process for it because a
LaunchService only runs in a main thread.

    python test/helpers/launch_service_probe.py launch/segment.launch.py name:=value ...

Exits with LaunchService.run()'s status. Interactive (the default): on SIGINT launch
assumes the terminal already sent it to the whole group and does not forward it.
"""
from __future__ import annotations

import sys

from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv: list[str]) -> int:
    path, *pairs = argv
    arguments = [tuple(pair.split(":=", 1)) for pair in pairs]
    service = LaunchService(argv=pairs)
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                 launch_arguments=arguments)]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
