"""Training-step throughput: where XLA goes (none / loss network only / whole forward+backward).

Not a test; run it by hand on a quiet machine, from the repository root:

    python bench/train_step.py --vgg_weights=../shared/data/vgg/vgg19_notop_q8.npz
    python bench/train_step.py --vgg_weights=... --image_size=256 --batch_size=16 --runs=10

One process builds the paper-preset transformer (N styles), the VGG-19 loss network with Magenta's
end points and an Adam optimizer, then times one training step (forward, losses, backward, Adam)
three ways, round-robin (run r of every variant, then run r+1) so load from elsewhere hits all alike:

- graph:    the whole step in a tf.function, no XLA;
- xla_loss: the loss network's forward and backward compiled, the transformer outside (what
            `--jit_compile` did before NearestUpsampling2D had its own gradient);
- xla_step: the transformer and the loss network, forward and backward, compiled (`--jit_compile`
            now, as image_stylization.train does).

Images and Gram targets are random: the FLOPs do not depend on them. Reports the median step time
of --runs warm steps and images/s, and the ratio to `graph` (< 1: faster).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from image_stylization import losses, vgg  # noqa: E402
from image_stylization.model import build_transformer  # noqa: E402

CONTENT = {"conv3": 1.0}
STYLE = {"conv1": 1e-3, "conv2": 2e-3, "conv3": 5e-5, "conv4": 0.3}  # checkpoints/paper_6styles' recipe


def make_step(variant, model, loss_net, grams, optimizer, content_w, style_w):
    def loss_terms(images, stylized, labels):
        content_feats = loss_net(images, training=False)
        with tf.GradientTape() as tape:
            tape.watch(stylized)
            feats = loss_net(stylized, training=False)
            targets = {e: tf.gather(grams[e], labels) for e in style_w}
            per_example, _ = losses.total_loss(feats, content_feats, targets, content_w, style_w)
            loss = tf.reduce_mean(per_example)
        return loss, tape.gradient(loss, stylized)

    if variant == "xla_loss":
        loss_terms = tf.function(loss_terms, jit_compile=True)

    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            weights = tf.one_hot(labels, grams[next(iter(grams))].shape[0])
            stylized = model({"image": images, "style_weights": weights}, training=True)
        loss, d_stylized = loss_terms(images, stylized, labels)
        return loss, tape.gradient(stylized, model.trainable_variables, output_gradients=d_stylized)

    if variant == "xla_step":
        forward_backward = tf.function(forward_backward, jit_compile=True)

    @tf.function(autograph=False)
    def step(images, labels):
        loss, grads = forward_backward(images, labels)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg_weights", required=True, help="the VGG-19 .npz/.h5, or 'imagenet'")
    p.add_argument("--num_styles", type=int, default=6)
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--variants", default="graph,xla_loss,xla_step")
    a = p.parse_args()

    content_w = losses.parse_loss_weights(CONTENT, "vgg19")
    style_w = losses.parse_loss_weights(STYLE, "vgg19")
    end_points = losses.loss_end_points("vgg19", content_w, style_w)
    loss_net = vgg.build_loss_network("vgg19", vgg.resolve_weights(a.vgg_weights, "vgg19"), "avg", end_points)
    rng = tf.random.Generator.from_seed(0)
    images = rng.uniform([a.batch_size, a.image_size, a.image_size, 3])
    channels = {e: f.shape[-1] for e, f in loss_net(images[:1]).items()}
    grams = {e: rng.normal([a.num_styles, channels[e], channels[e]]) * 1e3 for e in style_w}
    labels = rng.uniform([a.batch_size], 0, a.num_styles, dtype=tf.int32)

    steps, first = {}, {}
    for variant in a.variants.split(","):
        keras.utils.set_random_seed(0)
        model = build_transformer(a.num_styles, "paper")
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
        steps[variant] = make_step(variant, model, loss_net, grams, optimizer, content_w, style_w)
        t0 = time.perf_counter()
        steps[variant](images, labels).numpy()  # trace + compile
        first[variant] = time.perf_counter() - t0
    times = {v: [] for v in steps}
    for _ in range(a.runs):
        for v, step in steps.items():
            t0 = time.perf_counter()
            step(images, labels).numpy()
            times[v].append(time.perf_counter() - t0)

    print(f"paper preset, {a.num_styles} styles, batch {a.batch_size} at {a.image_size} px, VGG-19, "
          f"TF {tf.__version__}, {os.cpu_count()} CPUs, GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"{'variant':10} {'first step':>11} {'median step':>12} {'images/s':>9} {'vs graph':>9}")
    base = statistics.median(times["graph"]) if "graph" in times else None
    for v, ts in times.items():
        med = statistics.median(ts)
        ratio = f"x{med / base:.2f}" if base else "-"
        print(f"{v:10} {first[v]:10.1f}s {med * 1000:10.0f}ms {a.batch_size / med:9.2f} {ratio:>9}")


if __name__ == "__main__":
    main()
