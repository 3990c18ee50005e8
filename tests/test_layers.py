"""Layers against independent numpy references."""

import numpy as np
import pytest

import keras

from image_stylization.layers import (
    ConditionalInstanceNormalization,
    ConditionalStyleNormalization,
    NearestUpsampling2D,
    ReflectionPadConv2D,
    instance_norm,
    moments,
    normalize,
)

rng = np.random.default_rng(0)


def np_instance_norm(x, gamma, beta, eps=1e-5):
    """x [B,H,W,C]; gamma, beta [B,C]. Biased variance over H,W."""
    x = x.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma[:, None, None, :] + beta[:, None, None, :]


def np_reflect_conv(x, kernel, stride):
    """Reflection pad k//2 then VALID cross-correlation, in float64 loops over the kernel."""
    k = kernel.shape[0]
    p = k // 2
    xp = np.pad(x.astype(np.float64), [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect")
    b, h, w, _ = xp.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((b, oh, ow, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
            out += patch @ kernel[i, j].astype(np.float64)
    return out


def make_cin(num_styles, channels, eps=1e-5):
    layer = ConditionalInstanceNormalization(num_styles, epsilon=eps)
    layer.build(((None, None, None, channels), (None, num_styles)))
    gamma = rng.normal(1.0, 0.5, (num_styles, channels)).astype("float32")
    beta = rng.normal(0.0, 0.5, (num_styles, channels)).astype("float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    return layer, gamma, beta


class TestConditionalInstanceNormalization:
    def test_one_hot_matches_numpy(self):
        layer, gamma, beta = make_cin(5, 4)
        x = rng.normal(3.0, 2.0, (3, 6, 7, 4)).astype("float32")
        labels = np.array([4, 0, 2])
        w = np.eye(5, dtype="float32")[labels]
        y = np.asarray(layer([x, w]))
        np.testing.assert_allclose(y, np_instance_norm(x, gamma[labels], beta[labels]), atol=2e-5)

    def test_labels_equal_one_hot(self):
        layer, _, _ = make_cin(5, 4)
        x = rng.normal(size=(3, 6, 7, 4)).astype("float32")
        labels = np.array([1, 3, 3], dtype="int32")
        y_labels = np.asarray(layer([x, labels]))
        y_onehot = np.asarray(layer([x, np.eye(5, dtype="float32")[labels]]))
        np.testing.assert_array_equal(y_labels, y_onehot)

    def test_blend_is_convex_combination_of_tables(self):
        layer, gamma, beta = make_cin(3, 4)
        x = rng.normal(size=(2, 5, 5, 4)).astype("float32")
        w = np.array([[0.2, 0.0, 0.8], [1 / 3, 1 / 3, 1 / 3]], dtype="float32")
        y = np.asarray(layer([x, w]))
        np.testing.assert_allclose(y, np_instance_norm(x, w @ gamma, w @ beta), atol=2e-5)

    def test_one_image_many_styles(self):
        """x of batch 1 with 3 style rows: 3 outputs, each as if x had been repeated."""
        layer, gamma, beta = make_cin(5, 4)
        x = rng.normal(2.0, 3.0, (1, 6, 7, 4)).astype("float32")
        w = np.eye(5, dtype="float32")[[4, 0, 2]]
        y = np.asarray(layer([x, w]))
        assert y.shape == (3, 6, 7, 4)
        np.testing.assert_allclose(y, np_instance_norm(np.repeat(x, 3, 0), w @ gamma, w @ beta),
                                   atol=2e-5)

    def test_config_round_trip(self):
        layer = ConditionalInstanceNormalization(7, epsilon=1e-3, name="cin")
        clone = ConditionalInstanceNormalization.from_config(layer.get_config())
        assert (clone.num_styles, clone.epsilon, clone.name) == (7, 1e-3, "cin")

    def test_statistics_in_float32_under_float16(self):
        # Activations around 300 have a variance near 1e5, beyond float16's 65504.
        layer = ConditionalInstanceNormalization(2, dtype="mixed_float16")
        x = rng.normal(300.0, 300.0, (1, 8, 8, 3)).astype("float16")
        y = layer([x, np.eye(2, dtype="float32")[:1]])
        assert keras.backend.standardize_dtype(y.dtype) == "float16"
        assert np.all(np.isfinite(np.asarray(y, dtype="float32")))
        ref = np_instance_norm(x.astype("float32"), np.ones((1, 3)), np.zeros((1, 3)))
        np.testing.assert_allclose(np.asarray(y, dtype="float32"), ref, atol=1e-2)

    @pytest.mark.parametrize("n", [0, -1, 2.5, None])
    def test_bad_num_styles(self, n):
        with pytest.raises(ValueError, match="num_styles must be an integer >= 1"):
            ConditionalInstanceNormalization(n)

    def test_wrong_style_width(self):
        layer, _, _ = make_cin(4, 3)
        with pytest.raises(ValueError, match=r"style_weights must have shape \[batch, num_styles=4\]"):
            layer([np.zeros((1, 4, 4, 3), "float32"), np.zeros((1, 5), "float32")])

    def test_float_rank1_rejected(self):
        layer, _, _ = make_cin(4, 3)
        with pytest.raises(ValueError, match="integer labels"):
            layer([np.zeros((2, 4, 4, 3), "float32"), np.zeros((2,), "float32")])


class TestReflectionPadConv2D:
    # (filters, kernel, stride, size): 9x9 and 5x5 stride-1 convs with <= 8 filters take the
    # space_to_depth arrangement, at even and odd sizes; the others the plain conv.
    @pytest.mark.parametrize("filters,kernel,stride,size", [
        (5, 3, 1, (9, 11)), (5, 3, 2, (8, 10)), (5, 3, 2, (9, 7)), (5, 9, 1, (12, 13)),
        (3, 9, 1, (12, 14)), (4, 5, 1, (11, 9)), (12, 9, 1, (12, 10)),
    ])
    def test_matches_numpy(self, filters, kernel, stride, size):
        layer = ReflectionPadConv2D(filters, kernel, stride)
        x = rng.normal(size=(2, *size, 3)).astype("float32")
        y = np.asarray(layer(x))
        expected = np_reflect_conv(x, np.asarray(layer.kernel), stride)
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, atol=1e-4)

    @pytest.mark.parametrize("kernel,factor,size", [(3, 2, (5, 7)), (3, 2, (6, 4)), (5, 2, (5, 6)),
                                                    (3, 3, (4, 5)), (3, 2, (1, 2))])
    def test_upsample_matches_numpy(self, kernel, factor, size):
        """upsample=f is nearest upsampling by f, then the conv (Magenta's `upsampling`)."""
        layer = ReflectionPadConv2D(6, kernel, upsample=factor)
        x = rng.normal(size=(2, *size, 4)).astype("float32")
        y = np.asarray(layer(x))
        up = x.repeat(factor, axis=1).repeat(factor, axis=2)
        expected = np_reflect_conv(up, np.asarray(layer.kernel), 1)
        assert y.shape == expected.shape == (2, size[0] * factor, size[1] * factor, 6)
        np.testing.assert_allclose(y, expected, atol=1e-4)

    def test_pad_then_convolve_is_call(self):
        """`convolve` takes an input its caller padded (e.g. a tile with a halo)."""
        x = rng.normal(size=(1, 14, 10, 4)).astype("float32")
        for layer in (ReflectionPadConv2D(3, 9), ReflectionPadConv2D(8, 3, 2)):
            expected = np.asarray(layer(x))
            p = layer.kernel_size // 2
            padded = np.asarray(layer.pad(x))
            np.testing.assert_array_equal(padded, np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)],
                                                         mode="reflect"))
            # Stride 2 at even sizes adds the reflected border in a second sum: rounding only.
            np.testing.assert_allclose(np.asarray(layer.convolve(padded)), expected, rtol=1e-6,
                                       atol=1e-6)

    def test_stride_2_with_sizes_unknown_when_traced(self):
        """Stride 2 folds the padding into the conv at even sizes and pads at odd ones; with
        the sizes open when traced (a SavedModel), a tf.cond picks per call. Traced for
        LiteRT, the layer pads and runs a VALID conv."""
        import tensorflow as tf
        from image_stylization import layers

        layer = ReflectionPadConv2D(5, 3, 2)
        layer.build((None, None, None, 4))
        fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 4])])
        for size in ((8, 10), (9, 7), (6, 5), (2, 2)):
            x = rng.normal(size=(2, *size, 4)).astype("float32")
            expected = np_reflect_conv(x, np.asarray(layer.kernel), 2)
            np.testing.assert_allclose(fn(x), expected, atol=1e-4)

        def paddings(spec):
            graph = tf.function(layer).get_concrete_function(spec).graph
            return {op.get_attr("padding") for op in graph.get_operations()
                    if op.type == "Conv2D"}

        assert b"EXPLICIT" in paddings(tf.TensorSpec([1, 8, 8, 4]))
        with layers.litert_ops():
            assert paddings(tf.TensorSpec([1, 8, 8, 4])) == {b"VALID"}

    def test_padding_is_reflect_not_zero(self):
        # A constant image stays constant under reflection padding; zero padding darkens edges.
        layer = ReflectionPadConv2D(1, 3, 1, kernel_initializer="ones")
        y = np.asarray(layer(np.ones((1, 6, 6, 1), "float32")))
        np.testing.assert_allclose(y, 9.0)

    def test_init_is_normal_0_001_without_bias(self):
        layer = ReflectionPadConv2D(64, 9)
        layer.build((None, None, None, 32))
        k = np.asarray(layer.kernel)
        assert len(layer.weights) == 1
        assert abs(k.mean()) < 1e-3 and abs(k.std() - 0.01) < 5e-4

    @pytest.mark.parametrize("k", [2, 4, 0])
    def test_even_kernel_rejected(self, k):
        with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
            ReflectionPadConv2D(8, k)

    def test_config_round_trip(self):
        layer = ReflectionPadConv2D(8, 5, 2, name="c")
        clone = ReflectionPadConv2D.from_config(layer.get_config())
        assert (clone.filters, clone.kernel_size, clone.strides, clone.name) == (8, 5, 2, "c")
        assert "use_bias" not in layer.get_config() and not clone.use_bias
        clone = ReflectionPadConv2D.from_config(ReflectionPadConv2D(4, 3, upsample=2).get_config())
        assert clone.upsample == 2
        # A config written before `upsample` existed.
        config = layer.get_config()
        del config["upsample"]
        assert ReflectionPadConv2D.from_config(config).upsample == 1

    @pytest.mark.parametrize("kwargs", [dict(filters=3, kernel_size=3, upsample=2),
                                        dict(filters=3, kernel_size=9),
                                        dict(filters=3, kernel_size=3, strides=2)])
    def test_gradients_equal_plain_arrangement(self, kwargs):
        """The re-arranged sums have the gradients of the plain ones (resize, MirrorPad, conv),
        eagerly and compiled by XLA (the whole training step can be compiled)."""
        import tensorflow as tf

        layer = ReflectionPadConv2D(**kwargs)
        factor = kwargs.get("upsample", 1)
        x = tf.constant(rng.normal(size=(2, 6, 8, 4)).astype("float32"))
        layer(x)
        dy = tf.constant(rng.normal(size=tuple(layer(x).shape)).astype("float32"))

        def plain(x):
            if factor > 1:
                x = tf.image.resize(x, [6 * factor, 8 * factor], method="nearest")
            p = layer.kernel_size // 2
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
            return tf.nn.conv2d(x, layer.kernel, layer.strides, "VALID")

        def grads(fn):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return tape.gradient(y, [x, layer.kernel], output_gradients=dy)

        expected = grads(plain)
        for got in (grads(layer), tf.function(lambda: grads(layer), jit_compile=True)()):
            for g, e in zip(got, expected):
                # Float32 rounding of sums in another order, relative to the largest entry
                # (a kernel gradient entry adds up to 4 x 48 products here).
                np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6 * np.abs(e).max())

    @pytest.mark.parametrize("upsample", [0, -1, 1.5, True])
    def test_bad_upsample(self, upsample):
        with pytest.raises(ValueError, match="upsample must be a positive integer"):
            ReflectionPadConv2D(4, 3, upsample=upsample)

    # Each arrangement (plain stride 2, space_to_depth 9x9, low-resolution upsampling) adds it.
    @pytest.mark.parametrize("filters,kernel,stride,upsample", [(5, 3, 2, 1), (3, 9, 1, 1),
                                                                (5, 3, 1, 2)])
    def test_bias_is_added_after_the_convolution(self, filters, kernel, stride, upsample):
        layer = ReflectionPadConv2D(filters, kernel, stride, upsample=upsample, use_bias=True)
        x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
        layer.build(x.shape)
        bias = rng.normal(size=filters).astype("float32")
        layer.bias.assign(bias)
        up = x.repeat(upsample, axis=1).repeat(upsample, axis=2)
        expected = np_reflect_conv(up, np.asarray(layer.kernel), stride) + bias
        np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4)
        if upsample == 1:
            np.testing.assert_allclose(np.asarray(layer.convolve(layer.pad(x))), expected,
                                       atol=1e-4)
        assert [w.path.split("/")[-1] for w in layer.weights] == ["weights", "biases"]
        assert ReflectionPadConv2D.from_config(layer.get_config()).use_bias


