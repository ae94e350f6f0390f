"""uda_seg_core.reporting: files written whole, markdown tables, the machine a report ran
on, and the prediction grid.

    .venv/bin/pytest test/core/test_reporting.py -q
"""
from __future__ import annotations

import json
import os
import stat

import cv2
import numpy as np
import pytest

from uda_seg_core.labels import PALETTE
from uda_seg_core.reporting import (
    atomic_output,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    machine_description,
    markdown_table,
    panel_rgb,
    prediction_grid,
)


def test_a_serialiser_failing_midway_leaves_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"iteration": 1})
    before = path.read_bytes()
    # "a" is written before the object json cannot serialise: the failure is mid-file
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": list(range(1000)), "b": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["metrics.json"]  # the temporary file is gone too


def test_a_writer_failing_midway_leaves_the_previous_file(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_output(path, "w") as fh:
        fh.write("half of the new")
        fh.flush()
        raise RuntimeError("disk full")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["report.md"]


def test_atomic_writes_replace_create_folders_and_use_ordinary_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "doc.json"
    atomic_write_json(path, {"x": np.float32(0.5), "n": [1, 2]})
    assert json.loads(path.read_text()) == {"x": 0.5, "n": [1, 2]}
    assert path.read_text().endswith("}\n")
    atomic_write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["doc.json"]


def test_atomic_path_serves_writers_that_take_a_file_name(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists() and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new model")
    assert target.read_bytes() == b"new model"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError("metadata rejected")
    assert target.read_bytes() == b"new model" and os.listdir(tmp_path) == ["model.onnx"]
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass  # a writer that wrote nothing does not count as done
    assert target.read_bytes() == b"new model"


def test_atomic_output_refuses_modes_that_read_or_append(tmp_path):
    for mode in ("a", "r+", "w+b"):
        with pytest.raises(ValueError, match="mode"), atomic_output(tmp_path / "x", mode):
            pass


def test_markdown_table_shape_alignment_and_escaping():
    text = markdown_table(["model", "p50 ms", "note"],
                          [["eager", 12.25, "a|b"], ["int8", "6.1", ""]], align="lrl")
    lines = text.splitlines()
    assert lines == ["| model | p50 ms | note |", "|---|---:|---|",
                     "| eager | 12.25 | a\\|b |", "| int8 | 6.1 |  |"]
    assert not text.endswith("\n")
    # default: first column left, the others right
    assert markdown_table(["a", "b", "c"], []) == "| a | b | c |\n|---|---:|---:|"


def test_markdown_table_refuses_ragged_rows_and_bad_alignment():
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="lc")
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="l")


def test_machine_description_keys():
    m = machine_description(loadavg_start="0.10 0.20 0.30")
    assert set(m) == {"cpu", "cores", "platform", "python", "torch", "onnxruntime",
                      "loadavg_start", "loadavg_end"}
    assert m["loadavg_start"] == "0.10 0.20 0.30"
    assert isinstance(m["cpu"], str) and m["cpu"]
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert len(m["loadavg_end"].split()) == 3 or m["loadavg_end"] == "?"
    json.dumps(m)  # goes into the reports' JSON as it is
    now = machine_description()
    assert now["loadavg_start"] == now["loadavg_end"]


def test_panels_are_rgb_or_class_ids_with_the_ignore_index_black():
    ids = np.array([[0, 6], [11, 255]], np.int64)
    rgb = panel_rgb(ids)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == PALETTE[0]).all() and (rgb[0, 1] == PALETTE[6]).all()
    assert (rgb[1, 1] == 0).all()  # ignored pixels: black, never a class colour
    image = np.full((2, 2, 3), 7, np.uint8)
    assert panel_rgb(image) is image
    with pytest.raises(ValueError, match="panel"):
        panel_rgb(np.zeros((2, 2, 4), np.uint8))


def test_prediction_grid_draws_one_row_per_example_one_column_per_title(tmp_path):
    h, w = 30, 40
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    label = np.full((h, w), 6, np.int64)
    label[:10] = 255
    rows = [[image, label, label], [image, label, np.full((h, w), 9)]]
    titles = ["image", "ground truth", "prediction"]
    path = prediction_grid(rows, titles, tmp_path / "figs" / "grid.png",
                           row_names=["a", "b"], title="run - val")
    picture = cv2.imread(str(path))
    assert picture is not None and picture.shape[1] > picture.shape[0]  # 3 columns, 2 rows
    tall = cv2.imread(str(prediction_grid(rows * 3, titles, tmp_path / "tall.png")))
    assert tall.shape[0] > picture.shape[0]  # more examples, more height
    assert sorted(os.listdir(tmp_path / "figs")) == ["grid.png"]
    with pytest.raises(ValueError, match="3 panels"):
        prediction_grid([[image, label]], titles, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no examples"):
        prediction_grid([], titles, tmp_path / "empty.png")
