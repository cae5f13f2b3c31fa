"""An independent numpy forward pass of EfficientNet-Lite0, in float64.

Written from the architecture description alone, sharing no code with the
Paddle network in ``workers/efficientnet_lite.py``: convolutions are done
with explicit shifted slices, batch norm with its textbook formula. If the
Paddle rebuild got a padding, an epsilon, a stride or a weight layout wrong,
its output will disagree with this one.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-3
# (repeats, kernel, stride, expand, in, out)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def _windows(x: np.ndarray, k: int, stride: int):
    """Yield (i, j, slice) for every kernel offset over a zero-padded input."""
    pad = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out_h = (x.shape[1] + 2 * pad - k) // stride + 1
    out_w = (x.shape[2] + 2 * pad - k) // stride + 1
    for i in range(k):
        for j in range(k):
            yield i, j, padded[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]


def conv(x: np.ndarray, weight: np.ndarray, stride: int = 1) -> np.ndarray:
    """Dense convolution; weight is (out, in, k, k) as PyTorch stores it."""
    k = weight.shape[-1]
    total = None
    for i, j, window in _windows(x, k, stride):
        term = np.tensordot(weight[:, :, i, j], window, axes=([1], [0]))
        total = term if total is None else total + term
    return total


def depthwise(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """One filter per channel; weight is (channels, 1, k, k)."""
    k = weight.shape[-1]
    total = None
    for i, j, window in _windows(x, k, stride):
        term = weight[:, 0, i, j][:, None, None] * window
        total = term if total is None else total + term
    return total


def batch_norm(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = w[f"{prefix}.weight"] / np.sqrt(w[f"{prefix}.running_var"] + EPS)
    shift = w[f"{prefix}.bias"] - w[f"{prefix}.running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def logits(image_chw: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    x = image_chw.astype(np.float64)
    x = relu6(batch_norm(conv(x, w["_conv_stem.weight"], 2), w, "_bn0"))
    index = 0
    for repeats, _kernel, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            p = f"_blocks.{index}"
            block_in = x
            if expand != 1:
                x = relu6(batch_norm(conv(x, w[f"{p}._expand_conv.weight"]), w, f"{p}._bn0"))
            step = stride if r == 0 else 1
            x = relu6(batch_norm(depthwise(x, w[f"{p}._depthwise_conv.weight"], step), w, f"{p}._bn1"))
            x = batch_norm(conv(x, w[f"{p}._project_conv.weight"]), w, f"{p}._bn2")
            if step == 1 and (c_in if r == 0 else c_out) == c_out:
                x = x + block_in
            index += 1
    x = relu6(batch_norm(conv(x, w["_conv_head.weight"]), w, "_bn1"))
    pooled = x.mean(axis=(1, 2))
    return w["_fc.weight"] @ pooled + w["_fc.bias"]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()
