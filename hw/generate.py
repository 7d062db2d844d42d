"""Write a generated design to disk: Verilog, port metadata, resolved configuration, file lists.

Output goes to ``<out_root>/<name>/`` and is written atomically: everything is produced in a
temporary sibling directory that is renamed into place only when complete, so an error leaves
neither a partial directory nor a damaged earlier one. Output is deterministic (``emit_src=False``:
no absolute source paths in the Verilog), so two runs give byte-identical files.

Every module (the core top ``stag_<name>`` and each generated unit ``stag_<name>_<unit>``) gets a
FuseSoC core ``stag_<name>[_<unit>].core`` (:mod:`hw.fusesoc`) and its
own file list ``stag_<name>[_<unit>].f`` naming only the Verilog files it needs, so each can be
compiled alone; ``<name>.f`` lists every Verilog file of the design. :meth:`GeneratedDesign.files`
is the list of everything written.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from hw import fusesoc
from hw.config import StagConfig
from hw.lint_waivers import verilator_config
from hw.top import build_top
from hw.units import build_unit, unit_dependencies

__all__ = ["GeneratedDesign", "design_files", "generate", "render"]


@dataclass(frozen=True)
class GeneratedDesign:
    """Paths of one generated design (all inside ``directory``)."""

    config: StagConfig
    directory: Path

    @property
    def verilog(self) -> Path:
        return self.verilog_of(None)

    @property
    def ports(self) -> Path:
        return self.ports_of(None)

    def verilog_of(self, unit: str | None) -> Path:
        """Verilog of the top (``None``) or of a generated unit; one module family per file."""
        return self.directory / f"{self.config.module_name(unit)}.v"

    def sources_of(self, unit: str | None) -> list[Path]:
        """The Verilog files that together define ``unit``'s module (its own file first)."""
        return [self.verilog_of(unit), *(self.verilog_of(dep) for dep in unit_dependencies(unit))]

    def filelist_of(self, unit: str | None) -> Path:
        """File list of ``unit``'s module (``None``: the top): :meth:`sources_of`, one file name a
        line, relative to the list's own directory (Verilator: ``-F``)."""
        return self.directory / f"{self.config.module_name(unit)}.f"

    def ports_of(self, unit: str | None) -> Path:
        suffix = "" if unit is None else f".{unit}"
        return self.directory / f"{self.config.name}{suffix}.ports.json"

    @property
    def modules(self) -> tuple[str | None, ...]:
        """The top (``None``) followed by every generated unit."""
        return (None, *self.config.units)

    def core_of(self, unit: str | None) -> Path:
        """FuseSoC CAPI2 description of ``unit``'s module (``None``: the top); see :mod:`hw.fusesoc`."""
        return self.directory / f"{self.config.module_name(unit)}.core"

    @property
    def lint_waivers(self) -> Path:
        """Verilator configuration file with the lint waivers, used by the cores' ``lint`` targets."""
        return self.directory / fusesoc.waiver_name(self.config)

    @property
    def smoke_testbench(self) -> Path | None:
        """The AXI top's self-checking smoke testbench (its core's ``sim`` target), if it is generated."""
        return self.directory / fusesoc.testbench_name(self.config) if "axi" in self.config.units else None

    @property
    def resolved_config(self) -> Path:
        return self.directory / f"{self.config.name}.config.json"

    @property
    def filelist(self) -> Path:
        """File list of every Verilog file of the design (the top's and every unit's)."""
        return self.directory / f"{self.config.name}.f"

    def files(self) -> list[tuple[Path, str]]:
        """Every file :func:`generate` writes, in order, each with a short description of it."""
        listed: list[tuple[Path, str]] = []
        for unit in self.modules:
            module = self.config.module_name(unit)
            role = ("the core" if unit is None else
                    f"unit axi, the AXI top around {self.config.top_name}" if unit == "axi" else f"unit {unit}")
            sources = " ".join(path.name for path in self.sources_of(unit))
            listed += [(self.verilog_of(unit), f"module {module} ({role})"),
                       (self.ports_of(unit), f"ports of {module}"),
                       (self.filelist_of(unit), f"file list of {module}: {sources}"),
                       (self.core_of(unit), f"FuseSoC core {fusesoc.core_name(self.config, unit)}")]
        if self.smoke_testbench is not None:
            role = f"AXI-Lite smoke testbench of {self.config.module_name('axi')} (its core's sim target)"
            listed.append((self.smoke_testbench, role))
        listed += [(self.lint_waivers, "Verilator lint waivers of the cores' lint targets"),
                   (self.resolved_config, "configuration: configured and derived values"),
                   (self.filelist, "file list of every Verilog file of the design")]
        return listed


