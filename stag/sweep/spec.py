"""A sweep's specification (``SPEC.toml``, docs/sweep.md) and the points it expands to.

A point is one configuration of one core (a base configuration with some fields set) evaluated on
one workload (a training iteration of one algorithm). Its key is a hash of everything that decides
its result: the core, every field of the resolved configuration, the workload and what is
evaluated (cycle model; synthesis and its settings). Two points with the same key are one point.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ref.policies.registry import ALGOS
from stag.sweep import cores

__all__ = ["SYNTH_MODES", "Point", "SpecError", "SweepSpec", "load_spec", "parse_spec"]

#: ``synth`` in a spec: false (cycle model only), "cells" (Yosys cell counts, no place and route),
#: true (cell counts and nextpnr's routed Fmax).
SYNTH_MODES = {False: "off", "cells": "cells", True: "route"}
#: What a key hashes besides the point; bump when the evaluation changes meaning.
EVALUATION_VERSION = 1
_TOP_KEYS = ("name", "description", "out", "workloads", "synth", "pnr_timeout_min", "grid")
_GRID_KEYS = ("core", "base")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class SpecError(ValueError):
    """An invalid sweep specification; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Point:
    """One configuration of one core on one workload.

    ``base`` and ``overrides`` (the grid's fields, in the spec's order) make ``fields``, every
    field of the configuration. ``synth``: "off", "cells" or "route".
    """

    core: str
    base: str
    overrides: tuple[tuple[str, Any], ...]
    fields_json: str
    workload: str
    synth: str
    pnr_timeout_min: float

    @property
    def fields(self) -> dict[str, Any]:
        return json.loads(self.fields_json)

    @property
    def config_key(self) -> str:
        """Hash of the configuration alone (its synthesis is shared by every workload)."""
        return _digest({"core": self.core, "fields": self.fields})

    @property
    def synth_key(self) -> str:
        """Hash of the configuration and how it is synthesized."""
        return _digest({"core": self.core, "fields": self.fields, "synth": self.synth,
                        "pnr_timeout_min": self.pnr_timeout_min if self.synth == "route" else None})

    @property
    def key(self) -> str:
        """The point's identity in ``results.jsonl``."""
        return _digest({"core": self.core, "fields": self.fields, "workload": self.workload,
                        "evaluate": {"version": EVALUATION_VERSION, "synth": self.synth_key if self.synth != "off"
                                     else None}})

    @property
    def label(self) -> str:
        """``core/base field=value ...`` (the grid's fields only)."""
        fields = " ".join(f"{k}={_show(v)}" for k, v in self.overrides)
        return f"{self.core}/{self.base}" + (f" {fields}" if fields else "")


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(_show, value)) + "]"
    return str(value)


@dataclass(frozen=True)
class Grid:
    core: str
    base: str
    fields: tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed ``SPEC.toml`` (see docs/sweep.md)."""

    name: str
    source: str
    out: Path
    workloads: tuple[str, ...]
    synth: str
    pnr_timeout_min: float
    grids: tuple[Grid, ...]
    description: str = ""

    @property
    def run_dir(self) -> Path:
        """Where the sweep's files go: ``<out>/<name>/``."""
        return self.out / self.name

    def points(self) -> list[Point]:
        """Every point, in order: each grid's cartesian product (its last field varying fastest),
        each configuration on every workload; repeats removed."""
        seen: set[str] = set()
        out: list[Point] = []
        for grid in self.grids:
            base = cores.base_fields(grid.core, grid.base)
            names = [name for name, _ in grid.fields]
            for values in itertools.product(*(vals for _, vals in grid.fields)):
                overrides = tuple(zip(names, values, strict=True))
                fields_json = json.dumps({**base, **dict(overrides)}, sort_keys=True)
                for workload in self.workloads:
                    point = Point(grid.core, grid.base, overrides, fields_json, workload, self.synth,
                                  self.pnr_timeout_min)
                    if point.key not in seen:
                        seen.add(point.key)
                        out.append(point)
        return out


def _error(source: str, key: str, message: str) -> SpecError:
    return SpecError(f"{source}: key '{key}': {message}")


