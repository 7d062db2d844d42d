# amaranth: UnusedElaboratable=no
"""docs/interface.md stays true: every configuration number and worked-example figure is checked,
its register table matches ``hw.axi_registers`` and its cocotb example runs.

Each checked table follows a marker comment (``<!-- config-registers: ... -->``) and is parsed from
the markdown (``doc_check``), so a wrong number in the page fails a test: the configuration
registers, the port widths against the generated AXI top's ports, the padding, the counters, the
unmapped addresses, the file lists, the reset values (read from the RTL after a one-edge reset) and
the worked example's streams, frames and registers (run on the AXI top in the Amaranth simulator).
The cocotb example is extracted from the markdown (the ```python block after the ``runnable``
marker), written to a module and run on the ``tiny`` AXI top in Icarus, so the document cannot
drift from the driver or the RTL.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from amaranth.sim import Simulator
from doc_check import after, formula, hex_numbers, namespace, split_top, table, unquote

from hw import axi_registers as regs
from hw.axi_top import AxiTop, config_registers
from hw.config import preset
from hw.generate import design_files
from hw.layouts import core_command_layout_for
from sim.core_program import decode_drain, encode_program
from sim.runner import run_cocotb

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "interface.md"
PRESET_NAMES = ("tiny", "default")
OKAY, SLVERR = 0, 2


def _after(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(marker)
    return text[start + len(marker):]


def _register_rows() -> dict[str, tuple[str, str, str]]:
    """name -> (offset, access, reset) from the register table after the register-map marker."""
    rows = {}
    for line in _after("<!-- register-map:").splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0] in ("offset", "---"):
            continue
        rows[cells[1]] = (cells[0], cells[2], cells[3])
    return rows


def test_register_table_matches_the_register_module():
    rows = _register_rows()
    for name in ("ID", "VERSION", "CTRL", "STATUS", "SNAPSHOT", "SCRATCH", "CMD_COUNT", "TILE_COUNT", "PRUNE_TAU",
                 "PRUNE_SEED", "PRUNE_SUM", "TOPK_THRESHOLD", "RESPROP_THR_MANT", "RESPROP_THR_EXP",
                 "RESPROP_TARGET", "RESPROP_ROWS", "RESPROP_COLS", "RESPROP_ROW_WORDS", "RESPROP_SAMPLES",
                 "RESPROP_SAMPLE", "RESPROP_CTRL", "RESPROP_LOAD", "RESPROP_NNZ", "RESPROP_EXP_NEXT",
                 "RESPROP_P_INDEX", "RESPROP_P_DATA"):
        assert int(rows[name][0], 16) == getattr(regs, name), name
    assert int(rows["ID"][2], 16) == regs.ID_VALUE
    assert int(rows["VERSION"][2], 16) == regs.VERSION_VALUE
    for field in regs.CONFIG_FIELDS:
        assert int(rows[field.upper()][0], 16) == regs.config_offset(field), field
    assert rows["COUNTER[f]_LO"][0] == f"{regs.counter_offset(0):#05x} + 8f"
    assert rows["COUNTER[f]_HI"][0] == f"{regs.counter_offset(0, high=True):#05x} + 8f"
    assert regs.counter_offset(1) - regs.counter_offset(0) == 8
    # Every row is a register the module knows, and none is missing.
    assert len(rows) == len(regs.MAPPED) + len(regs.CONFIG_FIELDS) + 2


def _example() -> str:
    rest = _after("<!-- runnable:")
    match = re.search(r"```python\n(.*?)```", rest, re.S)
    assert match, "no python block after the runnable marker"
    return match.group(1)


@pytest.mark.cosim
def test_cocotb_example_runs_on_tiny(built_designs, tmp_path, monkeypatch):
    module_dir = tmp_path / "example"
    module_dir.mkdir()
    (module_dir / "tb_doc_example.py").write_text(_example(), encoding="utf-8")
    # cocotb's runner hands the simulator this process's sys.path as PYTHONPATH.
    monkeypatch.syspath_prepend(str(module_dir))
    design, runner = built_designs("tiny", "icarus", unit="axi")
    run = run_cocotb(runner, design, test_module="tb_doc_example", seed=1, unit="axi", test_dir=tmp_path / "run")
    assert run.tests == 1


# ---- configuration numbers --------------------------------------------------------------------------


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """``text`` with every run of white space (line breaks too) made one space."""
    return " ".join(text.split())


def _axi_ports(config) -> dict[str, tuple[str, int]]:
    """Port name -> (dir, width) of the AXI top as written to ``<name>.axi.ports.json``."""
    # What hw.generate writes: the metadata of hw.units.build_unit(config, "axi") (made here so that
    # Amaranth's unused-elaboratable check sees this file's opt-out).
    members = AxiTop(config, core_module=config.module_name(None)).metadata.as_json()["interface"]["members"]
    return {"clk": ("in", 1), "rst": ("in", 1),
            **{m["name"]: (m["dir"], m["width"]) for m in members.values() if m["type"] == "port"}}


def _widths(config) -> dict[str, int]:
    w = regs.stream_widths(config)
    return {"cmd_bits": w.cmd_bits, "data_bits": w.data_bits, "result_bits": w.result_bits}


def test_configuration_registers_table_matches_the_design():
    rows = table(_text(), "<!-- config-registers:")
    seen = []
    for row in rows:
        for half in ("", "#2"):
            register = unquote(row[f"register{half}"])
            if not register:
                continue
            field = register.lower()
            for name in PRESET_NAMES:
                want = config_registers(preset(name))[field]
                assert int(row[f"`{name}`{half}"]) == want, \
                    f"docs/interface.md: {register} reads {want} on {name}, the page says {row[f'`{name}`{half}']}"
            seen.append(field)
    assert sorted(seen) == sorted(regs.CONFIG_FIELDS)


def test_register_formulas_match_the_configuration_registers():
    """The formulas in the register table's content column (``lanes * (acc_bits + 1)``, ...)."""
    checked = 0
    for line in _after("<!-- register-map:").split("\n\n")[0].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 5 or unquote(cells[1]).lower() not in regs.CONFIG_FIELDS:
            continue
        field = unquote(cells[1]).lower()
        for expr in re.findall(r"`([^`]*[*+/][^`]*)`", cells[4]):
            for name in PRESET_NAMES:
                config = preset(name)
                assert formula(expr, namespace(config, **_widths(config))) == config_registers(config)[field], \
                    f"docs/interface.md: {field} = {expr} on {name}"
            checked += 1
    assert checked == 4  # DATA_BITS, RESULT_BITS, DRAIN_BEATS, COUNTERS


