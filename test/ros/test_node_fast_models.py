"""The segmentation node serves the fast models of issue 8 with no extra flags: a
structured-pruned checkpoint (.pt) and an exported ONNX model (.onnx, ONNX Runtime
backend picked from the extension, run at the input size its metadata records), each in
its own node process.

    .venv/bin/pytest test/ros/test_node_fast_models.py -q
"""
from __future__ import annotations

import signal

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from helpers.ros import NodeProcess, RosClient
from uda_seg_core.checkpoint import save_checkpoint
from uda_seg_core.config import Config
from uda_seg_core.inference import Segmenter
from uda_seg_core.models import load_model
from uda_seg_core.optimize.export import export_checkpoint
from uda_seg_core.optimize.structured import prune_channels
from uda_seg_ros.conversions import image_to_numpy, numpy_to_image

H, W = 48, 64


def node_argv(model, ns: str, size: bool = True) -> list[str]:
    """size False: no input_width / input_height, the node runs at the model's own size."""
    net = ["-p", f"input_width:={W}", "-p", f"input_height:={H}"] if size else []
    return NodeProcess.python_module(
        "uda_seg_ros.segmentation_node", "--ros-args", "-r", f"__ns:={ns}", "-p",
        f"model_path:={model}", *net, "-p", "warmup_iters:=1", "-p", "device:=cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("fast")
    model = load_model(tiny_checkpoint)[0].eval()
    prune_channels(model, 0.5)
    pruned = save_checkpoint(tmp / "pruned.pt", model, Config(), pruning={"ratio": 0.5})
    onnx_path = tmp / "pruned.onnx"
    export_checkpoint(pruned, onnx_path, size=(H, W), check_frames=0)
    return tmp, {"pruned": pruned, "onnx": onnx_path}


@pytest.fixture(scope="module")
def nodes(models):
    tmp, paths = models
    # the ONNX export records its size (48x64) in its metadata: served with no size flag
    procs = {name: NodeProcess.start(node_argv(path, f"/{name}", size=name != "onnx"),
                                     tmp / f"{name}.log")
             for name, path in paths.items()}
    client = RosClient()
    try:
        for proc in procs.values():
            proc.wait_for_output("ready:", timeout=120)
        yield client, procs, paths
    finally:
        for proc in procs.values():
            proc.send(signal.SIGINT)
        for proc in procs.values():
            if proc.proc.returncode is None:
                proc.wait()
        client.close()


@pytest.mark.parametrize("name,backend", [("pruned", "torch"), ("onnx", "onnxruntime")])
def test_node_serves_the_model(nodes, name, backend):
    client, procs, paths = nodes
    assert f"({backend} on cpu" in procs[name].output()
    # the ONNX node was given no size: it must run at the export's recorded 48x64 (mutant:
    # the node's own 480x360 default, a size the model was never measured at)
    assert f"network {W}x{H} (letterbox)," in procs[name].output()
    pub = client.publisher(Image, f"/{name}/image", qos_profile_sensor_data)
    masks = client.collect(Image, f"/{name}/segmentation/class_mask", qos_profile_sensor_data)
    client.wait_for_subscriber(pub)
    rgb = np.random.default_rng(1).integers(0, 256, (2 * H, 2 * W, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    msg.header.frame_id = f"cam_{name}"
    for _ in range(40):  # discovery may still be settling: publish until a mask comes back
        pub.publish(msg)
        try:
            got = masks.wait_for(lambda m: m.header.frame_id == f"cam_{name}", timeout=1.0)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail(f"no class mask from the {name} node:\n{procs[name].output()[-2000:]}")
    mask, _ = image_to_numpy(got)
    assert got.encoding == "mono8" and mask.shape == (2 * H, 2 * W)
    expected = Segmenter.from_checkpoint(paths[name], device="cpu", input_size=(H, W)).segment(rgb)
    assert (mask != expected).mean() < 0.01
