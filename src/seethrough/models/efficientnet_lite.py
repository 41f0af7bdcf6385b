"""EfficientNet-Lite0, written for inspection.

The architecture of Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks" (ICML 2019), in its Lite variant (ReLU6, no squeeze-excitation, fixed stem and head),
with the parameter names of the ``efficientnet-lite-pytorch`` package so that its ImageNet state
dict loads with ``strict=True``. Deliberate differences from that package:

- TensorFlow "SAME" padding is computed from the actual input size in ``forward``, so any input
  size works; at 224 px it equals the package's static padding.
- Every activation is its own ``nn.ReLU6`` module (``_act0``, ``_blocks.N._act_expand``,
  ``_blocks.N._act_dw``, ``_act_head``): each one runs once per forward and has a dotted name,
  which hooks and backward rules rely on. The package reuses one module many times.
- No ``print``; drop-connect only in training mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BlockArgs", "EfficientNetLite", "MBConvBlock", "SameConv2d", "efficientnet_lite0"]

# TensorFlow's batch-norm momentum is 0.99 (weight of the old value); PyTorch's is 1 - that.
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks: repeats, kernel, stride, expansion, filters in and out."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    in_filters: int
    out_filters: int


# efficientnet/lite/efficientnet_lite_builder.py; Lite0 has width and depth coefficients 1.0,
# so no stage is rescaled (and the first and last stages never are in the Lite models).
LITE0_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 1, 32, 16),
    BlockArgs(2, 3, 2, 6, 16, 24),
    BlockArgs(2, 5, 2, 6, 24, 40),
    BlockArgs(3, 3, 2, 6, 40, 80),
    BlockArgs(3, 5, 1, 6, 80, 112),
    BlockArgs(4, 5, 2, 6, 112, 192),
    BlockArgs(1, 3, 1, 6, 192, 320),
)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Return TensorFlow "SAME" padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TensorFlow, then convolve; output size is ``ceil(input / stride)``."""
        top, bottom = _same_padding(
            x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0]
        )
        left, right = _same_padding(
            x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1]
        )
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return super().forward(x)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def drop_connect(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Drop whole samples of a residual branch with probability ``rate`` and rescale the rest.

    Per-sample stochastic depth (Huang et al., ECCV 2016), computed exactly as the reference
    package does: ``floor(keep + U[0, 1))`` per sample.
    """
    keep = 1.0 - rate
    mask = torch.floor(keep + torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: 1×1 expand, depthwise k×k, 1×1 project, residual skip.

    Parameters
    ----------
    in_filters, out_filters : int
        Channels in and out.
    kernel_size, stride : int
        Of the depthwise convolution.
    expand_ratio : int
        Hidden channels are ``in_filters * expand_ratio``; 1 skips the expansion.
    """

    def __init__(
        self, in_filters: int, out_filters: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = in_filters * expand_ratio
        self.has_expansion = expand_ratio != 1
        self.has_skip = stride == 1 and in_filters == out_filters
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_filters, hidden, 1)
            self._bn0 = _batch_norm(hidden)
            self._act_expand = nn.ReLU6()
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._act_dw = nn.ReLU6()
        self._project_conv = SameConv2d(hidden, out_filters, 1)
        self._bn2 = _batch_norm(out_filters)

    def forward(self, inputs: torch.Tensor, drop_connect_rate: float = 0.0) -> torch.Tensor:
        """Apply the block; ``drop_connect_rate`` acts only in training mode."""
        x = inputs
        if self.has_expansion:
            x = self._act_expand(self._bn0(self._expand_conv(x)))
        x = self._act_dw(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if not self.has_skip:
            return x
        if self.training and drop_connect_rate:
            x = drop_connect(x, drop_connect_rate)
        return x + inputs


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; input (N, 3, H, W) of any size, output (N, num_classes).

    Parameters
    ----------
    blocks : tuple of BlockArgs
        Stages of MBConv blocks.
    num_classes : int
        Outputs of the final linear layer.
    dropout_rate : float
        Dropout before the final linear layer (training only).
    drop_connect_rate : float
        Maximum stochastic-depth rate, scaled linearly by block index (training only).
    """

    def __init__(
        self,
        blocks: tuple[BlockArgs, ...] = LITE0_BLOCKS,
        num_classes: int = 1000,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.drop_connect_rate = drop_connect_rate
        self._conv_stem = SameConv2d(3, _STEM_FILTERS, 3, stride=2)
        self._bn0 = _batch_norm(_STEM_FILTERS)
        self._act0 = nn.ReLU6()
        self._blocks = nn.ModuleList(
            MBConvBlock(
                stage.in_filters if i == 0 else stage.out_filters,
                stage.out_filters,
                stage.kernel_size,
                stage.stride if i == 0 else 1,
                stage.expand_ratio,
            )
            for stage in blocks
            for i in range(stage.repeats)
        )
        self._conv_head = SameConv2d(blocks[-1].out_filters, _HEAD_FILTERS, 1)
        self._bn1 = _batch_norm(_HEAD_FILTERS)
        self._act_head = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout_rate)
        self._fc = nn.Linear(_HEAD_FILTERS, num_classes)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the head's activations, (N, 1280, ceil(H/32), ceil(W/32))."""
        x = self._act0(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * index / len(self._blocks))
        return self._act_head(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits, (N, num_classes)."""
        x = self._avg_pooling(self.extract_features(x)).flatten(1)
        return self._fc(self._dropout(x))


def efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite:
    """Build an untrained EfficientNet-Lite0 (4.7 M parameters at 1000 classes)."""
    return EfficientNetLite(LITE0_BLOCKS, num_classes=num_classes)
