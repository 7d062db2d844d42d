// Behavioural simulation model of the Lattice ECP5 MULT18X18D, for Icarus Verilog and Verilator.
//
// Yosys ships only a blackbox of this primitive (share/lattice/cells_bb_ecp5.v), so Verilog that
// instantiates it (hw/mac.py, target "ecp5") cannot be simulated without a model. This one models
// ONLY the configuration hw.mac.PipelinedMultiplier uses:
//   - REG_INPUTA_CLK = REG_INPUTB_CLK = REG_PIPELINE_CLK = REG_OUTPUT_CLK = "CLK0", with each
//     register's CE and RST left at their defaults CE0 and RST0 (RESETMODE "SYNC");
//   - the multiplier only: A x B (C, SOURCEA/SOURCEB, the shift/cascade ports SRIA/SRIB/SROA/SROB
//     and the ROA/ROB/ROC outputs are not modelled; no cascade, MULT_BYPASS "DISABLED");
//   - signed or unsigned operands as SIGNEDA/SIGNEDB say (registered with their operand);
//     hw.mac ties both to 1.
//   - CLK1..CLK3, CE1..CE3, RST1..RST3 are accepted and ignored; GSR is not modelled (registers
//     start at zero, like the device after configuration).
// Latency: the product of A and B sampled on a rising CLK0 edge with CE0 = 1 is on P after the
// third such edge (input register, pipeline register, output register), all on CE0.
// Any other REG_* setting stops the simulation with an error instead of simulating wrongly.
module MULT18X18D(
    A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0, B17, B16, B15,
    B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0, C17, C16, C15, C14, C13, C12,
    C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3,
    CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0, P35, P34, P33, P32, P31, P30,
    P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11,
    P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0, SIGNEDP
);
    // Every parameter of the primitive, for drop-in use; only the REG_* ones are checked below.
    /* verilator lint_off UNUSEDPARAM */
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    /* verilator lint_on UNUSEDPARAM */

    // C, SOURCEA/B and the clock, enable and reset inputs 1..3 are accepted and ignored.
    /* verilator lint_off UNUSEDSIGNAL */
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0;
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0;
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0;
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB;
    input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0;
    /* verilator lint_on UNUSEDSIGNAL */
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
           P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0;
    output SIGNEDP;

    initial begin
        if (REG_INPUTA_CLK != "CLK0" || REG_INPUTB_CLK != "CLK0" || REG_PIPELINE_CLK != "CLK0" ||
            REG_OUTPUT_CLK != "CLK0" || REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" ||
            REG_PIPELINE_CE != "CE0" || REG_OUTPUT_CE != "CE0" || REG_INPUTA_RST != "RST0" ||
            REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0" || REG_OUTPUT_RST != "RST0" ||
            RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED") begin
            $display("%m: this MULT18X18D model covers only REG_INPUTA/INPUTB/PIPELINE/OUTPUT_CLK = CLK0");
            $display("%m: on CE0 and RST0, RESETMODE SYNC, MULT_BYPASS DISABLED");
            $finish;
        end
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};

    // Initial values: the state after configuration (the registers are also reset by RST0).
    /* verilator lint_off PROCASSINIT */
    reg [17:0] a_reg = 18'd0;
    reg [17:0] b_reg = 18'd0;
    reg signed_a_reg = 1'b0;
    reg signed_b_reg = 1'b0;
    reg [35:0] pipe_reg = 36'd0;
    reg [35:0] out_reg = 36'd0;
    reg signed_p_pipe = 1'b0;
    reg signed_p_out = 1'b0;
    /* verilator lint_on PROCASSINIT */

    // Operands extended to 36 bits as their SIGNED input says; the low 36 bits of the product of
    // two extended operands are the exact signed, unsigned or mixed product.
    wire [35:0] a_ext = {{18{signed_a_reg & a_reg[17]}}, a_reg};
    wire [35:0] b_ext = {{18{signed_b_reg & b_reg[17]}}, b_reg};
    wire [35:0] product = a_ext * b_ext;

    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 18'd0;
            b_reg <= 18'd0;
            signed_a_reg <= 1'b0;
            signed_b_reg <= 1'b0;
            pipe_reg <= 36'd0;
            out_reg <= 36'd0;
            signed_p_pipe <= 1'b0;
            signed_p_out <= 1'b0;
        end else if (CE0) begin
            a_reg <= a;
            b_reg <= b;
            signed_a_reg <= SIGNEDA;
            signed_b_reg <= SIGNEDB;
            pipe_reg <= product;
            out_reg <= pipe_reg;
            signed_p_pipe <= signed_a_reg | signed_b_reg;
            signed_p_out <= signed_p_pipe;
        end
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
            P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = out_reg;
    assign SIGNEDP = signed_p_out;
endmodule
