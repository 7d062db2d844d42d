"""Read a generated design directory back: its configuration, ports and paths.

cocotb test modules run inside the simulator process and learn which design they face from the
``STAG_DESIGN_DIR`` environment variable that :mod:`sim.runner` sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hw.config import StagConfig
from hw.generate import GeneratedDesign

__all__ = ["current_design", "load_design"]


def load_design(directory: str | Path) -> GeneratedDesign:
    """The design generated into ``directory`` (reads its ``*.config.json``)."""
    directory = Path(directory)
    configs = sorted(directory.glob("*.config.json"))
    if len(configs) != 1:
        raise FileNotFoundError(f"{directory} is not a generated design (expected one *.config.json)")
    resolved = json.loads(configs[0].read_text(encoding="utf-8"))
    config = StagConfig.from_dict(resolved["fields"], source=str(configs[0]))
    return GeneratedDesign(config=config, directory=directory)


def current_design() -> GeneratedDesign:
    """The design under test, from ``STAG_DESIGN_DIR`` (set by :func:`sim.runner.run_cocotb`)."""
    try:
        return load_design(os.environ["STAG_DESIGN_DIR"])
    except KeyError:
        raise RuntimeError("STAG_DESIGN_DIR is not set: run cocotb modules through sim.runner") from None
