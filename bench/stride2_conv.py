"""The stride-2 3x3 conv (`ReflectionPadConv2D(strides=2)`) against reflection padding + VALID conv.

    python bench/stride2_conv.py [--repeats=7]

At even sizes the layer lets the conv zero-pad top and left and adds the reflected row and
column to the first output row and column, instead of copying the input twice to pad it.
Shapes of the bundled 26-style network (`contract.conv2`, `contract.conv3`): one photo at 512
and 1024 px, and 26 styles of a 256 px photo. The two alternate; medians of 3-call rounds.
"""

import tensorflow as tf

from alternate import median_ms, repeats_flag  # bench/, beside this script
from image_stylization.layers import ReflectionPadConv2D, reflect_pad

CASES = [("contract.conv2, 512 px", (1, 512, 512, 32)), ("contract.conv3, 512 px", (1, 256, 256, 32)),
         ("contract.conv2, 1024 px", (1, 1024, 1024, 32)),
         ("contract.conv2, 26 styles x 256 px", (26, 256, 256, 32)),
         ("contract.conv3, 26 styles x 256 px", (26, 128, 128, 32))]


def main():
    repeats = repeats_flag(__doc__, 7)
    print(f"TF {tf.__version__}; ms per call, median of {repeats} rounds of 3 calls")
    print("| case | input | pad + VALID conv | layer | layer / pad |\n|---|---|---|---|---|")
    for what, shape in CASES:
        x = tf.random.stateless_normal(shape, [0, 1])
        layer = ReflectionPadConv2D(32, 3, 2)
        layer(x[:1, :2, :2])
        ways = {"pad": tf.function(lambda x: tf.nn.conv2d(reflect_pad(x, 1), layer.kernel, 2, "VALID")),
                "layer": tf.function(layer)}
        err = float(tf.reduce_max(tf.abs(ways["pad"](x) - ways["layer"](x))))
        if err > 1e-4:
            raise SystemExit(f"{what}: the layer is {err:.1e} away from pad + conv")
        med = median_ms(ways, (x,), repeats, calls=3)
        pad, ours = med["pad"], med["layer"]
        print(f"| {what} | {'x'.join(map(str, shape))} | {pad:.1f} | {ours:.1f} | x{ours / pad:.2f} |")


if __name__ == "__main__":
    main()
