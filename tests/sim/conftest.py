"""Session-wide builds of generated designs: one per (preset, simulator) per pytest worker."""

from __future__ import annotations

import pytest

from hw.config import preset
from hw.generate import generate
from sim.runner import build


@pytest.fixture(scope="session")
def built_designs(tmp_path_factory):
    """``get(preset_name, sim, unit=None) -> (design, runner)``, each built once per worker."""
    cache: dict[tuple[str, str, str | None], tuple] = {}
    designs: dict[str, object] = {}
    root = tmp_path_factory.mktemp("designs")

    def get(preset_name: str, sim: str, unit: str | None = None):
        key = (preset_name, sim, unit)
        if key not in cache:
            if preset_name not in designs:
                designs[preset_name] = generate(preset(preset_name), root / "rtl")
            design = designs[preset_name]
            cache[key] = (design, build(design, sim, root / "build" / preset_name / sim / str(unit), unit=unit))
        return cache[key]

    return get