class TestConditionalStyleNormalization:
    def make(self, dim=6, channels=4, eps=1e-5):
        layer = ConditionalStyleNormalization(epsilon=eps)
        layer.build(((None, None, None, channels), (None, dim)))
        values = {name: rng.normal(0, 0.5, getattr(layer, name).shape).astype("float32")
                  for name in ("beta_weights", "beta_biases", "gamma_weights", "gamma_biases")}
        for name, v in values.items():
            getattr(layer, name).assign(v)
        return layer, values

    def test_matches_numpy(self):
        layer, v = self.make()
        x = rng.normal(2.0, 3.0, (3, 5, 7, 4)).astype("float32")
        e = rng.normal(size=(3, 6)).astype("float32")
        gamma = e.astype(np.float64) @ v["gamma_weights"] + v["gamma_biases"]
        beta = e.astype(np.float64) @ v["beta_weights"] + v["beta_biases"]
        np.testing.assert_allclose(np.asarray(layer([x, e])), np_instance_norm(x, gamma, beta),
                                   atol=3e-5)

    def test_one_hot_embedding_without_bias_is_cin(self):
        # A CIN table is a linear projection of one-hot weights: the two layers agree.
        layer, v = self.make(dim=3)
        layer.beta_biases.assign(np.zeros(4, "float32"))
        layer.gamma_biases.assign(np.zeros(4, "float32"))
        cin, _, _ = make_cin(3, 4)
        cin.gamma.assign(v["gamma_weights"])
        cin.beta.assign(v["beta_weights"])
        x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
        w = np.array([[0.0, 1.0, 0.0], [0.3, 0.0, 0.7]], "float32")
        np.testing.assert_allclose(np.asarray(layer([x, w])), np.asarray(cin([x, w])), atol=1e-6)

    def test_wrong_embedding_size(self):
        layer, _ = self.make(dim=6)
        with pytest.raises(ValueError, match="style_embedding must have 6 values"):
            layer([np.zeros((1, 4, 4, 4), "float32"), np.zeros((1, 5), "float32")])

    def test_config_round_trip(self):
        layer = ConditionalStyleNormalization(epsilon=1e-3, name="sn")
        clone = ConditionalStyleNormalization.from_config(layer.get_config())
        assert (clone.epsilon, clone.name) == (1e-3, "sn")


