# amaranth: UnusedElaboratable=no
"""docs/core.md stays true: every configuration number and worked-example figure is checked here.

Each checked table follows a marker comment (``<!-- parameters: ... -->``) and is parsed from the
markdown, so a wrong number in the page fails a test: the presets' parameters, the derived widths
(their formulas too, on the presets and on other configurations), the port widths against the
generated ports, the command word's offsets against ``hw.layouts``, the counters' bit ranges, and
the worked example, whose code is run from the page and whose streams, results, counters and
timeline are compared with that code's output and with the core in the Amaranth simulator.
"""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest
import torch
from amaranth import Value
from amaranth.sim import Simulator
from doc_check import after, formula, hex_numbers, namespace, read, split_top, table, unquote

from hw.axi_top import config_registers
from hw.config import PRESETS, StagConfig, preset
from hw.core import SparseCore, counters_layout
from hw.layouts import OP_DRAIN, OP_GEMM, ROUNDING_CODES, core_command_layout_for
from sim.core_amaranth import run_core_amaranth
from sim.core_program import encode_program

DOC = "core.md"

#: Configurations the formulas are checked on besides the presets: other accumulator counts (the
#: ``acc`` field), lanes, widths and ReSprop sizes.
OTHER_CONFIGS = (
    StagConfig(name="a", operand_bits=6, max_reduction=256, counter_bits=24, lanes=4, tile_m=8, tile_n=8,
               tile_k=32, bus_elems=8, accumulators=5, resprop_max_elems=256, resprop_max_batch=100),
    StagConfig(name="b", operand_bits=3, max_reduction=16, counter_bits=8, lfsr_width=8, lfsr_taps=0xB8, lanes=1,
               tile_m=2, tile_n=2, tile_k=4, bus_elems=2, accumulators=16, resprop_max_elems=2,
               resprop_max_batch=1),
    dataclasses.replace(preset("default"), accumulators=3),
)
CONFIGS = (*PRESETS.values(), *OTHER_CONFIGS)


def _ports(config: StagConfig) -> dict[str, tuple[str, int]]:
    """Port name -> (dir, width) of the core as written to ``<name>.ports.json`` (the component's
    signature; Amaranth adds ``clk`` and ``rst``)."""
    ports = {"clk": ("in", 1), "rst": ("in", 1)}

    def walk(members: dict) -> None:
        for member in members.values():
            if member["type"] == "port":
                ports[member["name"]] = (member["dir"], member["width"])
            else:
                walk(member["members"])

    # What hw.generate writes: the metadata of hw.top.build_top(config), a SparseCore (made here so
    # that Amaranth's unused-elaboratable check sees this file's opt-out).
    walk(SparseCore(config).metadata.as_json()["interface"]["members"])
    return ports


def _design_widths(config: StagConfig) -> dict[str, int]:
    """The value of each row of the "Derived widths" table, measured on the generated design."""
    ports = _ports(config)
    layout = dict(core_command_layout_for(config))
    return {
        "acc_bits": config.acc_bits,
        "bus_bits (i_data width)": ports["i_data__payload"][1],
        "acc_index_bits": layout["acc"].width,
        "resprop_words (P words per bank)": config.resprop_words,
        "resprop_word_bits": layout["rs_word"].width,
        "resprop_sample_bits": layout["rs_sample"].width,
        "command width": ports["i_cmd__payload"][1],
        "o_data width (result_bits)": ports["o_data__payload"][1],
        "groups (column groups)": config.tile_n // config.lanes,
        "drain beats": config_registers(config)["drain_beats"],
        "counters width": ports["counters"][1],
    }


def _names(config: StagConfig) -> dict[str, object]:
    layout = dict(core_command_layout_for(config))
    return namespace(config, A=layout["acc"].width, W=layout["rs_word"].width, S=layout["rs_sample"].width)


def _bool(cell: str) -> bool:
    assert cell in ("true", "false"), cell
    return cell == "true"


# ---- configuration tables -----------------------------------------------------------------------------


