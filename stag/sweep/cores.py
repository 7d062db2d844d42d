"""The cores a sweep explores: their configuration fields, base configurations, cycle models and
synthesis flows.

- ``sparse``: the generated top, ``hw.config.StagConfig`` (every field but ``name``; ``sparse =
  false`` is its dense baseline); bases are the presets (``tiny``, ``default``); cycles from
  ``ref.cycle_model``; synthesis is ``stag synth``'s (the generated top, ``stag.synth.synthesize_ecp5``).
- ``vector``: the vector core, ``hw.vector_core.VectorCoreParams``; base ``default`` is the core of
  ``benchmarks/throughput.py`` with ECP5 multipliers (``target = "ecp5"``); cycles from
  ``ref.vector_cycle_model`` through ``ref.vector_lowering``; synthesis as
  ``benchmarks/route_vector_core.py`` does it (``stag.synth.synthesize_verilog``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hw.config import PRESETS, StagConfig
from hw.vector_core import VectorCore, VectorCoreParams
from ref.traces import Trace
from stag.synth import SynthReport, synthesize_ecp5, synthesize_verilog
from stag.workload import IterationCycles, sparse_core_cycles, vector_core_cycles

__all__ = ["CORES", "base_fields", "bases", "build", "core_fields", "iteration_cycles", "multipliers", "synthesize"]

CORES: tuple[str, ...] = ("sparse", "vector")
#: The sparse core's designs are generated under this name (it names modules and files only).
DESIGN_NAME = "sweep"
_VECTOR_BASES = {"default": VectorCoreParams(target="ecp5")}


def _check(core: str) -> None:
    if core not in CORES:
        raise ValueError(f"core must be one of {', '.join(CORES)}, not {core!r}")


def core_fields(core: str) -> tuple[str, ...]:
    """The fields a sweep may set on ``core``."""
    _check(core)
    cls = StagConfig if core == "sparse" else VectorCoreParams
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")


def bases(core: str) -> tuple[str, ...]:
    """The base configurations of ``core`` a sweep starts from."""
    _check(core)
    return tuple(sorted(PRESETS)) if core == "sparse" else tuple(_VECTOR_BASES)


def base_fields(core: str, base: str) -> dict[str, Any]:
    """Every field of ``core``'s ``base`` configuration (JSON types)."""
    if base not in bases(core):
        raise ValueError(f"the {core} core's base must be one of {', '.join(bases(core))}, not {base!r}")
    if core == "sparse":
        fields = PRESETS[base].to_dict()
        del fields["name"]
        return fields
    return dataclasses.asdict(_VECTOR_BASES[base])


def build(core: str, fields: dict[str, Any]) -> StagConfig | VectorCoreParams:
    """The configuration of ``core`` with ``fields``; raises ``hw.config.ConfigError`` (sparse) or
    ``ValueError`` (vector) naming what is invalid."""
    _check(core)
    if core == "sparse":
        return StagConfig.from_dict({"name": DESIGN_NAME, **fields}, source="sweep point")
    unknown = sorted(set(fields) - set(core_fields(core)))
    if unknown:
        raise ValueError(f"sweep point: unknown vector core field(s) {', '.join(map(repr, unknown))}")
    return VectorCoreParams(**fields)


def multipliers(core: str, config: StagConfig | VectorCoreParams) -> int:
    """Multipliers of the core's compute array (one per lane; ``lanes x vector`` for the vector core)."""
    return config.lanes if core == "sparse" else config.lanes * config.vector


def iteration_cycles(core: str, config: StagConfig | VectorCoreParams, trace: Trace) -> IterationCycles:
    """The core's cycles for the iteration captured in ``trace`` (its exact cycle model)."""
    if core == "sparse":
        return sparse_core_cycles(trace, config)
    return vector_core_cycles(trace, config)


def synthesize(core: str, config: StagConfig | VectorCoreParams, work_dir: Path, *, place_and_route: bool,
               pnr_timeout_s: float | None) -> SynthReport:
    """Yosys ``synth_ecp5`` (and with ``place_and_route`` nextpnr-ecp5) of the core on LFE5U-85F."""
    work_dir = Path(work_dir)
    if core == "sparse":
        from hw.generate import generate

        design = generate(config, work_dir / "rtl")
        return synthesize_ecp5(design, work_dir / "synth", place_and_route=place_and_route,
                               pnr_timeout_s=pnr_timeout_s)
    from amaranth.back import verilog

    work_dir.mkdir(parents=True, exist_ok=True)
    source = work_dir / "vector_core.v"
    source.write_text(verilog.convert(VectorCore(config), name="vector_core", emit_src=False), encoding="utf-8")
    return synthesize_verilog([source], "vector_core", work_dir / "synth", place_and_route=place_and_route,
                              pnr_timeout_s=pnr_timeout_s, design_name="vector_core")
