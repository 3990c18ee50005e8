"""The VGG loss network: end point names, structure, weight loading, and its features on real
photos with the real quantized VGG-19 weights against an independent numpy forward pass."""

import warnings

import keras
import numpy as np
import pytest
from conftest import shared_path
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from image_stylization import vgg

# SOURCES.md section 4.
NPZ_SHA256 = "edb245da4d7df9e043c48c0ce967616a700c0f963a8af46b4fa3608ff35e3e20"
VGG19_BLOCKS = (2, 2, 4, 4, 4)
BGR_MEAN = np.array([103.939, 116.779, 123.68])


def npz_path():
    return str(shared_path("vgg", "vgg19_notop_q8.npz"))


def photo(stem, height, width):
    """A content photo as float [H, W, 3] in [0, 1], read and resized with Pillow alone."""
    path = shared_path("content", f"{stem}.jpg")
    with Image.open(path) as img:
        img = img.convert("RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def numpy_vgg19(image, npz, pooling="avg", flip_to_bgr=True):
    """Reference forward pass from SOURCES.md's description of the .npz, in float64.

    Convolutions are 3x3 cross-correlations with zero padding 1 written as an einsum over sliding
    windows, directly with the file's OIHW kernels (no HWIO transpose, no TF).
    """
    x = image.astype(np.float64) * 255.0
    if flip_to_bgr:
        x = x[:, :, ::-1]
    x = x - BGR_MEAN
    out = {}
    with np.load(npz, allow_pickle=False) as z:
        for block, n in enumerate(VGG19_BLOCKS, start=1):
            for i in range(1, n + 1):
                name = f"block{block}_conv{i}"
                w = z[f"{name}_W_table"].astype(np.float64)[z[f"{name}_W_q"]]  # [O, I, 3, 3]
                windows = sliding_window_view(np.pad(x, ((1, 1), (1, 1), (0, 0))), (3, 3), axis=(0, 1))
                x = np.maximum(np.einsum("hwcij,ocij->hwo", windows, w, optimize=True) + z[f"{name}_b"], 0)
                out[name] = x
            h, w_, c = x.shape
            x = x[: h // 2 * 2, : w_ // 2 * 2].reshape(h // 2, 2, w_ // 2, 2, c)
            x = x.mean(axis=(1, 3)) if pooling == "avg" else x.max(axis=(1, 3))
            out[f"block{block}_pool"] = x
            if block == 4:
                return out
    return out


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, network, expected",
    [
        ("conv1", "vgg16", "block1_conv2"),
        ("conv3", "vgg16", "block3_conv3"),
        ("conv3", "vgg19", "block3_conv4"),
        ("vgg_16/conv4", "vgg16", "block4_conv3"),
        ("vgg_16/conv4", "vgg19", "block4_conv4"),
        ("vgg_19/conv5", "vgg19", "block5_conv4"),
        ("pool2", "vgg19", "block2_pool"),
        ("block3_conv3", "vgg19", "block3_conv3"),
        ("block3_conv1", "vgg16", "block3_conv1"),
    ],
)
def test_normalize_end_point(name, network, expected):
    assert vgg.normalize_end_point(name, network) == expected


@pytest.mark.parametrize("name, network", [("conv6", "vgg16"), ("block3_conv4", "vgg16"), ("fc7", "vgg19"),
                                           ("vgg_16/", "vgg16"), ("relu3_3", "vgg19")])
def test_unknown_end_point_names_valid_ones(name, network):
    with pytest.raises(ValueError, match=r"unknown .*valid: conv1, pool1, conv2.*block1_conv1"):
        vgg.normalize_end_point(name, network)


def test_sort_end_points_by_depth_without_duplicates():
    got = vgg.sort_end_points(["vgg_16/conv4", "conv1", "block4_conv3", "pool1"], "vgg16")
    assert got == ["block1_conv2", "block1_pool", "block4_conv3"]


# --- structure -------------------------------------------------------------------------------


def test_structure_avg_pooling_truncated_frozen():
    model = vgg.build_loss_network("vgg16", None, "avg", ("conv1", "vgg_16/conv3"))
    names = [layer.name for layer in model.layers]
    assert names[-1] == "block3_conv3"  # cut after the deepest end point
    pools = [layer for layer in model.layers if layer.name.endswith("_pool")]
    assert len(pools) == 2 and all(isinstance(p, keras.layers.AveragePooling2D) for p in pools)
    assert model.trainable_weights == [] and len(model.weights) == 2 * 7
    out = model(np.random.default_rng(0).random((2, 20, 36, 3), dtype=np.float32))
    assert set(out) == {"block1_conv2", "block3_conv3"}
    assert tuple(out["block1_conv2"].shape) == (2, 20, 36, 64)
    assert tuple(out["block3_conv3"].shape) == (2, 5, 9, 256)
    assert model.end_points == ("block1_conv2", "block3_conv3") and model.weights_sha256 is None


def test_max_pooling_option():
    model = vgg.build_loss_network("vgg19", None, "max", ("pool1",))
    assert isinstance(model.get_layer("block1_pool"), keras.layers.MaxPooling2D)


def test_float32_under_a_mixed_precision_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = vgg.build_loss_network("vgg16", None, "avg", ("conv2",))
        out = model(np.full((1, 16, 16, 3), 0.5, np.float16))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert out["block2_conv2"].dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights)


