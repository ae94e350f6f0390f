"""The demo's settings (demo_settings.py): the threads per child process."""
from __future__ import annotations

from uda_seg_tools.demo_settings import choose_threads


def test_an_explicit_thread_count_wins_over_the_automatic_choice():
    assert choose_threads(3) == 3
    assert choose_threads(0) in (0, 1)


def test_the_demo_trains_the_shipped_recipes_network(tmp_path):
    """The demo's train/adapt arguments are the real-data profile plus the demo's data and
    sizes: the network (backbone, ImageNet weights, widths) is the profile's, so the demo
    shows the recipe a user ships, and a moved profile breaks here, not mid-demo."""
    from uda_seg_core.config import load_config
    from uda_seg_tools.demo_settings import PROFILE, DemoSettings, training_overrides

    args = training_overrides(DemoSettings(out=str(tmp_path)), tmp_path, "source_only", 5)
    assert args[:2] == ["--config", str(PROFILE)] and PROFILE.is_file()
    cfg = load_config(PROFILE, args[2:])
    profile = load_config(PROFILE)
    assert cfg.model == profile.model and cfg.model.pretrained == "imagenet"
    assert cfg.data.source_root == str(tmp_path / "data" / "idda") and cfg.train.max_iters == 5
    assert cfg.data.crop_size == [120, 160] and cfg.data.eval_size == []
