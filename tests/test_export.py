"""SavedModel and LiteRT export, checked against the Keras model, TF's own tools and LiteRT.

The main fixture exports the bundled 26-style model once (it is the small `android_26` network,
so this costs a few seconds); a tiny random model serves the CLI and failure tests.
"""

import base64
import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import tool_env
from PIL import Image

from image_stylization import export as ex
from image_stylization import image_io
from image_stylization.checkpoint import CheckpointError, load_model, save_model
from image_stylization.model import build_transformer, magenta_name, norm_layers

REPO = pathlib.Path(__file__).resolve().parents[1]
SAVED_MODEL_CLI = pathlib.Path(sys.executable).with_name("saved_model_cli")
# Mean |dynamic-range LiteRT - Keras| on [0,1] pixels: 0.013 for this test's image, 0.006-0.018 on
# photos at 256-1024 px (BUILD_NOTES.md).
QUANTIZED_MEAN_BOUND = 0.025


def _env():
    env = tool_env()
    env.pop("PYTHONPATH", None)
    return env


def _test_image(h, w, seed=0):
    """A smooth image with edges (a photo-like input: random noise would be a poor test)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x + 4 * y)], axis=-1)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = rng.uniform(0, 1, 3)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype("float32")


def _png(array_uint8):
    buf = io.BytesIO()
    Image.fromarray(array_uint8).save(buf, format="PNG")
    return buf.getvalue()


def _stylize(model, image, weights):
    return np.asarray(model({"image": image, "style_weights": weights}))


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The bundled model, exported once by `export()` in both formats, plus a quantized file."""
    root = tmp_path_factory.mktemp("bundled")
    written = ex.export(export_dir=root / "export", format="both")
    model = load_model(None)
    quantized = ex.export_litert(model, root / "quantized.tflite", quantize="dynamic_range")
    return model, written, pathlib.Path(quantized)


