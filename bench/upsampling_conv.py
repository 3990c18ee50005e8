"""The upsampling conv (`ReflectionPadConv2D(upsample=2)`, 3x3) against the arrangements it replaced.

    python bench/upsampling_conv.py [--repeats=9]

Three ways to compute nearest x2 upsampling, reflection padding by 1 and a 3x3 conv:
- `plain`: upsample, pad, conv at full resolution;
- `phase3x3`: edge padding at low resolution and a 3x3 kernel with 4x the outputs (one group per
  output phase, 5 of every 9 taps zero), then depth_to_space (the layer until 2026-11-28);
- `layer`: the layer as it is (a 2x2 phase kernel, depth_to_space and a one-pixel crop).
Shapes of the bundled networks: inference at 512 px (android_26), 1024 px (paper), 26 styles
of a 256 px photo, and the paper preset's training step (128 px x 4, forward and backward).
Rounds alternate the order of the three; medians, and each one's ratio to `phase3x3`.
"""

import numpy as np
import tensorflow as tf

from alternate import median_ms, repeats_flag  # bench/, beside this script
from image_stylization.layers import ReflectionPadConv2D, edge_pad

CASES = [  # (what, input shape, filters, with the backward pass)
    ("android expand.conv1, 512 px", (1, 128, 128, 32), 8, False),
    ("android expand.conv2, 512 px", (1, 256, 256, 8), 4, False),
    ("android expand.conv1, 26 styles x 256 px", (26, 32, 32, 32), 8, False),
    ("android expand.conv2, 26 styles x 256 px", (26, 64, 64, 8), 4, False),
    ("paper expand.conv1, 1024 px", (1, 256, 256, 128), 64, False),
    ("paper expand.conv2, 1024 px", (1, 512, 512, 64), 32, False),
    ("paper expand.conv1, training 128 px x 4", (4, 32, 32, 128), 64, True),
    ("paper expand.conv2, training 128 px x 4", (4, 64, 64, 64), 32, True),
]


def plain(x, kernel):
    size = tf.shape(x)[1:3] * 2
    x = tf.image.resize(x, size, method="nearest")
    x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(x, kernel, 1, "VALID")


def phase3x3(x, kernel):
    sel = np.zeros((3, 3, 2), np.float32)  # tap d of the 3x3 kernel, for output phase a, reads t
    for d in range(3):
        for a in range(2):
            sel[d, (a + d + 1) // 2, a] = 1.0
    c, f = kernel.shape[2], kernel.shape[3]
    phased = tf.reshape(tf.einsum("yta,xsb,yxio->tsiabo", sel, sel, kernel), [3, 3, c, 4 * f])
    return tf.nn.depth_to_space(tf.nn.conv2d(edge_pad(x), phased, 1, "VALID"), 2)


def main():
    repeats = repeats_flag(__doc__, 9)
    print(f"TF {tf.__version__}; ms per call, median of {repeats} rounds of 5 calls")
    print(f"| {'case':42} | pass | plain | phase3x3 | layer | layer / phase3x3 |")
    print("|---|---|---|---|---|---|")
    for what, shape, filters, backward in CASES:
        x = tf.random.stateless_normal(shape, [0, 1])
        layer = ReflectionPadConv2D(filters, 3, upsample=2)
        layer(x[:1, :2, :2])
        layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, [2, 3]) * 0.1)
        ways = {"plain": lambda x: plain(x, layer.kernel),
                "phase3x3": lambda x: phase3x3(x, layer.kernel), "layer": layer}
        fns = {}
        for name, way in ways.items():
            if backward:
                def fn(x, way=way):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        y = way(x)
                    return [y] + tape.gradient(y, [x, layer.kernel], output_gradients=y)
            else:
                def fn(x, way=way):
                    return [way(x)]
            fns[name] = tf.function(fn)
        results = {name: fn(x) for name, fn in fns.items()}
        for name in ("phase3x3", "layer"):  # a timing of a wrong result is worth nothing
            for got, want in zip(results[name], results["plain"]):
                err = float(tf.reduce_max(tf.abs(got - want)) / tf.reduce_max(tf.abs(want)))
                if err > 1e-5:
                    raise SystemExit(f"{what}: {name} is {err:.1e} away from plain")
        med = median_ms(fns, (x,), repeats, calls=5)
        print(f"| {what:42} | {'fwd+bwd' if backward else 'fwd'} | {med['plain']:.1f} | "
              f"{med['phase3x3']:.1f} | {med['layer']:.1f} | x{med['layer'] / med['phase3x3']:.2f} |")


if __name__ == "__main__":
    main()