def test_parameters_table_matches_the_presets():
    rows = table(read(DOC), "<!-- parameters:")
    seen = []
    for row in rows:
        fields = [unquote(f) for f in row["field"].split(",")]
        for name in ("tiny", "default"):
            values = [v.strip() for v in row[f"`{name}`"].split(",")]
            assert len(values) == len(fields), row
            for field, value in zip(fields, values, strict=True):
                want = getattr(preset(name), field)
                got = _bool(value) if isinstance(want, bool) else int(value)
                assert got == want, f"docs/core.md parameters: {field} for {name} is {value}, the preset has {want}"
        seen += fields
    assert seen == ["operand_bits", "max_reduction", "counter_bits", "lanes", "tile_m", "tile_n", "tile_k",
                    "bus_elems", "accumulators", "sparse"]


def test_derived_widths_table_matches_the_design():
    rows = table(read(DOC), "<!-- derived:")
    labels = [unquote(row["name"]) for row in rows]
    assert labels == list(_design_widths(preset("tiny"))), "rows added or removed: update _design_widths"
    for config in CONFIGS:
        design = _design_widths(config)
        names = _names(config)
        for row, label in zip(rows, labels, strict=True):
            assert formula(row["formula"], names) == design[label], \
                f"docs/core.md derived widths: {label} = {row['formula']} is wrong for {config}"
    for name in ("tiny", "default"):
        design = _design_widths(preset(name))
        for row, label in zip(rows, labels, strict=True):
            assert int(row[f"`{name}`"]) == design[label], \
                f"docs/core.md derived widths: {label} for {name} is {row[f'`{name}`']}, the design has {design[label]}"


def test_ports_table_matches_the_generated_ports():
    rows = table(read(DOC), "<!-- ports:")
    derived = {unquote(row["name"]): row["formula"] for row in table(read(DOC), "<!-- derived:")}
    listed = []
    for config in CONFIGS:
        ports, names = _ports(config), _names(config)
        listed = []
        for row in rows:
            port_names = [unquote(p) for p in row["port"].split(",")]
            widths = split_top(row["width"])
            if len(widths) == 1:
                widths = widths * len(port_names)
            assert len(widths) == len(port_names), row
            for port, width in zip(port_names, widths, strict=True):
                if width == "command width (above)":
                    width = derived["command width"]
                width = width.removeprefix("signed ")
                got = int(width) if width.isdigit() else formula(width, names)
                assert port in ports, f"docs/core.md ports: {port} is not a port of the core"
                assert ports[port] == (row["dir"], got), \
                    f"docs/core.md ports: {port} is {row['dir']} {got} bits, the design has {ports[port]} ({config})"
                listed.append(port)
        assert sorted(listed) == sorted(ports), "docs/core.md ports: the table and the design's ports differ"
    assert len(listed) == len(set(listed))


def test_command_word_table_matches_the_layout():
    rows = table(read(DOC), "<!-- command-word:")
    bits_column = "bits, `tiny` and `default` (`acc_index_bits = 1`)"
    for config in CONFIGS:
        layout = core_command_layout_for(config)
        names = _names(config)
        assert [unquote(row["field"]) for row in rows] == [name for name, _ in layout], "fields or their order"
        for row in rows:
            field = layout[unquote(row["field"])]
            width = unquote(row["width"])
            width = width.split("=")[0].strip() if "=" in width else width
            offset = re.sub(r"(\d)([A-Z])", r"\1*\2", row["offset (general)"])
            assert (formula(width, names), formula(offset, names)) == (field.width, field.offset), \
                f"docs/core.md command word: {row['field']} {row['width']} at {row['offset (general)']} ({config})"
    for row in rows:
        ranges = re.findall(r"\[(\d+)(?::(\d+))?\]", row[bits_column])
        assert len(ranges) in (1, 2), row
        for name, (high, low) in zip(("tiny", "default"), ranges * 2 if len(ranges) == 1 else ranges, strict=True):
            field = core_command_layout_for(preset(name))[unquote(row["field"])]
            low = high if low == "" else low
            assert (int(low), int(high)) == (field.offset, field.offset + field.width - 1), \
                f"docs/core.md command word: {row['field']} bits {row[bits_column]} for {name}"
    op = next(row for row in rows if row["field"] == "`op`")
    assert op["GEMM"] == f"{OP_GEMM} (`OP_GEMM`)" and op["DRAIN"] == f"{OP_DRAIN} (`OP_DRAIN`)"
    rounding = next(row for row in rows if row["field"] == "`rounding`")["DRAIN"]
    assert dict((name, int(code)) for code, name in re.findall(r"(\d) `(\w+)`", rounding)) == ROUNDING_CODES


