"""Row-wise 1-D decomposition of the three conv passes (the 1-D dataflow of Dai et al., §2.2).

Each pass is written as a sum over kernel rows ``r`` and taps ``s`` of 1-D row operations on the
zero-padded input, exactly the work split a 1-D PE sees (one input row x one kernel row). Shapes:
X [N, C, H, W], W [K, C, R, S], dY [N, K, P, Q]; ``Xp`` is X zero-padded by ``padding``.

- FWD: Y[n,k,p,q]   = sum_{c,r,s} Xp[n,c,p*st+r, q*st+s] * W[k,c,r,s]
- BWI: dXp[n,c,p*st+r, q*st+s] += dY[n,k,p,q] * W[k,c,r,s], then crop the padding
- BWW: dW[k,c,r,s]  = sum_{n,p,q} Xp[n,c,p*st+r, q*st+s] * dY[n,k,p,q]

These are slow loops meant for checking a lowering against ``ref.layer_ops.ConvGeometry``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _row_window(xp: torch.Tensor, r: int, s: int, stride: int, p: int, q: int) -> torch.Tensor:
    """Xp[:, :, r + stride*i, s + stride*j] for i < p, j < q -> [N, C, p, q]."""
    return xp[:, :, r : r + stride * (p - 1) + 1 : stride, s : s + stride * (q - 1) + 1 : stride]


def fwd_rows(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    xp = F.pad(x, (padding,) * 4)
    k, _, rr, ss = w.shape
    p = (xp.shape[2] - rr) // stride + 1
    q = (xp.shape[3] - ss) // stride + 1
    y = x.new_zeros(x.shape[0], k, p, q)
    for r in range(rr):
        for s in range(ss):
            y += torch.einsum("ncpq,kc->nkpq", _row_window(xp, r, s, stride, p, q), w[:, :, r, s])
    return y


def bwi_rows(dy: torch.Tensor, w: torch.Tensor, x_shape: torch.Size, stride: int, padding: int) -> torch.Tensor:
    n, c, h, wd = x_shape
    _, _, rr, ss = w.shape
    p, q = dy.shape[2:]
    dxp = dy.new_zeros(n, c, h + 2 * padding, wd + 2 * padding)
    for r in range(rr):
        for s in range(ss):
            contrib = torch.einsum("nkpq,kc->ncpq", dy, w[:, :, r, s])
            dxp[:, :, r : r + stride * (p - 1) + 1 : stride, s : s + stride * (q - 1) + 1 : stride] += contrib
    return dxp[:, :, padding : padding + h, padding : padding + wd]


def bww_rows(x: torch.Tensor, dy: torch.Tensor, w_shape: torch.Size, stride: int, padding: int) -> torch.Tensor:
    xp = F.pad(x, (padding,) * 4)
    k, c, rr, ss = w_shape
    p, q = dy.shape[2:]
    dw = x.new_zeros(k, c, rr, ss)
    for r in range(rr):
        for s in range(ss):
            dw[:, :, r, s] = torch.einsum("ncpq,nkpq->kc", _row_window(xp, r, s, stride, p, q), dy)
    return dw
