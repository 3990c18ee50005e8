"""Training-step time of the REAL trainer step against the FLOP floor and a PyTorch peer.

Not a test; run it by hand, at normal priority, from the repository root:

    python bench/train_step.py                                  # 128 px x 4, every variant
    python bench/train_step.py --size=256 --batch=16 --rounds=3 --steps=1
    python bench/train_step.py --torch_python=.venv-torch/bin/python   # + bench/torch_peer.py
    python bench/train_step.py --variants=default --profile=/tmp/prof  # where the time goes

What is timed is `image_stylization.train`'s own step: a `StyleTrainer` (paper preset, N styles,
VGG-19 from `--vgg_weights`, Magenta's loss end points: style conv1..conv4, content conv3) run by
`loop.distributed_step` (next batch, `strategy.run(trainer.train_step)`, Adam), exactly as
`image_stylization_train` runs it. Variants: `default` (the trainer's defaults), `jit`
(`--jit_compile`), `bf16` (`--mixed_precision`: bfloat16 transformer and loss network on CPU),
`bf16_jit`, and `bf16_f32loss` (bfloat16 transformer, float32 loss network).

The floor: the step's convolution and Gram-matrix work (counted from the layer shapes: the
transformer forward, its weight and input gradients, the loss network on the pastiche forward and
back to its input, on the content images forward to the deepest content layer; Grams forward and
one matmul back) divided by the float32 matmul rate measured in the same run. bfloat16 steps are
also shown against the float32 floor (they may beat it).

The conv floor: the very convolutions and Gram matmuls the FLOP floor counts, each run alone as TF's
own op at its shape in the plain network (a VALID conv of the padded input; the upsampling convs
on the upsampled image), float32, one after another: the step's time if it did nothing but its
convolutions at oneDNN's rate for their shapes. The FLOP floor asks for every conv at a 2048³
matmul's rate, which these shapes do not reach (bench/conv_as_matmul.py); this one asks for
oneDNN's own rate at each shape. The step may beat it in parts: it runs the upsampling convs
with 4/9 of the multiplications.

Rounds alternate, so load from elsewhere hits everything alike: in every round the matmul rate,
then `--steps` steps of each variant, then (with `--torch_python`) one run of the PyTorch peer
`bench/torch_peer.py` in a subprocess with that python (its own venv with torch; it warms up and
times every `--torch_modes` mode itself; our process is idle meanwhile). Medians over rounds.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

VARIANTS = {  # name: (mixed_precision, jit_compile, the loss network's dtype (None: the trainer's))
    "default": (False, False, None),
    "jit": (False, True, None),
    "bf16": (True, False, None),  # --mixed_precision: transformer and loss network in bfloat16
    "bf16_jit": (True, True, None),
    "bf16_f32loss": (True, False, "float32"),  # bfloat16 transformer, float32 loss network
}
CONTENT = {"conv3": 1.0}  # Magenta's defaults (and the PyTorch peer's)
STYLE = {"conv1": 1e-4, "conv2": 1e-4, "conv3": 1e-4, "conv4": 1e-4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg_weights", default=os.path.join(REPO, "..", "shared", "data", "vgg", "vgg19_notop_q8.npz"),
                   help="the VGG-19 .npz/.h5 (default ../shared/data/vgg/vgg19_notop_q8.npz)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--num_styles", type=int, default=6)
    p.add_argument("--variants", default="default,jit,bf16,bf16_f32loss", help=f"any of {','.join(VARIANTS)}")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (and the peer's)")
    p.add_argument("--inter_op_threads", type=int, default=0, help="TensorFlow inter-op threads (0: TF's default)")
    p.add_argument("--torch_python", help="a python with torch: runs bench/torch_peer.py each round")
    p.add_argument("--torch_peer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_peer.py"))
    p.add_argument("--torch_modes", default="eager,channels_last,compile")
    p.add_argument("--torch_steps", type=int, default=3)
    p.add_argument("--profile", help="write a TF profile of the first variant's steps here and "
                   "print where the time goes (compute- vs memory-bound ops)")
    p.add_argument("--conv_floor", type=int, default=1, help="1: also time the conv floor each round "
                   "(adds ~4x the step's convolution time per round); 0: skip it")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    if a.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(a.inter_op_threads)
    import keras

    from image_stylization import losses
    from image_stylization.model import build_transformer
    from image_stylization.train import LossSetup, StyleTrainer, make_optimizer
    from image_stylization.train.loop import distributed_step, policy_name

    variants = a.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not os.path.isfile(a.vgg_weights):
        sys.exit(f"{a.vgg_weights}: no such file (pass --vgg_weights)")
    if a.profile and os.path.exists(a.profile) and not os.path.isdir(a.profile):
        sys.exit(f"--profile={a.profile}: exists and is not a directory")
    peer = None
    if a.torch_python:
        if not os.path.isfile(a.torch_peer):
            print(f"skipping the PyTorch peer: {a.torch_peer} is not there", file=sys.stderr)
        else:
            peer = a.torch_python
    strategy = tf.distribute.get_strategy()
    setup = LossSetup("vgg19", "avg", a.vgg_weights, losses.parse_loss_weights(CONTENT, "vgg19"),
                      losses.parse_loss_weights(STYLE, "vgg19"), np.ones([a.num_styles], np.float32))
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(size=[a.batch, a.size, a.size, 3]).astype(np.float32))
    batches = tf.data.Dataset.from_tensors({"image": images, "skipped": tf.zeros([a.batch], tf.int64)}).repeat()

    grams = random_grams(setup, a.num_styles, rng)
    steps, first, trainers = {}, {}, {}
    for name in variants:
        mixed, jit, loss_dtype = VARIANTS[name]
        keras.config.set_dtype_policy(policy_name(mixed, strategy))
        keras.utils.set_random_seed(0)
        transformer = build_transformer(a.num_styles, "paper")
        trainer = StyleTrainer(transformer, setup, grams, jit_compile=jit, loss_dtype=loss_dtype)
        trainer.compile(make_optimizer(1e-3, keras.config.dtype_policy().name))
        keras.config.set_dtype_policy("float32")
        step = distributed_step(trainer, strategy, a.batch)
        iterator = iter(batches)
        t0 = time.perf_counter()
        float(step(iterator)["metrics"]["loss/total"])  # trace (+ compile)
        first[name] = time.perf_counter() - t0
        float(step(iterator)["metrics"]["loss/total"])  # the second step still sets up kernels
        steps[name], trainers[name] = (step, iterator), trainer
        print(f"{name}: first step {first[name]:.1f} s", file=sys.stderr, flush=True)

    ops = step_ops(next(iter(trainers.values())), images)
    flops = step_flops(ops)
    matmul = matmul_benchmark(tf)
    conv_floor = conv_floor_benchmark(tf, ops) if a.conv_floor else None
    conv_floors = []
    rates, cpu_rates, times, cpu_times, peer_rounds = [], [], collections.defaultdict(list), collections.defaultdict(list), []
    paired = collections.defaultdict(list)
    for r in range(a.rounds):
        rate, cpu_rate = matmul()
        rates.append(rate)
        cpu_rates.append(cpu_rate)
        if conv_floor:
            conv_floors.append(conv_floor())
        for name, (step, iterator) in steps.items():
            # The machine's speed drifts (the matmul rate moved by a quarter between rounds on a
            # shared VM): a matmul timed right before each variant's steps gives them a floor of
            # their own moment.
            near, _ = matmul()
            for _ in range(a.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                float(step(iterator)["metrics"]["loss/total"])
                times[name].append(time.perf_counter() - t0)
                cpu_times[name].append(time.process_time() - c0)
                paired[name].append(times[name][-1] * near / flops["total"])
        if peer:
            peer_rounds.append(run_peer(peer, a))
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(
            f"{n} {statistics.median(t[-a.steps:]):.3f}s" for n, t in times.items()), file=sys.stderr, flush=True)
    if a.profile:
        profile(tf, steps[variants[0]], a.profile, flops, statistics.median(rates))

    rate = statistics.median(rates)  # FLOP/s
    floor = flops["total"] / rate
    cpu_floor = flops["total"] / statistics.median(cpu_rates)  # CPU seconds (all threads)
    print(f"\n{a.num_styles}-style paper transformer, VGG-19 loss (style conv1-4, content conv3), batch "
          f"{a.batch} at {a.size} px; TF {tf.__version__}, {a.threads} intra-op threads, "
          f"{os.cpu_count()} CPUs")
    print("work per step: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items()) + " GFLOP")
    print(f"float32 matmul: {rate / 1e9:.0f} GFLOP/s (median of {len(rates)}; "
          f"min {min(rates) / 1e9:.0f}, max {max(rates) / 1e9:.0f}) -> floor {floor:.3f} s/step; "
          f"in CPU time {cpu_floor:.3f} CPU-s/step")
    conv_s = statistics.median(conv_floors) if conv_floors else None
    if conv_s:
        print(f"conv floor: {conv_s:.3f} s/step (median of {len(conv_floors)}; min {min(conv_floors):.3f}, "
              f"max {max(conv_floors):.3f}): {flops['total'] / conv_s / 1e9:.0f} GFLOP/s, "
              f"{100 * floor / conv_s:.0f} % of the matmul's rate")
    peer_best = None
    if peer_rounds:
        ok = [p for p in peer_rounds if p]
        if ok:
            modes = ok[0]["modes"].keys()
            peer_median = {m: statistics.median(p["modes"][m]["median_s"] for p in ok) for m in modes}
            peer_best = min(peer_median, key=peer_median.get)
            print(f"PyTorch {ok[0].get('torch_version')} ({a.threads} threads): " + ", ".join(
                f"{m} {s:.3f}s" for m, s in peer_median.items()) + f"; best {peer_best}")
    # "x floor (cpu)": CPU seconds of the step over CPU seconds of the floor's matmuls; on a busy
    # machine it is less distorted than the wall-clock ratio (both threads' work, not their waits).
    # "x floor (paired)": the median over steps of each step's time over the floor at the rate of
    # the matmul timed just before that variant's steps in the same round.
    header = (f"{'variant':10} {'first step':>10} {'median step':>12} {'images/s':>9} {'x floor':>8} "
              f"{'x floor (cpu)':>14} {'x floor (paired)':>17}")
    if conv_s:
        header += f" {'x conv floor':>13}"
    if peer_best:
        header += f" {'x PyTorch best':>15}"
    print(header)
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        cpu = statistics.median(cpu_times[name])
        line = (f"{name:10} {first[name]:9.1f}s {med:11.3f}s {a.batch / med:9.2f} {med / floor:8.2f} "
                f"{cpu / cpu_floor:14.2f} {statistics.median(paired[name]):17.2f}")
        row = {"first_step_s": first[name], "median_s": med, "x_floor": med / floor, "runs": ts,
               "cpu_s": cpu, "x_floor_cpu": cpu / cpu_floor,
               "x_floor_paired": statistics.median(paired[name])}
        if conv_s:
            # Per round: our median over the round's steps / that round's conv floor.
            row["x_conv_floor"] = statistics.median(
                statistics.median(ts[i * a.steps:(i + 1) * a.steps]) / c for i, c in enumerate(conv_floors))
            line += f" {row['x_conv_floor']:13.2f}"
        if peer_best:
            # Per round: our median over the round's steps / the peer's best of that round.
            ratios = [statistics.median(ts[i * a.steps:(i + 1) * a.steps]) / min(m["median_s"] for m in p["modes"].values())
                      for i, p in enumerate(peer_rounds) if p]
            row["x_peer_best"] = statistics.median(ratios)
            line += f" {row['x_peer_best']:15.2f}"
        rows[name] = row
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"size": a.size, "batch": a.batch, "flops": flops, "matmul_flops_per_s": rates,
                       "matmul_flops_per_cpu_s": cpu_rates,
                       "floor_s": floor, "conv_floor_s": conv_floors, "variants": rows, "peer": peer_rounds,
                       "command": " ".join(["python"] + sys.argv)}, f, indent=2)


def random_grams(setup, n, rng):
    """Random Gram targets of the right shapes (the FLOPs do not depend on them)."""
    channels = {"block1_conv2": 64, "block2_conv2": 128, "block3_conv4": 256, "block4_conv4": 512}
    out = {}
    for e in setup.style_weights:
        f = rng.normal(size=[n, 2 * channels[e], channels[e]]).astype(np.float32)
        out[e] = np.einsum("npi,npj->nij", f, f) * (1e3 / f.shape[1])
    return out


def step_ops(trainer, images):
    """The convolutions and Gram matmuls of one step in the plain network: {(part, kind, input
    shape, kernel shape, stride, padding): times per step}. Transformer convs are VALID convs of
    the padded (and upsampled) input; kinds: conv, input_grad, filter_grad, gram."""
    import keras

    from image_stylization.model import conv_layers

    def input_shapes(model, inputs, layers):
        probe = keras.Model(model.input, [l.input for l in layers])
        return [tuple(t.shape) for t in probe(inputs)]

    ops = collections.Counter()
    b = images.shape[0]
    weights = keras.ops.one_hot(keras.ops.zeros([b], "int32"), trainer.num_model_styles)
    layers = conv_layers(trainer.transformer)
    for i, (layer, (n, h, w, c)) in enumerate(zip(layers, input_shapes(
            trainer.transformer, {"image": images, "style_weights": weights}, layers))):
        pad = 2 * (layer.kernel_size // 2)
        key = ((n, h * layer.upsample + pad, w * layer.upsample + pad, c), tuple(layer.kernel.shape),
               layer.strides, "VALID")
        ops[("transformer", "conv") + key] += 1
        ops[("transformer", "filter_grad") + key] += 1
        if i:  # the image needs no gradient
            ops[("transformer", "input_grad") + key] += 1
    net = trainer.loss_network
    vgg = [l for l in net.layers if isinstance(l, keras.layers.Conv2D)]
    content_depth = max((net.layers.index(net.get_layer(e)) for e in trainer.setup.content_weights), default=-1)
    for layer, shape in zip(vgg, input_shapes(net, images, vgg)):
        key = (shape, tuple(layer.kernel.shape), 1, "SAME")
        ops[("vgg_pastiche", "conv") + key] += 1  # forward and the gradient to its input
        ops[("vgg_pastiche", "input_grad") + key] += 1
        if net.layers.index(layer) <= content_depth:
            ops[("vgg_content", "conv") + key] += 1
    feats = net(images)
    for e in trainer.setup.style_weights:
        n, h, w, c = feats[e].shape
        ops[("gram", "gram", (n, h * w, c), None, 1, None)] += 2  # forward, and one matmul back (symmetric)
    return ops


def op_flops(kind, shape, kernel, stride, padding):
    """FLOPs of one op of `step_ops` (a multiply-add counts 2)."""
    if kind == "gram":
        return 2.0 * shape[0] * shape[1] * shape[2] ** 2
    n, h, w = shape[:3]
    if padding == "VALID":
        h, w = (h - kernel[0]) // stride + 1, (w - kernel[1]) // stride + 1
    else:
        h, w = -(-h // stride), -(-w // stride)
    return 2.0 * n * h * w * np.prod(kernel)


def step_flops(ops):
    """FLOPs of one step by part (convolutions and Gram matmuls; elementwise work not counted)."""
    parts = collections.Counter()
    for (part, *op), count in ops.items():
        parts[part] += count * op_flops(*op)
    return {**{p: parts[p] for p in ("transformer", "vgg_pastiche", "vgg_content", "gram")},
            "total": sum(parts.values())}


def matmul_benchmark(tf, n=2048, reps=4):
    """() -> (FLOP/s, FLOP per CPU second) of a float32 n x n matmul (best of `reps`)."""
    x = tf.random.stateless_normal([n, n], seed=[1, 2])
    y = tf.random.stateless_normal([n, n], seed=[3, 4])
    mm = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(x, y)))
    float(mm())

    def measure():
        best, best_cpu = float("inf"), float("inf")
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            float(mm())
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        return 2.0 * n ** 3 / best, 2.0 * n ** 3 / best_cpu

    return measure


def conv_ops(tf, x, kernel, dy, stride, padding):
    """{"conv", "input_grad", "filter_grad"}: callables running TF's op of each, as the step's
    gradient runs them, for input x, kernel, and dy the gradient of the conv's output."""
    strides = [1, stride, stride, 1]
    return {
        "conv": lambda: tf.nn.conv2d(x, kernel, stride, padding),
        "input_grad": lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x.shape, filter=kernel, out_backprop=dy, strides=strides, padding=padding),
        "filter_grad": lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=kernel.shape, out_backprop=dy, strides=strides, padding=padding),
    }


