"""Programs for the vector core's cocotb test (:mod:`sim.tb_vector_core`), with ``ref``'s answers.

Expected result beats come from ``ref.contract.evaluate`` alone, packed as the core emits them
(``vector`` values of ``acc_bits``, their mask bits above), so the testbench compares raw beats;
a program that prunes also carries its pruner setting and ref's sum of ``|g|``, a ReSprop program
its pass inputs, its P (element addresses and codes) and ref's nonzero count, next exponent and
stored P.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hw.vector_core import VectorCoreParams
from ref.contract.commands import Program
from ref.contract.evaluate import evaluate
from sim.vector_program import encode_vector_program, vector_resprop_inputs, vector_resprop_p_addresses

__all__ = ["VectorCase", "expected_beats", "write_vector_cases"]


@dataclass(frozen=True)
class VectorCase:
    """One program run from reset, with its stream idle/stall probabilities."""

    name: str
    program: Program
    idle: float = 0.0
    stall: float = 0.0


def expected_beats(program: Program, params: VectorCoreParams) -> list[int]:
    """The result beats ``ref`` expects for ``program``: per drain, one beat per tile row."""
    result = evaluate(program)
    ab, vec = params.acc_bits, params.vector
    beats = []
    for tile, mask in zip(result.tiles, result.masks, strict=True):
        for r in range(params.tile_m):
            word = 0
            for e in range(vec):
                word |= (int(tile[r, e]) & ((1 << ab) - 1)) << (e * ab)
                word |= int(bool(mask[r, e])) << (vec * ab + e)
            beats.append(word)
    return beats


def write_vector_cases(cases: list[VectorCase], params: VectorCoreParams, path: Path) -> Path:
    """Write the testbench's vector file for ``cases`` on the core of ``params``."""
    out = []
    for case in cases:
        enc = encode_vector_program(case.program, params)
        result = evaluate(case.program)
        setting = case.program.prune
        prune = None if setting is None else {"tau": setting.tau, "seed": setting.seed, "sum": result.prune_sum}
        rs = case.program.resprop
        resprop = None if rs is None else {
            "inputs": vector_resprop_inputs(case.program, params),
            "p_addresses": vector_resprop_p_addresses(rs.rows_per_sample, rs.cols, params),
            "p": [int(v) & ((1 << params.operand_bits) - 1) for v in rs.p.flatten().tolist()],
            "nnz": result.resprop_nnz, "exp_next": result.resprop_exp_after,
            "p_after": [int(v) & ((1 << params.operand_bits) - 1) for v in result.resprop_p.flatten().tolist()]}
        out.append({"name": case.name, "commands": list(enc.commands), "data": list(enc.data),
                    "expected": expected_beats(case.program, params), "idle": case.idle, "stall": case.stall,
                    "topk_threshold": case.program.topk_threshold or 0, "prune": prune,
                    "resprop": resprop})
    spec = {"cmd_bits": params.command_layout().size,
            "bus_bits": params.bus_bits, "result_bits": params.result_bits, "drain_beats": params.tile_m,
            "cases": out}
    Path(path).write_text(json.dumps(spec) + "\n", encoding="utf-8")
    return Path(path)
