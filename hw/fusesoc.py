"""FuseSoC descriptions of a generated design: one CAPI2 ``.core`` file per top module.

FuseSoC is the package manager of open HDL: a directory holding ``.core`` files is a library that
``fusesoc --cores-root DIR`` reads, and each core's targets run through Edalize on any tool it
supports. :func:`generate <hw.generate.generate>` writes, beside each module's Verilog:

- ``stag_<name>[_<unit>].core``: the core ``stag:<name>:<module>:<version>`` with the module's own
  Verilog files (those of its ``.f`` file list) and three targets:

  ``default``  the sources and the top-level module, for a parent core that depends on this one;
  ``lint``     ``verilator --lint-only -Wall`` with the waiver file below (Verilator);
  ``sim``      for the AXI top, a self-checking smoke testbench (Icarus; below); for every other
               module, compiling and elaborating the module alone (Icarus).

- ``stag_<name>.vlt``: the lint waivers (:func:`hw.lint_waivers.verilator_config`), shared by the
  design's cores.
- ``tb_stag_<name>_axi.v`` (when the AXI top is generated): resets the top, then over AXI-Lite reads
  ID and VERSION, the IDLE bit of STATUS and every configuration readback register, writes and reads
  back SCRATCH, and checks every read's value and response. It prints ``PASS: ...`` and ends with
  ``$finish``, or prints each difference and ends with ``$fatal`` (a non-zero exit status, so
  ``fusesoc run`` fails); a watchdog ends a hung bus after 20,000 cycles.

The files hold no absolute paths, so the directory moves into any FuseSoC tree unchanged.
"""

from __future__ import annotations

from hw import axi_registers as regs
from hw.axi_top import config_registers
from hw.config import StagConfig

__all__ = ["CORE_VERSION", "axi_smoke_testbench", "core_description", "core_name", "testbench_name", "waiver_name"]

#: Version of every generated core (the generator's release).
CORE_VERSION = "0.1.0"

#: Clock cycles the smoke testbench waits for the whole check before it gives up.
WATCHDOG_CYCLES = 20_000


def core_name(config: StagConfig, unit: str | None) -> str:
    """VLNV of ``unit``'s core (``None``: the core top): ``stag:<name>:<module>:<version>``."""
    return f"stag:{config.name}:{config.module_name(unit)}:{CORE_VERSION}"


def waiver_name(config: StagConfig) -> str:
    return f"stag_{config.name}.vlt"


def testbench_name(config: StagConfig) -> str:
    return f"tb_{config.module_name('axi')}.v"


def core_description(config: StagConfig, unit: str | None, sources: list[str]) -> str:
    """The CAPI2 text of ``unit``'s core; ``sources`` are its Verilog file names, its own first."""
    module = config.module_name(unit)
    role = "the compute core" if unit is None else ("the AXI top level" if unit == "axi" else f"unit {unit}")
    smoke = unit == "axi"
    lines = [
        "CAPI=2:",
        f"name: {core_name(config, unit)}",
        f"description: STAG {role} of design {config.name} (module {module}), generated Verilog",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        *(f"      - {source}" for source in sources),
        "    file_type: verilogSource",
        "  lint_waivers:",
        "    files:",
        f"      - {waiver_name(config)}",
        "    file_type: vlt",
    ]
    if smoke:
        lines += [
            "  smoke_testbench:",
            "    files:",
            f"      - {testbench_name(config)}",
            "    file_type: verilogSource",
        ]
    lines += [
        "",
        "targets:",
        "  default:",
        "    filesets: [rtl]",
        f"    toplevel: {module}",
        "  lint:",
        "    description: verilator --lint-only -Wall with the generator's waivers",
        "    filesets: [rtl, lint_waivers]",
        f"    toplevel: {module}",
        "    default_tool: verilator",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        "        verilator_options: [-Wall]",
        "  sim:",
        ("    description: self-checking AXI-Lite smoke test (ID, VERSION, STATUS, configuration, SCRATCH)"
         if smoke else "    description: compile and elaborate the module alone"),
        f"    filesets: [rtl{', smoke_testbench' if smoke else ''}]",
        f"    toplevel: {'tb_' + module if smoke else module}",
        "    default_tool: icarus",
        "    tools:",
        "      icarus:",
        "        iverilog_options: [-g2012]",
    ]
    return "\n".join(lines) + "\n"


