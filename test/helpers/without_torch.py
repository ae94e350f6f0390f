"""Run a module as `__main__` in a process where the training stack cannot be imported:

    python test/helpers/without_torch.py uda_seg_ros.segmentation_node --ros-args -p ...
    python test/helpers/without_torch.py -c "import uda_seg_ros.serving"

Before anything else is imported, a finder at the front of `sys.meta_path` refuses every
module of `BLOCKED` (torch and what only training needs), as a machine without them would:
`import torch` raises ModuleNotFoundError. So a serving path that imports torch, however
indirectly, fails here. `-c CODE` runs CODE instead of a module.
"""
from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = frozenset({"torch", "torchvision", "timm", "tensorly", "tltorch", "torch_pruning",
                     "onnx", "matplotlib", "tqdm", "tensorboard", "functorch"})


class BlockTrainingStack(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a serving install "
                                      f"has no training stack)", name=name)
        return None


def main() -> None:
    sys.meta_path.insert(0, BlockTrainingStack())
    for name in list(sys.modules):  # nothing of it may be loaded already
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    if len(sys.argv) > 2 and sys.argv[1] == "-c":
        code = sys.argv[2]
        sys.argv = ["-c", *sys.argv[3:]]
        exec(compile(code, "<without_torch -c>", "exec"), {"__name__": "__main__"})
        return
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