def test_command_word_sizes_for_every_accumulator_count():
    text = read(DOC)
    rows = table(text, "<!-- acc-index:")
    covered = []
    for row in rows:
        spec = row["`accumulators`"]
        low, high = (int(x) for x in spec.split("..")) if ".." in spec else (int(spec.split(",")[0]),
                                                                              int(spec.split(",")[-1]))
        for accumulators in range(low, high + 1):
            config = dataclasses.replace(preset("tiny"), accumulators=accumulators)
            layout = core_command_layout_for(config)
            assert int(row["`A`"]) == config.acc_index_bits == layout["acc"].width, row
            for field in ("accumulate", "relu", "prune", "topk", "resprop"):
                assert row[f"`{field}`"] == f"[{layout[field].offset}]", (accumulators, field, row)
            assert row["fields through `resprop`"] == f"{layout['resprop'].offset + 1} bits", row
            covered.append(accumulators)
    assert covered == list(range(1, 17)), "accumulators 1..16 (hw.config) each in one row"
    # The word's width, stated in the text above the table.
    match = re.search(r"the word is `23 \+ A \+ 3W \+ S` bits wide: (\d+) for `tiny`, (\d+) for\s+`default`", text)
    assert match, "the sentence giving the command word's width"
    for name, width in zip(("tiny", "default"), match.groups(), strict=True):
        config = preset(name)
        assert int(width) == core_command_layout_for(config).size == formula("23 + A + 3*W + S", _names(config))


def test_counter_bit_ranges():
    text = after(read(DOC), "## Counters (`counters`)")
    text = text[:text.index("\n## ")]
    tiny = preset("tiny")
    layout = dict(counters_layout(tiny.counter_bits, tiny.lanes))
    match = re.search(r"For `tiny` \((\d+)-bit\s+counters\): (.*?)\. For `default` \((\d+)-bit counters\)"
                      r" `lane_busy\[j\]` is\s+`\[(\d+)\+(\d+)j : (\d+)\+(\d+)j\]`", text, re.S)
    assert match, "the counters' bit ranges"
    assert int(match[1]) == tiny.counter_bits
    ranges = re.findall(r"`(\w+)(?:\[(\d+)\])?` is `\[(\d+):(\d+)\]`", match[2])
    assert len(ranges) == 5 + tiny.lanes
    for name, index, high, low in ranges:
        field = layout[name]
        width = tiny.counter_bits
        offset = field.offset + (int(index) * width if index else 0)
        assert (int(low), int(high)) == (offset, offset + width - 1), f"docs/core.md counters: {name}[{index}]"
    default = preset("default")
    assert int(match[3]) == default.counter_bits
    lane_busy = dict(counters_layout(default.counter_bits, default.lanes))["lane_busy"].offset
    for j in range(default.lanes):
        high, low = int(match[4]) + int(match[5]) * j, int(match[6]) + int(match[7]) * j
        assert (low, high) == (lane_busy + j * default.counter_bits, lane_busy + (j + 1) * default.counter_bits - 1)


# ---- the worked example -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    """The worked example's code, run from the page: its names (cfg, A, B, M, program, enc, result)."""
    text = after(read(DOC), "<!-- worked-example:")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "no python block in the worked example"
    names: dict[str, object] = {}
    exec(compile(code[1], "docs/core.md worked example", "exec"), names)  # our own docs
    return names, text[:text.index("\n## ")]


