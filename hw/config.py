"""The one configuration type of a generated STAG design: frozen, validated, with named presets.

Every field is checked when a :class:`StagConfig` is made, whether from Python, a preset or a TOML
file; an invalid value raises :class:`ConfigError` naming the field, the value and what is allowed.
Values that follow from others (accumulator width, counter widths) are properties, never fields, so
they cannot disagree with what they are derived from.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "UNITS", "ConfigError", "StagConfig", "load_config", "preset"]


class ConfigError(ValueError):
    """An invalid configuration: the message names the field, the value and what is allowed."""


#: Units that can be generated beside the top (see ``hw.units``).
UNITS: tuple[str, ...] = ("lfsr",)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    # bool is a subclass of int in Python; `operand_bits = true` in TOML must not mean 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(
            f"config field '{field}': expected an integer in {low}..{high}, "
            f"got {value!r} ({type(value).__name__})"
        )
    if not low <= value <= high:
        raise ConfigError(f"config field '{field}': expected an integer in {low}..{high}, got {value}")


def _check_power_of_two(field: str, value: int) -> None:
    if value & (value - 1):
        raise ConfigError(f"config field '{field}': expected a power of two, got {value}")


@dataclasses.dataclass(frozen=True)
class StagConfig:
    """Parameters of one generated accelerator design.

    Parameters
    ----------
    name:
        Design name: lower-case letters, digits and ``_``, starting with a letter, at most 40
        characters. It names the output directory ``rtl_out/<name>/`` and the Verilog top module
        ``stag_<name>``.
    operand_bits:
        Width of the signed two's-complement multiplier operands, 2..32 bits.
    max_reduction:
        Longest dot product (number of products) one accumulator must hold without overflow,
        a power of two in 1..2**24. It sets the accumulator guard bits.
    counter_bits:
        Width of each performance counter (MACs issued, MACs skipped), 8..64 bits. Counters wrap.
    units:
        Gradient-path units generated beside the top, each as its own Verilog module
        ``stag_<name>_<unit>``; any of :data:`UNITS`, no repeats. TOML: a list of strings.
    lfsr_width, lfsr_taps, lfsr_seed:
        The stochastic pruner's Galois LFSR (``hw.lfsr``): width 2..32 bits, right-shift feedback
        mask with bit ``lfsr_width - 1`` set (use a maximal-length one), reset state
        1..2**lfsr_width - 1.
    """

    name: str
    operand_bits: int = 8
    max_reduction: int = 4096
    counter_bits: int = 32
    units: tuple[str, ...] = ("lfsr",)
    lfsr_width: int = 16
    lfsr_taps: int = 0xD008
    lfsr_seed: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"config field 'name': expected lower-case letters, digits and '_', starting with a "
                f"letter, at most 40 characters, got {self.name!r}"
            )
        _check_int("operand_bits", self.operand_bits, 2, 32)
        _check_int("max_reduction", self.max_reduction, 1, 1 << 24)
        _check_power_of_two("max_reduction", self.max_reduction)
        _check_int("counter_bits", self.counter_bits, 8, 64)
        if isinstance(self.units, list):  # TOML arrays arrive as lists; the config stays hashable
            object.__setattr__(self, "units", tuple(self.units))
        if not isinstance(self.units, tuple) or not all(isinstance(u, str) for u in self.units):
            raise ConfigError(f"config field 'units': expected a list of unit names from "
                              f"{', '.join(UNITS)}, got {self.units!r}")
        unknown = [u for u in self.units if u not in UNITS]
        if unknown or len(set(self.units)) != len(self.units):
            raise ConfigError(f"config field 'units': expected distinct names from {', '.join(UNITS)}, "
                              f"got {list(self.units)!r}")
        _check_int("lfsr_width", self.lfsr_width, 2, 32)
        _check_int("lfsr_taps", self.lfsr_taps, 1, (1 << self.lfsr_width) - 1)
        if not (self.lfsr_taps >> (self.lfsr_width - 1)) & 1:
            raise ConfigError(f"config field 'lfsr_taps': expected a {self.lfsr_width}-bit feedback mask with "
                              f"bit {self.lfsr_width - 1} set, got {self.lfsr_taps:#x}")
        _check_int("lfsr_seed", self.lfsr_seed, 1, (1 << self.lfsr_width) - 1)

    @property
    def product_bits(self) -> int:
        """Width of one full signed product: ``2 * operand_bits``.

        The product of two b-bit signed values lies in ``[-(2**(2b-2) - 2**(b-1)), 2**(2b-2)]``;
        the positive extreme ``(-2**(b-1))**2 = 2**(2b-2)`` needs ``2b`` signed bits.
        """
        return 2 * self.operand_bits

    @property
    def acc_bits(self) -> int:
        """Accumulator width: product bits plus ``log2(max_reduction)`` guard bits (no overflow)."""
        return self.product_bits + (self.max_reduction.bit_length() - 1)

    @property
    def top_name(self) -> str:
        """Verilog module name of the design's top (prefixed: ``default`` is a Verilog keyword)."""
        return f"stag_{self.name}"

    def module_name(self, unit: str | None = None) -> str:
        """Verilog module of the top (``unit=None``) or of one generated unit."""
        return self.top_name if unit is None else f"{self.top_name}_{unit}"

    def to_dict(self) -> dict[str, Any]:
        """The configured fields (not the derived ones), in declaration order; JSON/TOML types."""
        fields = dataclasses.asdict(self)
        fields["units"] = list(self.units)
        return fields

    def resolved(self) -> dict[str, Any]:
        """Configured and derived values together, as written to ``<name>.config.json``."""
        return {
            "fields": self.to_dict(),
            "derived": {
                "product_bits": self.product_bits,
                "acc_bits": self.acc_bits,
                "top_name": self.top_name,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "configuration") -> StagConfig:
        """Build from a mapping (e.g. parsed TOML); unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of fields, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                f"allowed fields are {', '.join(known)}"
            )
        if "name" not in data:
            raise ConfigError(f"{source}: missing required field 'name'")
        return cls(**data)


PRESETS: dict[str, StagConfig] = {
    # Small enough that every cosimulation in `make test` builds and runs in seconds.
    "tiny": StagConfig(name="tiny", operand_bits=4, max_reduction=64, counter_bits=16,
                       lfsr_width=8, lfsr_taps=0xB8),
    # int8 operands and a 32-bit accumulator (8 + 8 + 16 guard bits), the usual int8 training core;
    # a 16-bit LFSR gives the pruner uniforms with a 2**-16 bias bound (ALGORITHMS.md section 6).
    "default": StagConfig(name="default", operand_bits=8, max_reduction=65536, counter_bits=32,
                          lfsr_width=16, lfsr_taps=0xD008),
}


def preset(name: str) -> StagConfig:
    """The named preset; an unknown name raises :class:`ConfigError` listing the presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"preset {name!r} does not exist; available presets are {', '.join(sorted(PRESETS))}"
        ) from None


def load_config(path: str | Path) -> StagConfig:
    """Read and validate a TOML configuration file (flat table of :class:`StagConfig` fields)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return StagConfig.from_dict(data, source=str(path))