def axi_smoke_testbench(config: StagConfig, ports: dict) -> str:
    """Verilog of the AXI top's smoke testbench; ``ports`` is the top's port metadata (``.ports.json``)."""
    module = config.module_name("axi")
    members = ports["interface"]["members"]
    master = {"s_axil_awaddr": "awaddr", "s_axil_awvalid": "awvalid", "s_axil_wdata": "wdata",
              "s_axil_wstrb": "wstrb", "s_axil_wvalid": "wvalid", "s_axil_bready": "bready",
              "s_axil_araddr": "araddr", "s_axil_arvalid": "arvalid", "s_axil_rready": "rready"}
    connections = [f"    .{ports['clock']}(clk)", f"    .{ports['reset']['name']}(rst)"]
    wires = []
    for name, port in members.items():
        if port["dir"] == "out":
            wires.append(f"  wire [{port['width'] - 1}:0] {name};")
            connections.append(f"    .{name}({name})")
        elif name in master:
            connections.append(f"    .{name}({master[name]})")
        elif name.endswith("_tready"):
            connections.append(f"    .{name}(1'b1)")   # results are taken as they come
        else:
            connections.append(f"    .{name}({port['width']}'d0)")   # no command or data is offered
    checks = [f"    expect_read(12'h{regs.ID:03x}, 32'h{regs.ID_VALUE:08x}, \"ID\");",
              f"    expect_read(12'h{regs.VERSION:03x}, 32'h{regs.VERSION_VALUE:08x}, \"VERSION\");"]
    checks += [f"    read(12'h{regs.STATUS:03x}, data, resp);",
               f"    if (resp != 2'b00 || (data & 32'h{regs.STATUS_IDLE:x}) == 0) begin",
               "      $display(\"FAIL: STATUS = %h (response %b): the idle core must read IDLE\", data, resp);",
               "      errors = errors + 1;",
               "    end"]
    for field, value in config_registers(config).items():
        checks.append(f"    expect_read(12'h{regs.config_offset(field):03x}, 32'd{value}, \"{field}\");")
    checks += [f"    write(12'h{regs.SCRATCH:03x}, 32'hc0ffee42, 4'hf, resp);",
               "    if (resp != 2'b00) begin",
               "      $display(\"FAIL: SCRATCH write answered %b\", resp);",
               "      errors = errors + 1;",
               "    end",
               f"    expect_read(12'h{regs.SCRATCH:03x}, 32'hc0ffee42, \"SCRATCH\");",
               f"    write(12'h{regs.SCRATCH:03x}, 32'h00005a00, 4'h2, resp);",
               f"    expect_read(12'h{regs.SCRATCH:03x}, 32'hc0ff5a42, \"SCRATCH after a one-byte write\");"]
    return f"""// Smoke test of {module} over AXI-Lite, generated by STAG (hw/fusesoc.py): the FuseSoC core's
// `sim` target. Prints PASS and ends with $finish, or prints each difference and ends with $fatal.
`timescale 1ns / 1ps
module tb_{module};
  reg clk = 1'b0;
  reg rst = 1'b1;
  always #5 clk = ~clk;

  reg [{regs.ADDR_BITS - 1}:0] awaddr = 0, araddr = 0;
  reg awvalid = 1'b0, wvalid = 1'b0, bready = 1'b0, arvalid = 1'b0, rready = 1'b0;
  reg [31:0] wdata = 0;
  reg [3:0] wstrb = 0;
{chr(10).join(wires)}

  {module} dut (
{("," + chr(10)).join(connections)}
  );

  integer errors = 0;
  reg [31:0] data;
  reg [1:0] resp;

  // One AXI-Lite write: address and data offered together, each held until taken, then the response.
  task write(input [{regs.ADDR_BITS - 1}:0] address, input [31:0] value, input [3:0] strobes, output [1:0] response);
    reg address_taken, data_taken;
    begin
      @(posedge clk);
      awaddr <= address; awvalid <= 1'b1; wdata <= value; wstrb <= strobes; wvalid <= 1'b1; bready <= 1'b1;
      address_taken = 1'b0; data_taken = 1'b0;
      while (!(address_taken && data_taken)) begin
        @(posedge clk);
        if (awvalid && s_axil_awready) begin address_taken = 1'b1; awvalid <= 1'b0; end
        if (wvalid && s_axil_wready) begin data_taken = 1'b1; wvalid <= 1'b0; end
      end
      while (!s_axil_bvalid) @(posedge clk);
      response = s_axil_bresp;
      @(posedge clk);
      bready <= 1'b0;
    end
  endtask

  // One AXI-Lite read: the address held until taken, then the data and its response.
  task read(input [{regs.ADDR_BITS - 1}:0] address, output [31:0] value, output [1:0] response);
    begin
      @(posedge clk);
      araddr <= address; arvalid <= 1'b1; rready <= 1'b1;
      @(posedge clk);
      while (!s_axil_arready) @(posedge clk);
      arvalid <= 1'b0;
      while (!s_axil_rvalid) @(posedge clk);
      value = s_axil_rdata;
      response = s_axil_rresp;
      @(posedge clk);
      rready <= 1'b0;
    end
  endtask

  task expect_read(input [{regs.ADDR_BITS - 1}:0] address, input [31:0] expected, input [8 * 40 - 1:0] what);
    begin
      read(address, data, resp);
      if (resp != 2'b00 || data !== expected) begin
        $display("FAIL: %0s at 0x%h reads %h (response %b), expected %h", what, address, data, resp, expected);
        errors = errors + 1;
      end
    end
  endtask

  initial begin
    repeat ({WATCHDOG_CYCLES}) @(posedge clk);
    $display("FAIL: the AXI-Lite checks did not finish within {WATCHDOG_CYCLES} cycles");
    $fatal(1);
  end

  initial begin
    repeat (4) @(posedge clk);
    rst <= 1'b0;
{chr(10).join(checks)}
    if (errors == 0) begin
      $display("PASS: {module}: ID, VERSION, STATUS, {len(regs.CONFIG_FIELDS)} configuration registers, SCRATCH");
      $finish;
    end
    $display("FAIL: %0d check(s) of {module} failed", errors);
    $fatal(1);
  end
endmodule
"""
