"""Real-trace tensors for the top-K threshold unit's testbench: quantized digits CNN weights.

The weights ``w`` of chosen layers of a SWAT digits training trace (``ref.contract.make_digits_trace``,
captured iteration 1) are quantized per tensor to ``operand_bits`` codes
(``ref.numerics.quantize_symmetric``) and kept with their shape, so the testbench can run them in
element mode and in channel mode (``slice_len = R*S`` for a conv weight ``[K, C, R, S]``). The
pytest side writes them as JSON; the cocotb testbench reads them and needs no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["digits_weight_codes", "load_topk_tensors", "write_topk_tensors"]


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