def conv_floor_benchmark(tf, ops, reps=3):
    """() -> seconds of the step's ops (`step_ops`), each run alone as TF's op at its shape and
    counted as many times as the step runs it; each the median of `reps` runs after one untimed
    run (see the module docstring)."""
    counts = collections.Counter()
    for (_, *op), count in ops.items():
        counts[tuple(op)] += count  # the same op in two parts is timed once

    def make(kind, shape, kernel, stride, padding):
        x = tf.random.stateless_normal(shape, seed=[1, 2])
        if kind == "gram":
            return tf.function(lambda: tf.matmul(x, x, transpose_a=True))
        k = tf.random.stateless_normal(kernel, seed=[3, 4]) * 0.05
        dy = tf.random.stateless_normal(tf.nn.conv2d(x, k, stride, padding).shape, seed=[5, 6])
        return tf.function(conv_ops(tf, x, k, dy, stride, padding)[kind])

    functions = {op: make(*op) for op in counts}

    def measure():
        total = 0.0
        for op, count in counts.items():
            fn = functions[op]
            fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()  # eager calls return when the op has run (CPU, synchronous)
                times.append(time.perf_counter() - t0)
            total += count * statistics.median(times)
        return total

    return measure


def run_peer(python, a):
    """One run of the PyTorch peer; its JSON, or None (with the reason on stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "peer.json")
        cmd = [python, a.torch_peer, "--size", str(a.size), "--batch", str(a.batch), "--modes", a.torch_modes,
               "--steps", str(a.torch_steps), "--threads", str(a.threads), "--num_styles", str(a.num_styles),
               "--vgg_weights", a.vgg_weights, "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.isfile(out):
            print(f"PyTorch peer failed ({proc.returncode}): {proc.stderr.strip()[-500:]}", file=sys.stderr)
            return None
        with open(out) as f:
            return json.load(f)


def profile(tf, step_and_iterator, logdir, flops, rate, steps=3):
    """Profiles `steps` steps and prints time by op class: convolutions and matmuls (compute-bound:
    their share of the step vs their share of the FLOP floor) and the rest (elementwise ops,
    reductions, pads, copies: memory-bound)."""
    from op_times import op_times  # bench/, beside this script

    step, iterator = step_and_iterator
    float(step(iterator)["metrics"]["loss/total"])
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    for _ in range(steps):
        float(step(iterator)["metrics"]["loss/total"])
    wall = (time.perf_counter() - t0) / steps
    tf.profiler.experimental.stop()
    by_type, by_op = op_times(logdir, steps)
    total = sum(by_type.values())
    compute = {k: v for k, v in by_type.items() if "Conv" in k or "MatMul" in k or "Einsum" in k or "Dot" in k}
    print(f"\nprofile ({steps} steps, {logdir}): wall {wall:.3f} s/step; op time summed over threads "
          f"{total:.3f} s/step")
    c = sum(compute.values())
    print(f"  convolutions + matmuls (compute-bound): {c:.3f} s/step ({100 * c / total:.0f}% of op time), "
          f"{flops['total'] / 1e9 / c:.0f} GFLOP/s on average vs matmul {rate / 1e9:.0f}")
    print(f"  everything else (memory-bound): {total - c:.3f} s/step ({100 * (total - c) / total:.0f}%)")
    for op, seconds in by_type.most_common(16):
        print(f"    {op:36} {1000 * seconds:8.1f} ms/step {100 * seconds / total:5.1f}%")
    print("  the slowest ops:")
    for op, seconds in by_op.most_common(20):
        print(f"    {1000 * seconds:8.1f} ms/step  {op[-110:]}")


if __name__ == "__main__":
    main()
