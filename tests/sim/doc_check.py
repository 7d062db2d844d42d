"""Reading the numbers of docs/*.md for the tests that check them against the generated design.

Imported by module name (tests/sim is on sys.path), like ``tests/ref/ref_testutil.py``. A checked
table or passage follows an HTML comment marker, ``<!-- name: checked ... -->``; :func:`table`
parses the first markdown table after it, :func:`after` returns the text. :func:`formula`
evaluates a width formula as the docs write it (``2*operand_bits + log2(max_reduction)``,
``bits(resprop_words)``) over a configuration's fields and derived values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from hw.config import StagConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_PIPE = re.compile(r"(?<!\\)\|")


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def after(text: str, marker: str) -> str:
    """The text after ``marker`` (which must occur exactly once)."""
    assert text.count(marker) == 1, f"marker {marker!r} occurs {text.count(marker)} times"
    return text[text.index(marker) + len(marker):]


def table(text: str, marker: str) -> list[dict[str, str]]:
    """The first markdown table after ``marker`` (before the next heading): one dict per body row,
    header -> cell text with the surrounding spaces removed (backticks kept). Repeated headers (a
    table folded into two halves) get a suffix ``#2``."""
    lines = []
    for line in after(text, marker).splitlines()[1:]:
        if line.startswith("|"):
            lines.append(line)
        elif lines or line.startswith("#"):
            break
    assert len(lines) >= 3, f"no table after {marker!r}"
    header = _cells(lines[0])
    seen: dict[str, int] = {}
    keys = []
    for name in header:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    assert set(_cells(lines[1])) <= {"---", ""}, lines[1]
    rows = []
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(keys), f"row {line!r} has {len(cells)} cells, the header {len(keys)}"
        rows.append(dict(zip(keys, cells, strict=True)))
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in _PIPE.split(line.strip().strip("|"))]


def unquote(cell: str) -> str:
    return cell.replace("`", "").strip()


def split_top(cell: str) -> list[str]:
    """``cell`` split at the commas outside parentheses and brackets, each part stripped."""
    parts, depth, current = [], 0, ""
    for char in cell:
        depth += char in "(["
        depth -= char in ")]"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


def hex_numbers(text: str) -> list[int]:
    return [int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", text)]


def namespace(config: StagConfig, **extra: int) -> dict[str, object]:
    """Every field and derived value of ``config`` by name, the docs' derived names (``groups``),
    ``extra`` (widths from the layouts or ports), and the functions the docs' formulas use."""
    names: dict[str, object] = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name, value in vars(StagConfig).items():
        if isinstance(value, property):
            names[name] = getattr(config, name)
    names["groups"] = config.tile_n // config.lanes
    names.update(extra)
    names.update(log2=math.log2, ceil=math.ceil, max=max, bits=int.bit_length, bit_length=int.bit_length)
    return names


def formula(expr: str, names: dict[str, object]) -> int:
    """The value of a doc formula such as ``lanes * (acc_bits + 1)``; it must be a whole number."""
    expr = unquote(expr)
    value = eval(compile(expr, "<doc formula>", "eval"), {"__builtins__": {}}, names)  # our own docs, no builtins
    assert float(value).is_integer(), f"{expr} = {value} is not a whole number"
    return int(value)
