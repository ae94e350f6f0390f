"""What every test gets, and the rules the suite keeps.

Isolation (every test passes alone and in any order, e.g. `pytest -p randomly test`):
- each test starts with one torch thread, torch's deterministic-algorithms switch off and
  the python / numpy / torch generators seeded to 0, whatever the test before it did;
- fixtures that build something costly are session-scoped and read-only: tests copy
  what they change.

Shared fixtures:
- `make_checkpoint(seed=0, **extra)`: a random-init BiSeNet-R18 checkpoint (12 classes,
  as training writes it; `extra` is stored beside the weights: palette, mean, std, ...);
  `tiny_checkpoint` is `make_checkpoint()`;
- `tiny_domains`: the two tiny domains of `helpers.fixtures.write_domains` (read-only);
- `trained_model`: a BiSeNet-R18 trained by `uda-seg train` on the tiny CamVid-format domain.
  Its classes follow the frames' colours, so a red/blue swap changes most of its mask,
  and it has a real mIoU to lose (for INT8 and pruning checks);
- `colcon_install`: the package built by `colcon build` in a temporary workspace (the
  install prefix install/uda_seg_ros), for test_colcon.py and the real-launch tests;
- `launch_site`: the jazzy launch tooling from ../shared/ros2-jazzy pip-installed into a
  temporary folder (skips, allowed, where ../shared/ros2-jazzy is absent).

No silent skips: a test skipped for a reason outside `ALLOWED_SKIPS` (no GPU / CUDA, the
real data in ../shared absent) FAILS, so a broken install (a missing extra behind an
importorskip) cannot turn the suite green.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

# A skip whose reason matches one of these is expected on some machines; any other skip
# is a failure. Write the reason so that it says which of these it is.
ALLOWED_SKIPS = (
    re.compile(r"\b(CUDA|GPU)\b"),  # no accelerator here (or, on a GPU machine, the reverse)
    re.compile(r"\.\./shared\b.*(absent|missing|not found)", re.IGNORECASE),  # real data
)
TRAINED_ITERS = 40  # 12 s on one core; mIoU ~0.3, a red/blue swap moves >50% of the mask


# ----------------------------------------------------------------------------- isolation

@pytest.fixture(autouse=True)
def _isolated_global_state():
    """Every test sees the same torch / numpy / python global state, whatever ran before:
    the launcher sets `use_deterministic_algorithms` and re-seeds the generators, and
    benchmarks set the thread count; none of that may leak into the next test."""
    torch.set_num_threads(1)  # two shared cores: OpenMP pools spinning slow tiny models 10x
    torch.use_deterministic_algorithms(False)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
    torch.use_deterministic_algorithms(False)


# ----------------------------------------------------------------------------- no silent skips

def _allowed(reason: str) -> bool:
    return any(pattern.search(reason) for pattern in ALLOWED_SKIPS)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _fail_unexpected_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not _allowed(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped for a reason outside the allow-list in test/conftest.py "
                               f"(no GPU / CUDA; ../shared absent): {reason}\n"
                               f"A missing package that setup.py installs is a broken install: "
                               f"import it plainly instead of skipping.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


# ----------------------------------------------------------------------------- checkpoints

def save_random_checkpoint(path: Path, seed: int = 0, **extra) -> Path:
    """A random-init BiSeNet-R18 (12 classes) saved as training saves it."""
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.config import Config
    from uda_seg_core.models import build_segmentation_model

    cfg = Config()
    cfg.model.backbone = "resnet18"
    torch.manual_seed(seed)
    model = build_segmentation_model(cfg.model).eval()
    return save_checkpoint(path, model, cfg, **extra)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """make_checkpoint(seed=0, **extra) -> path; one file per distinct request, shared by
    the session (read-only: a test that changes it copies it first)."""
    made: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("checkpoints")

    def make(seed: int = 0, **extra) -> Path:
        key = repr((seed, sorted(extra.items())))
        if key not in made:
            made[key] = save_random_checkpoint(folder / f"tiny_{len(made)}.pt", seed, **extra)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(make_checkpoint) -> Path:
    return make_checkpoint()


@pytest.fixture(scope="session")
def tiny_domains(tmp_path_factory):
    """(root, idda, camvid): 4 frames per domain and split at 48x64; read-only."""
    from helpers.fixtures import write_domains

    root = tmp_path_factory.mktemp("domains")
    idda, camvid = write_domains(root)
    return SimpleNamespace(root=root, idda=idda, camvid=camvid)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, tiny_domains):
    """A BiSeNet-R18 trained by `uda-seg train` on the CamVid-format tiny domain (its
    labels are the frames' colours plus noise), with the data it was trained on."""
    from helpers.fixtures import tiny_overrides
    from uda_seg_core.cli import main

    root = tmp_path_factory.mktemp("trained")
    d = tiny_domains
    overrides = tiny_overrides(root, d.idda, d.camvid, **{
        "data.source_format": "camvid", "data.source_root": str(d.camvid),
        "train.max_iters": TRAINED_ITERS, "train.val_every": TRAINED_ITERS,
        "train.checkpoint_every": TRAINED_ITERS, "train.run_name": "trained",
        "train.optimizer": "adam", "train.lr": 0.001, "augmentation.hflip": 0})
    assert main(["train", *overrides]) == 0
    return SimpleNamespace(checkpoint=root / "runs" / "trained" / "best.pt", camvid=d.camvid,
                           size=(48, 64))


# ----------------------------------------------------------------------------- ROS 2 workspace

COLCON_PACKAGE_FILES = ("setup.py", "setup.cfg", "package.xml", "README.md")
COLCON_PACKAGE_DIRS = ("src", "resource", "launch", "config")


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> Path:
    """`colcon build` of this package in a temporary workspace; the install prefix
    install/uda_seg_ros (what AMENT_PREFIX_PATH names after `source install/setup.bash`).
    Read-only: test_colcon.py checks its layout, the real-launch tests launch from it."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    ws = tmp_path_factory.mktemp("colcon_ws")
    pkg = ws / "src" / "uda_seg_ros"
    pkg.mkdir(parents=True)
    for name in COLCON_PACKAGE_FILES:
        if (root / name).exists():
            shutil.copy2(root / name, pkg / name)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc")
    for name in COLCON_PACKAGE_DIRS:
        shutil.copytree(root / name, pkg / name, ignore=ignore)
    colcon = Path(sys.executable).with_name("colcon")
    assert colcon.exists(), f"colcon-core is installed but not its script beside {sys.executable}"
    result = subprocess.run(
        [str(colcon), "--log-base", str(ws / "log"), "build", "--base-paths", str(ws / "src"),
         "--build-base", str(ws / "build"), "--install-base", str(ws / "install")],
        check=False, cwd=ws, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Finished <<< uda_seg_ros" in result.stdout
    return ws / "install" / "uda_seg_ros"


@pytest.fixture(scope="session")
def launch_site(tmp_path_factory) -> Path:
    """The jazzy launch tooling from ../shared/ros2-jazzy, pip-installed once per session
    into a temporary folder (helpers.launching.install_launch_site); skips where it is absent."""
    from helpers.launching import ABSENT, SHARED, install_launch_site

    if not SHARED.is_dir():
        pytest.skip(ABSENT)
    return install_launch_site(tmp_path_factory.mktemp("ros2_jazzy") / "site")
