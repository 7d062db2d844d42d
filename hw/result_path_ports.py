"""The control ports of a core's result path: pruner, top-K threshold and ReSprop.

Both cores (``hw.core.SparseCore`` and ``hw.vector_core.VectorCore``) carry the same result path
behind their drain, so they expose the same ports, driven by the AXI-Lite registers or a
testbench. One definition keeps their names, widths and directions identical.
"""

from __future__ import annotations

from amaranth import signed
from amaranth.lib.wiring import In, Out

from hw.resprop import EXP_BITS as RESPROP_EXP_BITS
from hw.resprop import TARGET_BITS as RESPROP_TARGET_BITS


def result_path_ports(params) -> dict:
    """Signature members of the result-path controls for ``params``.

    ``params`` is a :class:`hw.config.StagConfig` or :class:`hw.vector_core.VectorCoreParams`:
    anything with ``operand_bits``, ``lfsr_width``, ``prune_tau_bits``, ``prune_sum_bits`` and the
    ``resprop_*`` sizes (``resprop_words``, ``resprop_max_elems``, ``resprop_sample_bits``,
    ``resprop_nnz_bits``). The pruner's ``prune_*`` and ReSprop's ``resprop_*`` fields are
    described in ``hw.drain_prune`` and ``hw.drain_resprop``; ``topk_threshold`` is the SWAT
    magnitude threshold of a top-K drain.
    """
    return {
        "topk_threshold": In(params.operand_bits),
        "prune_tau": In(params.prune_tau_bits),
        "prune_seed": In(params.lfsr_width),
        "prune_load": In(1),
        "prune_sum": Out(params.prune_sum_bits),
        "resprop_load": In(1),
        "resprop_mant": In(params.operand_bits),
        "resprop_exp": In(signed(RESPROP_EXP_BITS)),
        "resprop_target": In(RESPROP_TARGET_BITS),
        "resprop_rows": In(range(params.resprop_words + 1)),
        "resprop_cols": In(range(params.resprop_max_elems + 1)),
        "resprop_row_words": In(range(params.resprop_words + 1)),
        "resprop_samples": In(params.resprop_sample_bits),
        "resprop_sample": In(params.resprop_sample_bits),
        "resprop_dense": In(1),
        "resprop_nnz": Out(params.resprop_nnz_bits),
        "resprop_exp_next": Out(signed(RESPROP_EXP_BITS)),
        "resprop_p_addr": In(max(1, (params.resprop_max_elems - 1).bit_length())),
        "resprop_p_wdata": In(params.operand_bits),
        "resprop_p_we": In(1),
        "resprop_p_rdata": Out(params.operand_bits),
    }
