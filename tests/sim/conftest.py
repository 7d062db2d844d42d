"""Session-wide builds of generated designs: one per (preset, simulator) per pytest worker."""

from __future__ import annotations

import pytest

from hw.config import preset
from hw.generate import generate
from sim.runner import build


@pytest.fixture(scope="session")
def built_designs(tmp_path_factory):
    """``get(preset_name, sim) -> (design, runner)``, building each pair once per worker."""
    cache: dict[tuple[str, str], tuple] = {}
    root = tmp_path_factory.mktemp("designs")

    def get(preset_name: str, sim: str):
        key = (preset_name, sim)
        if key not in cache:
            design = generate(preset(preset_name), root / "rtl")
            cache[key] = (design, build(design, sim, root / "build" / preset_name / sim))
        return cache[key]

    return get
