"""The transformer network: sizes, parameter counts, names, blending, serialization."""

import numpy as np
import pytest

import keras

from image_stylization.model import (
    build_transformer,
    conv_layers,
    count_parameters,
    magenta_name,
    norm_layers,
)

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