def _parse_grid(source: str, where: str, table: Any) -> Grid:
    if not isinstance(table, dict):
        raise _error(source, where, f"expected a table of fields, got {type(table).__name__}")
    core = table.get("core", "sparse")
    if core not in cores.CORES:
        raise _error(source, f"{where}.core", f"expected one of {', '.join(map(repr, cores.CORES))}, got {core!r}")
    base = table.get("base", "default")
    if base not in cores.bases(core):
        raise _error(source, f"{where}.base", f"expected a base configuration of the {core} core: "
                                              f"{', '.join(map(repr, cores.bases(core)))}, got {base!r}")
    allowed = cores.core_fields(core)
    fields = []
    for name, value in table.items():
        if name in _GRID_KEYS:
            continue
        if name not in allowed:
            raise _error(source, f"{where}.{name}", f"not a field of the {core} core; its fields are "
                                                    f"{', '.join(allowed)} (and the keys core, base)")
        values = value if isinstance(value, list) else [value]
        if name == "units" and not (value and all(isinstance(v, list) for v in value)):
            values = [value]  # a list of names is one value; a list of such lists is the values
        if not values:
            raise _error(source, f"{where}.{name}", "expected a value or a non-empty list of values, got []")
        for item in values:
            if isinstance(item, dict):
                raise _error(source, f"{where}.{name}", f"expected values (numbers, booleans, strings, lists), "
                                                        f"got a table {item!r}")
        fields.append((name, tuple(values)))
    return Grid(core, base, tuple(fields))


def parse_spec(data: dict[str, Any], *, source: str = "sweep spec", root: Path | None = None) -> SweepSpec:
    """Check and parse a spec's table; raises :class:`SpecError` naming the first bad key.
    ``root``: relative ``out`` paths are taken from there (default: the current directory)."""
    unknown = [key for key in data if key not in _TOP_KEYS]
    if unknown:
        raise _error(source, unknown[0], f"unknown key; allowed keys are {', '.join(_TOP_KEYS)}")
    name = data.get("name")
    if name is None:
        raise _error(source, "name", "missing: the sweep needs a name (its results go to <out>/<name>/)")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _error(source, "name", f"expected lower-case letters, digits and '_', starting with a letter, at most "
                                     f"40 characters, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _error(source, "description", f"expected a string, got {description!r}")
    out = data.get("out", "runs/sweep")
    if not isinstance(out, str) or not out:
        raise _error(source, "out", f"expected a directory (a string), got {out!r}")
    workloads = data.get("workloads")
    if workloads is None:
        raise _error(source, "workloads", f"missing: list the algorithms to evaluate, from {', '.join(ALGOS)}")
    if (not isinstance(workloads, list) or not workloads or any(w not in ALGOS for w in workloads)
            or len(set(workloads)) != len(workloads)):
        raise _error(source, "workloads", f"expected a non-empty list of distinct algorithms from {', '.join(ALGOS)}, "
                                          f"got {workloads!r}")
    synth = data.get("synth", False)
    if not (isinstance(synth, bool) or synth == "cells"):
        raise _error(source, "synth", f"expected false (cycle model only), \"cells\" (Yosys cell counts) or true "
                                      f"(cells and routed Fmax), got {synth!r}")
    timeout = data.get("pnr_timeout_min", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _error(source, "pnr_timeout_min", f"expected a positive number of minutes, got {timeout!r}")
    grid = data.get("grid")
    if grid is None:
        raise _error(source, "grid", "missing: give the fields to sweep in a [grid] table (or [[grid]] tables)")
    tables = grid if isinstance(grid, list) else [grid]
    if not tables:
        raise _error(source, "grid", "expected at least one [[grid]] table")
    grids = tuple(_parse_grid(source, "grid" if not isinstance(grid, list) else f"grid[{i}]", table)
                  for i, table in enumerate(tables))
    out_path = Path(out)
    if root is not None and not out_path.is_absolute():
        out_path = root / out_path
    return SweepSpec(name=name, source=source, out=out_path, workloads=tuple(workloads), synth=SYNTH_MODES[synth],
                     pnr_timeout_min=float(timeout), grids=grids, description=description)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check ``SPEC.toml``; raises :class:`SpecError` (one line) when it is invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read sweep spec {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return parse_spec(data, source=str(path))
