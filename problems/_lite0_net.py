"""EfficientNet-Lite0 in torch, laid out to load the ``lukemelas`` EfficientNet-PyTorch keys.

Imported only when a model is exported (it imports torch at module level).

EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019; Lite variants by the TensorFlow TPU team, 2020) is
EfficientNet-B0's mobile inverted-bottleneck network with the edge-hostile parts
removed: no squeeze-and-excitation, ReLU6 instead of swish, and a stem of 32 and head
of 1280 channels that are not scaled. The weights were trained in TensorFlow, so every
convolution uses TF "SAME" padding, which is asymmetric on stride 2 (the extra row and
column go at the bottom and right), and BatchNorm uses eps 1e-3.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LITE0_STAGES", "EfficientNetLite", "same_padding"]

#: Stages of Lite0: (expand ratio, kernel, stride, repeats, output channels).
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
_BN_EPS = 1e-3
_STEM, _HEAD = 32, 1280


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one spatial axis: ``(before, after)`` for an input of ``size``.

    The output has ``ceil(size / stride)`` positions; the padding that needs is split
    with the odd pixel after.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Conv2d):
    """A bias-free Conv2d with static TF "SAME" padding for a fixed input size."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int, size: int,
                 groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        before, after = same_padding(size, kernel, stride)
        self.pad = (before, after, before, after)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = nn.functional.pad(x, self.pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand] -> depthwise kxk -> 1x1 project (+ skip).

    Attribute names match the checkpoint: ``_expand_conv``/``_bn0`` (absent when the
    expand ratio is 1), ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``.
    """

    def __init__(self, cin: int, cout: int, *, expand: int, kernel: int, stride: int,
                 size: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv(cin, mid, 1, stride=1, size=size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride=stride, size=size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, cout, 1, stride=1, size=math.ceil(size / stride))
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite for square ``size`` x ``size`` NCHW inputs, ``(x - 127) / 128``.

    Args:
        stages: Stage table, as :data:`LITE0_STAGES`.
        size: Input height and width (the SAME padding is computed for it).
        classes: Classifier outputs.

    The forward pass returns logits ``[N, classes]`` (no softmax).
    """

    def __init__(self, stages=LITE0_STAGES, *, size: int = 224, classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, _STEM, 3, stride=2, size=size)
        self._bn0 = _bn(_STEM)
        size = math.ceil(size / 2)
        blocks, cin = [], _STEM
        for expand, kernel, stride, repeats, cout in stages:
            for i in range(repeats):
                step = stride if i == 0 else 1
                blocks.append(_MBConv(cin, cout, expand=expand, kernel=kernel, stride=step, size=size))
                size, cin = math.ceil(size / step), cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(cin, _HEAD, 1, stride=1, size=size)
        self._bn1 = _bn(_HEAD)
        self._fc = nn.Linear(_HEAD, classes)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