def _json(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def _render_component(component, module: str) -> tuple[str, str]:
    """Verilog and port metadata (JSON text) of one top-level component."""
    # The signature describes the ports before elaboration; conversion elaborates the component.
    interface = component.metadata.as_json()
    text = verilog.convert(component, name=module, emit_src=False)
    ports = {
        "top": module,
        # Amaranth adds the `sync` domain's clock and synchronous active-high reset to the ports.
        "clock": "clk",
        "reset": {"name": "rst", "polarity": "high", "synchronous": True},
        **interface,
    }
    return text, _json(ports)


def _render_modules(config: StagConfig, units: list[str | None]) -> dict[str | None, tuple[str, str]]:
    """Verilog and port metadata of each of ``units`` (``None``: the top), in this process."""
    return {unit: _render_component(build_top(config) if unit is None else build_unit(config, unit),
                                    config.module_name(unit)) for unit in units}


def render(config: StagConfig) -> dict[str, str]:
    """The design's files as ``{file name: text}``, without touching the disk.

    With more than one CPU the units are converted in a second process while this one converts
    the top (the two take similar time); the output does not depend on it.
    """
    design = design_files(config, Path("."))
    units = [unit for unit in design.modules if unit is not None]
    if units and (os.cpu_count() or 1) > 1:
        # spawn, not fork: the caller may have threads (pytest-xdist, cocotb), which fork can deadlock.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = pool.submit(_render_modules, config, units)
            rendered = _render_modules(config, [None])
            rendered.update(pending.result())
    else:
        rendered = _render_modules(config, [None, *units])
    files: dict[str, str] = {}
    for unit in design.modules:
        text, ports = rendered[unit]
        files[design.verilog_of(unit).name] = text
        files[design.ports_of(unit).name] = ports
        # Paths are relative to the file list's own directory (Verilator: `-F`), so the directory
        # can be moved into any flow unchanged.
        files[design.filelist_of(unit).name] = "".join(f"{path.name}\n" for path in design.sources_of(unit))
        files[design.core_of(unit).name] = fusesoc.core_description(
            config, unit, [path.name for path in design.sources_of(unit)])
    if design.smoke_testbench is not None:
        files[design.smoke_testbench.name] = fusesoc.axi_smoke_testbench(config, json.loads(rendered["axi"][1]))
    files[design.lint_waivers.name] = verilator_config()
    files[design.resolved_config.name] = _json(config.resolved())
    files[design.filelist.name] = "".join(f"{design.verilog_of(u).name}\n" for u in design.modules)
    assert list(files) == [path.name for path, _ in design.files()]
    return files


def design_files(config: StagConfig, out_root: Path) -> GeneratedDesign:
    """Where ``generate(config, out_root)`` puts (or has put) the design."""
    return GeneratedDesign(config=config, directory=Path(out_root) / config.name)


def generate(config: StagConfig, out_root: str | Path = "rtl_out") -> GeneratedDesign:
    """Generate ``config`` into ``<out_root>/<config.name>/``, replacing an earlier one atomically."""
    out_root = Path(out_root)
    files = render(config)  # any elaboration error is raised before the disk is touched
    design = design_files(config, out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.name}.", suffix=".tmp", dir=out_root))
    try:
        for file_name, text in files.items():
            (staging / file_name).write_text(text, encoding="utf-8")
        if design.directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{config.name}.", suffix=".old", dir=out_root))
            design.directory.rename(retired / "design")
            staging.rename(design.directory)
            shutil.rmtree(retired)
        else:
            staging.rename(design.directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return design