def _trace(program, config):
    """Run ``program`` on the core in the Amaranth simulator with no stall and record, per cycle
    (cycle ``c`` ends at rising edge ``c``; cycle 0 takes the first command), what happened."""
    enc = encode_program(program, config)
    dut = SparseCore(config)
    trace = {"cmd": [], "data": [], "mac": [], "beat": [], "beats": [], "idle": None}

    async def bench(ctx):
        commands, data = list(enc.commands), list(enc.data)
        ctx.set(dut.o_data.ready, 1)
        for cycle in range(1000):
            ctx.set(dut.i_cmd.valid, bool(commands))
            ctx.set(Value.cast(dut.i_cmd.payload), commands[0] if commands else 0)
            ctx.set(dut.i_data.valid, bool(data))
            ctx.set(Value.cast(dut.i_data.payload), data[0] if data else 0)
            if len(trace["beats"]) == enc.drains * enc.drain_beats and ctx.get(dut.idle):
                trace["idle"] = cycle
                break
            cmd_taken, data_taken = commands and ctx.get(dut.i_cmd.ready), data and ctx.get(dut.i_data.ready)
            if ctx.get(dut.o_data.valid):
                trace["beat"].append(cycle)
                trace["beats"].append(ctx.get(Value.cast(dut.o_data.payload)))
            busy = sum(ctx.get(dut.counters.lane_busy[j]) for j in range(config.lanes))
            await ctx.tick()
            if sum(ctx.get(dut.counters.lane_busy[j]) for j in range(config.lanes)) > busy:
                trace["mac"].append(cycle)
            if cmd_taken:
                trace["cmd"].append(cycle)
                commands.pop(0)
            if data_taken:
                trace["data"].append(cycle)
                data.pop(0)
        trace["counters"] = {name: ctx.get(getattr(dut.counters, name)) for name in ("cycles", "macs_issued",
                                                                                     "macs_dense")}
        trace["counters"]["lane_busy"] = [ctx.get(dut.counters.lane_busy[j]) for j in range(config.lanes)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


def _elements(beat: int, bits: int, count: int) -> list[int]:
    values = [(beat >> (e * bits)) & ((1 << bits) - 1) for e in range(count)]
    return [v - (1 << bits) if v >> (bits - 1) else v for v in values]


def _ints(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"-?\d+", text)]


def test_worked_example_streams(example):
    names, text = example
    cfg, enc = names["cfg"], names["enc"]
    assert cfg == preset("tiny")
    # The opening sentence: the preset's sizes and the beat widths.
    intro = text[:text.index("```")]
    sizes = re.findall(r"`((?:\w+ = )+)(\d+)`", intro)
    assert len(sizes) == 7, sizes
    for chain, value in sizes:
        for field in chain.split(" = ")[:-1]:
            assert getattr(cfg, field) == int(value), f"docs/core.md worked example: {field} = {value}"
    match = re.search(r"\((\d+)-bit data\s+beats\).*?\((\d+)-bit result beats: two (\d+)-bit values and their two "
                      r"mask\s+bits\)", intro, re.S)
    assert match and [int(g) for g in match.groups()] == [cfg.bus_bits, cfg.result_bits, cfg.acc_bits]
    layout = core_command_layout_for(cfg)
    match = re.search(r"\*\*Commands\*\* \(`i_cmd__payload`, (\d+) bits;", text)
    assert match and int(match[1]) == layout.size
    commands = table(text, "**Commands**")
    assert [int(row["#"]) for row in commands] == list(range(len(enc.commands)))
    for row, word in zip(commands, enc.commands, strict=True):
        assert hex_numbers(row["word"]) == [word], row
        fields = dict(re.findall(r"(\w+)=(\d+)", row["fields"]))
        decoded = {name: (word >> field.offset) & ((1 << field.width) - 1) for name, field in layout}
        assert fields and all(decoded[name] == int(value) for name, value in fields.items()), (row, decoded)
        # Everything the row does not list is 0 (the heading says so for prune, topk, resprop, rs_*).
        assert all(value == 0 for name, value in decoded.items() if name not in fields), (row, decoded)
        for name, high, low in re.findall(r"(\w+)=\d+`(?: \w+)? \(bits? (\d+)(?::(\d+))?\)", row["fields"]):
            field = layout[name]
            if low:
                assert (int(low), int(high)) == (field.offset, field.offset + field.width - 1), (name, row)
            else:
                assert int(high) == field.offset, (name, row)
        kind = "GEMM" if decoded["op"] == OP_GEMM else "DRAIN"
        assert row["fields"].startswith(kind), row
    match = re.search(r"\*\*Data beats\*\* \(`i_data__payload`, (\d+) bits, element `e` at bits "
                      r"`\[(\d+)e, \d+e\+(\d+)\)`\): (\d+) beats", text)
    assert match and [int(g) for g in match.groups()] == [cfg.bus_bits, cfg.operand_bits, cfg.operand_bits,
                                                          len(enc.data)]
    indices = []
    for row in table(text, "**Data beats**"):
        beat = row["beat"]
        rows_of = (list(range(int(beat.split("..")[0]), int(beat.split("..")[1]) + 1)) if ".." in beat
                   else [int(b) for b in beat.split(",")])
        values = hex_numbers(row["value"])
        assert values == [enc.data[i] for i in rows_of], row
        indices += rows_of
        _check_data_content(row["content"], values, cfg)
    assert indices == list(range(len(enc.data)))