@pytest.fixture(scope="module")
def loaded(bundled):
    return tf.saved_model.load(bundled[1]["saved_model"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random 2-style checkpoint (non-trivial CIN tables, so the style weights matter)."""
    model = build_transformer(2, preset="android_26", alpha=0.25)
    rng = np.random.default_rng(5)
    for layer in norm_layers(model):
        layer.gamma.assign(rng.normal(1, 0.5, layer.gamma.shape).astype("float32"))
        layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype("float32"))
    return model, save_model(model, tmp_path_factory.mktemp("tiny") / "ckpt", ["one", "two"])


# --- SavedModel ---------------------------------------------------------------------------------

def test_layout_and_style_names(bundled):
    model, written, _ = bundled
    export_dir = pathlib.Path(written["saved_model"]).parent
    assert sorted(os.listdir(export_dir)) == ["model.tflite", "saved_model", "style_names.txt"]
    names = (export_dir / "style_names.txt").read_text(encoding="utf-8").splitlines()
    assert names == model.style_names and len(names) == 26
    asset = pathlib.Path(written["saved_model"], "assets", "style_names.txt")
    assert asset.read_text(encoding="utf-8").splitlines() == model.style_names


def test_variables_stored_once(bundled):
    model, written, _ = bundled
    stored = dict(tf.train.list_variables(os.path.join(written["saved_model"], "variables",
                                                       "variables")))
    stored.pop("_CHECKPOINTABLE_OBJECT_GRAPH")
    # Keras' model.export() would list 2 x len(model.weights) here (variables/N, _all_variables/N).
    assert len(stored) == len(model.weights)
    assert sum(int(np.prod(s)) for s in stored.values()) == model.count_params()
    keys = {k.split("/")[1].replace(".S", "/") for k in stored}  # checkpoint keys escape "/"
    assert keys == {magenta_name(v) for v in model.weights}


def test_serving_default_equals_keras(bundled, loaded):
    model, _, _ = bundled
    assert set(loaded.signatures) == {"serving_default", "stylize_encoded", "style_names"}
    image = np.stack([_test_image(36, 50, 1), _test_image(36, 50, 2)])  # not a multiple of 4
    weights = np.zeros((2, 26), "float32")
    weights[0, 3] = 1
    weights[1, [5, 19]] = 0.3, 0.7
    out = loaded.signatures["serving_default"](image=tf.constant(image),
                                               style_weights=tf.constant(weights))
    assert list(out) == ["stylized"]
    np.testing.assert_allclose(out["stylized"].numpy(), _stylize(model, image, weights), atol=1e-5)
    # One image with several style rows: one output per row.
    out = loaded.signatures["serving_default"](image=tf.constant(image[:1]),
                                               style_weights=tf.constant(weights))
    np.testing.assert_allclose(out["stylized"].numpy(), _stylize(model, image[[0, 0]], weights),
                               atol=1e-5)
    # One image, one row: the norms' one-example statistics, chosen per call (the batch is open).
    out = loaded.signatures["serving_default"](image=tf.constant(image[:1]),
                                               style_weights=tf.constant(weights[:1]))
    np.testing.assert_allclose(out["stylized"].numpy(),
                               _stylize(model, image[[0, 0]], weights[[0, 0]])[:1], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="height must be >= 16"):
        loaded.signatures["serving_default"](image=tf.zeros([1, 12, 40, 3]),
                                             style_weights=tf.constant(weights[:1]))


def test_stylize_encoded_alpha_and_grayscale(bundled, loaded):
    """PNG in, PNG out, with image_io's conventions (alpha onto white, gray to RGB, rounding)."""
    model, _, _ = bundled
    fn = loaded.signatures["stylize_encoded"]
    rgba = (np.concatenate([_test_image(24, 32), np.ones((24, 32, 1), "f4")], -1) * 255).round()
    rgba[:8, :, 3] = 0  # a transparent band with colour under it
    gray = (_test_image(20, 18)[:, :, 0] * 255).round()
    weights = np.eye(26, dtype="float32")[7]
    for pixels in (rgba.astype("uint8"), gray.astype("uint8")):
        data = _png(pixels)
        png = fn(image_bytes=tf.constant(data), style_weights=tf.constant(weights))["png_bytes"]
        got = np.asarray(Image.open(io.BytesIO(png.numpy())))
        expected = image_io.to_uint8(
            _stylize(model, image_io.load_image(Image.open(io.BytesIO(data)))[None], weights[None])[0])
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_rest_request_of_the_docs(bundled, loaded):
    """The TF Serving request body of docs/serving_and_mobile.md, mapped to tensors as TF
    Serving's REST API documents it (columnar "inputs"; {"b64": ...} for binary strings; a single
    output is not named)."""
    model, _, _ = bundled
    image = image_io.to_uint8(_test_image(24, 20, 9))
    body = json.dumps({
        "signature_name": "stylize_encoded",
        "inputs": {"image_bytes": {"b64": base64.b64encode(_png(image)).decode("ascii")},
                   "style_weights": [1.0 if i == 4 else 0.0 for i in range(26)]},
    })
    request = json.loads(body)
    fn = loaded.signatures[request["signature_name"]]
    tensors = {}
    for name, value in request["inputs"].items():
        if isinstance(value, dict):
            value = base64.b64decode(value["b64"])
        tensors[name] = tf.constant(value, dtype=fn.structured_input_signature[1][name].dtype)
    (name, out), = fn(**tensors).items()
    assert name.endswith("_bytes")  # so TF Serving answers {"outputs": {"b64": ...}}
    response = json.loads(json.dumps({"outputs": {"b64": base64.b64encode(out.numpy()).decode()}}))
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(response["outputs"]["b64"]))))
    weights = np.eye(26, dtype="float32")[[4]]
    expected = image_io.to_uint8(_stylize(model, image[None] / np.float32(255), weights)[0])
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_fresh_process_without_the_package(bundled, tmp_path):
    """tf.saved_model.load in a new interpreter that never imports image_stylization."""
    model, written, _ = bundled
    image = _test_image(40, 48, 3)
    weights = np.eye(26, dtype="float32")[[2]]
    jpeg = io.BytesIO()
    Image.fromarray(image_io.to_uint8(image)).save(jpeg, format="JPEG", quality=95)
    np.savez(tmp_path / "in.npz", image=image[None], weights=weights,
             jpeg=np.frombuffer(jpeg.getvalue(), np.uint8))
    script = textwrap.dedent("""
        import json, sys
        import numpy as np, tensorflow as tf
        d = np.load("in.npz", allow_pickle=False)
        m = tf.saved_model.load(sys.argv[1])
        out = m.signatures["serving_default"](image=tf.constant(d["image"]),
                                              style_weights=tf.constant(d["weights"]))["stylized"]
        png = m.signatures["stylize_encoded"](image_bytes=tf.constant(d["jpeg"].tobytes()),
                                              style_weights=tf.constant(d["weights"][0]))
        names = m.signatures["style_names"]()["style_names"].numpy()
        np.savez("out.npz", stylized=out.numpy(),
                 png=np.frombuffer(png["png_bytes"].numpy(), np.uint8))
        json.dump({"names": [n.decode("utf-8") for n in names],
                   "modules": sorted(k for k in sys.modules
                                     if k.split(".")[0] == "image_stylization")},
                  open("out.json", "w"))
    """)
    subprocess.run([sys.executable, "-c", script, written["saved_model"]], cwd=tmp_path,
                   env=_env(), check=True, capture_output=True, timeout=120)
    info = json.loads((tmp_path / "out.json").read_text())
    # (`import tensorflow` itself imports Keras, so only this package is looked for.)
    assert info["modules"] == []
    assert info["names"] == model.style_names
    out = np.load(tmp_path / "out.npz", allow_pickle=False)
    np.testing.assert_allclose(out["stylized"], _stylize(model, image[None], weights), atol=1e-5)
    # The JPEG went through TF's decoder there and Pillow's here.
    got = np.asarray(Image.open(io.BytesIO(out["png"].tobytes()))).astype(int)
    decoded = image_io.load_image(Image.open(io.BytesIO(jpeg.getvalue())))
    expected = image_io.to_uint8(_stylize(model, decoded[None], weights)[0]).astype(int)
    assert got.shape == (40, 48, 3)
    assert np.abs(got - expected).max() <= 1