def test_normalize_with_supplied_statistics():
    """`normalize` applies statistics gathered elsewhere: here over the two halves of an image,
    combined, as a tiled run over a large image would."""
    x = rng.normal(1.0, 2.0, (2, 10, 6, 3)).astype("float32")
    gamma = rng.normal(1.0, 0.5, (2, 3)).astype("float32")
    beta = rng.normal(0.0, 0.5, (2, 3)).astype("float32")
    (m1, v1), (m2, v2) = (map(np.asarray, moments(half)) for half in (x[:, :5], x[:, 5:]))
    mean = (m1 + m2) / 2
    variance = (v1 + m1 ** 2 + v2 + m2 ** 2) / 2 - mean ** 2
    y = np.asarray(normalize(x, mean, variance, gamma, beta, 1e-5, "float32"))
    np.testing.assert_allclose(y, np_instance_norm(x, gamma, beta), atol=2e-5)
    np.testing.assert_allclose(np.asarray(instance_norm(x, gamma, beta, 1e-5, "float32")), y,
                               atol=2e-5)


@pytest.mark.parametrize("relu,channels", [(False, 4), (True, 4), (False, 3), (True, 3)])
def test_one_example_norm_equals_batched_with_gradients(relu, channels):
    """A batch of one (batch 1 known when traced) takes a fused form (with 3 channels, on the
    image's rows as pixels); it gives the numbers and the gradients (x, gamma, beta, through
    the statistics) of the batched form, also under XLA."""
    import tensorflow as tf

    x = tf.constant(rng.normal(1.0, 2.0, (1, 9, 7, channels)).astype("float32"))
    gamma = tf.constant(rng.normal(1.0, 0.5, (1, channels)).astype("float32"))
    beta = tf.constant(rng.normal(0.0, 0.5, (1, channels)).astype("float32"))
    dy = tf.constant(rng.normal(size=(1, 9, 7, channels)).astype("float32"))
    act = tf.nn.relu if relu else tf.identity

    def one(x, gamma, beta):
        return act(instance_norm(x, gamma, beta, 1e-5, "float32"))

    def batched(x, gamma, beta):  # the same example twice: batch 2, the general form
        two = instance_norm(tf.concat([x, x], 0), tf.concat([gamma, gamma], 0),
                            tf.concat([beta, beta], 0), 1e-5, "float32")
        return act(two[:1])

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = fn(x, gamma, beta)
        return [y] + tape.gradient(y, [x, gamma, beta], output_gradients=dy)

    expected = grads(batched)
    np.testing.assert_allclose(expected[0], act(np_instance_norm(x.numpy(), gamma.numpy(),
                                                                 beta.numpy())), atol=2e-5)
    for got in (grads(one), tf.function(lambda: grads(one))(),
                tf.function(lambda: grads(one), jit_compile=True)()):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [4, 3])
