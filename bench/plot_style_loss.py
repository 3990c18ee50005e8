"""Plots a scalar (default loss/style) against steps for several training directories.

  python bench/plot_style_loss.py OUT.png LABEL=TRAIN_DIR [LABEL=TRAIN_DIR ...] [--tag=loss/style]

Reads the TensorBoard event files that image_stylization_train/finetune write (no tensorboard
package needed) and draws the raw values plus a moving average.
"""

import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def read_scalar(train_dir, tag):
    points = {}
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    steps = np.array(sorted(points))
    return steps, np.array([points[s] for s in steps])


def main(argv):
    tag = "loss/style"
    runs = []
    for arg in argv[2:]:
        if arg.startswith("--tag="):
            tag = arg[len("--tag="):]
        else:
            label, _, path = arg.partition("=")
            runs.append((label, path))
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for label, path in runs:
        steps, values = read_scalar(path, tag)
        if not len(steps):
            raise SystemExit(f"{path}: no {tag} scalars")
        line, = ax.plot(steps, values, alpha=0.3, linewidth=1)
        k = max(1, len(values) // 15)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color=line.get_color(), linewidth=2,
                label=f"{label} (last {k}-point mean {smooth[-1]:.3g})")
    ax.set_xlabel("step")
    ax.set_ylabel(tag + " (training batch)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(argv[1])
    print(f"wrote {argv[1]}")


if __name__ == "__main__":
    main(sys.argv)