def test_caffe_preprocessing_hand_checked():
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32) / 255.0
    got = np.asarray(vgg.CaffePreprocessing()(rgb))[0, 0, 0]
    np.testing.assert_allclose(got, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss network"):
        vgg.build_loss_network("vgg11", None)
    with pytest.raises(ValueError, match="unknown pooling"):
        vgg.build_loss_network("vgg16", None, "median")
    with pytest.raises(vgg.WeightsError, match="no such weights file"):
        vgg.build_loss_network("vgg16", "/nonexistent/vgg.npz")


def test_imagenet_download_failure_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(vgg.WeightsError, match="cannot fetch the ImageNet vgg16 weights .*local weights"):
        vgg.build_loss_network("vgg16", "imagenet")


# --- weight files ----------------------------------------------------------------------------


@pytest.mark.slow
def test_keras_h5_weights_load_by_layer_name(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None)
    path = str(tmp_path / "vgg16.h5")
    source.save(path)  # Keras' legacy HDF5, the format of the keras.applications downloads
    model = vgg.build_loss_network("vgg16", path, end_points=("conv3",))
    for name in ("block1_conv1", "block3_conv3"):
        for got, want in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(vgg.WeightsError, match="not vgg19 weights"):
        vgg.build_loss_network("vgg19", path)


@pytest.mark.slow
def test_weights_h5_of_the_other_network_is_one_error_without_warnings(tmp_path):
    path = str(tmp_path / "vgg19.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(vgg.WeightsError, match="vgg19.weights.h5: not vgg16 weights"):
            vgg.build_loss_network("vgg16", path, end_points=("conv1",))
    # Keras' 32 "Skipping nested container" warnings used to come before the error.
    assert [str(w.message) for w in caught] == []


def test_npz_weights_refuse_vgg16_and_record_sha256():
    with pytest.raises(vgg.WeightsError, match="holds vgg19 weights, but the network is vgg16"):
        vgg.build_loss_network("vgg16", npz_path(), end_points=("conv1",))
    assert vgg.weights_sha256(npz_path()) == NPZ_SHA256


def test_corrupt_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(vgg.WeightsError, match="bad.npz: cannot read weights"):
        vgg.build_loss_network("vgg19", str(bad), end_points=("conv1",))


# --- real weights ----------------------------------------------------------------------------


@pytest.mark.slow
def test_vgg19_features_equal_numpy_forward_pass_and_bgr_matters():
    image = photo("n02099601_golden_retriever", 64, 80)  # non-square: catches H/W mix-ups
    model = vgg.build_loss_network("vgg19", npz_path(), "avg", ("conv1", "conv2", "conv3", "conv4"))
    ours = {k: v.numpy()[0] for k, v in model(image[None]).items()}
    ref = numpy_vgg19(image, npz_path(), "avg")
    for name in ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4"):
        assert ours[name].shape == ref[name].shape
        assert rel_err(ours[name], ref[name]) <= 1e-4, name
        assert np.mean(ref[name] > 0) > 0.05  # not a dead, all-zero layer

    # Feeding RGB where the weights expect BGR is a measurable, not a rounding, difference ...
    rgb_ref = numpy_vgg19(image, npz_path(), "avg", flip_to_bgr=False)
    assert rel_err(ours["block4_conv4"], rgb_ref["block4_conv4"]) > 0.05
    # ... and so is swapping the channels of the input.
    swapped = model(image[None, :, :, ::-1].copy())["block4_conv4"].numpy()[0]
    assert rel_err(swapped, ref["block4_conv4"]) > 0.05

    maxed = vgg.build_loss_network("vgg19", npz_path(), "max", ("conv2",))
    ref_max = numpy_vgg19(image, npz_path(), "max")
    assert rel_err(maxed(image[None])["block2_conv2"].numpy()[0], ref_max["block2_conv2"]) <= 1e-4


@pytest.mark.slow
def test_two_dogs_are_closer_than_a_dog_and_a_pizza():
    stems = ["n02099601_golden_retriever", "n02099712_Labrador_retriever", "n07873807_pizza"]
    batch = np.stack([photo(s, 64, 64) for s in stems])
    model = vgg.build_loss_network("vgg19", npz_path(), "avg", ("conv5",))
    pooled = model(batch)["block5_conv4"].numpy().mean(axis=(1, 2))
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    sim = pooled @ pooled.T
    # Measured 0.34 vs 0.11 / 0.07; random or within-layer shuffled weights give ~1.0 for all
    # three, so the margin (not just the order) is what shows the weights are ImageNet's.
    assert sim[0, 1] - max(sim[0, 2], sim[1, 2]) > 0.1, sim