def _check_data_content(content: str, values: list[int], cfg) -> None:
    """The ``content`` column of a data beat row describes its ``values``."""
    elems = [_elements(v, cfg.operand_bits, cfg.bus_elems) for v in values]
    if "bitmap" in content and "mask" not in content:
        (value,) = values
        literal = re.search(r"`0b([01]+)`", content)
        if literal:
            assert int(literal[1], 2) == value, content
        ks = re.search(r"k = ([\d, ]+)", content)
        set_bits = [k for k in range(cfg.tile_k) if value >> k & 1]
        assert set_bits == (_ints(ks[1]) if ks else []), content
        assert ks or "empty" in content, content
    elif re.search(r"\bvalues? ", content):
        (value,) = values
        listed = re.split(r"\bvalues? ", content)[1].split(";")[0]      # "3, -2 (`e`), 1", "-8, 4 (two ...)"
        listed = _ints(re.sub(r"\(`\w`\)", "", listed).split("(")[0])
        assert elems[0][:len(listed)] == listed and all(e == 0 for e in elems[0][len(listed):]), content
    elif content.startswith("B column"):
        groups = content.split(":", 1)[1].split(";")
        assert len(groups) == len(values), content
        for group, beat in zip(groups, elems, strict=True):
            assert _ints(group.split("=")[-1]) == beat, content
    elif content.startswith("mask rows"):
        patterns = re.findall(r"`([01]+)`", content)
        assert [sum(int(b) << n for n, b in enumerate(p)) for p in patterns] == values, content
    else:
        raise AssertionError(f"unchecked data beat description: {content!r}")


