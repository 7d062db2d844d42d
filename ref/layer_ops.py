"""The three training passes (FWD, BWI, BWW) of conv2d and linear layers as plain functions.

Policies and the work accountant call these on whatever operands they choose, so one geometry
object describes a layer's arithmetic once. Shapes (NCHW for conv):

- conv:   X [N, C, H, W], W [K, C, R, S], Y / dY [N, K, P, Q]
- linear: X [N, F],       W [O, F],       Y / dY [N, O]

FWD: ``Y = op(X, W)``; BWI: ``dX = op_input(dY, W)``; BWW: ``dW = op_weight(X, dY)``.
No bias is handled here; the bias gradient is ``bias_grad(dY)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PASSES: tuple[str, ...] = ("fwd", "bwi", "bww")


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution without groups or dilation (square stride and padding)."""

    stride: int = 1
    padding: int = 0
    kind: str = "conv"

    def fwd(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Y[n,k,p,q] = sum_{c,r,s} X[n,c,p*stride+r-pad, q*stride+s-pad] * W[k,c,r,s]."""
        return F.conv2d(x, w, None, self.stride, self.padding)

    def bwi(self, dy: torch.Tensor, w: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        """dX of shape ``x_shape`` (transposed convolution of dY with W)."""
        return torch.nn.grad.conv2d_input(x_shape, w, dy, self.stride, self.padding)

    def bww(self, x: torch.Tensor, dy: torch.Tensor, w_shape: torch.Size) -> torch.Tensor:
        """dW of shape ``w_shape`` (correlation of X with dY, summed over the batch)."""
        return torch.nn.grad.conv2d_weight(x, w_shape, dy, self.stride, self.padding)

    def bias_grad(self, dy: torch.Tensor) -> torch.Tensor:
        """db[k] = sum over n, p, q of dY."""
        return dy.sum(dim=(0, 2, 3))

    def bias_view(self, b: torch.Tensor) -> torch.Tensor:
        """Bias shaped to broadcast over Y."""
        return b.view(1, -1, 1, 1)


@dataclass(frozen=True)
class LinearGeometry:
    """A fully connected layer Y = X W^T."""

    kind: str = "linear"

    def fwd(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w.t()

    def bwi(self, dy: torch.Tensor, w: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        return dy @ w

    def bww(self, x: torch.Tensor, dy: torch.Tensor, w_shape: torch.Size) -> torch.Tensor:
        return dy.t() @ x

    def bias_grad(self, dy: torch.Tensor) -> torch.Tensor:
        return dy.sum(dim=0)

    def bias_view(self, b: torch.Tensor) -> torch.Tensor:
        return b.view(1, -1)


Geometry = ConvGeometry | LinearGeometry