def test_saved_model_cli_show(bundled):
    _, written, _ = bundled
    out = subprocess.run([str(SAVED_MODEL_CLI), "show", "--dir", written["saved_model"], "--all"],
                         env=_env(), check=True, capture_output=True, text=True, timeout=120).stdout
    sigs = {}
    for block in out.split("signature_def['")[1:]:
        sigs[block.split("'")[0]] = " ".join(block.split())
    assert set(sigs) >= {"serving_default", "stylize_encoded", "style_names"}
    for name, expected in {
        "serving_default": ["inputs['image'] tensor_info: dtype: DT_FLOAT shape: (-1, -1, -1, 3)",
                            "inputs['style_weights'] tensor_info: dtype: DT_FLOAT shape: (-1, 26)",
                            "outputs['stylized'] tensor_info: dtype: DT_FLOAT shape: (-1, -1, -1, 3)"],
        "stylize_encoded": ["inputs['image_bytes'] tensor_info: dtype: DT_STRING shape: ()",
                            "inputs['style_weights'] tensor_info: dtype: DT_FLOAT shape: (26)",
                            "outputs['png_bytes'] tensor_info: dtype: DT_STRING shape: ()"],
        "style_names": ["outputs['style_names'] tensor_info: dtype: DT_STRING shape: (26)"],
    }.items():
        for line in expected:
            assert line in sigs[name], (name, line, sigs[name])


