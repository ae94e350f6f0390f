"""`uda-seg prune-sweep` on a tiny BiSeNet checkpoint and a tiny CamVid-layout folder."""
from __future__ import annotations

import json

import cv2
import pytest
import torch

from helpers.fixtures import bands, write_tiny_camvid
from uda_seg_core.config import IMAGENET, Config
from uda_seg_core.optimize.sweep import (
    CSV_COLUMNS,
    max_sparsity_within,
    parse_sparsities,
    read_csv,
    run_sweep,
    sweep_checkpoint,
)

# CamVid colours (RGB) of a few named classes: Sky, Building, Road, Tree.
COLOURS = [(128, 128, 128), (128, 0, 0), (128, 64, 128), (128, 128, 0)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.models import build_segmentation_model

    root = tmp_path_factory.mktemp("sweep")
    # A test split of horizontal bands of sky, building, road, tree, with noise.
    data = write_tiny_camvid(root / "camvid", {"test": ["seq_000", "seq_001"]}, size=(64, 96),
                             frames=bands(COLOURS, noise=20))
    cfg = Config()
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model)
    ckpt = save_checkpoint(root / "run" / "best.pt", model, cfg)
    return ckpt, data


def test_parse_sparsities_includes_the_stop_and_rejects_nonsense():
    values = parse_sparsities("0:0.85:0.05")
    assert len(values) == 18 and values[0] == 0.0 and values[-1] == 0.85
    assert parse_sparsities("0.5,0,0.2") == [0.0, 0.2, 0.5]
    for bad in ("0:0.8:0", "0,1.0", "a:b:c", ""):
        with pytest.raises(ValueError, match="--sparsities"):
            parse_sparsities(bad)


def test_max_sparsity_within_stops_at_the_first_drop():
    rows = [{"sparsity": s, "miou": m} for s, m in [(0, 0.50), (0.2, 0.495), (0.4, 0.47),
                                                    (0.6, 0.499)]]
    assert max_sparsity_within(rows, 0.50, 0.01) == 0.2  # 0.6 recovers, but the curve broke at 0.4
    assert max_sparsity_within(rows, 0.50, 0.05) == 0.6
    assert max_sparsity_within(rows, None, 0.01) is None


def test_sweep_writes_csv_json_and_figures_with_the_right_rows(tiny, tmp_path):
    from uda_seg_core.data import build_dataset
    from uda_seg_core.data.transforms import build_transforms
    from uda_seg_core.metrics import evaluate_model
    from uda_seg_core.models import load_model

    ckpt, data = tiny
    out = tmp_path / "sweep"
    written = sweep_checkpoint(ckpt, data, split="test", sparsities=[0.0, 0.5], out=out,
                               device="cpu",
                               progress=False)
    assert {p.name for p in written.values()} == {"sweep_module.csv", "sweep_global.csv",
                                                  "sweep.json",
                                                  "fig3_ptp_modules.png", "fig4_ptp_global.png"}
    module_rows = read_csv(out / "sweep_module.csv")
    groups = ["spatial_path", "context_path", "arm", "ffm", "heads"]
    assert [(r["group"],
             r["sparsity"]) for r in module_rows] == [(g, s) for g in groups for s in (0.0, 0.5)]
    global_rows = read_csv(out / "sweep_global.csv")
    assert [(r["group"], r["sparsity"]) for r in global_rows] == [("global", 0.0), ("global", 0.5)]
    assert list(module_rows[0]) == list(CSV_COLUMNS)
    for row in module_rows + global_rows:  # the asked sparsity is what the pruned layers got
        assert row["measured_sparsity"] == pytest.approx(row["sparsity"], abs=2e-3)
    assert global_rows[1]["model_sparsity"] == pytest.approx(0.5, abs=2e-3)
    # pruning one group leaves the network as a whole less sparse than the group
    arm = next(r for r in module_rows if r["group"] == "arm" and r["sparsity"] == 0.5)
    assert arm["model_sparsity"] < 0.05

    # sparsity 0 is the unpruned model's own evaluation
    model, _ = load_model(ckpt)
    dataset = build_dataset("camvid", data, "test", transform=build_transforms(
        Config().augmentation, Config().data, train=False, normalisation=IMAGENET))
    reference = evaluate_model(model, dataset, "cpu").summary()
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["baseline"]["accuracy"] == pytest.approx(reference["accuracy"])
    for row in doc["rows"]:
        if row["sparsity"] == 0:
            assert row["accuracy"] == pytest.approx(reference["accuracy"])
            assert row["miou"] == pytest.approx(reference["miou"])
    assert doc["images"] == 2 and set(doc["max_sparsity_within_tolerance"]) == {
        *(f"module/{g}" for g in groups), "global/global"}
    for name in ("fig3_ptp_modules.png", "fig4_ptp_global.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[1] > 600


def test_global_pruning_at_high_sparsity_changes_the_predictions(tiny):
    """The sweep measures pruned networks, not the original again."""
    from uda_seg_core.data import build_dataset
    from uda_seg_core.data.transforms import build_transforms
    from uda_seg_core.models import load_model

    ckpt, data = tiny
    model, _ = load_model(ckpt)
    dataset = build_dataset("camvid", data, "test", transform=build_transforms(
        Config().augmentation, Config().data, train=False, normalisation=IMAGENET))
    result = run_sweep(model, dataset, "cpu", modes=("global",), sparsities=[0.0, 0.95])
    zero, high = result["rows"]
    assert high["measured_sparsity"] == pytest.approx(0.95, abs=2e-3)
    assert (zero["accuracy"], zero["per_class_iou"]) != (high["accuracy"], high["per_class_iou"])
    # the model handed in is left unpruned
    from uda_seg_core.pruning import is_pruned, sparsity_report
    assert not is_pruned(model) and sparsity_report(model)["sparsity"] < 0.01


def test_cli_reports_a_missing_checkpoint_cleanly(tmp_path, capsys):
    from uda_seg_core.cli import main

    code = main(["prune-sweep", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(tmp_path)])
    assert code == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_runs_one_mode(tiny, tmp_path, capsys):
    from uda_seg_core.cli import main

    ckpt, data = tiny
    code = main(["prune-sweep", "--checkpoint", str(ckpt), "--data", str(data), "--mode", "global",
                 "--sparsities", "0,0.3", "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "fig4_ptp_global.png", "sweep.json", "sweep_global.csv"]
    assert "global/global" in capsys.readouterr().out
