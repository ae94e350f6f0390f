"""Launch the uda_segmentation node with the installed defaults.

    ros2 launch uda_seg_ros segment.launch.py model_path:=/models/best.pt \
        image_topic:=/camera/image_raw device:=cuda namespace:=front

Arguments: params_file (default: share/uda_seg_ros/config/segment.yaml), model_path,
image_topic, device, namespace, use_sim_time. model_path and device override the params
file only when given, so a params file can carry them too.
"""
# isort sees the repo's launch/ folder as first-party; this is the ROS 2 `launch` package.
import os  # noqa: I001

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "uda_seg_ros"


def default_params_file():
    return os.path.join(get_package_share_directory(PACKAGE), "config", "segment.yaml")


def launch_setup(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {"use_sim_time": value("use_sim_time").lower() in ("true", "1", "yes")}
    for name in ("model_path", "device"):
        if value(name):
            overrides[name] = value(name)
    return [
        Node(
            package=PACKAGE,
            executable="segmentation_node",
            name="uda_segmentation",
            namespace=value("namespace"),
            parameters=[value("params_file"), overrides],
            # 'image' moves 'image/compressed' along with it (see input_transport).
            remappings=[("image", value("image_topic"))],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="YAML file with the node parameters"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="checkpoint (.pt) or exported model (.onnx); "
                                          "empty = the one in params_file"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="input sensor_msgs/Image topic (its /compressed "
                                          "sibling with input_transport: compressed)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty = params_file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace for the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when playing a bag)"),
        OpaqueFunction(function=launch_setup),
    ])
