"""The transformer network: sizes, parameter counts, names, blending, serialization, and its
arithmetic against a float64 numpy forward pass (numpy_reference.py)."""

import numpy as np
import pytest
from PIL import Image

import keras

import numpy_reference
from image_stylization.checkpoint import bundled_checkpoint_dir, load_model
from image_stylization import layers as layers_module
from image_stylization.layers import NearestUpsampling2D, ReflectionPadConv2D
from image_stylization.model import (
    build_transformer,
    conv_layers,
    count_parameters,
    fuse_upsampling,
    magenta_name,
    norm_layers,
)
from image_stylization.stylize import demo_image_path

rng = np.random.default_rng(1)


def randomize_tables(model):
    for layer in norm_layers(model):
        layer.gamma.assign(rng.normal(1.0, 0.3, layer.gamma.shape).astype("float32"))
        layer.beta.assign(rng.normal(0.0, 0.3, layer.beta.shape).astype("float32"))


def run(model, image, weights):
    return np.asarray(model({"image": image, "style_weights": weights}))


@pytest.fixture(scope="module")
def small():
    model = build_transformer(4, preset="android_26")
    randomize_tables(model)
    return model


@pytest.mark.parametrize("h,w", [(16, 16), (97, 131), (255, 256)])
def test_output_size_equals_input_size(small, h, w):
    y = run(small, rng.random((2, h, w, 3), dtype="float32"), np.eye(4, dtype="float32")[:2])
    assert y.shape == (2, h, w, 3)
    assert np.all((y > 0) & (y < 1))


def test_paper_preset_counts():
    model = build_transformer(32, preset="paper")
    assert count_parameters(model) == (1_674_432, 3_206)
    assert model.count_params() == 1_777_024


def test_android_26_preset_counts():
    model = build_transformer(26, preset="android_26")
    assert count_parameters(model) == (140_364, 990)


def test_alpha_widths():
    # Magenta's alpha=0.25: 8/16/32, residual 32, expand 16/8, output 3.
    model = build_transformer(10, alpha=0.25)
    widths = [layer.filters for layer in conv_layers(model)]
    assert widths == [8, 16, 32] + [32] * 10 + [16, 8, 3]


def test_magenta_variable_names():
    names = {magenta_name(v) for v in build_transformer(2).weights}
    expected = {"transformer/contract/conv1/weights", "transformer/contract/conv3/InstanceNorm/gamma",
                "transformer/residual/residual5/conv2/InstanceNorm/beta",
                "transformer/expand/conv1/conv/weights", "transformer/expand/conv3/conv/InstanceNorm/gamma"}
    assert expected <= names
    assert len(names) == 16 * 3


def test_blend_equals_network_with_interpolated_tables(small):
    """A blend of styles is the 1-style network whose tables are the blended gamma/beta."""
    w = np.array([[0.1, 0.6, 0.0, 0.3]], dtype="float32")
    x = rng.random((1, 40, 36, 3), dtype="float32")
    single = build_transformer(1, preset="android_26")
    for src, dst in zip(small.layers, single.layers):
        for vs, vd in zip(src.weights, dst.weights):
            value = np.asarray(vs)
            if vs.path.endswith(("gamma", "beta")):
                value = w @ value.astype(np.float64)
            vd.assign(value.astype("float32"))
    np.testing.assert_allclose(run(small, x, w), run(single, x, np.ones((1, 1), "float32")), atol=1e-5)


def test_one_hot_selects_style(small):
    x = rng.random((1, 32, 32, 3), dtype="float32")
    outs = [run(small, x, np.eye(4, dtype="float32")[i : i + 1]) for i in range(4)]
    assert min(np.abs(outs[i] - outs[j]).max() for i in range(4) for j in range(i)) > 1e-3


def test_keras_save_load_identical(small, tmp_path):
    path = tmp_path / "t.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = rng.random((2, 20, 28, 3), dtype="float32")
    w = np.array([[1, 0, 0, 0], [0, 0.5, 0.5, 0]], dtype="float32")
    np.testing.assert_array_equal(run(small, x, w), run(loaded, x, w))