def test_one_image_with_several_rows_matches_numpy_with_gradients(channels):
    """One image with S gamma/beta rows (several styles of one photo) gives S outputs, one row
    each (the fused op once per row): the numbers of numpy on the image repeated S times, and
    the gradients of the batched form on that repeated batch; also traced with S unknown,
    under XLA, and as traced for LiteRT."""
    import tensorflow as tf

    from image_stylization.layers import litert_ops

    x = tf.constant(rng.normal(1.0, 2.0, (1, 9, 7, channels)).astype("float32"))
    gamma = tf.constant(rng.normal(1.0, 0.5, (3, channels)).astype("float32"))
    beta = tf.constant(rng.normal(0.0, 0.5, (3, channels)).astype("float32"))
    dy = tf.constant(rng.normal(size=(3, 9, 7, channels)).astype("float32"))

    def grads(fn, *args):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = fn(x, gamma, beta, *args)
        return [y] + tape.gradient(y, [x, gamma, beta], output_gradients=dy)

    def rows(x, gamma, beta):
        return instance_norm(x, gamma, beta, 1e-5, "float32")

    def repeated(x, gamma, beta):
        return instance_norm(tf.concat([x, x, x], 0), gamma, beta, 1e-5, "float32")

    expected = grads(repeated)
    np.testing.assert_allclose(expected[0], np_instance_norm(np.repeat(x.numpy(), 3, 0),
                                                             gamma.numpy(), beta.numpy()),
                               atol=2e-5)
    open_rows = tf.function(rows, input_signature=[tf.TensorSpec([1, None, None, channels]),
                                                   tf.TensorSpec([None, channels]),
                                                   tf.TensorSpec([None, channels])])

    def for_litert(x, gamma, beta):
        with litert_ops():
            return rows(x, gamma, beta)

    for got in (grads(rows), tf.function(lambda: grads(rows))(), grads(open_rows),
                tf.function(lambda: grads(rows), jit_compile=True)(), grads(for_litert)):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,mean,rtol", [((1, 9, 7, 4), 5.0, 2e-6), ((1, 1, 5, 2), 5.0, 2e-6),
                                             ((1, 64, 3, 1), 5.0, 2e-6),
                                             ((1, 16, 16, 3), 50.0, 1e-4)])