def test_saved_model_cli_run_both_signatures(bundled, tmp_path):
    """The saved_model_cli commands of docs/serving_and_mobile.md: a float batch, and a PNG from a .npy string array."""
    model, written, _ = bundled
    image = _test_image(32, 40, 4)
    weights = np.zeros(26, "float32")
    weights[[0, 12]] = 0.5
    np.save(tmp_path / "image.npy", image[None])
    np.save(tmp_path / "weights.npy", weights[None])
    data = _png(image_io.to_uint8(image))
    np.save(tmp_path / "png.npy", np.array(data))  # dtype S: no pickle (a PNG ends in non-zero)
    base = [str(SAVED_MODEL_CLI), "run", "--dir", written["saved_model"], "--tag_set", "serve"]
    subprocess.run(base + ["--signature_def", "serving_default",
                           "--inputs", f"image={tmp_path / 'image.npy'};"
                                       f"style_weights={tmp_path / 'weights.npy'}",
                           "--outdir", str(tmp_path / "a")],
                   env=_env(), check=True, capture_output=True, timeout=120)
    expected = _stylize(model, image[None], weights[None])
    np.testing.assert_allclose(np.load(tmp_path / "a" / "stylized.npy"), expected, atol=1e-5)
    np.save(tmp_path / "w.npy", weights)
    subprocess.run(base + ["--signature_def", "stylize_encoded",
                           "--inputs", f"image_bytes={tmp_path / 'png.npy'};"
                                       f"style_weights={tmp_path / 'w.npy'}",
                           "--outdir", str(tmp_path / "b")],
                   env=_env(), check=True, capture_output=True, timeout=120)
    png = np.load(tmp_path / "b" / "png_bytes.npy", allow_pickle=False).item()
    got = np.asarray(Image.open(io.BytesIO(png)))
    assert np.abs(got.astype(int) - image_io.to_uint8(expected[0])).max() <= 1


# --- LiteRT -------------------------------------------------------------------------------------

def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=1)