def test_worked_example_results_and_timeline(example):
    names, text = example
    cfg, program, result = names["cfg"], names["program"], names["result"]
    A, B, M = names["A"], names["B"], names["M"]
    trace = _trace(program, cfg)
    # The expected products and tiles.
    match = re.search(r"`A·B = (\[.*?\]\])`", text, re.S)
    assert match and torch.equal(A @ B, torch.tensor(ast.literal_eval(match[1])))
    match = re.search(r"`C\[0\] = (\[.*?\]\])`", text, re.S)
    assert match and torch.equal(result.tiles[0], torch.tensor(ast.literal_eval(match[1])))
    assert torch.equal(result.tiles[0], torch.where(M, A @ B, 0))
    match = re.search(r"Each drain produces (\d+) beats \(`o_data__payload`, (\d+) bits: element 0 at `\[(\d+):0\]` "
                      r"is column `2g`,\s+element 1 at `\[(\d+):(\d+)\]` is column `2g\+1`, their mask bits "
                      r"`value > 0` at bits (\d+) and (\d+)\)", text)
    acc = cfg.acc_bits
    assert match and [int(g) for g in match.groups()] == [
        cfg.tile_m * cfg.tile_n // cfg.lanes, cfg.result_bits, acc - 1, 2 * acc - 1, acc, cfg.lanes * acc,
        cfg.lanes * acc + 1]
    # The result beats: the RTL's, decoded into the values shown and equal to ref's tiles.
    rows = table(text, "**Expected results.**")
    drain_beats = len(rows)
    assert drain_beats == cfg.tile_m * cfg.tile_n // cfg.lanes
    groups = cfg.tile_n // cfg.lanes
    for i, row in enumerate(rows):
        index, m, n0, n1 = _ints(row["beat (row, cols)"].replace("-", " "))
        assert (index, m, n0, n1) == (i, i // groups, (i % groups) * cfg.lanes, (i % groups + 1) * cfg.lanes - 1)
        for d, (beat_column, values_column) in enumerate((("drain 1 (raw)", "values"),
                                                          ("drain 2 (`>>1` half_even, 4 bits, ReLU)", "values#2"))):
            (beat,) = hex_numbers(row[beat_column])
            assert beat == trace["beats"][d * drain_beats + i], (row, hex(trace["beats"][d * drain_beats + i]))
            values = _elements(beat, acc, cfg.lanes)
            assert _ints(row[values_column]) == values == result.tiles[d][m, n0:n1 + 1].tolist(), row
            assert beat >> (cfg.lanes * acc) == sum((v > 0) << e for e, v in enumerate(values)), row
    # The dense core.
    dense = dataclasses.replace(cfg, sparse=False)
    dense_enc = encode_program(program, dense)
    match = re.search(r"On a dense core \(`sparse = false`\) the same program encodes command 0 as `(0x[0-9a-f]+)`"
                      r"\s+\(`a_bitmap = 0`\)\. A is then sent dense, (\d+) beats per row, so the data stream is "
                      r"again (\d+) beats\. It\s+issues all (\d+) MACs and drains the same tiles\.", text)
    assert match
    dense_run = run_core_amaranth(program, dense)
    assert int(match[1], 16) == dense_enc.commands[0]
    assert int(match[2]) == cfg.tile_k // cfg.bus_elems and int(match[3]) == len(dense_enc.data)
    assert int(match[4]) == dense_run.counters["macs_issued"] == cfg.tile_m * cfg.tile_n * cfg.tile_k
    assert all(torch.equal(a, b) for a, b in zip(dense_run.tiles, result.tiles, strict=True))
    # The counters.
    counters = trace["counters"]
    match = re.search(r"`macs_dense = (\d+)` \(`(\d+)\*(\d+)\*(\d+)`\)\. `macs_issued = (\d+)`.*?entries sum to (\d+);"
                      r".*?`lane_busy = \[(\d+), (\d+)\]`", text, re.S)
    assert match
    effectual = sum(c.effectual_macs for c in result.counts)
    assert int(match[1]) == counters["macs_dense"] == cfg.tile_m * cfg.tile_n * cfg.tile_k
    assert [int(match[i]) for i in (2, 3, 4)] == [cfg.tile_m, cfg.tile_n, cfg.tile_k]
    assert int(match[5]) == int(match[6]) == counters["macs_issued"] == effectual == sum(counters["lane_busy"])
    assert [int(match[7]), int(match[8])] == counters["lane_busy"]
    # The timeline: every bullet, and no other.
    timeline = after(text, "**Timeline**")
    bullets = re.findall(r"^- (.*)$", timeline, re.M)
    assert len(bullets) == 7, bullets
    patterns = {
        r"Cycle (\d+): command 0 accepted\.": lambda g: [int(g[0])] == trace["cmd"][:1],
        r"Cycles (\d+)–(\d+): the (\d+) data beats\.": lambda g: trace["data"] == list(range(int(g[0]), int(g[1]) + 1))
        and int(g[2]) == len(trace["data"]),
        r"Cycles (\d+)–(\d+): the two drains accepted and queued\.": lambda g: trace["cmd"][1:] == [int(g[0]),
                                                                                                   int(g[1])],
        r"Cycles (\d+)–(\d+): MACs issued \((\d+) MACs in (\d+) cycles on (\d+) lanes\)\.":
            lambda g: trace["mac"] == list(range(int(g[0]), int(g[1]) + 1)) and int(g[2]) == effectual
            and int(g[3]) == len(trace["mac"]) and int(g[4]) == cfg.lanes,
        r"Cycles (\d+)–(\d+): drain 1's beats\.": lambda g: trace["beat"][:drain_beats] == list(range(int(g[0]),
                                                                                                     int(g[1]) + 1)),
        r"Cycles (\d+)–(\d+): drain 2's beats\.": lambda g: trace["beat"][drain_beats:] == list(range(int(g[0]),
                                                                                                     int(g[1]) + 1)),
        r"`idle` from cycle (\d+); the `cycles` counter reads (\d+)\.":
            lambda g: int(g[0]) == trace["idle"] and int(g[1]) == counters["cycles"],
    }
    for bullet, (pattern, check) in zip(bullets, patterns.items(), strict=True):
        match = re.fullmatch(pattern, bullet)
        assert match, f"timeline bullet {bullet!r} does not read {pattern!r}"
        assert check(match.groups()), f"docs/core.md timeline: {bullet!r}; the RTL: {trace}"