def test_one_example_moments_match_float64_and_the_batched_form(shape, mean, rtol):
    """Batch 1 takes its first-stage statistics from one fused op over the image reshaped to
    columns: the numbers are float64's and the batched form's (H = 1 included; the op's
    variance is less exact where the mean is 25 standard deviations, hence a looser bound), for
    shapes known or not when traced, and the gradient through the statistics is the batched
    form's and the hand-derived one. Traced for LiteRT, the same function uses ops the
    converter lowers."""
    import tensorflow as tf
    from image_stylization import layers

    x = tf.constant(rng.normal(mean, 2.0, shape).astype("float32"))
    x64 = x.numpy().astype("float64")
    w_mean, w_var = (tf.constant(rng.normal(size=(1, 1, 1, shape[3])).astype("float32"))
                     for _ in range(2))

    def loss(fn, x):
        mean, variance = fn(x)
        return tf.reduce_sum(mean * w_mean) + tf.reduce_sum(variance * w_var), (mean, variance)

    def one(x):
        return layers.moments(x)

    def batched(x):  # the same example twice: batch 2, the general form
        mean, variance = layers.moments(tf.concat([x, x], 0))
        return mean[:1], variance[:1]

    def grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, stats = loss(fn, x)
        return stats, tape.gradient(value, x)

    (mean_b, var_b), grad_b = grad(batched)
    # Both forms' gradients are written out; by hand: (w_mean + 2 w_var (x - mean)) / (H W).
    by_hand = (w_mean.numpy() + 2.0 * w_var.numpy() * (x64 - x64.mean(axis=(1, 2), keepdims=True))
               ) / (shape[1] * shape[2])
    np.testing.assert_allclose(grad_b, by_hand, rtol=1e-4, atol=1e-6)
    dynamic = tf.function(one, input_signature=[tf.TensorSpec([1, None, None, shape[3]])])
    for (mean, variance), g in (grad(one), (dynamic(x), None),
                                (tf.function(one, jit_compile=True)(x), None)):
        np.testing.assert_allclose(mean[0, 0, 0], x64.mean(axis=(0, 1, 2)), rtol=1e-6)
        np.testing.assert_allclose(variance[0, 0, 0], x64.var(axis=(0, 1, 2)), rtol=rtol,
                                   atol=1e-6)
        np.testing.assert_allclose(mean, mean_b, rtol=1e-6)
        np.testing.assert_allclose(variance, var_b, rtol=rtol, atol=1e-6)
        if g is not None:
            np.testing.assert_allclose(g, grad_b, rtol=1e-4, atol=1e-6)

    def op_types():
        graph = tf.function(one).get_concrete_function(tf.TensorSpec(shape)).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in op_types()
    with layers.litert_ops():
        assert "FusedBatchNormV3" not in op_types()


