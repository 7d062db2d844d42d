"""Test vectors for the ReLU + mask units: random edge-case vectors, and real-trace vectors.

:func:`random_code_vectors` and :func:`random_masks` mix the edge cases (zeros, the most negative
code, all-zero, all-positive, all-negative and all-ones/all-zeros masks).

From a ``relu_mask`` digits training trace (``ref.contract.make_digits_trace``, variant ``relu``)
this takes the fully connected layer, whose input ``X = ReLU(Z)`` is the flattened output of
conv3:

- ``pre``: ``Z = conv3(x, w) + b`` recomputed from conv3's recorded tensors, quantized per tensor
  to ``operand_bits`` codes (``ref.numerics.quantize_symmetric``);
- ``recorded_mask``: the policy's recorded BWI output mask ``relu_mask_x`` of fc (``X > 0``);
- ``dx``: the dense BWI output of fc, ``dY_fc @ W_fc``, quantized the same way;
- ``dy_prev``: the recorded gradient at conv3's output (what the previous ReLU's backward made of
  ``dx``), as codes on ``dx``'s scale.

Each tensor is the ``[N, 512]`` matrix of the fc input (an fc FWD A row per sample), flattened
row-major and cut into vectors of ``vector_elems`` codes; the first ``max_vectors`` are kept.
The pytest side writes them as JSON for the cocotb testbench, which then needs no torch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["digits_relu_vectors", "load_relu_vectors", "random_code_vectors", "random_masks", "write_relu_vectors"]


def random_code_vectors(rng: random.Random, operand_bits: int, vector_elems: int, count: int) -> list[list[int]]:
    """``count`` vectors of signed codes; kinds cycle through the edge cases, then get shuffled."""
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    vectors = []
    for i in range(count):
        kind = ("all_zero", "all_positive", "all_negative", "extremes", "mixed", "mixed")[i % 6]
        if kind == "all_zero":
            v = [0] * vector_elems
        elif kind == "all_positive":
            v = [rng.randint(1, high) for _ in range(vector_elems)]
        elif kind == "all_negative":
            v = [rng.choice((low, rng.randint(low, -1))) for _ in range(vector_elems)]
        elif kind == "extremes":
            v = [rng.choice((low, 0, high)) for _ in range(vector_elems)]
        else:
            zeros = rng.random()
            v = [0 if rng.random() < zeros else rng.randint(low, high) for _ in range(vector_elems)]
        vectors.append(v)
    rng.shuffle(vectors)
    return vectors


def random_masks(rng: random.Random, vector_elems: int, count: int) -> list[list[bool]]:
    """``count`` masks: an all-zero and an all-one mask, the rest of random density (shuffled)."""
    masks = [[False] * vector_elems, [True] * vector_elems]
    while len(masks) < count:
        density = rng.random()
        masks.append([rng.random() < density for _ in range(vector_elems)])
    masks = masks[:count]
    rng.shuffle(masks)
    return masks


def digits_relu_vectors(trace: Any, *, operand_bits: int, vector_elems: int, max_vectors: int) -> dict[str, Any]:
    """The vectors described in the module docstring from a loaded ``ref.traces.Trace``."""
    import torch
    import torch.nn.functional as F

    from ref.numerics import qmax, quantize_symmetric, round_half_away

    layers = trace.records[0].layers
    conv3, fc = layers["conv3"], layers["fc"]
    t3, tf = conv3.tensors, fc.tensors
    z = F.conv2d(t3["x"].double(), t3["w"].double(), t3["b"].double(), conv3.stride, conv3.padding)
    z = z.reshape(tf["x"].shape)
    dx = tf["dy"].double() @ tf["w"].double()
    pre, _ = quantize_symmetric(z, operand_bits)
    dx_codes, dx_scale = quantize_symmetric(dx, operand_bits)
    m = qmax(operand_bits)
    dy_prev = round_half_away(t3["dy"].double().reshape(dx.shape) / dx_scale).clamp(-m, m)

    def cut(t: torch.Tensor) -> list[list[Any]]:
        flat = t.reshape(-1).tolist()
        count = min(max_vectors, len(flat) // vector_elems)
        return [flat[i * vector_elems:(i + 1) * vector_elems] for i in range(count)]

    return {
        "operand_bits": operand_bits,
        "vector_elems": vector_elems,
        "z_float": cut(z),
        "pre": cut(pre),
        "recorded_mask": cut(tf["relu_mask_x"]),
        "recorded_x": cut(tf["x"].double()),
        "dx": cut(dx_codes),
        "dy_prev": cut(dy_prev),
    }


def write_relu_vectors(path: Path, vectors: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(vectors) + "\n", encoding="utf-8")
    return path


def load_relu_vectors(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
