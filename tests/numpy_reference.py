"""The style transfer network as a float64 numpy forward pass, independent of TensorFlow.

Written from Magenta's `model.transform` (Dumoulin et al. 2017, Table 1), not from our layers:
reflection padding by k//2 then a VALID conv for every conv; nearest x2 upsampling before the
first two expand convs; conditional instance norm (biased variance, eps 1e-5) after every conv;
ReLU except after the second conv of a residual block and the last conv; residual additions
without ReLU; a sigmoid at the end. Input sizes are reflection-padded at the bottom/right to a
multiple of 4 and the output cropped back, as our network does. Weights come by Magenta name.
"""

import re

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

EPSILON = 1e-5
# Bytes of float64 patches per matmul in `conv`: big enough for BLAS, small enough for the cache.
_CHUNK_BYTES = 32 * 1024 * 1024


def reflect_pad(x, top, bottom, left, right):
    return np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], mode="reflect")


def conv(x, kernel, stride=1):
    """Reflection pad by k//2, then a VALID cross-correlation, by matmuls over bands of rows."""
    k, _, c, f = kernel.shape
    p = k // 2
    xp = reflect_pad(x, p, p, p, p)
    b, hp, wp, _ = xp.shape
    oh, ow = (hp - k) // stride + 1, (wp - k) // stride + 1
    kernel = np.asarray(kernel, np.float64)
    out = np.empty((b, oh, ow, f))
    if stride == 1 and f < c and f <= 8:
        # Few outputs (the last 9x9 conv): one small matmul per tap, added up; im2col would
        # copy each pixel k*k times for a product with 3 columns.
        for i in range(k):
            for j in range(k):
                if i == j == 0:
                    out[:] = xp[:, :oh, :ow] @ kernel[0, 0]
                else:
                    out += xp[:, i:i + oh, j:j + ow] @ kernel[i, j]
        return out
    flat = kernel.reshape(k * k * c, f)
    rows = max(1, _CHUNK_BYTES // (8 * ow * k * k * c))
    for n in range(b):
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            band = xp[n, stride * r0: stride * (r1 - 1) + k]
            # [rows, W, C, k, k] windows (a view), every stride-th, as [pixels, k*k*C] patches.
            windows = sliding_window_view(band, (k, k), axis=(0, 1))[::stride, ::stride]
            patches = np.ascontiguousarray(windows.transpose(0, 1, 3, 4, 2)).reshape(-1, k * k * c)
            out[n, r0:r1] = (patches @ flat).reshape(r1 - r0, ow, f)
    return out


def instance_norm(x, gamma, beta):
    """x [B or 1, H, W, C]; gamma, beta [S, C] -> [S, H, W, C] (an x of batch 1 serves every row)."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + EPSILON) * gamma[:, None, None, :] + beta[:, None, None, :]


def upsample(x, factor=2):
    return x.repeat(factor, axis=1).repeat(factor, axis=2)


def forward(weights, image, style_weights):
    """weights: {Magenta name: array}; image [B,H,W,3] in [0,1] (B = S, or 1 for all S rows);
    style_weights [S, N] -> float64 [S, H, W, 3]."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    s = np.asarray(style_weights, np.float64)
    x = np.asarray(image, np.float64)
    h, wd = x.shape[1:3]
    x = reflect_pad(x, 0, -h % 4, 0, -wd % 4)

    def block(x, scope, stride=1, relu=True, up=False):
        if up:
            x = upsample(x)
        x = conv(x, w[f"transformer/{scope}/weights"], stride)
        g, b = (s @ w[f"transformer/{scope}/InstanceNorm/{v}"] for v in ("gamma", "beta"))
        x = instance_norm(x, g, b)
        return np.maximum(x, 0) if relu else x

    x = block(x, "contract/conv1")
    x = block(x, "contract/conv2", stride=2)
    x = block(x, "contract/conv3", stride=2)
    residuals = sorted({int(m[1]) for m in map(re.compile(r"transformer/residual/residual(\d+)/").match, w) if m})
    for r in residuals:
        h_ = block(x, f"residual/residual{r}/conv1")
        x = x + block(h_, f"residual/residual{r}/conv2", relu=False)
    x = block(x, "expand/conv1/conv", up=True)
    x = block(x, "expand/conv2/conv", up=True)
    x = block(x, "expand/conv3/conv", relu=False)
    return 1.0 / (1.0 + np.exp(-x[:, :h, :wd, :]))


def randomize(model, seed):
    """Gives `model` (built from the package's layers) random weights of a trained network's
    scale, so that comparisons against this reference exercise every term; returns `model`."""
    from image_stylization.model import conv_layers, norm_layers

    r = np.random.default_rng(seed)
    for layer in conv_layers(model):
        fan_in = np.prod(layer.kernel.shape[:3])
        layer.kernel.assign(r.normal(0, 1.5 / np.sqrt(fan_in), layer.kernel.shape).astype("float32"))
    for layer in norm_layers(model):
        layer.gamma.assign(r.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
        layer.beta.assign(r.normal(0, 0.5, layer.beta.shape).astype("float32"))
    return model