@pytest.mark.parametrize("spec", [[None, 8, 6, 3], [None, None, None, 3]])
def test_moments_with_a_batch_unknown_when_traced(spec):
    """A SavedModel's signature leaves the batch open: `moments` then picks the one-example
    form per call. With H, W and C known, a constant reshape in that branch once let TF's
    graph optimizer infer a batch of 1 and run the branch for a batch of 2."""
    import tensorflow as tf
    from image_stylization import layers

    moments = tf.function(layers.moments, input_signature=[tf.TensorSpec(spec)])
    for batch in (1, 2, 3):
        x = rng.normal(2.0, 1.0, (batch, 8, 6, 3)).astype("float32")
        mean, variance = moments(x)
        np.testing.assert_allclose(mean, x.astype("float64").mean(axis=(1, 2), keepdims=True),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(variance, x.astype("float64").var(axis=(1, 2), keepdims=True),
                                   rtol=1e-5, atol=1e-6)


def test_one_example_moments_of_flat_activations_are_not_negative():
    """Flat activations with a large mean (a blank photo) give a variance of about 0 and a
    finite image. (TF's kernel gives >= 0 here even without the clamp in `_moments_one`; the
    clamp is the guard for a kernel that rounds below 0, which this test would then catch.)"""
    import tensorflow as tf
    from image_stylization import layers

    for value in (300.0, 1234.567, -77.7):
        x = tf.fill([1, 257, 129, 8], value)
        mean, variance = layers.moments(x)
        assert np.all(variance.numpy() >= 0.0)
        np.testing.assert_allclose(mean.numpy(), value, rtol=1e-5)
        y = instance_norm(x, tf.ones([1, 8]), tf.zeros([1, 8]), 1e-5, "float32")
        assert np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("mode,p,size", [("REFLECT", 4, (5, 9)), ("REFLECT", 4, (12, 10)),
                                         ("REFLECT", 1, (2, 3)), ("SYMMETRIC", 1, (1, 4)),
                                         ("SYMMETRIC", 1, (6, 5))])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pads_and_their_gradients_equal_tf_pad(mode, p, size, dtype):
    """`reflect_pad` and `edge_pad` (slices and concatenations, gradient written out) against
    tf.pad's MirrorPad and its own gradient, down to sizes where the mirrored rows overlap."""
    import tensorflow as tf

    from image_stylization.layers import edge_pad, reflect_pad

    x = tf.constant(rng.normal(size=(2, *size, 3)), dtype)
    dy = tf.constant(rng.normal(size=(2, size[0] + 2 * p, size[1] + 2 * p, 3)), dtype)

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x, output_gradients=dy)

    ours = (lambda x: reflect_pad(x, p)) if mode == "REFLECT" else edge_pad
    y, g = grads(ours)
    y_ref, g_ref = grads(lambda x: tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode=mode))
    np.testing.assert_array_equal(np.asarray(y, "float32"), np.asarray(y_ref, "float32"))
    np.testing.assert_array_equal(np.asarray(g, "float32"), np.asarray(g_ref, "float32"))


