"""Real-trace tensors for the top-K threshold unit's testbench: quantized digits CNN weights.

The weights ``w`` of chosen layers of a SWAT digits training trace (``ref.contract.make_digits_trace``,
captured iteration 1) are quantized per tensor to ``operand_bits`` codes
(``ref.numerics.quantize_symmetric``) and kept with their shape, so the testbench can run them in
element mode and in channel mode (``slice_len = R*S`` for a conv weight ``[K, C, R, S]``). The
pytest side writes them as JSON; the cocotb testbench reads them and needs no torch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["CODE_KINDS", "digits_weight_codes", "load_topk_tensors", "random_codes", "write_topk_tensors"]

#: Kinds of random tensors :func:`random_codes` makes.
CODE_KINDS = ("random", "zeros", "equal", "extreme", "sparse")


def random_codes(rng: random.Random, n: int, bits: int, kind: str) -> list[int]:
    """``n`` signed ``bits``-bit codes of one ``kind``: uniform (``random``), all zero, all of one
    magnitude with random signs (``equal``: every magnitude ties), only the extreme codes (most
    negative, most positive, 0, +-1), or about 80 % zeros (``sparse``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "zeros":
        return [0] * n
    if kind == "equal":
        v = rng.randint(lo, hi)
        return [v if rng.random() < 0.5 or -v > hi else -v for _ in range(n)]
    if kind == "extreme":
        return [rng.choice([lo, hi, 0, lo + 1, -1, 1]) for _ in range(n)]
    if kind == "sparse":
        return [rng.randint(lo, hi) if rng.random() < 0.2 else 0 for _ in range(n)]
    if kind != "random":
        raise ValueError(f"kind must be one of {', '.join(CODE_KINDS)}, not {kind!r}")
    return [rng.randint(lo, hi) for _ in range(n)]


def digits_weight_codes(out_dir: Path | str, operand_bits: int, layers: dict[str, tuple[str, ...]],
                        seed: int = 0) -> list[dict[str, Any]]:
    """``[{"layer", "shape", "codes", "modes"}]`` of the quantized weights of ``layers``.

    ``layers`` maps a layer name to the modes to run it in: ``"element"`` and/or ``"channel"``
    (conv weights only). Codes are row-major.
    """
    from ref.contract.trace_programs import make_digits_trace  # imports torch: pytest side only
    from ref.numerics import quantize_symmetric
    from ref.traces import load_trace

    trace = load_trace(make_digits_trace(out_dir, algo="swat", seed=seed))
    record = trace.records[0].layers
    tensors = []
    for name, modes in layers.items():
        codes = quantize_symmetric(record[name].tensors["w"], operand_bits)[0]
        if "channel" in modes and codes.dim() != 4:
            raise ValueError(f"channel mode needs a conv weight [K, C, R, S]; {name} is {list(codes.shape)}")
        tensors.append({"layer": name, "shape": list(codes.shape), "codes": codes.flatten().tolist(),
                        "modes": list(modes)})
    return tensors


def write_topk_tensors(path: Path | str, tensors: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"tensors": tensors}) + "\n", encoding="utf-8")
    return path


def load_topk_tensors(path: Path | str) -> list[dict[str, Any]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["tensors"]
