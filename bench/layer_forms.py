"""Forms the layers pick for CPU speed, against the plain ops they replace.

    python bench/layer_forms.py [--repeats=10]

- The norm of one example with 3 channels (the networks' last norm): TF's fused op on
  [1,H,W,3] against `layers.normalize`, each image row one pixel of 3W channels.
- One image with 26 gamma/beta rows, then a ReLU (the first norm of a 26-style call): the
  broadcast multiply and add against `layers.normalize`, the fused op once per row.
- `tf.nn.depth_to_space` / `space_to_depth` by 2 against the layers' reshape and transpose, at
  the shapes of the 26-style network's last convs.
Each pair takes turns in one process (the order flips every round); medians of --repeats
calls, ms per call.
"""

import numpy as np
import tensorflow as tf

from alternate import median_ms, repeats_flag  # bench/, beside this script
from image_stylization import layers


def three_channels_fused(x, mean, variance, gamma, beta):
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma[0], offset=beta[0], mean=tf.reshape(mean, [-1]),
        variance=tf.reshape(variance, [-1]), epsilon=1e-5, is_training=False)
    return y


def broadcast(x, mean, variance, gamma, beta):
    scale = gamma[:, None, None, :] * tf.math.rsqrt(variance + 1e-5)
    return tf.nn.relu(x * scale + (beta[:, None, None, :] - mean * scale))


def layer(x, mean, variance, gamma, beta):
    y = layers.normalize(x, mean, variance, gamma, beta, 1e-5, "float32")
    return tf.nn.relu(y) if gamma.shape[0] != 1 else y


def norm_case(shape, rows, plain):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(1.0, 2.0, shape).astype("float32"))
    gamma = tf.constant(rng.normal(1.0, 0.5, (rows, shape[-1])).astype("float32"))
    beta = tf.constant(rng.normal(0.0, 0.5, (rows, shape[-1])).astype("float32"))
    mean, variance = layers.moments(x)
    return plain, layer, (x, mean, variance, gamma, beta)


DEPTH_TO_SPACE = (lambda y: tf.nn.depth_to_space(y, 2), layers._depth_to_space)
SPACE_TO_DEPTH = (lambda x: tf.nn.space_to_depth(x, 2), layers._space_to_depth)


def shuffle_case(shape, plain, ours):
    name = "depth_to_space" if plain is DEPTH_TO_SPACE[0] else "space_to_depth"
    return (f"{name}, {'x'.join(map(str, shape))}",
            lambda: (plain, ours, (tf.random.stateless_normal(shape, [0, 1]),)))


CASES = [
    ("norm, 1 x 512x512x3, 1 row", lambda: norm_case((1, 512, 512, 3), 1, three_channels_fused)),
    ("norm, 1 x 1024x1024x3, 1 row",
     lambda: norm_case((1, 1024, 1024, 3), 1, three_channels_fused)),
    ("norm + ReLU, 1 x 256x256x32, 26 rows", lambda: norm_case((1, 256, 256, 32), 26, broadcast)),
    *(shuffle_case(shape, plain, ours) for shape, (plain, ours) in [
        ((26, 128, 128, 12), DEPTH_TO_SPACE), ((26, 256, 256, 4), SPACE_TO_DEPTH),
        ((1, 512, 512, 12), DEPTH_TO_SPACE), ((26, 64, 64, 32), DEPTH_TO_SPACE)]),
]


def main():
    repeats = repeats_flag(__doc__, 10)
    print(f"TF {tf.__version__}; ms per call, median of {repeats}")
    print("| case | plain | layer | layer / plain |\n|---|---|---|---|")
    for what, make in CASES:
        plain, ours, args = make()
        ways = {"plain": tf.function(plain), "layer": tf.function(ours)}
        err = float(tf.reduce_max(tf.abs(ways["plain"](*args) - ways["layer"](*args))))
        if err > 1e-4:
            raise SystemExit(f"{what}: the layer is {err:.1e} away from the plain form")
        med = median_ms(ways, args, repeats)
        print(f"| {what} | {med['plain']:.1f} | {med['layer']:.1f} | "
              f"x{med['layer'] / med['plain']:.2f} |")


if __name__ == "__main__":
    main()
