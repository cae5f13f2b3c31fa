"""EfficientNet-Lite0 in Paddle, loadable from the efficientnet_pytorch weights.

Lite0 is EfficientNet-B0 made friendlier to inference: no squeeze-and-
excitation, ReLU6 instead of swish, a fixed stem (32) and head (1280), and
symmetric ``(k - 1) / 2`` padding. BatchNorm epsilon is 1e-3 throughout.

Layer attribute names mirror the checkpoint's (``_blocks.3._bn1`` becomes
``blocks.3.bn1``) so the weight mapping is mechanical and any mismatch is
caught by name and shape, not found later as a silently wrong prediction.
"""

from __future__ import annotations

import numpy as np
import paddle
from paddle import nn

BN_EPSILON = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels)
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2D:
    return nn.Conv2D(
        in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias_attr=False
    )


def _bn(channels: int) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(channels, epsilon=BN_EPSILON)


class MBConvBlock(nn.Layer):
    """Inverted residual: expand 1x1, depthwise kxk, project 1x1 (no SE)."""

    def __init__(self, kernel: int, stride: int, expand: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self.expand_conv = _conv(in_ch, hidden, 1)
            self.bn0 = _bn(hidden)
        self.depthwise_conv = _conv(hidden, hidden, kernel, stride=stride, groups=hidden)
        self.bn1 = _bn(hidden)
        self.project_conv = _conv(hidden, out_ch, 1)
        self.bn2 = _bn(out_ch)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = x
        if self.has_expansion:
            out = self.act(self.bn0(self.expand_conv(out)))
        out = self.act(self.bn1(self.depthwise_conv(out)))
        out = self.bn2(self.project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Layer):
    def __init__(self, with_softmax: bool = True) -> None:
        super().__init__()
        self.conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self.bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(kernel, stride if i == 0 else 1, expand, in_ch if i == 0 else out_ch, out_ch)
                )
        self.blocks = nn.LayerList(blocks)
        self.conv_head = _conv(STAGES[-1][5], HEAD_CHANNELS, 1)
        self.bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        # PaddleX's exported classifiers end in softmax; Topk reads scores as is.
        self.with_softmax = with_softmax

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)
        x = self.act(self.bn1(self.conv_head(x)))
        x = paddle.flatten(self.pool(x), 1)
        x = self.fc(x)
        return paddle.nn.functional.softmax(x, axis=-1) if self.with_softmax else x


_BN_NAMES = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}


def paddle_name(torch_name: str) -> str | None:
    """``_blocks.3._bn1.running_var`` -> ``blocks.3.bn1._variance`` (None: skip)."""
    *path, leaf = torch_name.split(".")
    if leaf == "num_batches_tracked":
        return None
    parts = [p.lstrip("_") for p in path]
    is_bn = parts[-1].startswith("bn")
    return ".".join([*parts, _BN_NAMES[leaf] if is_bn else leaf])


def load_torch_weights(model: EfficientNetLite0, state: dict[str, np.ndarray]) -> None:
    """Copy checkpoint arrays into the model, checking every name and shape."""
    targets = model.state_dict()
    loaded: dict[str, np.ndarray] = {}
    for name, array in state.items():
        target_name = paddle_name(name)
        if target_name is None:
            continue
        if target_name not in targets:
            raise KeyError(f"checkpoint entry {name} has no place in the network ({target_name})")
        if name == "_fc.weight":
            array = array.T  # torch Linear is (out, in); paddle is (in, out)
        expected = tuple(targets[target_name].shape)
        if tuple(array.shape) != expected:
            raise ValueError(f"{name}: shape {array.shape} does not fit {target_name} {expected}")
        loaded[target_name] = np.ascontiguousarray(array, dtype=np.float32)
    missing = set(targets) - set(loaded)
    if missing:
        raise KeyError(f"checkpoint lacks weights for: {sorted(missing)[:5]}")
    model.set_state_dict(loaded)
