"""make-synthetic (data/synthetic/): determinism, both formats read by the ordinary
loaders, every class in both domains, similar layouts with different appearance; and
`uda-seg preview` of its output."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from helpers.fixtures import CAMVID_CLASS_DICT
from uda_seg_core.cli import main
from uda_seg_core.data import build_dataset
from uda_seg_core.data.preview import TILE_HEIGHT, channel_stats
from uda_seg_core.data.synthetic import camvid_size_for, make_synthetic, split_counts

SIZE = (72, 96)
CAMVID_NAME = re.compile(r"^(0001TP_\d{6}|0006R0_f\d{5}|0016E5_\d{5}|Seq05VD_f\d{5})$")


def tree_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = make_synthetic(out, seed=0, size=SIZE, num_source=12, num_target=12, stats_frames=6)
    return out, summary


def domains(out):
    return (build_dataset("idda", out / "idda", "all"),
            build_dataset("camvid", out / "camvid", ["train", "val", "test"]))


def class_histogram(ds) -> np.ndarray:
    counts = np.zeros(12, np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds[i]["label"].ravel(), minlength=12)
    return counts


def test_same_seed_same_bytes_other_seed_other_images(synthetic, tmp_path):
    out, _ = synthetic
    make_synthetic(tmp_path / "again", seed=0, size=SIZE, num_source=12, num_target=12,
                   stats_frames=6)
    first, again = tree_bytes(out), tree_bytes(tmp_path / "again")
    assert first.keys() == again.keys() and first == again
    make_synthetic(tmp_path / "other", seed=1, size=SIZE, num_source=3, num_target=3,
                   stats_frames=0)
    other = tree_bytes(tmp_path / "other")
    images = {b for k, b in first.items() if k.endswith((".jpg", ".png")) and "label" not in k}
    assert not images & {b for k, b in other.items() if k.endswith((".jpg", ".png"))}


def test_layouts_and_sizes(synthetic):
    out, summary = synthetic
    sim, real = domains(out)
    assert len(sim) == 12 and len(real) == 12
    frames = summary["camvid"]["frames"].values()
    assert sum(frames) == 12 and min(frames) >= 1
    assert split_counts(50) == [("train", 30), ("val", 10), ("test", 10)]  # 60/20/20 per sequence
    assert all(CAMVID_NAME.match(n) for n in real.names), real.names
    assert (sim[0]["image"].shape == SIZE + (3,)
            and real[0]["image"].shape == camvid_size_for(SIZE) + (3,))
    # Exactly the real files' layouts: 32-colour class_dict.csv, IDDA classes_info.json, RGBA
    # labels.
    rows = (out / "camvid" / "class_dict.csv").read_text().splitlines()
    assert rows[0] == "name,r,g,b" and len(rows) == 33
    assert {tuple(r.split(",")) for r in rows[1:]} == {(n, str(r), str(g),
                                                        str(b)) for n, r, g, b in CAMVID_CLASS_DICT}
    info = json.loads((out / "idda" / "classes_info.json").read_text())
    assert info["classes"] == 27 and len(info["label"]) == 27 and len(info["label2camvid"]) == 27
    label = cv2.imread(str(min((out / "idda" / "labels").iterdir())), cv2.IMREAD_UNCHANGED)
    assert label.shape == SIZE + (4,) and (label[..., 3] == 255).all() and label[..., 2].max() < 27


def test_background_ids_and_colours_are_used(synthetic):
    out, _ = synthetic
    red = np.concatenate([cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[..., 2].ravel()
                          for p in (out / "idda" / "labels").iterdir()])
    used_ids = set(np.unique(red).tolist())
    # roadline, terrain, statics, wall/guardrail
    assert {6, 19, 23} <= used_ids and used_ids & {11, 14}
    colours = np.concatenate([cv2.imread(str(p))[..., ::-1].reshape(-1, 3)
                              for p in (out / "camvid").glob("*_labels/*_L.png")])
    used = {tuple(c) for c in np.unique(colours, axis=0).tolist()}
    assert (128, 0, 192) in used  # LaneMkgsDriv -> Background, as in real CamVid
    assert len(used) >= 15


def test_every_class_in_both_domains_with_similar_layouts(synthetic):
    sim, real = domains(synthetic[0])
    h_sim, h_real = class_histogram(sim), class_histogram(real)
    assert (h_sim > 0).all() and (h_real > 0).all(), (h_sim, h_real)
    p, q = h_sim / h_sim.sum(), h_real / h_real.sum()
    assert 0.5 * np.abs(p - q).sum() < 0.2  # total variation between class frequencies


def test_appearance_differs(synthetic):
    out, summary = synthetic
    sim, real = summary["appearance"]["idda"], summary["appearance"]["camvid"]
    assert sim == channel_stats(domains(out)[0], 6)
    assert sim["saturation"] > real["saturation"] + 10  # CARLA-like colours vs a real camera
    assert abs(np.mean(sim["mean"]) - np.mean(real["mean"])) > 10
    # The dusk sequence is darker than the daytime ones.
    real_ds = domains(out)[1]
    brightness = {n[:6]: real_ds.load(i)[0].mean() for i, n in enumerate(real_ds.names)}
    assert brightness["0001TP"] < 0.7 * min(v for k, v in brightness.items() if k != "0001TP")


def test_cli_make_synthetic_and_preview(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["make-synthetic", "--out", str(out), "--size", "48x64", "--num-source", "3",
                 "--num-target", "3", "--stats-frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert ("frames per CPU-second" in printed and "saturation" in printed
            and "not CamVid numbers" in printed)
    png = tmp_path / "grid.png"
    assert main(["preview", str(out), "--out", str(png), "--n", "2"]) == 0
    grid = cv2.imread(str(png))
    assert grid.shape[0] == 2 * (TILE_HEIGHT + 2) and grid.shape[1] > 4 * TILE_HEIGHT


def test_camvid_frames_are_four_by_three():
    assert camvid_size_for((240, 320)) == (240, 320)
    h, w = camvid_size_for((360, 640))
    assert w * 3 == h * 4 and abs(h * w - 360 * 640) / (360 * 640) < 0.1


def test_rerun_replaces_old_frames_and_foreign_folders_are_kept(tmp_path):
    out = tmp_path / "syn"
    make_synthetic(out, size=(32, 48), num_source=6, num_target=6, stats_frames=0)
    make_synthetic(out, size=(32, 48), num_source=2, num_target=3, stats_frames=0)
    assert len(list((out / "idda" / "rgb").iterdir())) == 2
    assert len(build_dataset("camvid", out / "camvid", ["train", "val", "test"])) == 3
    foreign = tmp_path / "foreign"
    (foreign / "camvid").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="did not write"):
        make_synthetic(foreign, size=(32, 48), num_source=1, num_target=3, stats_frames=0)
    assert (foreign / "camvid").is_dir()


def frame_looks(ds) -> np.ndarray:
    """Per frame: mean R, G, B and the high-frequency energy (texture) of the image."""
    looks = []
    for i in range(len(ds)):
        image = ds.load(i)[0].astype(np.float32)
        grey = image.mean(axis=2)
        looks.append([*image.reshape(-1, 3).mean(0), np.abs(np.diff(grey, axis=1)).mean()])
    return np.asarray(looks)


def test_randomised_sim_style_varies_appearance_per_frame_deterministically(tmp_path):
    """`--sim-style randomised` (the source for real CamVid): the same seed gives the same
    bytes, every class is still drawn, and the frames' colour and texture vary far more
    from frame to frame than the CARLA style's. Mutants: the style flag ignored (frames
    identical to carla's), randomisation drawn from an unseeded generator (bytes differ)."""
    kw = {"size": SIZE, "num_source": 15, "num_target": 3, "stats_frames": 0}
    make_synthetic(tmp_path / "carla", seed=0, **kw)
    make_synthetic(tmp_path / "rand", seed=0, sim_style="randomised", **kw)
    make_synthetic(tmp_path / "rand_again", seed=0, sim_style="randomised", **kw)
    assert tree_bytes(tmp_path / "rand") == tree_bytes(tmp_path / "rand_again")
    carla = build_dataset("idda", tmp_path / "carla" / "idda", "all")
    rand = build_dataset("idda", tmp_path / "rand" / "idda", "all")
    spread_carla, spread_rand = frame_looks(carla).std(0), frame_looks(rand).std(0)
    assert (spread_rand[:3] > 1.5 * spread_carla[:3]).all(), (spread_rand, spread_carla)
    assert spread_rand[3] > 1.25 * spread_carla[3]  # texture strength 0-2.5x
    assert (class_histogram(rand)[:11] > 0).all()
    summary = json.loads((tmp_path / "rand" / "summary.json").read_text())
    assert summary["idda"]["style"] == "randomised"
    with pytest.raises(ValueError, match="sim style 'photoreal' is not one of carla, randomised"):
        make_synthetic(tmp_path / "bad", seed=0, sim_style="photoreal", **kw)
