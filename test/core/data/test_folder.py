"""The plain folder format (images/ + labels/ index PNGs, <split>.txt lists) and a user's
own classes through every stage: a 3-class label set trains with `uda-seg train` on a
folder dataset, the checkpoint and the exported model carry the set, the Segmenter serves
its 3 classes in its colours, and `uda-seg evaluate` reports its class names."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.fixtures import save_grey, save_rgb, tiny_overrides
from uda_seg_core.cli import main
from uda_seg_core.data import DatasetFormatError, build_dataset, detect_formats, resolve_format
from uda_seg_core.labels import camvid12

# A user's label set, typed here: the dataset's ids 1 (asphalt) and 2 (lane marking) are
# road, 3 car, 7 everything else; 0 is "not labelled", anything unlisted is 'other'.
LANES_YAML = """\
names: [road, car, other]
palette: [[128, 64, 128], [250, 170, 30], [20, 20, 20]]
headline: [road, car]
maps:
  folder:
    classes: {road: [1, 2], car: [3], other: [7]}
    ignore: [0]
    unknown: other
"""
LANES = ("road", "car", "other")
LANES_PALETTE = [[128, 64, 128], [250, 170, 30], [20, 20, 20]]
DATASET_TO_LANES = {0: 255, 1: 0, 2: 0, 3: 1, 7: 2, 255: 255}  # 255: the set's ignore id
SIZE = (48, 64)


def lane_scene(rng: np.random.Generator, size=SIZE) -> np.ndarray:
    """The dataset's ids: 7 above the horizon, asphalt (1) with a lane marking (2) below,
    a car (3), a few unlabelled (0) and ignored (255) pixels."""
    h, w = size
    ids = np.full((h, w), 7, np.uint8)
    ids[h // 2:] = 1
    ids[h // 2:, w // 2 - 1:w // 2 + 1] = 2
    x = int(rng.integers(0, w - 16))
    ids[h // 2 + 4:h // 2 + 14, x:x + 14] = 3
    ids[:2, :3] = 0
    ids[-1, -2:] = 255
    return ids


def write_folder(root: Path, names: list[str], lists: dict[str, list[str]] | None = None,
                 seed: int = 0, labels: dict[str, np.ndarray] | None = None) -> Path:
    """The folder layout: images/<name>.png (the scene in the set's colours, with noise),
    labels/<name>.png (the dataset's ids, one channel) and a <split>.txt per list."""
    rng = np.random.default_rng(seed)
    colours = np.zeros((256, 3), np.int16)
    for value, cls in DATASET_TO_LANES.items():
        colours[value] = LANES_PALETTE[cls] if cls != 255 else (0, 0, 0)
    for name in names:
        ids = (labels or {}).get(name)
        ids = lane_scene(rng) if ids is None else ids
        noisy = colours[ids] + rng.integers(-10, 11, ids.shape + (3,))
        save_rgb(root / "images" / f"{name}.png", np.clip(noisy, 0, 255))
        save_grey(root / "labels" / f"{name}.png", ids)
    for split, stems in (lists or {}).items():
        (root / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def write_lanes_yaml(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lanes.yaml").write_text(LANES_YAML)
    return folder / "lanes.yaml"


# ----------------------------------------------------------------------------- reading

def test_ids_map_through_the_sets_folder_map(tmp_path, caplog):
    ids = np.array([[0, 1, 2, 3], [7, 9, 255, 1]], np.uint8)
    write_folder(tmp_path / "d", ["a"], labels={"a": ids})
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("folder", tmp_path / "d", "all",
                           label_set=str(write_lanes_yaml(tmp_path)))
        item = ds[0]
    # 0 listed as ignored and 255 (the set's ignore id) -> 255; 9 unlisted -> other, counted
    assert item["label"].tolist() == [[255, 0, 0, 1], [2, 2, 255, 0]]
    assert ds.unknown_pixels == 1 and ds.label_set.names == LANES
    assert any("a.png" in r.getMessage() and "mapped to other" in r.getMessage()
               for r in caplog.records)


def test_without_a_set_ids_are_the_papers_classes_and_the_rest_is_ignored(tmp_path):
    ids = np.array([[0, 5, 11, 12], [200, 255, 6, 6]], np.uint8)
    ds = build_dataset("folder", write_folder(tmp_path, ["a"], labels={"a": ids}), "all")
    assert ds.label_set is camvid12()
    assert ds[0]["label"].tolist() == [[0, 5, 11, 255], [255, 255, 6, 6]]
    assert ds.unknown_pixels == 2  # 12 and 200; 255 is the ignore id, not counted


def test_splits_are_stem_lists_and_train_is_the_rest(tmp_path):
    root = write_folder(tmp_path, ["f1", "f2", "f10", "f3"], {"val": ["f2"], "test": ["f3.png"]})
    assert build_dataset("folder", root, "train").names == ["f1", "f10"]  # natural order
    assert build_dataset("folder", root, "val").names == ["f2"]
    assert build_dataset("folder", root, "val+test").names == ["f2", "f3"]
    assert build_dataset("folder", root, "all").names == ["f1", "f2", "f3", "f10"]
    (root / "train.txt").write_text("f1\n# a comment\nf3\n")
    assert build_dataset("folder", root, "train").names == ["f1", "f3"]
    with pytest.raises(DatasetFormatError, match=r"split 'extra' needs .*extra\.txt"):
        build_dataset("folder", root, "extra")
    (root / "val.txt").write_text("f2\nnope\n")
    with pytest.raises(DatasetFormatError, match=r"val\.txt lists 1 stem\(s\) with no image.*nope"):
        build_dataset("folder", root, "val")


def test_the_layout_is_detected_and_bad_files_are_named(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b"])
    assert detect_formats(root) == ["folder"] and resolve_format("auto", root) == "folder"
    (root / "labels" / "b.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"1 image\(s\) in .*images have no label.*b\.png"):
        build_dataset("folder", root, "all")
    assert len(build_dataset("folder", root, "all", with_labels=False)) == 2
    save_rgb(root / "labels" / "b.png", np.full((4, 4, 3), (1, 2, 3)))
    with pytest.raises(DatasetFormatError, match=r"b\.png is a colour image.*single-channel"):
        build_dataset("folder", root, "all")[1]
    with pytest.raises(DatasetFormatError, match=r"images not found: the folder layout"):
        build_dataset("folder", tmp_path, "all")


def test_preview_draws_the_labels_in_the_sets_colours(tmp_path, capsys):
    root = write_folder(tmp_path / "d", ["a"])
    out = tmp_path / "preview.png"
    assert main(["preview", str(root), "--label-set", str(write_lanes_yaml(tmp_path)),
                 "--out", str(out)]) == 0
    colours = {tuple(c) for c in np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)}
    assert {tuple(c) for c in LANES_PALETTE} <= colours
    assert main(["preview", str(root), "--label-set", str(tmp_path / "nope.yaml")]) == 2
    assert "label set file not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- own classes

@pytest.fixture(scope="module")
def lanes_run(tmp_path_factory):
    """`uda-seg train` for 2 iterations on a 3-class folder dataset (source and target),
    then `uda-seg export`; the label set's YAML is deleted afterwards, as the checkpoint
    and the model must carry the set themselves. Read-only."""
    root = tmp_path_factory.mktemp("lanes")
    data = write_folder(root / "lanes", [f"f{i}" for i in range(6)], {"val": ["f4", "f5"]})
    labels = write_lanes_yaml(root / "sets")
    overrides = tiny_overrides(root, **{
        "data.label_set": str(labels), "model.num_classes": 3, "data.source_root": str(data),
        "data.target_root": str(data), "train.max_iters": 2})
    assert main(["train", *overrides]) == 0
    run = root / "runs" / "folder_bisenet-r18_supervised"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--out", str(root / "m.onnx"),
                 "--size", "48x64"]) == 0
    shutil.rmtree(root / "sets")
    return {"root": root, "data": data, "run": run, "onnx": root / "m.onnx", "yaml": labels}


def test_the_checkpoint_and_the_run_config_record_the_set(lanes_run):
    from uda_seg_core.checkpoint import load_checkpoint
    from uda_seg_core.config import load_config

    ckpt = load_checkpoint(lanes_run["run"] / "best.pt")
    assert ckpt["class_names"] == list(LANES) and ckpt["palette"] == LANES_PALETTE
    recorded = ckpt["label_set"]
    assert recorded["name"] == "lanes" and recorded["source"] == str(lanes_run["yaml"])
    assert recorded["headline"] == ["road", "car"] and recorded["ignore"] == 255
    assert recorded["maps"]["folder"]["classes"] == {"road": [1, 2], "car": [3], "other": [7]}
    config = load_config(lanes_run["run"] / "config.yaml")  # what a resume starts from
    assert config.data.label_set == recorded and config.model.num_classes == 3
    metrics = json.loads((lanes_run["run"] / "metrics.json").read_text())
    best = metrics["best"]
    assert list(best["per_class_iou"]) == list(LANES)
    road_car = [best["per_class_iou"][c] for c in ("road", "car")]
    assert best["miou"] == pytest.approx(np.nanmean([np.nan if v is None else v
                                                     for v in road_car]))


def test_the_exported_model_carries_the_set(lanes_run):
    from uda_seg_core.optimize.export import read_metadata

    meta = read_metadata(lanes_run["onnx"])
    assert meta["class_names"] == list(LANES) and meta["palette"] == LANES_PALETTE
    assert meta["num_classes"] == 3 and meta["headline_classes"] == [0, 1]
    assert meta["ignore_index"] == 255 and meta["label_set"]["name"] == "lanes"


@pytest.mark.parametrize("model", ["pt", "onnx"])
def test_the_segmenter_serves_the_sets_classes_in_its_colours(lanes_run, model):
    from uda_seg_core.inference import Segmenter

    path = lanes_run["run"] / "best.pt" if model == "pt" else lanes_run["onnx"]
    seg = Segmenter.from_checkpoint(path, device="cpu", input_size=SIZE)
    assert seg.class_names == list(LANES) and seg.palette.tolist() == LANES_PALETTE
    assert seg.label_set_name == "lanes" and seg.headline_classes == [0, 1]
    frame = build_dataset("folder", lanes_run["data"], "val", with_labels=False)[0]["image"]
    mask = seg.segment(frame)
    assert mask.shape == frame.shape[:2] and mask.max() < 3
    assert np.array_equal(seg.colorize(mask), np.array(LANES_PALETTE, np.uint8)[mask])


def test_evaluate_reports_the_sets_classes_without_its_yaml(lanes_run, capsys):
    out = lanes_run["root"] / "eval"
    for model in (lanes_run["run"] / "best.pt", lanes_run["onnx"]):
        assert main(["evaluate", "--checkpoint", str(model), "--data", str(lanes_run["data"]),
                     "--split", "val", "--out", str(out), "--device", "cpu"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert list(metrics["per_class_iou"]) == list(LANES) and metrics["format"] == "folder"
        assert len(metrics["confusion_matrix"]) == 3 and metrics["images"] == 2
    assert "| road |" in capsys.readouterr().out


def test_a_class_count_that_disagrees_with_the_set_names_both(tmp_path, capsys):
    data = write_folder(tmp_path / "lanes", ["a", "b"], {"val": ["b"]})
    labels = write_lanes_yaml(tmp_path)
    overrides = tiny_overrides(tmp_path, **{"data.label_set": str(labels),
                                            "data.source_root": str(data),
                                            "data.target_root": str(data)})
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert "model.num_classes=12 but data.label_set 'lanes'" in err and "has 3 classes" in err
    assert not (tmp_path / "runs").exists()
