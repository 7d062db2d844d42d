"""Operand vectors for the bitmap codec's tests: taken from a real training trace, and stored as JSON.

``trace_vectors`` lowers a captured digits-training iteration exactly as the contract does
(``ref.contract.trace_programs``: per-tensor symmetric quantization to ``operand_bits``, the
policy's masking and pruning, im2col, tiling to ``tile_k``) and returns the ``tile_k`` vectors
the core would receive bitmap-compressed: the A rows and B columns of every GEMM whose operand
format is ``bitmap`` (ReLU activations, pruned gradients...).

The pytest side (with torch) writes them with :func:`write_codec_vectors`; the cocotb testbench
``sim.tb_bitmap_codec`` reads plain integer lists with :func:`load_codec_vectors` from the file
named by ``STAG_CODEC_VECTORS``, so the simulator process never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_codec_vectors", "trace_vectors", "write_codec_vectors"]


def trace_vectors(trace, *, operand_bits: int, tile_k: int, limit: int,
                  passes: tuple[str, ...] = ("fwd", "bww")) -> list[list[int]]:
    """Up to ``limit`` distinct bitmap-format operand vectors of ``trace``'s first iteration.

    Vectors are taken round-robin over the (layer, pass) programs so that every layer and pass
    contributes; duplicates (e.g. all-zero rows of a padded edge tile) are kept once.
    """
    from ref.contract import TileGemm
    from ref.contract.trace_programs import trace_programs

    programs = trace_programs(trace, tile_m=16, tile_n=16, tile_k=tile_k, operand_bits=operand_bits,
                              acc_bits=64, passes=passes, max_gemms=1)
    per_pass: list[list[list[int]]] = []
    for tp in programs:
        found = []
        for cmd in tp.program.commands:
            if not isinstance(cmd, TileGemm):
                continue
            if cmd.a.format == "bitmap":
                found += [row.tolist() for row in cmd.a.to_dense()]
            if cmd.b.format == "bitmap":
                found += [col.tolist() for col in cmd.b.to_dense().T]
        if found:
            per_pass.append(found)
    seen: set[tuple[int, ...]] = set()
    out: list[list[int]] = []
    index = 0
    while len(out) < limit and any(index < len(p) for p in per_pass):
        for found in per_pass:
            if index < len(found) and tuple(found[index]) not in seen and len(out) < limit:
                seen.add(tuple(found[index]))
                out.append([int(v) for v in found[index]])
        index += 1
    return out


def write_codec_vectors(path: str | Path, vectors: list[list[int]]) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"vectors": vectors}) + "\n", encoding="utf-8")
    return path


def load_codec_vectors(path: str | Path) -> list[list[int]]:
    return [list(map(int, v)) for v in json.loads(Path(path).read_text(encoding="utf-8"))["vectors"]]
