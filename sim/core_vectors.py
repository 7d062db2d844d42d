"""Test vectors for the core's cocotb testbench: programs encoded with their expected results.

The pytest side (which has torch loaded) lowers and evaluates programs with ``ref`` and writes
them here as plain integers; the testbench (``sim.tb_core``) only streams integers in and compares
integers out, so the simulator process never imports torch. The file is JSON:
``{"cases": [{"name", "commands", "data", "expected", "drain_beats", "effectual_macs",
"dense_macs", "idle", "stall", "prune_tau", "prune_seed", "prune_sum", "topk_threshold", "resprop",
"resprop_p_addrs", "resprop_p", "resprop_nnz", "resprop_exp_after", "resprop_p_next"}, ...]}``
where ``expected``
holds the ``o_data`` beats ``ref`` predicts (every drained value, packed as the core packs them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hw.config import StagConfig
from ref.contract import Program, ProgramResult, evaluate
from sim.core_program import encode_program, resprop_inputs, resprop_p_addresses

__all__ = ["VectorCase", "load_vectors", "make_case", "write_vectors"]


@dataclass(frozen=True)
class VectorCase:
    """One program for the testbench. ``idle``/``stall``: random input-starvation and output
    backpressure probabilities per beat/cycle."""

    name: str
    commands: list[int]
    data: list[int]
    expected: list[int]
    drain_beats: int
    effectual_macs: int
    dense_macs: int
    idle: float = 0.0
    stall: float = 0.0
    prune_tau: int | None = None     # the program's PruneSetting, loaded before it runs
    prune_seed: int | None = None
    prune_sum: int | None = None     # ref's sum of |g| over the pruning drains
    topk_threshold: int = 0          # SWAT's stored threshold for the program's topk drains
    resprop: dict[str, int] | None = None   # the core's resprop_* inputs (sim.core_program.resprop_inputs)
    resprop_p_addrs: list[int] | None = None  # P element addresses, row-major over P [R, C]
    resprop_p: list[int] | None = None      # the P codes written there before the program
    resprop_nnz: int | None = None          # ref's nonzero count of S
    resprop_exp_after: int | None = None    # ref's threshold exponent after the x2 / /2 step
    resprop_p_next: list[int] | None = None  # ref's next P, read back after the next load


def _pack_tile(tile, mask_bits, config: StagConfig) -> list[int]:
    """A drained tile and its mask bits (``ref.contract.ProgramResult.masks``) as the core's
    ``o_data`` beats: row-major row groups of ``lanes`` values, their ``lanes`` mask bits above them."""
    beats = []
    mask = (1 << config.acc_bits) - 1
    mask_base = config.lanes * config.acc_bits
    for r in range(config.tile_m):
        row = [int(v) for v in tile[r].tolist()]
        bits = [bool(v) for v in mask_bits[r].tolist()]
        for g in range(config.tile_n // config.lanes):
            beat = 0
            for e in range(config.lanes):
                beat |= (row[g * config.lanes + e] & mask) << (e * config.acc_bits)
                beat |= int(bits[g * config.lanes + e]) << (mask_base + e)
            beats.append(beat)
    return beats


def make_case(name: str, program: Program, config: StagConfig, *, idle: float = 0.0,
              stall: float = 0.0, result: ProgramResult | None = None) -> VectorCase:
    """Encode ``program`` for ``config``'s core and attach ``ref``'s expected results and MAC counts
    (``result``: ``ref.contract.evaluate(program)`` when the caller has it already)."""
    encoded = encode_program(program, config)
    if result is None:
        result = evaluate(program)
    expected = [beat for tile, mask_bits in zip(result.tiles, result.masks, strict=True)
                for beat in _pack_tile(tile, mask_bits, config)]
    return VectorCase(
        name=name, commands=list(encoded.commands), data=list(encoded.data), expected=expected,
        drain_beats=encoded.drain_beats,
        effectual_macs=sum(c.effectual_macs for c in result.counts),
        dense_macs=sum(c.dense_macs for c in result.counts), idle=idle, stall=stall,
        prune_tau=None if program.prune is None else program.prune.tau,
        prune_seed=None if program.prune is None else program.prune.seed, prune_sum=result.prune_sum,
        topk_threshold=program.topk_threshold or 0, **_resprop_fields(program, result, config))


def _resprop_fields(program: Program, result: ProgramResult, config: StagConfig) -> dict[str, object]:
    rs = program.resprop
    if rs is None:
        return {}
    assert result.resprop_p is not None
    return {"resprop": resprop_inputs(program, config),
            "resprop_p_addrs": resprop_p_addresses(rs.rows_per_sample, rs.cols, config),
            "resprop_p": [int(v) for v in rs.p.flatten().tolist()], "resprop_nnz": result.resprop_nnz,
            "resprop_exp_after": result.resprop_exp_after,
            "resprop_p_next": [int(v) for v in result.resprop_p.flatten().tolist()]}


def write_vectors(path: str | Path, cases: list[VectorCase]) -> Path:
    path = Path(path)
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("vector case names must be unique")
    path.write_text(json.dumps({"cases": [asdict(c) for c in cases]}) + "\n", encoding="utf-8")
    return path


def load_vectors(path: str | Path) -> list[VectorCase]:
    return [VectorCase(**c) for c in json.loads(Path(path).read_text(encoding="utf-8"))["cases"]]
