"""A short FST waveform of a window of cycles, not the whole run (Icarus Verilog).

:func:`wave_window_source` writes a small Verilog module, ``stag_wave_window``, that is elaborated
as a second root beside the design's top (``iverilog -s <top> -s stag_wave_window``). It counts
clock cycles the way :class:`sim.axi_driver.AxiAccelerator` does (cycle 0 is the last clock edge
with reset asserted) and dumps the top's signals only while the count is inside the window, so
the file stays small however long the run is. Its own ``cycle`` counter is dumped too, so the
waveform shows the cycle numbers that ``stag compare`` reports.

Plusargs (all needed to dump; without ``stag_wave_file`` the module does nothing):

``+stag_wave_file=PATH``  the FST file (Icarus writes FST when ``vvp`` gets ``-fst``, which the
                          cocotb runner passes when its test step has ``waves=True``);
``+stag_wave_reset=N``    count cycles from the N-th reset (1 = the first);
``+stag_wave_first=C`` / ``+stag_wave_last=C``   the window, in cycles since that reset.

``+stag_lane_log=PATH`` (optional, independent of the window): every result that leaves a PE
lane of the core after that reset, one line ``cycle lane payload`` (the payload as an unsigned
decimal of ``hw.sparse_lane.lane_result_layout``), so the caller can tell which lane computed an
output and what partial sum it produced. The lanes are reached by their instance names in the
generated Verilog (``<top>.core.lane<j>``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WAVE_MODULE", "wave_plusargs", "wave_window_source"]

#: Name of the extra root module.
WAVE_MODULE = "stag_wave_window"


def wave_window_source(top: str, directory: Path, *, lanes: int, core: str = "core") -> Path:
    """Write ``stag_wave_window.v`` for a design whose top module is ``top`` (an AXI top whose core
    instance is ``core`` and has ``lanes`` PE lanes); returns its path."""
    path = Path(directory) / f"{WAVE_MODULE}.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    lane_log = "\n".join(
        f"      if ({top}.{core}.lane{j}.o_result__valid && {top}.{core}.lane{j}.o_result__ready)\n"
        f"        $fdisplay(log_fd, \"%0d {j} %0d\", cycle, {top}.{core}.lane{j}.o_result__payload);"
        for j in range(lanes))
    path.write_text(f"""// Dumps {top} between two cycle numbers only (see sim/wave_window.py).
module {WAVE_MODULE};
  reg [8*1024-1:0] path, log_path;
  integer first, last, reset_wanted, resets, cycle, log_fd;
  reg enabled, in_reset, dumping;
  initial begin
    enabled = 0; in_reset = 0; dumping = 0; resets = 0; cycle = -1; log_fd = 0;
    first = 0; last = -1; reset_wanted = 1;
    if (!$value$plusargs("stag_wave_reset=%d", reset_wanted)) reset_wanted = 1;
    if ($value$plusargs("stag_lane_log=%s", log_path)) log_fd = $fopen(log_path, "w");
    if ($value$plusargs("stag_wave_file=%s", path)) begin
      if (!$value$plusargs("stag_wave_first=%d", first)) first = 0;
      if (!$value$plusargs("stag_wave_last=%d", last)) last = -1;
      enabled = 1;
      $dumpfile(path);
      $dumpvars(0, {top});
      $dumpvars(0, {WAVE_MODULE}.cycle);
      $dumpoff;
    end
  end
  always @(posedge {top}.clk) begin
    if ({top}.rst) begin
      if (!in_reset) resets = resets + 1;
      in_reset = 1;
      cycle = 0;
    end else begin
      in_reset = 0;
      if (cycle >= 0) cycle = cycle + 1;
    end
    if (enabled && resets == reset_wanted) begin
      if (!dumping && cycle == first) begin dumping = 1; $dumpon; end
      if (dumping && cycle == last + 1) begin dumping = 0; $dumpoff; $dumpflush; end
    end
    if (log_fd != 0 && resets == reset_wanted && !{top}.rst) begin
{lane_log}
      $fflush(log_fd);
    end
  end
endmodule
""", encoding="utf-8")
    return path


def wave_plusargs(fst: Path, *, reset: int, first: int, last: int, lane_log: Path | None = None) -> list[str]:
    """``vvp`` arguments that dump cycles ``first..last`` after the ``reset``-th reset to ``fst``
    (and, with ``lane_log``, log every lane result after that reset there)."""
    if not 1 <= reset or not 0 <= first <= last:
        raise ValueError(f"wave window: need reset >= 1 and 0 <= first <= last, got {reset}, {first}, {last}")
    args = [f"+stag_wave_file={Path(fst).resolve()}", f"+stag_wave_reset={reset}",
            f"+stag_wave_first={first}", f"+stag_wave_last={last}"]
    if lane_log is not None:
        args.append(f"+stag_lane_log={Path(lane_log).resolve()}")
    return args
