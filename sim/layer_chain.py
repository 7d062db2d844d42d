"""One layer step of each algorithm on the RTL: the core and the generated units in the Amaranth simulator.

``run_layer_chain(inputs, config)`` runs ``ref.contract.layer_step.layer_step`` (the composition:
which program or unit runs when, and the host's glue) with :class:`RtlBackend`, which executes
every program on ``hw.core.SparseCore`` (``sim.core_amaranth.run_core_amaranth``) and every unit
call on a fresh component from ``hw.units.build_unit(config, name)``. Data moves between them in
Python as a host driver would move it: encode a tensor into the unit's stream beats (the wire
formats of ``ref.relu_mask_codes`` and docs/core.md), simulate, decode the output beats. Nothing
the backend returns is computed in Python; the host glue of the step (lowering, reassembly,
ReSprop's broadcast add and requantization) is the same code for the RTL and the reference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from amaranth.sim import Simulator

from hw.config import StagConfig
from hw.resprop import resprop_command_layout
from hw.stochastic_pruner import PruneMode
from hw.units import build_unit
from ref.contract import Program
from ref.contract.layer_step import LayerInputs, LayerStep, StepParams, TopKOut, layer_step
from ref.relu_mask_codes import bitmap_beats, pack_codes, unpack_bitmap, unpack_codes
from ref.resprop_codes import PassResult as ReSpropPass
from sim.core_amaranth import run_core_amaranth

__all__ = ["RtlBackend", "run_layer_chain", "step_params"]


def step_params(config: StagConfig) -> StepParams:
    """The :class:`StepParams` of a generated design."""
    return StepParams(
        operand_bits=config.operand_bits, acc_bits=config.acc_bits, tile_m=config.tile_m, tile_n=config.tile_n,
        tile_k=config.tile_k, bus_elems=config.bus_elems, lfsr_width=config.lfsr_width, lfsr_taps=config.lfsr_taps,
        prune_frac_bits=config.prune_frac_bits, prune_count_bits=config.prune_count_bits,
        topk_max_elems=config.topk_max_elems, resprop_max_elems=config.resprop_max_elems,
        resprop_max_batch=config.resprop_max_batch)  # fmt: skip


def _drive(unit, inputs: dict[str, list], outputs: dict[str, int], rng: random.Random, *, stall: float,
           read_after: tuple[str, ...] = ()) -> tuple[dict[str, list], dict[str, int]]:
    """Simulate ``unit``: send each input port's payloads in order (one source per port), take
    ``outputs[port]`` beats from each output port, with random valid/ready stalls of probability
    ``stall``. Returns the received payloads per port and the values of ``read_after`` signals once
    every output has arrived. Raises if the unit stops making progress."""
    received: dict[str, list] = {name: [] for name in outputs}
    finals: dict[str, int] = {}
    done: list[str] = []
    limit = 200 + 60 * (sum(len(v) for v in inputs.values()) + sum(outputs.values()))

    def source(port, items, r):
        async def bench(ctx):
            for item in items:
                while stall and r.random() < stall:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload, item)
                ctx.set(port.valid, 1)
                while True:
                    *_, ready = await ctx.tick().sample(port.ready)
                    if ready:
                        break
            ctx.set(port.valid, 0)
        return bench

    def sink(name, port, count, r):
        async def bench(ctx):
            cycles = 0
            while len(received[name]) < count:
                ready = not (stall and r.random() < stall)
                ctx.set(port.ready, ready)
                *_, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid and ready:
                    received[name].append(payload)
                cycles += 1
                if cycles > limit:
                    raise RuntimeError(f"{type(unit).__name__}.{name}: {len(received[name])} of {count} "
                                       f"beats after {cycles} cycles")
            ctx.set(port.ready, 0)
            done.append(name)
            if len(done) == len(outputs):
                for sig in read_after:
                    finals[sig] = ctx.get(getattr(unit, sig))
        return bench

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    for name, items in inputs.items():
        sim.add_testbench(source(getattr(unit, name), items, random.Random(rng.random())))
    for name, count in outputs.items():
        sim.add_testbench(sink(name, getattr(unit, name), count, random.Random(rng.random())))
    sim.run()
    return received, finals


@dataclass
class RtlBackend:
    """A :class:`ref.contract.layer_step.StepBackend` on the RTL of ``config``.

    ``stall``: probability of a withheld valid/ready per cycle on every stream (core and units).
    ``log`` records (what, cycles or beats) per call, for reports.
    """

    config: StagConfig
    seed: int = 0
    stall: float = 0.0
    log: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # -- core ------------------------------------------------------------------------------------
    def gemm(self, program: Program) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        run = run_core_amaranth(program, self.config, seed=self._rng.randrange(1 << 30), stall=self.stall)
        self.log.append(("core", run.cycles))
        return run.tiles, run.masks

    # -- ReLU mask units: tensors travel as tile_k-code vectors (zero-padded at the end) ---------
    def _vectors(self, t: torch.Tensor) -> list[list[int]]:
        ve = self.config.tile_k
        flat = t.flatten().tolist()
        flat += [0] * (-len(flat) % ve)
        return [flat[i:i + ve] for i in range(0, len(flat), ve)]

    def relu_emit(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        ob, be, ve = cfg.operand_bits, cfg.bus_elems, cfg.tile_k
        vectors = self._vectors(z)
        beats = [b for v in vectors for b in pack_codes(v, be, ob)]
        mask_beats = -(-ve // cfg.bus_bits)
        got, _ = _drive(build_unit(cfg, "relu_mask"), {"i_stream": beats},
                        {"o_act": len(beats), "o_mask": mask_beats * len(vectors)}, self._rng, stall=self.stall)
        act = unpack_codes(got["o_act"], be, ob)[:z.numel()]
        mask = [m for i in range(len(vectors))
                for m in unpack_bitmap(got["o_mask"][i * mask_beats:(i + 1) * mask_beats], ve, cfg.bus_bits)]
        self.log.append(("relu_mask", len(beats)))
        return (torch.tensor(act, dtype=torch.int64).reshape(z.shape),
                torch.tensor(mask[:z.numel()], dtype=torch.bool).reshape(z.shape))

    def mask_apply(self, dx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        ob, be = cfg.operand_bits, cfg.bus_elems
        vectors = self._vectors(dx)
        masks = [[bool(m) for m in v] for v in self._vectors(mask.to(torch.int64))]
        data = [b for v in vectors for b in pack_codes(v, be, ob)]
        mbeats = [b for k in masks for b in bitmap_beats(k, cfg.bus_bits)]
        got, _ = _drive(build_unit(cfg, "mask_apply"), {"i_data": data, "i_mask": mbeats},
                        {"o_data": len(data)}, self._rng, stall=self.stall)
        self.log.append(("mask_apply", len(data)))
        return torch.tensor(unpack_codes(got["o_data"], be, ob)[:dx.numel()], dtype=torch.int64).reshape(dx.shape)

    # -- stochastic pruner -------------------------------------------------------------------------
    def prune(self, q: torch.Tensor, *, c_fixed: int, seed: int) -> tuple[torch.Tensor, int]:
        codes = q.flatten().tolist()
        unit = build_unit(self.config, "stochastic_pruner")
        ctrl = {"mode": PruneMode.TWO_PASS, "n": len(codes), "c_fixed": c_fixed}
        # The reseed is taken at once (i_seed is always ready); draws start after the summing pass.
        got, finals = _drive(unit, {"i_seed": [seed], "i_ctrl": [ctrl], "i_stream": codes + codes},
                             {"o_stream": len(codes)}, self._rng, stall=self.stall, read_after=("tau",))
        self.log.append(("stochastic_pruner", 2 * len(codes)))
        return torch.tensor(got["o_stream"], dtype=torch.int64).reshape(q.shape), int(finals["tau"])

    # -- top-K ---------------------------------------------------------------------------------------
    def topk(self, codes: torch.Tensor, *, k: int, slice_len: int) -> TopKOut:
        flat = codes.flatten().tolist()
        cmd = {"n": len(flat), "k": k, "slice_len": slice_len, "period": 1, "restart": 0, "force": 1}
        got, _ = _drive(build_unit(self.config, "topk"), {"i_cmd": [cmd], "i_data": flat},
                        {"o_data": len(flat), "o_status": 1}, self._rng, stall=self.stall)
        status = got["o_status"][0]
        self.log.append(("topk", len(flat)))
        values = torch.tensor([int(p.value) for p in got["o_data"]], dtype=torch.int64)
        keep = torch.tensor([bool(p.keep) for p in got["o_data"]], dtype=torch.bool)
        return TopKOut(values=values.reshape(codes.shape), keep=keep.reshape(codes.shape),
                       threshold=int(status.threshold), kept=int(status.kept))

    # -- ReSprop -------------------------------------------------------------------------------------
    def resprop(self, p: list[int], dy: list[int], *, n_samples: int, elems: int, sample: int,
                load: tuple[int, int], target_cp: int) -> ReSpropPass:
        cfg = self.config
        layout = resprop_command_layout(cfg.operand_bits, cfg.resprop_max_elems, cfg.resprop_max_batch)
        store = {"n_samples": 1, "elems": elems, "sample": 0, "dense": 1, "target": target_cp,
                 "load_thr": 0, "thr_mant": 0, "thr_exp": 0}
        sparse = {"n_samples": n_samples, "elems": elems, "sample": sample, "dense": 0, "target": target_cp,
                  "load_thr": 1, "thr_mant": load[0], "thr_exp": load[1]}
        got, _ = _drive(build_unit(cfg, "resprop"), {"i_cmd": [layout.const(store), layout.const(sparse)],
                                                     "i_dy": list(p) + list(dy)},
                        {"o_s": len(p) + len(dy), "o_done": 2}, self._rng, stall=self.stall)
        done = got["o_done"][1]
        self.log.append(("resprop", len(p) + len(dy)))
        # ``stored`` is not on the unit's ports; it restates the command (the step does not use it).
        return ReSpropPass(s=[int(v) for v in got["o_s"][len(p):]], nnz=int(done.nnz), thr_used=int(done.thr_used),
                           exp_after=int(done.thr_exp), stored=sample < n_samples)


def run_layer_chain(inputs: LayerInputs, config: StagConfig, *, seed: int = 0,
                    stall: float = 0.0) -> tuple[LayerStep, RtlBackend]:
    """The layer step of ``inputs.algo`` with every program and unit on the RTL of ``config``."""
    backend = RtlBackend(config, seed=seed, stall=stall)
    return layer_step(inputs, step_params(config), backend), backend
