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

__all__ = ["MAX_ACC_BITS", "PRESETS", "UNITS", "ConfigError", "StagConfig", "load_config", "preset"]


class ConfigError(ValueError):
    """An invalid configuration: the message names the field, the value and what is allowed."""


#: Units that can be generated beside the top (see ``hw.units``): the core's MAC lane on its own
#: (for its standalone verification and synthesis) and the gradient-path units.
UNITS: tuple[str, ...] = ("pe_lane", "lfsr", "relu_mask", "mask_apply", "topk", "resprop",
                          "bitmap_encode", "bitmap_decode", "stochastic_pruner", "axi")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

#: Widest accumulator (``StagConfig.acc_bits``): ``ref.contract``'s int64 (its ``MAX_ACC_BITS``;
#: ``hw`` imports nothing of ``ref``, a test checks that the two agree).
MAX_ACC_BITS = 64


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
        Width of the signed two's-complement multiplier operands, 2..32 bits, and at most
        ``(64 - log2(max_reduction)) / 2``: the accumulator (:attr:`acc_bits`) is at most 64 bits.
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
    lanes:
        PE lanes of the sparse core, a power of two in 1..64; each retires one multiply-accumulate per cycle.
        ``tile_n`` must be a multiple of ``lanes`` (the accumulator banks are ``n mod lanes``).
    tile_m, tile_n, tile_k:
        The core's fixed tile sizes (``ref.contract.Program``): A is ``[tile_m, tile_k]``, B is
        ``[tile_k, tile_n]``. tile_m, tile_n in 1..256, tile_k in 1..1024 and a multiple of
        ``bus_elems``; ``tile_k`` may not exceed ``max_reduction``.
    bus_elems:
        Operand elements per beat of the core's data stream (its width is
        ``bus_elems * operand_bits`` bits), a power of two in 1..64.
    accumulators:
        Accumulator tiles held on chip (``TileGemm.acc`` / ``Drain.acc`` indices), 1..16.
    sparse:
        ``True`` generates the zero-skipping core (bitmap operands, scheduler, dispatcher);
        ``False`` the dense baseline from the same generator: every MAC is issued and only the
        dense operand format is accepted.
    topk_max_elems:
        Largest tensor (codes) the SWAT top-K threshold unit (``hw.topk_threshold``) stores on chip,
        2..2**20; its memory depth. The digits CNN's largest weight tensor (conv3) has 9216.
    resprop_max_elems, resprop_max_batch:
        The ReSprop unit (``hw.resprop``): depth of each of its two P banks, the largest
        K*P*Q of one sample, a power of two in 1..2**20 (the digits CNN's conv1 has 1024);
        and the largest batch N, 1..65535.
    prune_frac_bits, prune_count_bits:
        The stochastic pruner (``hw.stochastic_pruner``): fraction bits of its constant
        ``c_fixed = to_fixed(c, prune_frac_bits)``, 0..32 (c < 16); and the width of its element
        count, 1..32 (largest dY tensor 2**prune_count_bits - 1 elements).
    """

    name: str
    operand_bits: int = 8
    max_reduction: int = 4096
    counter_bits: int = 32
    units: tuple[str, ...] = ("pe_lane", "lfsr", "relu_mask", "mask_apply", "topk", "resprop",
                              "bitmap_encode", "bitmap_decode", "stochastic_pruner", "axi")
    lfsr_width: int = 16
    lfsr_taps: int = 0xD008
    lfsr_seed: int = 1
    lanes: int = 8
    tile_m: int = 16
    tile_n: int = 16
    tile_k: int = 64
    bus_elems: int = 8
    accumulators: int = 2
    sparse: bool = True
    topk_max_elems: int = 16384
    resprop_max_elems: int = 1024
    resprop_max_batch: int = 256
    prune_frac_bits: int = 16
    prune_count_bits: int = 24

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
        _check_int("lanes", self.lanes, 1, 64)
        _check_int("tile_m", self.tile_m, 1, 256)
        _check_int("tile_n", self.tile_n, 1, 256)
        _check_int("tile_k", self.tile_k, 1, 1024)
        _check_int("bus_elems", self.bus_elems, 1, 64)
        _check_int("accumulators", self.accumulators, 1, 16)
        _check_int("topk_max_elems", self.topk_max_elems, 2, 1 << 20)
        _check_int("resprop_max_elems", self.resprop_max_elems, 1, 1 << 20)
        _check_power_of_two("resprop_max_elems", self.resprop_max_elems)
        _check_int("resprop_max_batch", self.resprop_max_batch, 1, 65535)
        if self.resprop_max_elems < self.tile_n:
            # The core's result-path P memory holds rows of whole tiles (hw.core, resprop drains).
            raise ConfigError(f"config field 'resprop_max_elems': expected at least tile_n = {self.tile_n} "
                              f"(one output row of the core's P memory), got {self.resprop_max_elems}")
        _check_int("prune_frac_bits", self.prune_frac_bits, 0, 32)
        _check_int("prune_count_bits", self.prune_count_bits, 1, 32)
        if not isinstance(self.sparse, bool):
            raise ConfigError(f"config field 'sparse': expected true or false, got {self.sparse!r}")
        _check_power_of_two("bus_elems", self.bus_elems)
        _check_power_of_two("lanes", self.lanes)
        if self.tile_n % self.lanes:
            raise ConfigError(f"config field 'tile_n': expected a multiple of lanes = {self.lanes} (one "
                              f"accumulator bank per lane), got {self.tile_n}")
        if self.tile_k % self.bus_elems:
            raise ConfigError(f"config field 'tile_k': expected a multiple of bus_elems = {self.bus_elems} "
                              f"(whole operand words), got {self.tile_k}")
        if self.tile_k > self.max_reduction:
            # The accumulator must hold one whole tile's dot product without overflow.
            raise ConfigError(f"config field 'max_reduction': expected at least tile_k = {self.tile_k} "
                              f"(the accumulator must hold one tile's dot product), got {self.max_reduction}")
        if self.acc_bits > MAX_ACC_BITS:
            # The golden model (ref.contract) holds accumulators in int64; a wider one cannot be
            # verified, and the regression's programs could not even be made.
            guard = self.max_reduction.bit_length() - 1
            raise ConfigError(
                f"config field 'operand_bits': expected at most {(MAX_ACC_BITS - guard) // 2} with max_reduction = "
                f"{self.max_reduction} (the accumulator, 2 * operand_bits + log2(max_reduction) = {self.acc_bits} "
                f"bits, must fit the golden model's {MAX_ACC_BITS}-bit integers), got {self.operand_bits}")

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
    def bus_bits(self) -> int:
        """Width of one beat of the core's operand data stream: ``bus_elems * operand_bits``."""
        return self.bus_elems * self.operand_bits

    @property
    def result_bits(self) -> int:
        """Width of one beat of the core's result stream: ``lanes`` values of ``acc_bits`` bits and
        their ``lanes`` ReLU mask bits above them (``hw.core.SparseCore.o_data``)."""
        return self.lanes * (self.acc_bits + 1)

    @property
    def prune_tau_bits(self) -> int:
        """Width of the result-path pruner's ``tau``: ``operand_bits + 3``, as the stochastic
        pruner unit's (``c < 2**4`` times a mean below ``2**(operand_bits-1)``)."""
        return self.operand_bits + 3

    @property
    def prune_sum_bits(self) -> int:
        """Width of the result-path pruner's sum of ``|g|``: ``prune_count_bits + operand_bits``
        (exact for up to ``2**prune_count_bits - 1`` codes)."""
        return self.prune_count_bits + self.operand_bits

    @property
    def resprop_words(self) -> int:
        """Words of one bank of the core's result-path P memory (``hw.core``, resprop drains):
        ``resprop_max_elems / lanes``, each word ``lanes`` codes of one output row."""
        return self.resprop_max_elems // self.lanes

    @property
    def resprop_word_bits(self) -> int:
        """Bits of a word address in one P bank (the ``rs_*`` fields of a resprop drain command)."""
        return max(1, (self.resprop_words - 1).bit_length())

    @property
    def resprop_sample_bits(self) -> int:
        """Bits of a sample index or batch size, 0..resprop_max_batch."""
        return self.resprop_max_batch.bit_length()

    @property
    def resprop_nnz_bits(self) -> int:
        """Width of the result path's ReSprop nonzero count: up to ``resprop_max_batch *
        resprop_max_elems`` elements per pass."""
        return (self.resprop_max_batch * self.resprop_max_elems).bit_length()

    @property
    def acc_index_bits(self) -> int:
        """Bits of an accumulator index in a command (at least 1)."""
        return max(1, (self.accumulators - 1).bit_length())

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
                "bus_bits": self.bus_bits,
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
                       lfsr_width=8, lfsr_taps=0xB8, lanes=2, tile_m=4, tile_n=4, tile_k=8, bus_elems=4,
                       topk_max_elems=256, resprop_max_elems=64, resprop_max_batch=8,
                       prune_frac_bits=8, prune_count_bits=10),
    # int8 operands and a 32-bit accumulator (8 + 8 + 16 guard bits), the usual int8 training core;
    # a 16-bit LFSR gives the pruner uniforms with a 2**-16 bias bound (ALGORITHMS.md section 6).
    # 8 lanes on 16x16x64 tiles with 128-bit operand beats. The beat width is set by the sparse
    # case: at 10 % density a tile computes in ~205 cycles, while its dense operands take 256
    # beats at 8 elements per beat (the load could not hide behind compute) and 128 at 16
    # (measured with benchmarks/skip_efficiency.py; the cycle model predicts the same).
    "default": StagConfig(name="default", operand_bits=8, max_reduction=65536, counter_bits=32,
                          lfsr_width=16, lfsr_taps=0xD008, lanes=8, tile_m=16, tile_n=16, tile_k=64,
                          bus_elems=16),
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