def _run_litert(interpreter, image, weights):
    """Raw API, as on a phone: resize the dynamic H,W, allocate, set, invoke."""
    inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    (image_index,) = [i for n, i in inputs.items() if "image" in n]
    (weights_index,) = [i for n, i in inputs.items() if "style_weights" in n]
    interpreter.resize_tensor_input(image_index, image.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(image_index, image)
    interpreter.set_tensor(weights_index, weights)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_litert_builtin_ops_only(bundled):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _, written, quantized = bundled
    for path in (written["litert"], quantized):
        ops = ex.litert_op_names(pathlib.Path(path).read_bytes())
        assert all(op.isupper() for op in ops), ops  # custom/Flex ops are CamelCase
        # The network's own arrangement: upsampling folded into convs at low resolution, the
        # last conv through space_to_depth, reflection padding by concatenation (LiteRT's
        # MIRROR_PAD is not delegated to XNNPACK and was the slowest op).
        assert {"CONV_2D", "CONCATENATION", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"} <= set(ops)
        assert not {"RESIZE_NEAREST_NEIGHBOR", "MIRROR_PAD"} & set(ops), ops
        # The interpreter, without XNNPACK replacing nodes, sees the same operators.
        interp = Interpreter(model_path=str(path),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
        assert sorted({d["op_name"] for d in interp._get_ops_details()}) == ops


def test_litert_float_dynamic_sizes(bundled):
    model, written, _ = bundled
    interp = _interpreter(written["litert"])
    assert interp.get_signature_list() == {
        "serving_default": {"inputs": ["image", "style_weights"], "outputs": ["stylized"]}}
    shapes = {d["name"]: list(d["shape_signature"]) for d in interp.get_input_details()}
    assert sorted(shapes.values()) == [[1, -1, -1, 3], [1, 26]]
    weights = np.eye(26, dtype="float32")[[9]]
    for h, w in ((36, 52), (64, 40)):  # one interpreter, resized twice
        image = _test_image(h, w, h)[None]
        got = _run_litert(interp, image, weights)
        assert got.shape == (1, h, w, 3)
        assert np.abs(got - _stylize(model, image, weights)).max() <= 1e-4


def test_litert_dynamic_range_quantized(bundled):
    model, written, quantized = bundled
    assert os.path.getsize(quantized) < 0.5 * os.path.getsize(written["litert"])
    interp = _interpreter(quantized)
    assert any(d["dtype"] == np.int8 for d in interp.get_tensor_details())  # int8 weights
    image = _test_image(64, 64, 7)[None]
    weights = np.eye(26, dtype="float32")[[19]]
    diff = np.abs(_run_litert(interp, image, weights) - _stylize(model, image, weights))
    assert 1e-4 < diff.mean() <= QUANTIZED_MEAN_BOUND, diff.mean()


# --- Bad input ----------------------------------------------------------------------------------

def test_bad_arguments_write_nothing(tiny, tmp_path):
    _, ckpt = tiny
    target = tmp_path / "out"
    for kwargs, message in [
        (dict(format="onnx"), "--format must be one of"),
        (dict(quantize="int4", format="litert"), "--quantize must be one of"),
        (dict(quantize="dynamic_range"), "apply to LiteRT only"),
        (dict(format="litert", image_size=8), ">= 16"),
    ]:
        with pytest.raises(ex.ExportError, match=message):
            ex.export(checkpoint=ckpt, export_dir=target, **kwargs)
    existing = tmp_path / "model.tflite"
    existing.write_bytes(b"keep")
    with pytest.raises(ex.ExportError, match="exists"):
        ex.export_litert(object(), existing)  # refused before the model is even looked at
    assert existing.read_bytes() == b"keep"
    existing.unlink()
    with pytest.raises(ex.ExportError, match="cannot create it .*manifest.json is not a directory"):
        ex.export(checkpoint=ckpt, export_dir=pathlib.Path(ckpt) / "manifest.json" / "x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a zip")
    (broken / "manifest.json").write_text('{"style_names": ["a"]}')
    with pytest.raises(CheckpointError, match="cannot load model"):
        ex.export(checkpoint=broken, export_dir=target)
    assert sorted(os.listdir(tmp_path)) == ["broken"]


def test_non_empty_dir_and_overwrite(tiny, tmp_path):
    model, _ = tiny
    target = tmp_path / "sm"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ex.ExportError, match="not empty"):
        ex.export_saved_model(model, target)
    # Even with overwrite, a directory holding anything an export does not write is kept.
    with pytest.raises(ex.ExportError, match="not replacing it"):
        ex.export_saved_model(model, target, overwrite=True)
    assert os.listdir(target) == ["notes.txt"]
    os.remove(target / "notes.txt")
    (target / "saved_model.pb").write_bytes(b"an earlier export")
    with pytest.raises(ex.ExportError, match="not empty"):
        ex.export_saved_model(model, target)
    ex.export_saved_model(model, target, overwrite=True)
    assert tf.saved_model.contains_saved_model(str(target))
    assert (target / "saved_model.pb").read_bytes() != b"an earlier export"
    assert sorted(os.listdir(tmp_path)) == ["sm"]  # no temporary or old directory left


def test_failure_midway_leaves_nothing(tiny, tmp_path, monkeypatch):
    _, ckpt = tiny

    def broken_litert(*args, **kwargs):
        raise ex.ExportError("LiteRT conversion failed: simulated")

    monkeypatch.setattr(ex, "export_litert", broken_litert)
    with pytest.raises(ex.ExportError, match="simulated"):
        ex.export(checkpoint=ckpt, export_dir=tmp_path / "new" / "out", format="both")
    # The SavedModel written first is gone, and so is the parent directory made for it.
    assert os.listdir(tmp_path) == []


# --- CLI ----------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "image_stylization.image_stylization_export", *args],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)


def test_cli_litert_fixed_size(tiny, tmp_path):
    model, ckpt = tiny
    out = tmp_path / "e"
    r = _cli(f"--checkpoint={ckpt}", f"--export_dir={out}", "--format=litert",
             "--image_size=32,40")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["model.tflite", "style_names.txt"]
    assert (out / "style_names.txt").read_text().splitlines() == ["one", "two"]
    interp = _interpreter(out / "model.tflite")
    shapes = sorted(list(d["shape_signature"]) for d in interp.get_input_details())
    assert shapes == [[1, 2], [1, 32, 40, 3]]
    image = _test_image(32, 40)[None]
    weights = np.array([[0.25, 0.75]], "float32")
    np.testing.assert_allclose(_run_litert(interp, image, weights),
                               _stylize(model, image, weights), atol=1e-4)


def test_cli_checkpoint_that_does_not_load(tmp_path):
    r = _cli(f"--checkpoint={tmp_path / 'missing'}", f"--export_dir={tmp_path / 'e'}")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "missing" in lines[0], r.stderr
    assert os.listdir(tmp_path) == []
