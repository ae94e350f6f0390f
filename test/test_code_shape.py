"""The shape of src/ that the layering relies on (checked on the source, nothing runs).

- No function longer than 80 lines: the bug this guards against is the 115-line `fit` and
  the 131-line `run_demo` that grew until nobody could read them in one screen.
- In uda_seg_core a function-local import is only for an optional dependency (ONNX
  Runtime, matplotlib, tensorly-torch, TensorBoard) and says so in a comment: late imports
  of project modules hid the real dependency graph (117 of them hid three import cycles).
  One exception, documented where it is: the torch backend of the Segmenter loads its
  model loader (torchvision, timm) late, when a checkpoint is served. (The Segmenter
  itself imports its backends by name, with importlib: a node serving ONNX never imports
  torch at all, README "Serving without torch".)
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 80
OPTIONAL = ("onnxruntime", "matplotlib", "tltorch", "torch.utils.tensorboard")
# (file, module) imported late for start-up time, with the reason beside it
LATE_FOR_STARTUP = {("uda_seg_core/inference/torch_backend.py", "uda_seg_core.models")}


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def parsed(root: Path):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text()), path.read_text().splitlines()


def test_no_function_is_longer_than_80_lines():
    long = []
    for path, tree, _ in parsed(SRC):
        for fn in functions(tree):
            start = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            if fn.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(SRC)}:{fn.lineno} {fn.name} "
                            f"({fn.end_lineno - start + 1} lines)")
    assert not long, "split these functions: " + "; ".join(long)


def test_core_imports_late_only_optional_dependencies_and_says_so():
    bad = []
    for path, tree, lines in parsed(SRC / "uda_seg_core"):
        for fn in functions(tree):
            commented: set[str] = set()
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                where = f"{path.relative_to(SRC)}:{node.lineno} {module}"
                if (str(path.relative_to(SRC)), module) in LATE_FOR_STARTUP:
                    if not any("#" in line for line in lines[node.lineno - 3:node.lineno]):
                        bad.append(f"{where} (say why it is late)")
                    continue
                if not module or not module.startswith(OPTIONAL):
                    bad.append(f"{where} (not an optional dependency: import it at the top)")
                    continue
                package = module.split(".")[0]
                if "# optional" in lines[node.lineno - 1]:
                    commented.add(package)
                elif package not in commented:
                    bad.append(f"{where} (say why it is late: '# optional: ...')")
    assert not bad, "; ".join(bad)
