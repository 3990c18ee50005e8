"""The stride-2 3x3 conv (`ReflectionPadConv2D(strides=2)`) against reflection padding + VALID conv.

    python bench/stride2_conv.py [--repeats=7]

At even sizes the layer lets the conv zero-pad top and left and adds the reflected row and
column to the first output row and column, instead of copying the input twice to pad it.
Shapes of the bundled 26-style network (`contract.conv2`, `contract.conv3`): one photo at 512
and 1024 px, and 26 styles of a 256 px photo. The two alternate; medians of 3-call rounds.
"""

import argparse
import statistics
import time

import tensorflow as tf

from image_stylization.layers import ReflectionPadConv2D, reflect_pad

CASES = [("contract.conv2, 512 px", (1, 512, 512, 32)), ("contract.conv3, 512 px", (1, 256, 256, 32)),
         ("contract.conv2, 1024 px", (1, 1024, 1024, 32)),
         ("contract.conv2, 26 styles x 256 px", (26, 256, 256, 32)),
         ("contract.conv3, 26 styles x 256 px", (26, 128, 128, 32))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    print(f"TF {tf.__version__}; ms per call, median of {a.repeats} rounds of 3 calls")
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
        times = {name: [] for name in ways}
        for r in range(a.repeats):
            for name in (list(ways) if r % 2 else list(ways)[::-1]):
                t0 = time.perf_counter()
                for _ in range(3):
                    ways[name](x)
                times[name].append((time.perf_counter() - t0) / 3 * 1000)
        pad, ours = (statistics.median(times[n]) for n in ("pad", "layer"))
        print(f"| {what} | {'x'.join(map(str, shape))} | {pad:.1f} | {ours:.1f} | x{ours / pad:.2f} |")


if __name__ == "__main__":
    main()
