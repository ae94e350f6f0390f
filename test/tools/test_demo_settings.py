"""The demo's settings (demo_settings.py): the threads per child process."""
from __future__ import annotations

from uda_seg_tools.demo_settings import choose_threads


def test_an_explicit_thread_count_wins_over_the_automatic_choice():
    assert choose_threads(3) == 3
    assert choose_threads(0) in (0, 1)
