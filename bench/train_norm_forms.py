"""Instance norm + ReLU in the training step: the layer's form against TF's fused batch norm.

    python bench/train_norm_forms.py [--repeats=30]

Forward and backward (input, gamma and beta gradients), each with a ReLU after it (the network
has one after 11 of its 16 norms), at the paper network's norm shapes at 128 px x 4 and 256 px x 16, three ways:
- `layer`: `layers.instance_norm` (two-stage means, written-out gradient), what the step runs;
- `fused_per_example`: TF's training-mode `FusedBatchNormV3` once per example;
- `fused_transposed`: the batch transposed to [1, H, W, B*C], one `FusedBatchNormV3`, back.
Each way's input gradient is also compared with a float64 reference, as ||g - exact|| / ||exact||
(a max-norm error would count the few elements whose ReLU falls the other way in float32). The
ways take turns in one process; ms per forward + backward, median of --repeats.
"""

import numpy as np
import tensorflow as tf

from alternate import median_ms, repeats_flag  # bench/, beside this script
from image_stylization import layers

EPSILON = 1e-5
# (shape, how many of the paper network's 16 norms have it: contract 3, residual 10, expand 3),
# at 128 px x 4 and at Magenta's 256 px x 16.
SCALES = {
    "128 px x 4": [((4, 128, 128, 32), 2), ((4, 64, 64, 64), 2), ((4, 32, 32, 128), 11), ((4, 128, 128, 3), 1)],
    "256 px x 16": [((16, 256, 256, 32), 2), ((16, 128, 128, 64), 2), ((16, 64, 64, 128), 11),
                    ((16, 256, 256, 3), 1)],
}


def layer(x, gamma, beta):
    return tf.nn.relu(layers.instance_norm(x, gamma, beta, EPSILON, "float32"))


def _fused(z, scale, offset):
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=z, scale=scale, offset=offset, mean=tf.zeros_like(scale), variance=tf.ones_like(scale),
        epsilon=EPSILON, is_training=True)
    return y


def fused_per_example(x, gamma, beta):
    return tf.nn.relu(tf.stack([_fused(xi[None], gamma[i], beta[i])[0]
                                for i, xi in enumerate(tf.unstack(x))]))


def fused_transposed(x, gamma, beta):
    b, h, w, c = x.shape
    z = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
    y = _fused(z, tf.reshape(gamma, [-1]), tf.reshape(beta, [-1]))
    return tf.nn.relu(tf.transpose(tf.reshape(y, [h, w, b, c]), [2, 0, 1, 3]))


def reference(x, gamma, beta):
    mean = tf.reduce_mean(x, [1, 2], keepdims=True)
    variance = tf.reduce_mean(tf.square(x - mean), [1, 2], keepdims=True)
    return tf.nn.relu((x - mean) * tf.math.rsqrt(variance + EPSILON) * gamma[:, None, None, :]
                      + beta[:, None, None, :])


def forward_backward(fn):
    def run(x, gamma, beta, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            loss = tf.reduce_sum(fn(x, gamma, beta) * dy)
        return tape.gradient(loss, [x, gamma, beta])
    return run


def main():
    repeats = repeats_flag(__doc__, 30)
    ways = {"layer": layer, "fused_per_example": fused_per_example, "fused_transposed": fused_transposed}
    print(f"TF {tf.__version__}; ms per forward + backward, median of {repeats}; in brackets: the "
          "input gradient's relative error against float64")
    for scale, shapes in SCALES.items():
        print(f"\n{scale}\n| shape (norms) | " + " | ".join(ways) + " |\n|---|" + "---|" * len(ways))
        totals = dict.fromkeys(ways, 0.0)
        for shape, count in shapes:
            rng = np.random.default_rng(0)
            # Activations with a mean away from zero, as after a conv: where one-pass statistics lose.
            arrays = [rng.normal(1.0, 3.0, shape), rng.normal(1.0, 0.5, (shape[0], shape[-1])),
                      rng.normal(0.0, 0.5, (shape[0], shape[-1])), rng.normal(0.0, 1.0, shape)]
            args = [tf.constant(a, tf.float32) for a in arrays]
            exact = forward_backward(reference)(*[tf.constant(a, tf.float64) for a in arrays])[0].numpy()
            compiled = {name: tf.function(forward_backward(fn)) for name, fn in ways.items()}
            errors = {name: np.linalg.norm(f(*args)[0].numpy() - exact) / np.linalg.norm(exact)
                      for name, f in compiled.items()}
            med = median_ms(compiled, args, repeats)
            for name in ways:
                totals[name] += count * med[name]
            print(f"| {'x'.join(map(str, shape))} ({count}) | "
                  + " | ".join(f"{med[n]:.1f} ({errors[n]:.0e})" for n in ways) + " |")
        print("| the network's 16 norms | " + " | ".join(f"{totals[n]:.0f}" for n in ways) + " |")


if __name__ == "__main__":
    main()
