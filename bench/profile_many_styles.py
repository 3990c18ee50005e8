"""Where the time of `stylize(photo, list(range(26)))` goes: many styles of one photo in one call.

    python bench/profile_many_styles.py [--size=256] [--styles=all] [--calls=5] [--top=20] [--logdir=DIR]

The bundled 26-style model on the demo photo resized to --size, warmed up, then --calls calls
under TensorFlow's profiler; `--styles=7` profiles one style (the single-photo path). Prints the
op time per call by op type and the slowest ops, from the profile's XPlane (ops that run at the
same time overlap: shares are of the summed op time).
"""

import argparse
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from image_stylization.stylize import demo_image_path, load_model, stylize
from op_times import op_times  # bench/, beside this script


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--styles", default="all", help="'all', or comma-separated style indices")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--logdir", help="where the profile goes (default: a temporary directory)")
    a = p.parse_args()
    model = load_model()
    styles = (list(range(int(model.inputs[1].shape[-1]))) if a.styles == "all"
              else [int(s) for s in a.styles.split(",")])
    count = len(styles)
    styles = styles if count > 1 else styles[0]  # one index: the single-style path
    photo = Image.open(demo_image_path()).convert("RGB").resize((a.size, a.size))
    photo = np.asarray(photo, np.float32) / 255.0
    for _ in range(3):
        stylize(photo, styles, model=model)
    t0 = time.perf_counter()
    for _ in range(a.calls):
        stylize(photo, styles, model=model)
    wall = (time.perf_counter() - t0) / a.calls
    logdir = a.logdir or tempfile.mkdtemp(prefix="profile_many_styles_")
    tf.profiler.experimental.start(logdir)
    for _ in range(a.calls):
        stylize(photo, styles, model=model)
    tf.profiler.experimental.stop()
    by_type, by_op = op_times(logdir, a.calls)
    total = sum(by_type.values())
    print(f"{count} style(s) of a {a.size} px photo, one call: {1000 * wall:.0f} ms wall "
          f"(unprofiled), {1000 * total:.0f} ms of op time per call ({logdir})")
    print("| op type | ms per call | share |\n|---|---|---|")
    for op, seconds in by_type.most_common(12):
        print(f"| {op} | {1000 * seconds:.1f} | {100 * seconds / total:.0f} % |")
    print(f"\nthe {a.top} slowest ops (ms per call):")
    for op, seconds in by_op.most_common(a.top):
        print(f"{1000 * seconds:8.1f}  {op[-100:]}")


if __name__ == "__main__":
    main()
