"""Launch the uda_segmentation node with the installed defaults.

    ros2 launch uda_seg_ros segment.launch.py model_path:=/models/best.pt \
        image_topic:=/camera/image_raw device:=cuda namespace:=front
    ros2 launch uda_seg_ros segment.launch.py model_path:=/models/best.pt managed:=true \
        autostart:=true

Arguments: params_file (default: share/uda_seg_ros/config/segment.yaml), model_path,
image_topic, device, namespace, use_sim_time, managed, autostart. model_path and device
override the params file only when given, so a params file can carry them too.

managed:=true starts the lifecycle variant (executable segmentation_lifecycle_node, same
name, parameters, namespace and remaps) unconfigured, for a lifecycle manager or
`ros2 lifecycle set` to drive through ~/change_state; with autostart:=true this launch
file asks it to configure and, once it is inactive after configuring, to activate.
"""
# isort sees the repo's launch/ folder as first-party; this is the ROS 2 `launch` package.
import os  # noqa: I001

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "uda_seg_ros"
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def default_params_file():
    return os.path.join(get_package_share_directory(PACKAGE), "config", "segment.yaml")


def flag(name, text):
    """A true/false launch argument; anything else is an error naming the argument."""
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r}: expected true or false")


def node_action(managed, **common):
    if managed:
        return LifecycleNode(package=PACKAGE, executable="segmentation_lifecycle_node",
                             name="uda_segmentation", **common)
    return Node(package=PACKAGE, executable="segmentation_node", name="uda_segmentation",
                **common)


def autostart_actions(node):
    """configure now; activate when the node reaches inactive from configuring (not after a
    later deactivate, which must stay deactivated)."""
    def change(transition):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition))

    return [
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            entities=[change(Transition.TRANSITION_ACTIVATE)])),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def launch_setup(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {"use_sim_time": flag("use_sim_time", value("use_sim_time"))}
    for name in ("model_path", "device"):
        if value(name):
            overrides[name] = value(name)
    managed = flag("managed", value("managed"))
    autostart = flag("autostart", value("autostart"))
    node = node_action(
        managed,
        namespace=value("namespace"),
        parameters=[value("params_file"), overrides],
        # 'image' moves 'image/compressed' along with it (see image_transport).
        remappings=[("image", value("image_topic"))],
        output="screen",
        emulate_tty=True,
    )
    return [node, *autostart_actions(node)] if managed and autostart else [node]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="YAML file with the node parameters"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="checkpoint (.pt) or exported model (.onnx); "
                                          "empty = the one in params_file"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="input sensor_msgs/Image topic (its /compressed "
                                          "sibling with image_transport: compressed)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty = params_file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace for the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when playing a bag)"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="true: the lifecycle node segmentation_lifecycle_node, "
                                          "started unconfigured"),
        DeclareLaunchArgument("autostart", default_value="false",
                              description="with managed:=true, configure and activate it at "
                                          "launch"),
        OpaqueFunction(function=launch_setup),
    ])
