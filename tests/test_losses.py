"""Gram matrix, content, style and total variation losses against hand-computed values and
independent numpy loops; loss weight parsing."""

import numpy as np
import pytest
import tensorflow as tf

from image_stylization import losses


def np_gram(f):
    """Explicit loops over positions: G[b, i, j] = sum_{h,w} F[b,h,w,i] F[b,h,w,j] / (H*W)."""
    b, h, w, c = f.shape
    g = np.zeros((b, c, c))
    for n in range(b):
        for y in range(h):
            for x in range(w):
                v = f[n, y, x].astype(np.float64)
                g[n] += np.outer(v, v)
    return g / (h * w)


def random_features(seed, shapes, batch=3):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((batch,) + shape).astype(np.float32) for name, shape in shapes.items()}


SHAPES = {"block1_conv2": (6, 5, 4), "block3_conv3": (3, 2, 7)}


def test_gram_hand_checked():
    # Two positions with features (1, 2) and (3, 4): G = [[1+9, 2+12], [2+12, 4+16]] / 2.
    f = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    np.testing.assert_allclose(losses.gram_matrix(f).numpy(), [[[5.0, 7.0], [7.0, 10.0]]])


def test_gram_against_numpy_loops():
    f = random_features(0, {"x": (5, 7, 3)}, batch=2)["x"]
    got = losses.gram_matrix(f)
    assert got.dtype == tf.float32 and tuple(got.shape) == (2, 3, 3)
    np.testing.assert_allclose(got.numpy(), np_gram(f), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gram_gradient_equals_the_two_operand_gradient(dtype):
    """The Gram's gradient, written as one matmul, is TF's own gradient of F^T F (two matmuls),
    and the hand-derived one: d/dF sum(W * G) = F (W + W^T) / (H*W), in float64 numpy."""
    f = tf.constant(random_features(1, {"x": (6, 5, 4)}, batch=2)["x"], dtype)
    w = tf.constant(np.random.default_rng(2).normal(size=(2, 4, 4)), tf.float32)

    def grad(gram):
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(w * gram(f))
        return np.asarray(tape.gradient(loss, f), np.float64)

    def two_operands(f):
        x = tf.reshape(tf.cast(f, tf.float32), [2, 30, 4])
        return tf.matmul(x, x, transpose_a=True) / 30.0

    ours = grad(losses.gram_matrix)
    np.testing.assert_allclose(ours, grad(two_operands), rtol=1e-5, atol=1e-6)
    x = np.asarray(f, np.float64).reshape(2, 30, 4)
    wn = np.asarray(w, np.float64)
    by_hand = (x @ (wn + wn.transpose(0, 2, 1)) / 30.0).reshape(2, 6, 5, 4)
    np.testing.assert_allclose(ours, by_hand, rtol=1e-5 if dtype == "float32" else 1e-2, atol=1e-5)


def test_content_loss_hand_checked():
    p = {"a": np.ones((1, 2, 2, 1), np.float32)}
    c = {"a": np.zeros((1, 2, 2, 1), np.float32)}
    total, details = losses.content_loss(p, c, {"a": 2.0})
    np.testing.assert_allclose(total.numpy(), [2.0])
    np.testing.assert_allclose(details["content_loss/a"].numpy(), [1.0])
    np.testing.assert_allclose(details["weighted_content_loss/a"].numpy(), [2.0])


def test_content_loss_against_numpy():
    p, c = random_features(1, SHAPES), random_features(2, SHAPES)
    weights = {"block1_conv2": 0.5, "block3_conv3": 3.0}
    total, details = losses.content_loss(p, c, weights)
    want = np.zeros(3)
    for name, w in weights.items():
        per_layer = np.array([np.sum((p[name][b] - c[name][b]) ** 2) / p[name][b].size for b in range(3)])
        np.testing.assert_allclose(details[f"content_loss/{name}"].numpy(), per_layer, rtol=1e-5)
        want += w * per_layer
    assert tuple(total.shape) == (3,)
    np.testing.assert_allclose(total.numpy(), want, rtol=1e-5)


def test_style_loss_hand_checked():
    # Pastiche Gram [[5, 7], [7, 10]] (as above) against a zero target: mean of squares
    # (25 + 49 + 49 + 100) / 4 = 55.75; times weight 2 and coefficient 3.
    f = {"a": np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)}
    target = {"a": np.zeros((1, 2, 2), np.float32)}
    total, details = losses.style_loss(f, target, {"a": 2.0}, coefficients=[3.0])
    np.testing.assert_allclose(details["style_loss/a"].numpy(), [55.75])
    np.testing.assert_allclose(details["weighted_style_loss/a"].numpy(), [334.5])
    np.testing.assert_allclose(total.numpy(), [334.5])


