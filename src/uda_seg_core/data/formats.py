"""Which on-disk layout a dataset folder has: the formats the loaders read, and 'auto'.

    resolve_format("auto", "data/CamVid")     # -> 'camvid' (colour labels) or 'camvid_segnet'
    detect_formats("data/synthetic")          # -> ['synthetic'] (a make-synthetic output)

The format names are the config's choices (`config.DATASET_FORMATS`), so a bad name is
refused when the config is built.
"""
from __future__ import annotations

import typing
from pathlib import Path

from uda_seg_core.config import DatasetFormat
from uda_seg_core.data.base import DatasetFormatError, list_names

FORMAT_CHOICES: tuple[str, ...] = typing.get_args(DatasetFormat)  # what configs and --format accept
FORMATS = tuple(f for f in FORMAT_CHOICES if f != "auto")  # the layouts the loaders read


def detect_formats(root: str | Path) -> list[str]:
    """Every layout a folder shows signs of: 'idda' (rgb/ + labels/), 'folder' (images/ +
    labels/), 'camvid_segnet' (<split>annot/), 'camvid' (<split>_labels/ or
    class_dict.csv), or 'synthetic' (a make-synthetic output holding idda/ and camvid/).
    More than one means ambiguous."""
    root = Path(root)
    if (root / "idda" / "rgb").is_dir() and (root / "camvid").is_dir():
        return ["synthetic"]
    found = []
    if (root / "rgb").is_dir() and (root / "labels").is_dir():
        found.append("idda")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        found.append("folder")
    if any((root / f"{s}annot").is_dir() for s in ("train", "val", "test")):
        found.append("camvid_segnet")
    if any((root / f"{s}_labels").is_dir() for s in ("train", "val", "test")) or (
        root / "class_dict.csv"
    ).is_file():
        found.append("camvid")
    return found


def detect_format(root: str | Path) -> str | None:
    """The one layout a folder looks like ('synthetic' for a make-synthetic output), or
    None when it shows none or several."""
    found = detect_formats(root)
    return found[0] if len(found) == 1 else None


def resolve_format(fmt: str, root: str | Path) -> str:
    """`fmt` itself, or for 'auto' the layout read off the folder; an unknown or ambiguous
    folder is an error that lists what it holds and how to say the format."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DatasetFormatError(f"unknown dataset format '{fmt}'; choose from "
                                     f"{', '.join(FORMAT_CHOICES)}")
        return fmt
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder not found: {root}")
    found = detect_formats(root)
    if len(found) == 1 and found[0] in FORMATS:
        return found[0]
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    holds = f"it holds: {list_names(entries) or 'nothing'}"
    if found == ["synthetic"]:
        raise DatasetFormatError(f"{root} is a make-synthetic output, not one dataset: use "
                                 f"{root / 'idda'} (IDDA format) or {root / 'camvid'} (CamVid)")
    if found:
        raise DatasetFormatError(f"{root} is ambiguous: it looks like {' and '.join(found)} "
                                 f"({holds}); give the format explicitly")
    raise DatasetFormatError(
        f"cannot tell the layout of {root} ({holds}); expected CamVid colour (train/ + "
        f"train_labels/ or class_dict.csv), CamVid SegNet (train/ + trainannot/), IDDA "
        f"(rgb/ + labels/) or a plain folder (images/ + labels/)")


def layout_hint(root: Path, wanted: str) -> str:
    """A sentence for errors: what the folder looks like instead of `wanted`."""
    found = detect_format(root)
    if found == "synthetic":
        return (f"{root} is a make-synthetic output: open {root / 'idda'} as 'idda' "
                f"or {root / 'camvid'} as 'camvid'.")
    if found and found != wanted:
        return f"{root} looks like the '{found}' layout: use format '{found}'."
    return ""
