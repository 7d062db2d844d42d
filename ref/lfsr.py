"""Bit-exact Galois LFSR, the uniform-random source of the stochastic pruner.

Definition (what the hardware must reproduce):

- State ``s``: a ``width``-bit unsigned integer, never 0. Bit 0 is the least significant bit.
- One *shift* (one clock of a serial Galois LFSR, right-shifting form)::

      out   = s & 1
      s     = s >> 1
      if out: s = s ^ taps

  ``taps`` is the feedback polynomial mask (bit ``width-1`` must be set). For example width 16
  with taps ``0xD008`` is the polynomial x^16 + x^15 + x^13 + x^4 + 1.
- One *draw* = ``width`` shifts; the value drawn is the state after them (hardware unrolls the
  ``width`` shifts into one XOR network per cycle). Draw i (i = 0, 1, ...) is ``A^(i+1) s0``
  where ``A = T^width`` and ``T`` is the one-shift map; the state after n draws is draw n-1.
- Uniform: ``u = s / 2**width``, so u lies on {1, ..., 2**width - 1} / 2**width. Over one
  full period of draws every nonzero state appears exactly once iff gcd(width, 2**width - 1) = 1
  (true for widths 8, 16, 32; not for 12, 24).
- Element order when a tensor consumes draws: draw i goes to element i of the tensor's
  row-major (C-contiguous) flattening.

All default taps are maximal-length (period 2**width - 1); ``is_maximal`` checks that exactly.
"""

from __future__ import annotations

import math

import numpy as np

# Right-shift Galois masks for maximal-length LFSRs (widths 2..32).
DEFAULT_TAPS: dict[int, int] = {
    2: 0x3, 3: 0x6, 4: 0xC, 5: 0x14, 6: 0x30, 7: 0x60, 8: 0xB8, 9: 0x110, 10: 0x240,
    11: 0x500, 12: 0xE08, 13: 0x1C80, 14: 0x3802, 15: 0x6000, 16: 0xD008, 17: 0x12000,
    18: 0x20400, 19: 0x72000, 20: 0x90000, 21: 0x140000, 22: 0x300000, 23: 0x420000,
    24: 0xE10000, 25: 0x1200000, 26: 0x2000023, 27: 0x4000013, 28: 0x9000000,
    29: 0x14000000, 30: 0x20000029, 31: 0x48000000, 32: 0x80200003,
}  # fmt: skip

MIN_WIDTH, MAX_WIDTH = 2, 32


def shift_once(state: int, taps: int) -> int:
    """One serial Galois shift (see module docstring)."""
    out = state & 1
    state >>= 1
    return state ^ taps if out else state


# A GF(2)-linear map on width-bit ints is stored as its columns: cols[j] = map(1 << j).
def _apply(cols: list[int], s: int) -> int:
    r, j = 0, 0
    while s:
        if s & 1:
            r ^= cols[j]
        s >>= 1
        j += 1
    return r


def _compose(a: list[int], b: list[int]) -> list[int]:
    """Columns of the map ``a o b`` (apply b first)."""
    return [_apply(a, c) for c in b]


def _power(cols: list[int], e: int) -> list[int]:
    width = len(cols)
    result = [1 << j for j in range(width)]
    base = cols
    while e:
        if e & 1:
            result = _compose(base, result)
        base = _compose(base, base)
        e >>= 1
    return result


def _shift_map(width: int, taps: int) -> list[int]:
    return [shift_once(1 << j, taps) for j in range(width)]


def _prime_factors(n: int) -> list[int]:
    f, p = [], 2
    while p * p <= n:
        if n % p == 0:
            f.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        f.append(n)
    return f


def is_maximal(width: int, taps: int) -> bool:
    """True iff the one-shift map has multiplicative order 2**width - 1 (maximal-length LFSR).

    Checks T^(2^w-1) = I and T^((2^w-1)/q) != I for each prime q dividing 2^w-1; a w x w matrix
    over GF(2) of order 2^w-1 has a primitive characteristic polynomial, so every nonzero state
    lies on the single cycle of length 2^w-1.
    """
    n = (1 << width) - 1
    t = _shift_map(width, taps)
    ident = [1 << j for j in range(width)]
    if _power(t, n) != ident:
        return False
    return all(_power(t, n // q) != ident for q in _prime_factors(n))


class GaloisLFSR:
    """A Galois LFSR with ``width``-shift draws (see module docstring for the exact recurrence)."""

    def __init__(self, width: int = 16, taps: int | None = None, seed: int = 1) -> None:
        if not isinstance(width, int) or not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be an int in [{MIN_WIDTH}, {MAX_WIDTH}], got {width!r}")
        if taps is None:
            taps = DEFAULT_TAPS[width]
        if not 0 < taps < (1 << width) or not (taps >> (width - 1)) & 1:
            raise ValueError(f"taps must be a {width}-bit mask with bit {width - 1} set, got {taps:#x}")
        if not 0 < seed < (1 << width):
            raise ValueError(f"seed must be in [1, 2**{width} - 1], got {seed}")
        self.width = width
        self.taps = taps
        self.state = seed
        self._draw_map = _power(_shift_map(width, taps), width)
        self._jump_tables: dict[int, np.ndarray] = {}

    # -- scalar interface (the reference definition) -------------------------------------------
    def shift(self) -> int:
        """Advance one serial shift; returns the new state."""
        self.state = shift_once(self.state, self.taps)
        return self.state

    def draw(self) -> int:
        """Advance ``width`` shifts; returns the new state (one draw)."""
        for _ in range(self.width):
            self.state = shift_once(self.state, self.taps)
        return self.state

    # -- vectorized interface (bit-identical to calling draw() n times) -----------------------
    def _tables(self, k: int) -> np.ndarray:
        """Byte lookup tables of A^(2^k): table[b, v] = A^(2^k)(v << 8b)."""
        if k not in self._jump_tables:
            cols = _power(self._draw_map, 1 << k)
            nbytes = (self.width + 7) // 8
            tab = np.zeros((nbytes, 256), dtype=np.uint64)
            for b in range(nbytes):
                for v in range(256):
                    tab[b, v] = _apply(cols, (v << (8 * b)) & ((1 << self.width) - 1))
            self._jump_tables[k] = tab
        return self._jump_tables[k]

    def _jump(self, states: np.ndarray, k: int) -> np.ndarray:
        tab = self._tables(k)
        out = np.zeros_like(states)
        for b in range(tab.shape[0]):
            out ^= tab[b][(states >> np.uint64(8 * b)) & np.uint64(0xFF)]
        return out

    def draw_many(self, n: int) -> np.ndarray:
        """The next ``n`` draws as a uint64 array (same values and end state as n draw() calls)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return np.zeros(0, dtype=np.uint64)
        first = np.array([_apply(self._draw_map, self.state)], dtype=np.uint64)
        states = first
        k = 0
        # Doubling: states[L:2L] = A^L states[0:L].
        while states.size < n:
            states = np.concatenate([states, self._jump(states, k)])
            k += 1
        states = states[:n]
        self.state = int(states[-1])
        return states

    def uniforms(self, shape: tuple[int, ...], dtype=None):
        """Uniforms u = state / 2**width as a torch tensor of ``shape`` (row-major draw order).

        ``dtype`` defaults to ``torch.float64``. torch is imported here, not at module level, so
        cocotb testbenches that only need the draws start without paying for the torch import.
        """
        import torch

        dtype = torch.float64 if dtype is None else dtype
        n = math.prod(shape)
        s = self.draw_many(n).astype(np.float64) / float(1 << self.width)
        return torch.from_numpy(s).reshape(tuple(shape)).to(dtype)