def test_weights_h5_round_trip(small, tmp_path):
    path = tmp_path / "t.weights.h5"
    small.save_weights(path)
    other = build_transformer(4, preset="android_26")
    other.load_weights(path)
    x = rng.random((1, 24, 24, 3), dtype="float32")
    w = np.eye(4, dtype="float32")[3:]
    np.testing.assert_array_equal(run(small, x, w), run(other, x, w))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_finite(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_transformer(3, preset="android_26")
    finally:
        keras.config.set_dtype_policy(previous)
    randomize_tables(model)
    y = run(model, rng.random((2, 64, 48, 3), dtype="float32"), np.eye(3, dtype="float32")[:2])
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert y.std() > 1e-3  # not a flat (black) image


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count(small, channels):
    # Keras' own input check or ours, whichever sees it first; both state the expected shape.
    expected = r"(\[batch, height, width, 3\]|expected shape=\(None, None, None, 3\))"
    with pytest.raises(ValueError, match=expected):
        small({"image": np.zeros((1, 32, 32, channels), "float32"),
               "style_weights": np.eye(4, dtype="float32")[:1]})


def test_wrong_style_width(small):
    with pytest.raises(ValueError, match=r"(num_styles=4|expected shape=\(None, 4\))"):
        small({"image": np.zeros((1, 32, 32, 3), "float32"), "style_weights": np.ones((1, 5), "float32")})


def test_too_small_image(small):
    with pytest.raises(ValueError, match=">= 16"):
        run(small, np.zeros((1, 8, 32, 3), "float32"), np.eye(4, dtype="float32")[:1])


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_styles=0), "num_styles must be an integer >= 1"),
    (dict(num_styles=3, preset="huge"), "preset must be one of"),
    (dict(num_styles=3, alpha=0), "alpha must be in"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_transformer(**kwargs)


# --- the arithmetic against float64 ---------------------------------------------------------------

BUNDLED = ["tf_stylize_26", "paper_6styles"]  # the android_26 and paper presets, trained weights


def _weights(model):
    return {magenta_name(v): np.asarray(v) for v in model.weights}


def _photo(size):
    image = Image.open(demo_image_path()).convert("RGB").resize((size, size), Image.LANCZOS)
    return (np.asarray(image, np.float32) / 255)[None]


@pytest.mark.parametrize("preset,alpha", [("android_26", 1.0), ("paper", 0.25), ("paper", 1.0)])
@pytest.mark.parametrize("shape", [(2, 37, 53), (1, 16, 16), (1, 64, 44)])
def test_random_weights_match_float64(preset, alpha, shape):
    model = numpy_reference.randomize(build_transformer(3, preset=preset, alpha=alpha), 7)
    x = rng.random(shape + (3,), dtype="float32")
    w = rng.random((shape[0], 3)).astype("float32")  # blends, not normalized
    expected = numpy_reference.forward(_weights(model), x, w)
    assert np.abs(run(model, x, w) - expected).max() <= 1e-5


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_match_float64_small(name):
    model = load_model(bundled_checkpoint_dir(name))
    n = len(model.style_names)
    x = np.concatenate([_photo(52)[:, :, :40], rng.random((1, 52, 40, 3), dtype="float32")])
    w = np.eye(n, dtype="float32")[[0, n - 1]]
    w[1] = 0.5 * w[1] + 0.5 / n
    expected = numpy_reference.forward(_weights(model), x, w)
    assert np.abs(run(model, x, w) - expected).max() <= 1e-5
    # One image, every style: the image goes in once (batch 1), one output per row.
    w = np.eye(n, dtype="float32")
    expected = numpy_reference.forward(_weights(model), x[:1], w)
    assert np.abs(run(model, x[:1], w) - expected).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_match_float64_at_1024(name):
    """The float32 network at 1024x1024 against float64, on a photo, in the graph stylize()
    runs. Style n-1 of tf_stylize_26 is its most sensitive one on this photo (8.2e-5, also
    with float64 moments: it is the float32 conv sums, amplified by the network); 20 s (android)
    and 80 s (paper) of float64 on 2 busy cores."""
    import importlib

    model = load_model(bundled_checkpoint_dir(name))
    n = len(model.style_names)
    x = _photo(1024)
    w = np.eye(n, dtype="float32")[[n - 1]]
    forward = importlib.import_module("image_stylization.stylize").compiled_forward(model)
    diff = np.abs(forward(x, w).numpy() - numpy_reference.forward(_weights(model), x, w))
    assert diff.max() <= 1e-4, diff.max()


# --- one graph, whatever wrote the file -------------------------------------------------------------

def normalize_batched(x, mean, variance, gamma, beta, epsilon, dtype):
    """`layers.normalize` in its batched form whatever the batch (the plain arrangement)."""
    import tensorflow as tf

    scale = gamma[:, None, None, :] * tf.math.rsqrt(variance + epsilon)
    return tf.cast(tf.cast(x, "float32") * scale + (beta[:, None, None, :] - mean * scale), dtype)


def _unfuse(model):
    """The plain arrangement: upsampling as its own layer, no space_to_depth conv."""
    for layer in model.layers:
        if isinstance(layer, ReflectionPadConv2D) and layer.upsample > 1:
            layer.upsample = 1
        if isinstance(layer, NearestUpsampling2D):
            layer.factor = 2
    return model


def test_upsampling_fused_into_the_conv():
    model = build_transformer(2, preset="paper", alpha=0.25)
    ups = [l for l in model.layers if isinstance(l, NearestUpsampling2D)]
    assert [l.factor for l in ups] == [1, 1]
    assert [l.upsample for l in conv_layers(model)] == [1] * 13 + [2, 2, 1]
    names = [l.name for l in model.layers]
    fuse_upsampling(model)  # idempotent
    assert [l.upsample for l in conv_layers(model)] == [1] * 13 + [2, 2, 1]
    assert [l.name for l in model.layers] == names


def test_file_in_the_old_layout_loads_fused(tmp_path):
    """A .keras file written before the fusion (upsampling layers of factor 2, as the bundled
    files are) loads into the fused arrangement: same layers, variables and pictures."""
    model = numpy_reference.randomize(build_transformer(2, preset="android_26"), 3)
    x = rng.random((1, 36, 44, 3), dtype="float32")
    w = np.array([[0.3, 0.7]], "float32")
    fused = run(model, x, w)
    path = tmp_path / "old.keras"
    _unfuse(model).save(path)
    plain = keras.saving.load_model(path, safe_mode=True)
    assert [l.factor for l in plain.layers if isinstance(l, NearestUpsampling2D)] == [2, 2]
    loaded = load_model(path)
    assert [l.factor for l in loaded.layers if isinstance(l, NearestUpsampling2D)] == [1, 1]
    assert [l.name for l in loaded.layers] == [l.name for l in plain.layers]
    assert [v.path for v in loaded.weights] == [v.path for v in plain.weights]
    np.testing.assert_allclose(run(loaded, x, w), run(plain, x, w), atol=1e-6)
    np.testing.assert_allclose(run(loaded, x, w), fused, atol=1e-6)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files_unchanged_and_same_pictures(name):
    path = f"{bundled_checkpoint_dir(name)}/model.keras"
    plain = keras.saving.load_model(path, safe_mode=True)
    assert [l.factor for l in plain.layers if isinstance(l, NearestUpsampling2D)] == [2, 2]
    model = load_model(bundled_checkpoint_dir(name))
    x = _photo(64)
    w = np.eye(len(model.style_names), dtype="float32")[[1]]
    np.testing.assert_allclose(run(model, x, w), run(plain, x, w), atol=2e-6)


@pytest.mark.parametrize("batch", [2, 1])
def test_gradients_equal_plain_arrangement(monkeypatch, batch):
    """Training through the re-arranged layers: the gradient of every variable equals that of
    the plain arrangement, and the whole step compiles with XLA. Batch 1 (known when traced)
    takes the norms' fused form."""
    import tensorflow as tf

    model = numpy_reference.randomize(build_transformer(3, preset="android_26", alpha=0.5), 11)
    x = tf.constant(rng.random((batch, 24, 28, 3), dtype="float32"))
    w = tf.constant(np.eye(3, dtype="float32")[[0, 2][:batch]])
    target = tf.constant(rng.random((batch, 24, 28, 3), dtype="float32"))

    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model({"image": x, "style_weights": w}, training=True) - target))
        return tape.gradient(loss, model.trainable_variables)

    fast = [g.numpy() for g in tf.function(grads)()]
    compiled = [g.numpy() for g in tf.function(grads, jit_compile=True)()] if batch > 1 else fast
    _unfuse(model)
    monkeypatch.setattr(ReflectionPadConv2D, "S2D_MAX_FILTERS", 0)
    plain_norm = normalize_batched if batch == 1 else None
    if plain_norm:
        monkeypatch.setattr(layers_module, "normalize", plain_norm)
    plain = [g.numpy() for g in tf.function(grads)()]
    # Sums of many float32 terms of both signs: compared at 1e-4 of the variable's largest
    # gradient, plus a floor for variables whose gradient is zero but for rounding: a norm
    # ignores a shift of its input (the betas before a conv and a norm).
    floor = 1e-6 * max(np.abs(p).max() for p in plain)
    for f, c, p in zip(fast, compiled, plain):
        atol = 1e-4 * np.abs(p).max() + floor
        np.testing.assert_allclose(f, p, rtol=1e-3, atol=atol)
        np.testing.assert_allclose(c, p, rtol=1e-3, atol=atol)