def test_ports_table_matches_the_generated_ports():
    text = _text()
    rows = table(text, "<!-- ports:")
    widths_line = re.search(r"Widths: `cmd_bits = ([^`]*)`.*?`data_bits = ([^`]*)`, `result_bits = ([^`]*)`",
                            _flat(text))
    assert widths_line, "the width formulas above the ports table"
    for name in PRESET_NAMES:
        config = preset(name)
        ports, widths = _axi_ports(config), _widths(config)
        names = namespace(config, **widths)
        for key, expr in zip(("cmd_bits", "data_bits", "result_bits"), widths_line.groups(), strict=True):
            assert formula(expr, names) == widths[key], f"docs/interface.md: {key} = {expr} on {name}"
        listed = []
        for row in rows:
            port_names = []
            for part in split_top(row["port"]):
                # `s_axil_awvalid`/`awready`: the second name shares the first's `s_axil_` prefix.
                first, *rest = [unquote(p) for p in part.split("/")]
                port_names += [first, *(first[:first.rindex("_") + 1] + p for p in rest)]
            dirs = [d.strip() for d in row["dir"].split(",")] if row["dir"] else [None]
            dirs = dirs * len(port_names) if len(dirs) == 1 else dirs
            sizes = split_top(row["width"])
            sizes = sizes * len(port_names) if len(sizes) == 1 else sizes
            assert len(dirs) == len(sizes) == len(port_names), row
            for port, direction, size in zip(port_names, dirs, sizes, strict=True):
                assert port in ports, f"docs/interface.md ports: {port} is not a port of the AXI top"
                if size.startswith("bytes("):
                    bits = formula(size[len("bytes("):-1], names)
                    size = row[f"`{name}`"]
                    assert int(size) == 8 * -(-bits // 8), (port, name)
                got = (direction or ports[port][0], int(size))
                assert got == ports[port], f"docs/interface.md ports: {port} is {got}, the design has {ports[port]}"
                listed.append(port)
        assert sorted(listed) == sorted(ports), "docs/interface.md ports: the table and the design's ports differ"


def test_padding_table_matches_the_stream_widths():
    rows = {unquote(row["stream"]): row for row in table(_text(), "<!-- padding:")}
    assert set(rows) == {"s_axis_cmd", "s_axis_data", "m_axis_result"}
    for name in PRESET_NAMES:
        w = regs.stream_widths(preset(name))
        for stream, bits, tdata in (("s_axis_cmd", w.cmd_bits, w.cmd_tdata_bits),
                                    ("s_axis_data", w.data_bits, w.data_tdata_bits),
                                    ("m_axis_result", w.result_bits, w.result_tdata_bits)):
            cell = rows[stream]["padding (`tiny`, `default`)"]
            if cell == "none in either preset":
                assert bits == tdata, (stream, name)
                continue
            match = re.search(rf"(?:`tdata\[(\d+):(\d+)\]`|none) \(`{name}`\)", cell)
            assert match, (stream, name, cell)
            padding = None if match[1] is None else (int(match[1]), int(match[2]))
            assert padding == ((tdata - 1, bits) if tdata > bits else None), \
                f"docs/interface.md padding: {stream} on {name} is {cell}"


def test_counters_table_and_stream_figures():
    text = _text()
    rows = table(text, "<!-- counters:")
    seen = []
    for row in rows:
        for half in ("", "#2"):
            f, counter, offset = row[f"f{half}"], unquote(row[f"counter{half}"]), unquote(row[f"LO offset{half}"])
            if not f:
                continue
            for name in PRESET_NAMES:
                lanes = preset(name).lanes
                counters = regs.counter_names(lanes)
                if f == "5+j":
                    assert counter == "lane_busy[j]" and offset == "0x128 + 8j"
                    for j in range(lanes):
                        assert counters[5 + j] == f"lane_busy{j}" and regs.counter_offset(5 + j) == 0x128 + 8 * j
                else:
                    assert counters[int(f)] == counter.replace("[", "").replace("]", ""), row
                    assert int(offset, 16) == regs.counter_offset(int(f)), row
            seen.append(f)
    assert sorted(seen) == ["0", "1", "2", "3", "4", "5", "5+j"]
    # The command word's bit positions and the frame length in the stream descriptions.
    tiny = core_command_layout_for(preset("tiny"))
    stream = after(text, "**`s_axis_cmd`**")
    stream = _flat(stream[:stream.index("Commands run in order")])
    assert re.search(r"`op` at bit 0, `acc` from bit 1", stream) and tiny["acc"].offset == 1
    positions = re.findall(r"`(\w+)` \(bit (\d+)", stream)
    assert len(positions) == 4 and all(tiny[f].offset == int(b) for f, b in positions), positions
    for field, width in re.findall(r"`(\w+)` \((\d+)(?: bits)?\)", stream):
        assert tiny[field].width == int(width), field
    match = re.search(r"\((\d+) for `tiny`, (\d+) for `default`\)", after(text, "**`m_axis_result`**"))
    assert match and [int(g) for g in match.groups()] == [config_registers(preset(n))["drain_beats"]
                                                          for n in PRESET_NAMES]


def test_unmapped_addresses():
    """The words the page says answer SLVERR are exactly the unmapped ones of ``hw.axi_registers``
    (whose map tests/hw/test_axi_top.py checks against the RTL)."""
    text = after(_text(), "<!-- unmapped -->")
    text = _flat(text[:text.index("\n\n")])
    match = re.match(r"`(0x\w{3})`–`(0x\w{3})`, `(0x\w{3})`–`(0x\w{3})`, `(0x\w{3})`–`(0x\w{3})`, and from "
                     r"`COUNTER\[COUNTERS\]`, at `0x100 \+ 8\*COUNTERS`, to `0xFFC` \(`(0x\w{3})`–`0xFFC` for "
                     r"`tiny`, `(0x\w{3})`–`0xFFC` for `default`\)\.", text)
    assert match, text
    bounds = [int(g, 16) for g in match.groups()]
    generic = list(zip(bounds[0:6:2], bounds[1:6:2], strict=True))
    per_preset = dict(zip(PRESET_NAMES, bounds[6:], strict=True))
    for name in PRESET_NAMES:
        lanes = preset(name).lanes
        counters = config_registers(preset(name))["counters"]
        assert per_preset[name] == regs.counter_offset(counters) == 0x100 + 8 * counters
        unmapped = {*(a for lo, hi in generic for a in range(lo, hi + 4, 4)),
                    *range(regs.counter_offset(counters), 0x1000, 4)}
        assert unmapped == set(range(0, 0x1000, 4)) - set(regs.mapped_offsets(lanes)), name


def test_file_lists_table_matches_the_generator(tmp_path):
    rows = table(_text(), "<!-- file-lists:")
    config = preset("tiny")
    design = design_files(config, tmp_path)
    others = [u for u in config.units if u != "axi"]
    checked = set()
    for row in rows:
        module = unquote(row["module"].split(" (")[0])
        units = [None] if module == "stag_<name>" else ["axi"] if module == "stag_<name>_axi" else others
        for unit in units:
            def sub(text, unit=unit):
                return unquote(text).replace("<name>", config.name).replace("<unit>", str(unit))
            assert sub(module) == config.module_name(unit)
            assert sub(row["file list"]) == design.filelist_of(unit).name
            assert [sub(f) for f in row["Verilog files"].split(",")] == [p.name for p in design.sources_of(unit)], row
            checked.add(unit)
    assert checked == set(design.modules)


# ---- the RTL: reset values and the worked example ----------------------------------------------------


async def _read(ctx, top, offset):
    ctx.set(top.s_axil_araddr, offset)
    ctx.set(top.s_axil_arvalid, 1)
    ctx.set(top.s_axil_rready, 1)
    await ctx.tick().until(top.s_axil_arready)
    ctx.set(top.s_axil_arvalid, 0)
    await ctx.tick().until(top.s_axil_rvalid)
    value, resp = ctx.get(top.s_axil_rdata), ctx.get(top.s_axil_rresp)
    await ctx.tick()
    return value, resp


async def _write(ctx, top, offset, value):
    ctx.set(top.s_axil_awaddr, offset)
    ctx.set(top.s_axil_wdata, value)
    ctx.set(top.s_axil_wstrb, 0xF)
    ctx.set(top.s_axil_awvalid, 1)
    ctx.set(top.s_axil_wvalid, 1)
    ctx.set(top.s_axil_bready, 1)
    await ctx.tick().until(top.s_axil_awready)
    ctx.set(top.s_axil_awvalid, 0)
    ctx.set(top.s_axil_wvalid, 0)
    await ctx.tick().until(top.s_axil_bvalid)
    resp = ctx.get(top.s_axil_bresp)
    await ctx.tick()
    return resp


async def _stream(ctx, top, commands, data, beats):
    """Offer ``commands`` and ``data``, take result beats until ``beats`` arrived; returns
    [(tdata, tlast)] of each result beat."""
    commands, data, got = list(commands), list(data), []
    ctx.set(top.m_axis_result_tready, 1)
    for _ in range(100 * (len(data) + beats) + 1000):
        ctx.set(top.s_axis_cmd_tvalid, bool(commands))
        ctx.set(top.s_axis_cmd_tdata, commands[0] if commands else 0)
        ctx.set(top.s_axis_data_tvalid, bool(data))
        ctx.set(top.s_axis_data_tdata, data[0] if data else 0)
        cmd_taken = commands and ctx.get(top.s_axis_cmd_tready)
        data_taken = data and ctx.get(top.s_axis_data_tready)
        if ctx.get(top.m_axis_result_tvalid):
            got.append((ctx.get(top.m_axis_result_tdata), ctx.get(top.m_axis_result_tlast)))
        await ctx.tick()
        if cmd_taken:
            commands.pop(0)
        if data_taken:
            data.pop(0)
        if len(got) == beats:
            break
    ctx.set(top.s_axis_cmd_tvalid, 0)
    ctx.set(top.s_axis_data_tvalid, 0)
    assert len(got) == beats, f"{len(got)} of {beats} result beats"
    return got


def _simulate(top, bench):
    """Simulate ``top`` under ``bench(ctx, sync)``, ``sync`` the clock domain (its ``rst`` to drive)."""
    from amaranth import ClockDomain, Module

    m = Module()
    m.domains.sync = sync = ClockDomain()
    m.submodules.top = top
    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")

    async def testbench(ctx):
        await bench(ctx, sync)

    sim.add_testbench(testbench)
    sim.run()


def test_reset_values_after_one_reset_edge():
    """Every register is first moved off its reset value (a program run, every RW register
    written, a snapshot taken), then ``rst`` is high for one rising edge; every mapped register
    then reads the reset column of the register map."""
    config = preset("tiny")
    top = AxiTop(config)
    rows = _register_rows()
    reads: dict[int, tuple[int, int]] = {}
    mapped = regs.mapped_offsets(config.lanes)

    async def bench(ctx, sync):
        enc = encode_program(_example_program(config), config)
        await _stream(ctx, top, enc.commands, enc.data, enc.drains * enc.drain_beats)
        for offset in (regs.CTRL, regs.SCRATCH, regs.PRUNE_TAU, regs.PRUNE_SEED, regs.TOPK_THRESHOLD,
                       *regs.RESPROP_SETTINGS.values(), regs.RESPROP_P_INDEX):
            assert await _write(ctx, top, offset, 3) == OKAY
        assert await _write(ctx, top, regs.SNAPSHOT, regs.SNAPSHOT_TAKE) == OKAY
        assert (await _read(ctx, top, regs.counter_offset(0)))[0] != 0
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        for offset in mapped:
            reads[offset] = await _read(ctx, top, offset)

    _simulate(top, bench)
    config_values = config_registers(config)
    checked = 0
    for name, (offset, _, reset) in rows.items():
        if name.startswith("COUNTER[f]"):
            high = name.endswith("_HI")
            offsets = [regs.counter_offset(f, high) for f in range(config_values["counters"])]
        else:
            offsets = [int(offset, 16)]
        want = (config_values[name.lower()] if reset == "config" else config.lfsr_seed if reset == "lfsr_seed"
                else None if reset == "-" else int(reset, 16))
        for address in offsets:
            value, resp = reads[address]
            assert resp == OKAY, name
            if want is not None:
                assert value == want, f"docs/interface.md: {name} resets to {reset}, the RTL reads {value:#x}"
                checked += 1
    assert checked == len(mapped) - 3  # all but SNAPSHOT, RESPROP_LOAD (write-only) and RESPROP_P_DATA (memory)


def _example_program(config):
    """The worked example's program (docs/core.md), run from that page's code block."""
    text = after((ROOT / "docs" / "core.md").read_text(encoding="utf-8"), "<!-- worked-example:")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    names: dict[str, object] = {}
    exec(compile(code[1], "docs/core.md worked example", "exec"), names)  # our own docs
    assert names["cfg"] == config
    return names["program"]


def test_worked_example_figures():
    config = preset("tiny")
    program = _example_program(config)
    enc = encode_program(program, config)
    widths = regs.stream_widths(config)
    top = AxiTop(config)
    run: dict[str, object] = {}

    async def bench(ctx, sync):
        assert await _write(ctx, top, regs.CTRL, regs.CTRL_IRQ_EN) == OKAY
        run["beats"] = await _stream(ctx, top, enc.commands, enc.data, enc.drains * enc.drain_beats)
        await ctx.tick().repeat(3)
        for name, offset in (("CMD_COUNT", regs.CMD_COUNT), ("TILE_COUNT", regs.TILE_COUNT),
                             ("STATUS_IRQ_EN", regs.STATUS)):
            run[name] = (await _read(ctx, top, offset))[0]
        run["irq"] = ctx.get(top.irq)
        assert await _write(ctx, top, regs.CTRL, 0) == OKAY
        run["STATUS"] = (await _read(ctx, top, regs.STATUS))[0]
        assert await _write(ctx, top, regs.SNAPSHOT, regs.SNAPSHOT_TAKE) == OKAY
        run["counters"] = {f: (await _read(ctx, top, regs.counter_offset(f)))[0]
                           for f in range(len(regs.counter_names(config.lanes)))}

    _simulate(top, bench)
    text = after(_text(), "<!-- worked-example:")
    text = text[:text.index("###")]
    bullets = {b.split(":")[0].strip("`"): " ".join(b.split()) for b in re.findall(r"^- (.*?)(?=^- |\Z)", text,
                                                                                     re.M | re.S)}
    assert list(bullets) == ["s_axis_cmd", "s_axis_data", "m_axis_result", "Registers afterwards"]
    # Commands and data.
    match = re.search(r"(\d+) beats of (\d+) bits, (.*) \(the (\d+)-bit words of docs/core.md with "
                      r"`tdata\[(\d+):(\d+)\] = 0`\)", bullets["s_axis_cmd"])
    assert match and [int(match[i]) for i in (1, 2, 4, 5, 6)] == [
        len(enc.commands), widths.cmd_tdata_bits, widths.cmd_bits, widths.cmd_tdata_bits - 1, widths.cmd_bits]
    assert hex_numbers(match[3]) == list(enc.commands)
    match = re.search(r"the (\d+) beats of docs/core.md, (\d+) bits each \(no padding\): (.*)", bullets["s_axis_data"])
    assert match and [int(match[1]), int(match[2])] == [len(enc.data), widths.data_tdata_bits]
    assert widths.data_bits == widths.data_tdata_bits and hex_numbers(match[3]) == list(enc.data)
    # The result frames, from the RTL.
    beats = run["beats"]
    result = bullets["m_axis_result"]
    match = re.search(r"(\w+) frames of (\d+) beats, (\d+) bits each with `tdata\[(\d+):(\d+)\] = 0` and the mask "
                      r"bits at (\d+) and (\d+), `tlast` on beats (\d+) and (\d+)\.", result)
    assert match and match[1] == "two" and enc.drains == 2
    acc = config.acc_bits
    assert [int(g) for g in match.groups()[1:]] == [
        enc.drain_beats, widths.result_tdata_bits, widths.result_tdata_bits - 1, widths.result_bits,
        config.lanes * acc, config.lanes * acc + 1, *(i for i, (_, last) in enumerate(beats) if last)]
    assert all(tdata >> widths.result_bits == 0 for tdata, _ in beats)
    frames = re.search(r"Frame 1 \(raw\): (.*?)\. Frame 2 \(requantized\): (.*?)\. Decoded", result)
    assert frames
    for d, frame in enumerate(frames.groups()):
        values = [int(v, 0) for v in re.findall(r"`?(0x[0-9a-f]+|\d+)`?(?:,| \(tlast\)|$)", frame)]
        assert values == [tdata for tdata, _ in beats[d * enc.drain_beats:(d + 1) * enc.drain_beats]], frame
        assert frame.endswith("(tlast)") and frame.count("tlast") == 1
    tiles = re.search(r"raw `C\[0\] = (\[.*?\]\])`; requantized `(\[.*?\]\])`", result)
    assert tiles
    for d, literal in enumerate(tiles.groups()):
        frame = [tdata for tdata, _ in beats[d * enc.drain_beats:(d + 1) * enc.drain_beats]]
        assert torch.equal(decode_drain(frame, config), torch.tensor(ast.literal_eval(literal)))
    # The registers and counters, from the RTL.
    names = regs.counter_names(config.lanes)
    counters = {names[f]: value for f, value in run["counters"].items()}
    match = re.search(r"`CMD_COUNT = (\d+)`, `TILE_COUNT = (\d+)`, `STATUS = (0x\d)` \(IDLE, DONE; `(0x\d)` with "
                      r"`IRQ_EN` set, then `irq` is high\)\. After a snapshot: `macs_dense` \(`(0x\w+)`\) = (\d+) "
                      r"\(`(\d+)\*(\d+)\*(\d+)`\), `macs_issued` \(`(0x\w+)`\) = (\d+), the effectual MACs "
                      r"\(`ref.contract.evaluate`'s count\), and `lane_busy\[0\] \+ lane_busy\[1\] = (\d+)`\.",
                      bullets["Registers afterwards"])
    assert match
    g = match.groups()
    assert [int(g[0]), int(g[1]), int(g[2], 16), int(g[3], 16)] == [
        run["CMD_COUNT"], run["TILE_COUNT"], run["STATUS"], run["STATUS_IRQ_EN"]]
    assert run["STATUS"] == regs.STATUS_IDLE | regs.STATUS_DONE and run["irq"] == 1
    assert int(g[4], 16) == regs.counter_offset(names.index("macs_dense")) and int(g[5]) == counters["macs_dense"]
    assert [int(g[6]), int(g[7]), int(g[8])] == [config.tile_m, config.tile_n, config.tile_k]
    assert int(g[9], 16) == regs.counter_offset(names.index("macs_issued")) and int(g[10]) == counters["macs_issued"]
    assert int(g[11]) == counters["lane_busy0"] + counters["lane_busy1"] == counters["macs_issued"]
