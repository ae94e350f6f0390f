"""launch/segment.launch.py and config/segment.yaml.

`launch` and `launch_ros` do not install from the package index, so the launch file is
checked twice: by reading its syntax tree, and by running it with small recording
stand-ins for the launch classes (everything else, including ament_index_python's
get_package_share_directory over a real share/ tree, is real).

    .venv/bin/pytest test/test_launch.py -q
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "segment.launch.py"
PARAMS_FILE = ROOT / "config" / "segment.yaml"
ARGUMENTS = {"params_file", "model_path", "image_topic", "device", "namespace", "use_sim_time"}


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
    (node,) = calls(tree, "Node")
    kwargs = {k.arg: k.value for k in node.keywords}
    assert ast.literal_eval(kwargs["executable"]) == "segmentation_node"
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
        "launch.actions": {"DeclareLaunchArgument": type("DeclareLaunchArgument", (Recorded,), {}),
                           "OpaqueFunction": type("OpaqueFunction", (Recorded,), {})},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {})},
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


def run_launch(module, **given):
    description = module.generate_launch_description()
    entities = description.args[0]
    defaults = {e.args[0]: e.kwargs["default_value"] for e in entities if e.args}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    context = {**defaults, **given}
    (node,) = opaque.kwargs["function"](context)
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
