"""Simulation speed of the AXI top through cocotbext-axi: simulated cycles per wall-clock second.

Generates a preset, builds its AXI top for one simulator, and runs ``sim.tb_axi``'s program test on
one large random program without gaps or backpressure (so the rate is that of the driver's bulk
path). Prints the cycles, the wall time of the program run (from the first beat offered to the
core being idle; build and start-up excluded) and their ratio. A measurement, not a test::

    .venv/bin/python -m sim.axi_speed --preset default --sim verilator --gemms 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hw.config import preset
from hw.generate import generate
from ref.contract.random_programs import random_program
from sim.core_vectors import make_case, write_vectors
from sim.runner import build, run_cocotb


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    parser.add_argument("--gemms", type=int, default=64, help="GEMM commands (k_tiles=4 per drained tile)")
    parser.add_argument("--mode", default="all")
    parser.add_argument("--density", type=float, default=0.3)
    args = parser.parse_args(argv)
    config = preset(args.preset)
    k_tiles = 4
    program = random_program(mode=args.mode, density=args.density, tile_m=config.tile_m, tile_n=config.tile_n,
                             tile_k=config.tile_k, operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                             n_gemms=max(1, args.gemms // k_tiles), k_tiles=k_tiles, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        design = generate(config, root / "rtl")
        runner = build(design, args.sim, root / "build", unit="axi")
        case = make_case("speed", program, config)
        vectors = write_vectors(root / "vectors.json", [case])
        run = run_cocotb(runner, design, test_module="sim.tb_axi", testcase="test_programs", seed=1, unit="axi",
                         test_dir=root / "run", extra_env={"STAG_VECTORS": str(vectors.resolve()),
                                                          "STAG_SPEED_FILE": str(root / "speed.json")})
        assert run.tests == 1
        speed = json.loads((root / "speed.json").read_text())
    speed.update(preset=args.preset, sim=args.sim, commands=len(case.commands), data_beats=len(case.data),
                 result_beats=len(case.expected))
    print(f"{args.sim}, preset {args.preset}: {speed['commands']} commands, {speed['data_beats']} data beats, "
          f"{speed['result_beats']} result beats: {speed['cycles']} cycles in {speed['seconds']:.2f} s = "
          f"{speed['cycles_per_second']:.0f} simulated cycles/s")
    return speed


if __name__ == "__main__":
    main()
