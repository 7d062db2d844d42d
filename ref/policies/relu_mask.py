"""Sarma et al. 2021: BWI outputs masked by the forward ReLU mask of the layer input; exact.

If the layer input X is a ReLU output (``spec.input_is_relu``), BWI outputs at positions where
X == 0 (``X > 0`` is False) are not computed and are exactly 0: the previous ReLU's backward would
zero them anyway (PyTorch's ReLU gradient at 0 is 0). Input-type sparsity is skipped too: X in
FWD, dY in BWI, X and dY in BWW. A layer whose input is not a ReLU output (the first conv, which
takes the image) gets no output mask.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ref.policies.base import ForwardPlan, Policy


class ReluMaskPolicy(Policy):
    name = "relu_mask"
    skips: ClassVar[dict[str, tuple[bool, bool]]] = {"fwd": (True, False), "bwi": (True, False), "bww": (True, True)}

    def forward(self, x: torch.Tensor, w: torch.Tensor, training: bool) -> ForwardPlan:
        mask = (x > 0) if self.spec.input_is_relu else None
        plan = ForwardPlan(x_fwd=x, w_fwd=w, w_bwi=w, x_bww=x, out_mask=mask)
        if mask is not None:
            plan.trace["relu_mask_x"] = mask
        return plan

    def primary_operand(self) -> tuple[str, str]:
        return ("bwi", "mask")