def test_nearest_upsampling_is_pixel_repetition():
    x = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    y = np.asarray(NearestUpsampling2D(2)(x))
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(2, axis=2))


@pytest.mark.parametrize("factor", [2, 3])
def test_nearest_upsampling_gradient_is_block_sums_and_compiles_with_xla(factor):
    """The hand-written gradient: each input pixel gets the sum of its factor x factor block of
    the upstream gradient (numpy), equal to TF's own resize gradient, and usable under XLA."""
    import tensorflow as tf

    x = tf.constant(rng.normal(size=(2, 3, 5, 4)).astype("float32"))
    dy = rng.normal(size=(2, 3 * factor, 5 * factor, 4)).astype("float32")
    layer = NearestUpsampling2D(factor)

    def grad_of(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x, output_gradients=tf.constant(dy))

    expected = dy.astype(np.float64).reshape(2, 3, factor, 5, factor, 4).sum(axis=(2, 4))
    ours = grad_of(layer)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    tf_own = grad_of(lambda t: tf.image.resize(t, [3 * factor, 5 * factor], method="nearest"))
    np.testing.assert_allclose(ours, tf_own, rtol=1e-6, atol=1e-6)
    compiled = tf.function(lambda: grad_of(layer), jit_compile=True)()
    np.testing.assert_allclose(compiled, expected, rtol=1e-5, atol=1e-5)


def test_layers_save_and_reload(tmp_path):
    image = keras.Input((None, None, 3))
    style = keras.Input((3,))
    x = ReflectionPadConv2D(4, 3, 2, name="conv")(image)
    x = ConditionalInstanceNormalization(3, name="norm")([x, style])
    x = ReflectionPadConv2D(4, 3, 1, use_bias=True, name="biased")(x)
    x = ConditionalStyleNormalization(name="style_norm")([x, style])
    x = NearestUpsampling2D(2, name="up")(x)
    model = keras.Model([image, style], x)
    model.get_layer("norm").gamma.assign(rng.normal(size=(3, 4)).astype("float32"))
    model.get_layer("biased").bias.assign(rng.normal(size=4).astype("float32"))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    args = [rng.random((1, 8, 12, 3)).astype("float32"), np.eye(3, dtype="float32")[1:2]]
    np.testing.assert_array_equal(np.asarray(model(args)), np.asarray(loaded(args)))


@pytest.mark.parametrize("size", [(16, 20), (17, 22), (19, 16)])
def test_pad_to_multiple_is_numpy_reflect_at_bottom_right(size):
    """PadToMultiple reflects rows/columns at the bottom and right up to a multiple of 4 (an
    aligned image passes through): with sizes known and open when traced, and as traced for
    LiteRT."""
    import tensorflow as tf

    from image_stylization.layers import PadToMultiple, litert_ops

    x = rng.normal(size=(2, *size, 3)).astype("float32")
    pad = [(0, 0), (0, -size[0] % 4), (0, -size[1] % 4), (0, 0)]
    expected = np.pad(x, pad, mode="reflect")
    layer = PadToMultiple(4)
    open_sizes = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])

    def for_litert(x):
        with litert_ops():
            return open_sizes.python_function(x)

    litert = tf.function(for_litert, input_signature=[tf.TensorSpec([None, None, None, 3])])
    for got in (layer(x), tf.function(layer)(x), open_sizes(x), litert(x)):
        np.testing.assert_array_equal(np.asarray(got), expected)
    assert open_sizes.get_concrete_function().outputs[0].shape[-1] == 3
