"""The training step's 3x3 convolutions against the matmul the FLOP floor is measured with.

    python bench/conv_as_matmul.py [--repeats=30]

`bench/train_step.py` sets its floor at the rate of a 2048x2048x2048 float32 matmul. Per 3x3
conv shape of the paper network (stride 1, "VALID" on an input already padded, as the layers
run it), this times in GFLOP/s: the conv forward, its input and filter gradients (oneDNN, as
in the step), the same conv as one matmul of its im2col shape ([B*H*W, 9C] x [9C, C], columns
prebuilt and not timed) and that matmul's filter-gradient product, and the 2048³ matmul.
Building the columns (nine shifted slices) is timed on its own. The ways take turns; medians.
"""

import numpy as np
import tensorflow as tf

from alternate import median_ms, repeats_flag  # bench/, beside this script
from train_step import conv_ops

# (batch, output H = W, channels): residual blocks at 128 px x 4 and at 256 px x 16, and the
# upsampling convs' shapes at 128 px x 4.
SHAPES = [(4, 32, 128), (16, 64, 128), (4, 64, 64), (4, 128, 32)]


def case(b, h, c):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(b, h + 2, h + 2, c)), tf.float32)
    w = tf.constant(rng.normal(size=(3, 3, c, c)), tf.float32)
    dy = tf.constant(rng.normal(size=(b, h, h, c)), tf.float32)

    def columns(x):
        return tf.reshape(tf.concat([x[:, i:i + h, j:j + h, :] for i in range(3) for j in range(3)],
                                    axis=-1), [-1, 9 * c])

    cols = tf.function(columns)(x)
    a = tf.constant(rng.normal(size=(2048, 2048)), tf.float32)
    conv = conv_ops(tf, x, w, dy, 1, "VALID")
    ways = {
        "conv": conv["conv"],
        "input grad": conv["input_grad"],
        "filter grad": conv["filter_grad"],
        "as matmul": (lambda: tf.matmul(cols, tf.reshape(w, [9 * c, c]))),
        "as matmul, filter grad": (lambda: tf.matmul(cols, tf.reshape(dy, [-1, c]), transpose_a=True)),
        "columns": (lambda: columns(x)),
        "matmul 2048³": (lambda: tf.matmul(a, a)),
    }
    conv_out = ways["conv"]()
    matmul_out = tf.reshape(ways["as matmul"](), conv_out.shape)
    err = float(tf.reduce_max(tf.abs(conv_out - matmul_out)) / tf.reduce_max(tf.abs(conv_out)))
    if err > 1e-5:
        raise SystemExit(f"{b}x{h}x{h}x{c}: the im2col matmul is {err:.1e} away from the conv")
    flops = {name: 2 * b * h * h * c * c * 9 for name in ways}
    flops["matmul 2048³"] = 2 * 2048 ** 3
    return {name: tf.function(fn) for name, fn in ways.items()}, flops


def main():
    repeats = repeats_flag(__doc__, 30)
    print(f"TF {tf.__version__}; GFLOP/s (columns: ms), median of {repeats}")
    header = None
    for b, h, c in SHAPES:
        ways, flops = case(b, h, c)
        if header is None:
            header = list(ways)
            print("| output (B x H x W x C) | " + " | ".join(header) + " |\n|---|" + "---|" * len(header))
        med = median_ms(ways, (), repeats)
        cells = [f"{med[n]:.1f} ms" if n == "columns" else f"{flops[n] / med[n] / 1e6:.0f}" for n in header]
        print(f"| {b}x{h}x{h}x{c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
