"""launch/segment.launch.py and config/segment.yaml.

`launch` and `launch_ros` do not install from the package index, so the launch file is
checked twice: by reading its syntax tree, and by running it with small recording
stand-ins for the launch classes (everything else, including ament_index_python's
get_package_share_directory over a real share/ tree, is real). These need nothing outside
the clone; the runs under the real jazzy launch and `ros2 launch` are in
test_real_launch.py, which skips with a reason when the upstream sources are absent
(the `launch_site` fixture).

    .venv/bin/pytest test/ros/test_launch.py -q
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types

import pytest
import yaml
from lifecycle_msgs.msg import Transition

from helpers import ROOT

LAUNCH_FILE = ROOT / "launch" / "segment.launch.py"
PARAMS_FILE = ROOT / "config" / "segment.yaml"
ARGUMENTS = {"params_file", "model_path", "image_topic", "device", "namespace", "use_sim_time",
             "managed", "autostart"}


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def constants(node: ast.AST) -> set:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}


def test_launch_file_syntax_names_the_installed_node_and_params():
    tree = ast.parse(LAUNCH_FILE.read_text(), str(LAUNCH_FILE))
    compile(tree, str(LAUNCH_FILE), "exec")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = {c.args[0].value for c in calls(tree, "DeclareLaunchArgument")}
    assert declared == ARGUMENTS
    for action, executable in (("Node", "segmentation_node"),
                               ("LifecycleNode", "segmentation_lifecycle_node")):
        (node,) = calls(tree, action)
        kwargs = {k.arg: k.value for k in node.keywords}
        assert ast.literal_eval(kwargs["executable"]) == executable
        assert ast.literal_eval(kwargs["name"]) == "uda_segmentation"
        package = kwargs["package"]
        assert isinstance(package, ast.Name) and package.id == "PACKAGE"
    assigned = {t.id: a.value.value for a in tree.body if isinstance(a, ast.Assign)
                for t in a.targets if isinstance(a.value, ast.Constant)}
    assert assigned["PACKAGE"] == "uda_seg_ros"
    (share,) = calls(tree, "get_package_share_directory")
    join = next(c for c in calls(tree, "join") if share in c.args)
    assert {"config", "segment.yaml"} <= constants(join)


class Recorded:
    """Stand-in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


def launch_stand_ins() -> dict[str, types.ModuleType]:
    modules = {}
    for name, attrs in {
        "launch": {"LaunchDescription": type("LaunchDescription", (Recorded,), {})},
        "launch.actions": {name: type(name, (Recorded,), {}) for name in (
            "DeclareLaunchArgument", "OpaqueFunction", "EmitEvent", "RegisterEventHandler")},
        "launch.events": {"matches_action": lambda action: ("matches", action)},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {}),
                               "LifecycleNode": type("LifecycleNode", (Recorded,), {})},
        "launch_ros.event_handlers": {
            "OnStateTransition": type("OnStateTransition", (Recorded,), {})},
        "launch_ros.events": {},
        "launch_ros.events.lifecycle": {"ChangeState": type("ChangeState", (Recorded,), {})},
    }.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        modules[name] = module
    return modules


@pytest.fixture
def launch_module(tmp_path, monkeypatch):
    # A real ament prefix holding the package, as colcon installs it.
    share = tmp_path / "install" / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (share / "ament_index" / "resource_index" / "packages" / "uda_seg_ros").touch()
    (share / "uda_seg_ros" / "config").mkdir(parents=True)
    (share / "uda_seg_ros" / "config" / "segment.yaml").write_text(PARAMS_FILE.read_text())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    for name, module in launch_stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, share / "uda_seg_ros" / "config" / "segment.yaml"


def run_launch_actions(module, **given) -> tuple[dict, list]:
    """(argument defaults, the actions the OpaqueFunction returns for `given`)."""
    description = module.generate_launch_description()
    entities = description.args[0]
    defaults = {e.args[0]: e.kwargs["default_value"] for e in entities if e.args}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return defaults, opaque.kwargs["function"]({**defaults, **given})


def run_launch(module, **given):
    defaults, (node,) = run_launch_actions(module, **given)
    assert type(node).__name__ == "Node"  # the plain node unless managed:=true
    return defaults, node.kwargs


def test_launch_defaults_use_the_installed_params_file(launch_module):
    module, installed_yaml = launch_module
    defaults, node = run_launch(module)
    assert set(defaults) == ARGUMENTS
    assert defaults["params_file"] == str(installed_yaml)
    assert (node["package"], node["executable"], node["name"]) == (
        "uda_seg_ros", "segmentation_node", "uda_segmentation")
    # Without model_path / device arguments, the params file's values stay in force.
    assert node["parameters"] == [str(installed_yaml), {"use_sim_time": False}]
    assert node["remappings"] == [("image", "image")]
    assert node["namespace"] == ""


