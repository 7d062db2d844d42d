"""Stimulus for the ReSprop unit (``hw.resprop``): random passes with ties and extremes, and dY codes
from a real digits training run. Stimulus only: expected values always come from
``ref.resprop_codes.ReSpropCodes`` in the test that uses these passes.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ref.resprop_codes import EXP_MAX, EXP_MIN, ReSpropCodes, effective_threshold, threshold_code

__all__ = ["ResPropPass", "digits_trace_passes", "load_passes", "make_resprop_trace", "random_passes",
           "save_passes"]


@dataclass(frozen=True)
class ResPropPass:
    """One command of the unit and its dY codes (row-major ``[n_samples, elems]``)."""

    n_samples: int
    elems: int
    sample: int
    dense: bool
    target_cp: int
    load: tuple[int, int] | None
    dy: tuple[int, ...]
    label: str = ""

    def command(self) -> dict[str, int]:
        """The ``i_cmd`` payload as a field dict for ``resprop_command_layout``."""
        mant, exp = self.load if self.load is not None else (0, 0)
        return {"n_samples": self.n_samples, "elems": self.elems, "sample": self.sample, "dense": int(self.dense),
                "target": self.target_cp, "load_thr": int(self.load is not None), "thr_mant": mant, "thr_exp": exp}

    def run_on(self, model: ReSpropCodes):
        """This pass on the reference model (returns its ``PassResult``)."""
        return model.run_pass(list(self.dy), n_samples=self.n_samples, elems=self.elems, sample=self.sample,
                              dense=self.dense, target_cp=self.target_cp, load=self.load)


def _clamp(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def _dy_codes(rng: random.Random, kind: str, bits: int, n: int, elems: int, p: list[int], thr: int) -> list[int]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "zeros":
        return [0] * (n * elems)
    if kind == "equal":  # every sample equal to the stored P: D = 0 everywhere
        return [p[e % len(p)] for _ in range(n) for e in range(elems)]
    if kind == "const":
        v = rng.randint(lo, hi)
        return [v] * (n * elems)
    if kind == "extreme":
        return [rng.choice((lo, hi, lo + 1, 0, -1)) for _ in range(n * elems)]
    out = []
    for _ in range(n):
        for e in range(elems):
            base = p[e % len(p)]
            r = rng.random()
            if r < 0.45:  # |D| == T or T + 1 or T - 1: the tie rule matters here
                v = base + rng.choice((-1, 1)) * (thr + rng.choice((-1, 0, 0, 1)))
            elif r < 0.55:
                v = base
            elif r < 0.65:
                v = rng.choice((lo, hi))
            else:
                v = rng.randint(lo, hi)
            out.append(_clamp(v, bits))
    return out


def random_passes(rng: random.Random, bits: int, max_elems: int, max_batch: int, count: int,
                  pass_elems: int | None = None) -> list[ResPropPass]:
    """``count`` passes for a unit with P banks of ``max_elems``: dense starts, threshold loads
    (fractional and large), ties |D| == T, extreme codes, all-zero / all-equal / constant tensors,
    targets from 0 % to above 100 % so that the threshold exponent moves both ways and stays put,
    and a stored sample index out of range now and then. Samples have 1..``pass_elems`` elements
    (default ``max_elems``; more than ``max_elems`` makes addresses wrap), at most 4 samples. A
    shadow model only shapes the stimulus (where ties fall); it is not the expectation."""
    shadow = ReSpropCodes(bits, max_elems)
    pass_elems = max_elems if pass_elems is None else pass_elems
    passes = []
    elems = rng.randint(1, pass_elems)
    n = rng.randint(1, min(max_batch, 4))
    for i in range(count):
        if rng.random() < 0.3:
            elems = rng.randint(1, pass_elems)
            n = rng.randint(1, min(max_batch, 4))
        load = None
        if i == 0 or rng.random() < 0.2:
            exp = rng.choice((rng.randint(-bits - 2, bits + 1), rng.randint(EXP_MIN, EXP_MAX), -1, 0))
            load = (rng.randint(0, (1 << bits) - 1), exp)
        mant, exp = load if load else (shadow.mant, shadow.exp)
        thr = effective_threshold(mant, exp, bits)
        kind = rng.choice(("mixed",) * 6 + ("zeros", "equal", "const", "extreme"))
        dy = _dy_codes(rng, kind, bits, n, elems, shadow.stored_p, thr)
        dense = i == 0 or rng.random() < 0.1
        target_cp = rng.choice((0, 10000, 16383, 1500, 5000, rng.randint(0, 10000)))
        sample = rng.randint(0, n - 1) if rng.random() < 0.9 else rng.randint(n, (1 << max_batch.bit_length()) - 1)
        p = ResPropPass(n, elems, sample, dense, target_cp, load, tuple(dy), label=f"{kind}{i}")
        p.run_on(shadow)
        passes.append(p)
    return passes


def make_resprop_trace(out_dir: Path | str, *, seed: int = 0) -> Path:
    """Train the digits CNN under ReSprop (adaptive threshold, no warm-up) on 128 samples at batch
    32 and capture global steps 1 and 2 (neither the first nor the last of the epoch). Returns the
    trace directory; takes a few seconds."""
    from ref.training import train

    out = Path(out_dir)
    train("resprop", epochs=1, seed=seed, trace_iters=(1, 2), out_dir=out, batch_size=32, train_subset=128,
          options={"threshold_mode": "adaptive_x2", "warmup": False}, plots=False)  # fmt: skip
    return out / "trace"


def digits_trace_passes(trace_dir: Path | str, bits: int, *, layer: str = "conv2", samples: int = 4,
                        max_elems: int | None = None) -> tuple[list[ResPropPass], dict]:
    """Two consecutive iterations of a real training run (``make_resprop_trace``) as two passes.

    The layer's float dY of both iterations is quantized to ``bits``-bit codes with one shared scale
    (``ref.numerics.quantize_symmetric`` of the pair: D = dY - P is only meaningful on one scale) and
    cut to the first ``samples`` samples and, when given, the first ``max_elems`` elements of each.
    Pass 1 is dense (no P yet) and stores the sample the training run stored; pass 2 is sparse.
    Returns the passes and facts for the test (``info``: stored samples, the trace's P of step 2 as
    codes, the scale).
    """
    import torch

    from ref.numerics import quantize_symmetric, round_half_away
    from ref.traces import load_trace

    trace = load_trace(trace_dir)
    recs = [r.layers[layer] for r in trace.records]
    dys = torch.stack([r.tensors["dy"] for r in recs])
    codes, scale = quantize_symmetric(dys, bits)
    p2 = round_half_away(recs[1].tensors["P"].to(torch.float64) / scale)  # P of step 2 = dY[j1] of step 1
    stored = [int(r.scalars["stored_sample"]) for r in recs]
    if any(j >= samples for j in stored):
        raise ValueError(f"stored samples {stored} do not lie in the first {samples} samples")
    e = codes.shape[2] * codes.shape[3] * codes.shape[4] if max_elems is None else max_elems
    flat = codes.reshape(2, codes.shape[1], -1)[:, :samples, :e]
    target_cp = round(100 * float(recs[0].scalars["target_nz_percent"]))
    # The run's threshold is 1e-7 in gradient units; in code units that is 1e-7 / scale.
    load = threshold_code(float(recs[0].scalars["threshold_before"]) / scale, bits)
    passes = [
        ResPropPass(samples, e, stored[0], True, target_cp, load, tuple(int(v) for v in flat[0].flatten()), "step1"),
        ResPropPass(samples, e, stored[1], False, target_cp, None, tuple(int(v) for v in flat[1].flatten()), "step2"),
    ]
    info = {"stored": stored, "scale": scale, "p2_codes": [int(v) for v in p2.flatten()[:e]],
            "step1_codes": [[int(v) for v in row] for row in flat[0]]}
    return passes, info


def save_passes(path: Path | str, passes: list[ResPropPass]) -> None:
    """Write passes as JSON (for a cocotb testbench: ``load_passes``)."""
    Path(path).write_text(json.dumps([asdict(p) for p in passes]) + "\n", encoding="utf-8")


def load_passes(path: Path | str) -> list[ResPropPass]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return [ResPropPass(**{**p, "dy": tuple(p["dy"]), "load": tuple(p["load"]) if p["load"] else None}) for p in raw]
