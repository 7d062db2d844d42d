"""The small digits CNN built from policy layers.

Layout (input [N, 1, 8, 8]):

    conv1  1->16, 3x3, stride 1, pad 1  -> [N, 16, 8, 8]   (+BN) ReLU
    conv2 16->32, 3x3, stride 2, pad 1  -> [N, 32, 4, 4]   (+BN) ReLU
    conv3 32->32, 3x3, stride 1, pad 1  -> [N, 32, 4, 4]   (+BN) ReLU
    fc    512->10 (flattened)

Variant ``relu``: conv (with bias) -> ReLU. Variant ``bn_relu``: conv (no bias) -> BatchNorm2d
-> ReLU. conv1 takes the image (``input_is_relu=False``); every later layer's input is a ReLU
output.
"""

from __future__ import annotations

import torch
from torch import nn

from ref.layers import PolicyConv2d, PolicyLayer, PolicyLinear
from ref.policies.base import LayerSpec, Policy

VARIANTS: tuple[str, ...] = ("relu", "bn_relu")
CONV_CFG: tuple[tuple[int, int, int], ...] = ((1, 16, 1), (16, 32, 2), (32, 32, 1))  # (in, out, stride)


class DigitsCNN(nn.Module):
    """3 conv layers + linear head; every conv/linear is a ``PolicyLayer``."""

    def __init__(self, variant: str = "relu", num_classes: int = 10) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        bn = variant == "bn_relu"
        blocks: list[nn.Module] = []
        for i, (cin, cout, stride) in enumerate(CONV_CFG):
            conv = PolicyConv2d(cin, cout, 3, stride, 1, bias=not bn, name=f"conv{i + 1}", input_is_relu=i > 0)
            blocks.append(conv)
            if bn:
                blocks.append(nn.BatchNorm2d(cout))
            blocks.append(nn.ReLU())
        self.features = nn.Sequential(*blocks)
        self.fc = PolicyLinear(32 * 4 * 4, num_classes, name="fc", input_is_relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))

    def policy_layers(self) -> list[PolicyLayer]:
        """Conv and linear layers in forward order."""
        return [m for m in self.modules() if isinstance(m, PolicyLayer)]

    def layer_specs(self) -> list[LayerSpec]:
        layers = self.policy_layers()
        return [lay.spec(i, len(layers)) for i, lay in enumerate(layers)]

    def set_policies(self, policies: list[Policy]) -> None:
        layers = self.policy_layers()
        if len(policies) != len(layers):
            raise ValueError(f"expected {len(layers)} policies, got {len(policies)}")
        for lay, pol in zip(layers, policies, strict=True):
            lay.set_policy(pol)


class PlainDigitsCNN(nn.Module):
    """The same network from stock nn.Conv2d / nn.Linear (benchmark baseline)."""

    def __init__(self, variant: str = "relu", num_classes: int = 10) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        bn = variant == "bn_relu"
        blocks: list[nn.Module] = []
        for cin, cout, stride in CONV_CFG:
            blocks.append(nn.Conv2d(cin, cout, 3, stride, 1, bias=not bn))
            if bn:
                blocks.append(nn.BatchNorm2d(cout))
            blocks.append(nn.ReLU())
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))
