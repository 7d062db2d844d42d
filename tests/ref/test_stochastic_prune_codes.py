"""The integer pruner model agrees with the float policy rule on integer codes and draws / 2**w."""

from __future__ import annotations

import re

import pytest
import torch

from ref.lfsr import DEFAULT_TAPS, GaloisLFSR
from ref.numerics import qmax, tau_fixed, to_fixed
from ref.policies.stochastic_prune import stochastic_prune
from ref.stochastic_prune_codes import PrunerModel, mean_deviation_bound, prune_codes


def float_rule(q: torch.Tensor, tau: int, draws: torch.Tensor, width: int, bits: int) -> torch.Tensor:
    """The policy's float rule on the same values, then the model's one departure: a substituted
    +-tau saturates to +-qmax (passed-through codes stay as they are)."""
    u = draws.to(torch.float64) / float(1 << width)
    out = stochastic_prune(q.to(torch.float64), float(tau), u.reshape(q.shape))
    substituted = (out != q.to(torch.float64)) & (out != 0)
    out = torch.where(substituted, out.clamp(-qmax(bits), qmax(bits)), out)
    assert torch.equal(out, out.round())
    return out.to(torch.int64)


@pytest.mark.parametrize("bits,width", [(4, 8), (8, 16), (8, 8), (16, 32)])
def test_agrees_with_float_rule_on_random_codes_and_draws(bits, width):
    gen = torch.Generator().manual_seed(bits * 100 + width)
    low, high = -(1 << (bits - 1)), qmax(bits)
    for trial in range(40):
        n = 500
        q = torch.randint(low, high + 1, (n,), generator=gen)
        q[torch.rand(n, generator=gen) < 0.2] = 0
        q[:3] = low  # the most negative code
        draws = torch.randint(1, 1 << width, (n,), generator=gen, dtype=torch.int64)
        tau = int(torch.randint(0, 3 * (high + 1), (1,), generator=gen))  # below, at and above qmax
        got = prune_codes(q, tau, draws.numpy(), operand_bits=bits, lfsr_width=width)
        assert torch.equal(got, q if tau == 0 else float_rule(q, tau, draws, width, bits)), f"trial {trial}"


def test_ties_both_comparisons():
    """|g| == tau keeps g; |g| * 2**w == d * tau keeps (drop needs '<'); one step below drops."""
    width, bits, tau = 8, 8, 16
    q = torch.tensor([16, -16, 3, -3, 3, 0, -128], dtype=torch.int64)
    d = [255, 255, 48, 48, 49, 200, 1]  # 3 * 256 == 48 * 16 (tie); 49 * 16 > 768 drops
    got = prune_codes(q, tau, d, operand_bits=bits, lfsr_width=width)
    assert got.tolist() == [16, -16, 16, -16, 0, 0, -128]
    assert torch.equal(got, float_rule(q, tau, torch.tensor(d), width, bits))


def test_tau_zero_is_the_identity_and_draws_nothing():
    lfsr = GaloisLFSR(16, DEFAULT_TAPS[16], 99)
    model = PrunerModel(operand_bits=8, lfsr=lfsr)
    q = torch.tensor([[3, -4], [0, 7]], dtype=torch.int64)
    out, used = model.run(q, c_fixed=0, frac_bits=8, mode="two_pass")
    assert used == 0 and torch.equal(out, q) and lfsr.state == 99


def test_model_modes_use_own_and_previous_tau_and_draw_in_row_major_order():
    """Model == float rule with uniforms from GaloisLFSR.uniforms (the policy's own draw path)."""
    gen = torch.Generator().manual_seed(3)
    c = to_fixed(1.6448536269514715, 16)
    model = PrunerModel(operand_bits=8, lfsr=GaloisLFSR(16, DEFAULT_TAPS[16], 7))
    policy_lfsr = GaloisLFSR(16, DEFAULT_TAPS[16], 7)
    previous = 0
    for mode in ["two_pass", "previous", "previous", "two_pass", "previous"]:
        q = torch.randint(-40, 41, (3, 5, 4), generator=gen)
        own = tau_fixed(q, c, 16)
        out, used = model.run(q, c_fixed=c, frac_bits=16, mode=mode)
        assert used == (own if mode == "two_pass" else previous) and model.tau == own
        if used:
            u = policy_lfsr.uniforms(q.shape)
            want = stochastic_prune(q.to(torch.float64), float(used), u).to(torch.int64)
        else:
            want = q
        assert torch.equal(out, want)
        assert model.lfsr.state == policy_lfsr.state
        previous = own


def test_invalid_inputs():
    q = torch.tensor([1, 2], dtype=torch.int64)
    with pytest.raises(ValueError, match="one draw per element"):
        prune_codes(q, 3, [1], operand_bits=8, lfsr_width=8)
    with pytest.raises(ValueError, match="signed 4-bit codes"):
        prune_codes(torch.tensor([8]), 3, [1], operand_bits=4, lfsr_width=8)
    with pytest.raises(ValueError, match="8-bit unsigned"):
        prune_codes(q, 3, [1, 256], operand_bits=8, lfsr_width=8)
    with pytest.raises(ValueError, match="mode must be one of"):
        PrunerModel(operand_bits=8, lfsr=GaloisLFSR()).run(q, c_fixed=1, frac_bits=0, mode="next")


def test_mean_deviation_bound_is_bias_plus_standard_errors_and_rejects_bad_input():
    # tau = 7, g = -3: outputs are 0 or -7, variance 7 * 3 - 9 = 12; bias bound 7 / (2**4 - 1).
    assert mean_deviation_bound(-3, 7, lfsr_width=4, count=48, z=2.0) == pytest.approx(7 / 15 + 2.0 * 0.5)
    for g, tau in ((0, 7), (7, 7), (-9, 7)):
        with pytest.raises(ValueError, match=re.escape("0 < |g| < tau")):
            mean_deviation_bound(g, tau, lfsr_width=4, count=10, z=1.0)
    with pytest.raises(ValueError, match="count must be a positive int"):
        mean_deviation_bound(1, 7, lfsr_width=4, count=0, z=1.0)