def test_style_loss_against_numpy():
    p = random_features(3, SHAPES)
    rng = np.random.default_rng(4)
    targets = {n: rng.standard_normal((3, s[2], s[2])).astype(np.float32) for n, s in SHAPES.items()}
    weights = {"block1_conv2": 1e-4, "block3_conv3": 2.0}
    coefficients = np.array([1.0, 0.5, 4.0], np.float32)
    total, details = losses.style_loss(p, targets, weights, coefficients)
    want = np.zeros(3)
    for name, w in weights.items():
        diff = np_gram(p[name]) - targets[name]
        c = diff.shape[-1]
        per_layer = np.array([np.sum(diff[b] ** 2) / (c * c) for b in range(3)])
        np.testing.assert_allclose(details[f"style_loss/{name}"].numpy(), per_layer, rtol=1e-5)
        want += w * per_layer * coefficients
    np.testing.assert_allclose(total.numpy(), want, rtol=1e-5)


def test_total_loss_hand_checked():
    """content + style + TV by hand, on the single-example cases above."""
    f = {"a": np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)}
    c = {"a": np.array([[[[1.0, 2.0], [3.0, 6.0]]]], np.float32)}  # content: (4 - 6)^2 / 4 = 1
    target = {"a": np.zeros((1, 2, 2), np.float32)}  # style: 55.75 (above)
    stylized = np.array([[[[0.0], [2.0]], [[0.0], [0.0]]]], np.float32)
    # TV: 0.5 * (mean(dy^2) + mean(dx^2)) = 0.5 * (4/2 + 4/2) = 2, times the weight 10.
    total, details = losses.total_loss(f, c, target, {"a": 3.0}, {"a": 2.0}, coefficients=[0.5],
                                       stylized=stylized, total_variation_weight=10.0)
    np.testing.assert_allclose(details["content_loss"].numpy(), [3.0])
    np.testing.assert_allclose(details["style_loss"].numpy(), [55.75])
    np.testing.assert_allclose(details["total_variation_loss"].numpy(), [20.0])
    np.testing.assert_allclose(total.numpy(), [78.75])
    np.testing.assert_allclose(details["total_loss"].numpy(), [78.75])
    assert {"content_loss/a", "weighted_style_loss/a"} <= set(details)

    only_style, details = losses.total_loss(f, c, target, {}, {"a": 2.0})
    np.testing.assert_allclose(only_style.numpy(), [111.5])
    assert "content_loss" not in details and "total_variation_loss" not in details
    with pytest.raises(ValueError, match="nothing to minimize"):
        losses.total_loss(f, c, target, {}, {})
    with pytest.raises(ValueError, match="needs the stylized images"):
        losses.total_loss(f, c, target, {"a": 1.0}, {}, total_variation_weight=1.0)


def test_losses_zero_for_identical_inputs_and_gradients_finite():
    p = random_features(5, SHAPES)
    grams = {n: losses.gram_matrix(v) for n, v in p.items()}
    weights = {n: 1.0 for n in SHAPES}
    for same in (True, False):
        feats = {n: tf.Variable(v if same else v + 0.3) for n, v in p.items()}
        with tf.GradientTape() as tape:
            content, _ = losses.content_loss(feats, p, weights)
            style, _ = losses.style_loss(feats, grams, weights)
            total = tf.reduce_sum(content + style)
        grads = tape.gradient(total, list(feats.values()))
        assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
        if same:
            np.testing.assert_allclose(content.numpy(), 0.0, atol=0)
            np.testing.assert_allclose(style.numpy(), 0.0, atol=1e-10)
        else:
            assert np.all(content.numpy() > 0) and np.all(style.numpy() > 0)
            assert all(np.any(g.numpy() != 0) for g in grads)