def test_launch_arguments_reach_the_node(launch_module):
    module, _ = launch_module
    _, node = run_launch(module, params_file="/tmp/mine.yaml", model_path="/models/best.pt",
                         image_topic="/camera/image_raw", device="cuda", namespace="front",
                         use_sim_time="true")
    assert node["parameters"] == ["/tmp/mine.yaml", {"use_sim_time": True,
                                                     "model_path": "/models/best.pt",
                                                     "device": "cuda"}]
    assert node["remappings"] == [("image", "/camera/image_raw")]
    assert node["namespace"] == "front"


def test_params_file_matches_the_node_parameters():
    """Mutants: a default changed in one of InferenceConfig, the node's PARAMETERS and
    config/segment.yaml but not the others (three definitions drifting apart), a node
    parameter left out of the yaml, a yaml key the node does not have."""
    from uda_seg_core.config import InferenceConfig
    from uda_seg_ros import parameters as node

    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(data) == ["/**"]  # any namespace and node name
    params = data["/**"]["ros__parameters"]
    declared = {p.name: p for p in node.PARAMETERS}
    assert set(params) == set(declared)
    for name, value in params.items():
        param = declared[name]
        assert type(value) is type(param.default), f"{name}: {value!r} vs {param.default!r}"
        assert value == param.default, f"{name}: the yaml and the node disagree"
        if param.choices:
            assert value in param.choices
        if param.range:
            assert param.range[0] <= value <= param.range[1]
    # InferenceConfig is the one definition of the inference defaults and choices.
    assert node.inference_config(params) == InferenceConfig()
    assert declared["precision"].choices == ("fp32", "fp16")
    assert declared["output_size"].choices == ("input", "network")


def test_managed_starts_the_lifecycle_node_with_the_same_settings(launch_module):
    """managed:=true: a LifecycleNode (segmentation_lifecycle_node) with exactly the plain
    node's name, namespace, parameters and remaps; autostart:=true adds a configure event
    and an activate-after-configuring handler, both aimed at that node. Mutants: managed
    ignored; a setting dropped from the lifecycle node; autostart without managed."""
    module, _ = launch_module
    given = {"model_path": "/models/best.pt", "namespace": "front", "use_sim_time": "true",
             "image_topic": "/cam/image_raw"}
    _, plain = run_launch(module, **given)
    _, (managed,) = run_launch_actions(module, managed="true", **given)
    assert type(managed).__name__ == "LifecycleNode"
    assert managed.kwargs == {**plain, "executable": "segmentation_lifecycle_node"}
    assert len(run_launch_actions(module, autostart="true", **given)[1]) == 1
    _, (node, handler, configure) = run_launch_actions(module, managed="True", autostart="1",
                                                       **given)
    assert node.kwargs == managed.kwargs
    change = configure.kwargs["event"].kwargs
    assert change["lifecycle_node_matcher"] == ("matches", node)
    assert change["transition_id"] == Transition.TRANSITION_CONFIGURE
    on = handler.args[0].kwargs
    assert on["target_lifecycle_node"] is node
    assert (on["start_state"], on["goal_state"]) == ("configuring", "inactive")
    (activate,) = on["entities"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE


def test_flags_other_than_true_or_false_are_errors(launch_module):
    """use_sim_time / managed / autostart take true|false (1/0, yes/no, on/off); anything
    else is an error naming the argument. Mutant: a typo silently read as false."""
    module, _ = launch_module
    for name in ("use_sim_time", "managed", "autostart"):
        with pytest.raises(ValueError, match=f"launch argument {name}:='ture': expected true"):
            run_launch_actions(module, **{name: "ture"})
    assert run_launch(module, use_sim_time="Yes")[1]["parameters"][1]["use_sim_time"] is True
    assert run_launch(module, use_sim_time="off")[1]["parameters"][1]["use_sim_time"] is False


def test_the_deprecated_transport_name_maps_to_image_transport():
    """input_transport (the old name) gives image_transport its value, also when the
    installed params file sets image_transport to its default; a different non-default
    image_transport beside it, or a bad value, is refused naming both names."""
    from uda_seg_ros.parameters import DEPRECATED, NodeConfigError, renamed

    assert DEPRECATED == {"input_transport": "image_transport"}
    assert renamed("input_transport", "compressed", "image_transport", "raw", True) == "compressed"
    assert renamed("input_transport", "raw", "image_transport", "raw", False) == "raw"
    with pytest.raises(NodeConfigError, match="image_transport='compressed' and "
                                              "input_transport='raw'.*set image_transport only"):
        renamed("input_transport", "raw", "image_transport", "compressed", True)
    with pytest.raises(NodeConfigError, match="input_transport='udp' \\(the deprecated name of "
                                              "image_transport\\): must be one of raw, compressed"):
        renamed("input_transport", "udp", "image_transport", "raw", False)
