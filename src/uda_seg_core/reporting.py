"""What every report is made of: the machine it ran on, files written whole, markdown tables,
and the image | ground truth | prediction grid.

    with atomic_output(path) as fh: torch.save(obj, fh)      # checkpoint.atomic_save
    atomic_write_json(run_dir / "metrics.json", doc)        # never half a file
    doc["machine"] = machine_description(loadavg_start=start)
    text = markdown_table(["model", "p50 ms"], [["eager", "12.3"]], align="lr")
    prediction_grid([[image, label, pred]], ["image", "ground truth", "prediction"], path)

Layer: one module just above `config | labels` and below `checkpoint | runtime | stages`
(.importlinter), so checkpoints, training runs, benchmark, deploy, the studies, evaluate and
the ROS node all share one copy. It imports only `labels` (the palette the grid colours
class ids with), the standard library and numpy: never torch (its version is read from the
loaded module or the installed distribution), so the ROS node can use the writes before
its torch import; onnxruntime (its version) and matplotlib (the grid) are imported when
asked for. The grid lives here too rather than in evaluate: it takes pictures that are
already computed (an RGB image or class ids per panel), so it needs no model, dataset or
inference code, only the palette.

Writes are atomic: the bytes go to a temporary file beside the target (same directory,
so the rename never crosses a file system), are flushed and fsynced, and the file is
renamed over the target with `os.replace`. A writer that fails (or a process killed) in
the middle leaves the previous file as it was; the temporary file is removed on an
exception (after a kill, a `.<name>.<random>.tmp` file may remain, never the target).
New files get the ordinary permissions (umask), not the 0600 of `tempfile.mkstemp`.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from uda_seg_core.labels import ids_to_rgb

# --- the machine -------------------------------------------------------------------------


def available_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model name ('AMD EPYC 7B13'), or what the platform says where /proc has none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages as reports print them ('0.52 0.61 0.70'); '?'
    where the system has none."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "?"


def torch_version() -> str | None:
    """torch.__version__ ('2.14.1+cu130') where torch is loaded, else the installed
    distribution's version; this module never imports torch itself (a node that serves ONNX
    installs its signal handlers before that long import)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version; None without it (it is optional)."""
    try:
        import onnxruntime  # optional: only its version is reported
    except ImportError:
        return None
    return onnxruntime.__version__


def machine_description(loadavg_start: str | None = None) -> dict:
    """What a timing depends on, with the keys the reports' JSON has always used: 'cpu',
    'cores' (usable by this process), 'platform', 'python', 'torch', 'onnxruntime', and
    'loadavg_start' / 'loadavg_end' (`load_average()` strings; pass the one taken before
    the measured work began, else the start is now too)."""
    now = load_average()
    return {"cpu": cpu_name(), "cores": available_cores(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch_version(),
            "onnxruntime": onnxruntime_version(),
            "loadavg_start": now if loadavg_start is None else loadavg_start,
            "loadavg_end": now}


# --- files written whole -----------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a file name (ONNX, a copy);
    when the block ends normally the file there is fsynced and renamed over `path`; on
    an exception it is removed and `path` is left as it was. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_output(path: str | Path, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """An open file (`mode` 'wb' or 'w') whose content replaces `path` only when the block
    ends normally; see `atomic_path`."""
    if "w" not in mode or "+" in mode:
        raise ValueError(f"atomic_output writes a new file: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **open_args) as fh:
        yield fh


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_output(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """`data` as JSON (numbers of numpy / torch types as floats), with a final newline,
    written atomically; returns `path`. Serialised while writing: a value json cannot
    write fails the write, and the previous file stays."""
    with atomic_output(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=indent, default=float)
        fh.write("\n")
    return Path(path)


# --- markdown ----------------------------------------------------------------------------


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]],
                   align: str = "") -> str:
    """A markdown table (no final newline): one header row, the rule, one line per row.
    `align` has one letter per column, 'l' or 'r' (default: the first column left, the
    others right, as numbers read). Cells are written with str(); '|' in a cell is escaped.
    Every row must have one cell per header."""
    n = len(headers)
    align = align or "l" + "r" * (n - 1)
    if len(align) != n or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l'/'r' per column ({n}), got {align!r}")
    for i, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"row {i} has {len(row)} cells for {n} columns: {list(row)}")

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# --- the prediction grid -----------------------------------------------------------------


def panel_rgb(panel: np.ndarray) -> np.ndarray:
    """A grid panel as (H, W, 3) uint8: RGB as it is, class ids (H, W) in the palette's
    colours (ids outside it, such as the ignore index 255, black)."""
    panel = np.asarray(panel)
    if panel.ndim == 2:
        return ids_to_rgb(panel)
    if panel.ndim == 3 and panel.shape[2] == 3:
        return panel
    raise ValueError(f"a panel is (H, W) class ids or (H, W, 3) RGB, got shape {panel.shape}")


def prediction_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str],
                    path: str | Path, *, row_names: Sequence[str] = (), title: str = "",
                    panel_inches: float = 2.4, dpi: int = 110) -> Path:
    """The paper's Fig. 5 layout: one row per example, one column per title (image, ground
    truth, each model's prediction, in the caller's order), each panel an RGB image or
    class ids (`panel_rgb`). Rows are named on the left with `row_names`; `title` goes
    above. Written as a PNG (atomically) at `path`; returns it."""
    import matplotlib  # optional at import: only figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no examples to draw")
    if any(len(r) != len(titles) for r in rows):
        raise ValueError(f"every row needs {len(titles)} panels ({', '.join(titles)})")
    h, w = np.asarray(rows[0][0]).shape[:2]
    fig, axes = plt.subplots(len(rows), len(titles), squeeze=False, figsize=(
        panel_inches * len(titles), panel_inches * h / w * len(rows) + (0.7 if title else 0.4)))
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel_rgb(panel))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        if r < len(row_names):
            axes[r][0].set_ylabel(row_names[r], fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_output(path, "wb") as fh:
            fig.savefig(fh, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