def test_under_tf_function_with_mixed_precision_inputs():
    p, c = random_features(6, SHAPES), random_features(7, SHAPES)
    grams = {n: losses.gram_matrix(v) for n, v in c.items()}
    weights = {n: 1.0 for n in SHAPES}

    @tf.function(input_signature=[{n: tf.TensorSpec([None, None, None, s[2]], tf.float16) for n, s in SHAPES.items()}])
    def run(features):
        content, _ = losses.content_loss(features, c, weights)
        style, _ = losses.style_loss(features, grams, weights)
        tv = losses.total_variation_loss(features["block1_conv2"], 1.0)
        return content, style, tv

    half = {n: v.astype(np.float16) for n, v in p.items()}
    got = run(half)
    assert all(t.dtype == tf.float32 for t in got)
    # The float16 inputs, upcast, give what float32 inputs with the same values give.
    upcast = {n: v.astype(np.float32) for n, v in half.items()}
    np.testing.assert_allclose(got[0].numpy(), losses.content_loss(upcast, c, weights)[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got[1].numpy(), losses.style_loss(upcast, grams, weights)[0].numpy(), rtol=1e-5)
    bf16 = losses.gram_matrix(tf.cast(p["block3_conv3"], tf.bfloat16))
    assert bf16.dtype == tf.float32


def test_total_variation_hand_checked_and_against_magenta_formula():
    # Columns [0, 1]: dy = 0, dx = 1 at two positions; l2 = 2/2 = 1 over H*(W-1)*C = 2 -> 0.5.
    img = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]]], np.float32)
    np.testing.assert_allclose(losses.total_variation_loss(img, 1.0).numpy(), [0.5])

    x = np.random.default_rng(8).random((4, 5, 6, 3)).astype(np.float32)
    b, h, w, c = x.shape
    dy, dx = x[:, 1:] - x[:, :-1], x[:, :, 1:] - x[:, :, :-1]
    # Magenta's learning.total_variation_loss, for the whole batch.
    magenta = (np.sum(dy**2) / 2 / ((h - 1) * w * c) + np.sum(dx**2) / 2 / (h * (w - 1) * c)) / b * 0.7
    got = losses.total_variation_loss(x, 0.7).numpy()
    assert got.shape == (4,)
    np.testing.assert_allclose(got.mean(), magenta, rtol=1e-5)


def test_missing_end_point_is_a_clear_error():
    p = random_features(9, SHAPES)
    with pytest.raises(ValueError, match="no end point 'block5_conv3'"):
        losses.content_loss(p, p, {"block5_conv3": 1.0})


# --- weights ---------------------------------------------------------------------------------


def test_parse_magenta_string_and_dicts():
    assert losses.parse_loss_weights('{"vgg_16/conv3": 1.0}', "vgg16") == {"block3_conv3": 1.0}
    assert losses.parse_loss_weights("{'vgg_16/conv3': 2}", "vgg19") == {"block3_conv4": 2.0}
    assert losses.parse_loss_weights({"block2_conv1": 0.5, "conv1": 1e-4}, "vgg19") == {
        "block2_conv1": 0.5, "block1_conv2": 1e-4}
    assert losses.parse_loss_weights(losses.DEFAULT_STYLE_WEIGHTS, "vgg16") == {
        "block1_conv2": 1e-4, "block2_conv2": 1e-4, "block3_conv3": 1e-4, "block4_conv3": 1e-4}
    assert losses.parse_loss_weights(losses.DEFAULT_CONTENT_WEIGHTS, "vgg19") == {"block3_conv4": 1.0}


@pytest.mark.parametrize(
    "value, message",
    [
        ('__import__("os").system("true")', "cannot parse"),
        ('{"vgg_16/conv3": 1.0', "cannot parse"),
        ("[1, 2]", "must be a dict"),
        ('{"conv9": 1.0}', "unknown vgg16 end point 'conv9'"),
        ('{"conv3": "big"}', "must be a number"),
        ('{"conv3": -1}', "finite and >= 0"),
        ('{"conv3": float("nan")}', "cannot parse"),
        ('{"conv3": 1.0, "vgg_16/conv3": 2.0}', "twice"),
    ],
)
def test_parse_rejects(value, message):
    with pytest.raises(ValueError, match=message):
        losses.parse_loss_weights(value, "vgg16")


def test_loss_end_points_union_by_depth():
    content = losses.parse_loss_weights(losses.DEFAULT_CONTENT_WEIGHTS, "vgg19")
    style = losses.parse_loss_weights(losses.DEFAULT_STYLE_WEIGHTS, "vgg19")
    assert losses.loss_end_points("vgg19", content, style) == [
        "block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4"]
