"""Keras 3 layers of the style transfer network (Magenta's `ops.py` and the helpers of `model.py`).

Every layer here is registered serializable, so a `.keras` file written by this package loads with
`safe_mode=True` and no `custom_objects`.
"""

import keras
import tensorflow as tf
from keras import ops

PACKAGE = "image_stylization"


def _check_odd_kernel(kernel_size):
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be a positive odd integer (reflection padding of k//2 keeps the "
            f"size only for odd k), got {kernel_size!r}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReflectionPadConv2D(keras.layers.Layer):
    """Reflection padding of `kernel_size // 2` on H and W, then a VALID, bias-free convolution.

    This is Magenta's `model.conv2d`. The padding is symmetric even for stride 2 (TF's "SAME" would
    pad only bottom/right), which matters for converted weights. No bias by default: the following
    conditional instance normalization's beta plays that role, as in `slim.conv2d` with a
    normalizer. `use_bias=True` is for convolutions not followed by a normalization (the
    arbitrary-style network's encoder, whose batch norm is folded into a bias).
    """

    def __init__(self, filters, kernel_size, strides=1, kernel_initializer=None, use_bias=False,
                 **kwargs):
        super().__init__(**kwargs)
        _check_odd_kernel(kernel_size)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer, got {filters!r}")
        if not isinstance(strides, int) or strides < 1:
            raise ValueError(f"strides must be a positive integer, got {strides!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(mean=0.0, stddev=0.01)
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known")
        # Named "weights" after Magenta's slim variable, so checkpoint names map one to one.
        self.kernel = self.add_weight(
            name="weights",
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="biases", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        p = self.kernel_size // 2
        if p:
            x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")
        y = ops.conv(x, self.kernel, strides=self.strides, padding="valid")
        return y if self.bias is None else y + self.bias

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n - 1) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        if self.use_bias:  # absent otherwise, so configs of bias-free layers are unchanged
            config["use_bias"] = True
        return config


def _nearest_upsample(x, factor):
    """Pixel repetition by `factor`, with its gradient written out.

    TF's own gradient, ResizeNearestNeighborGrad, has no XLA kernel on CPU or GPU, so a training
    step containing this op could not be compiled whole. Each input pixel feeds a factor x factor
    block, so its gradient is that block's sum: an average pool times factor**2 (exact).
    """

    @tf.custom_gradient
    def upsample(x):
        size = tf.shape(x)[1:3]
        y = tf.image.resize(x, size * factor, method="nearest")

        def grad(dy):
            pooled = tf.nn.avg_pool2d(dy, factor, factor, "VALID")
            return pooled * tf.cast(factor * factor, dy.dtype)

        return y, grad

    return upsample(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class NearestUpsampling2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer factor (Magenta's `resize_nearest_neighbor`).

    Implemented as an image resize rather than Keras' `UpSampling2D`: the latter is built on
    `repeat`, and with dynamic H,W the LiteRT converter then loses the channel dimension and turns
    the next convolution into a Flex op. A nearest resize by an exact integer factor is pixel
    repetition, so the numbers are identical.
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = factor

    def call(self, x):
        if self.factor == 1:
            return x
        return _nearest_upsample(x, self.factor)

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else n * self.factor

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(factor=self.factor)
        return config


def instance_norm(x, gamma, beta, epsilon, dtype):
    """Instance normalization of x [B,H,W,C] with per-example gamma, beta [B,C], in float32.

    The one normalization of the package: every conditional norm (style weights, or a style
    embedding's projection) computes its gamma/beta and calls this.
    """
    x32 = ops.cast(x, "float32")
    # Means over H, then over W: one float32 reduction over a 1024x1024 plane is off by
    # 3.6e-4 in TF and 2.9e-3 in LiteRT (against float64); two of <= 1024 terms by ~4e-5.
    mean = ops.mean(ops.mean(x32, axis=1, keepdims=True), axis=2, keepdims=True)
    variance = ops.mean(
        ops.mean(ops.square(x32 - mean), axis=1, keepdims=True), axis=2, keepdims=True
    )
    y = (x32 - mean) * ops.rsqrt(variance + epsilon) * gamma[:, None, None, :] + beta[:, None, None, :]
    return ops.cast(y, dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalInstanceNormalization(keras.layers.Layer):
    """Conditional instance normalization (Dumoulin et al. 2017, eq. 5).

    Called as `layer([x, style_weights])`:
    - `style_weights` float [B, N]: gamma = w @ Gamma and beta = w @ Beta per example. A one-hot
      row selects one style; any other row blends styles (the paper's convex combination; the
      weights are used as given, not renormalized, as in Magenta's `weighted_instance_norm`).
    - `style_weights` integer [B]: one style label per example (Magenta's
      `conditional_instance_norm`).

    Moments are taken per example and channel over H and W, with biased variance. They are
    computed in float32 even under a mixed precision policy: a float16 variance of large
    activations overflows, which is one way to get the black images Magenta's users reported.
    """

    def __init__(self, num_styles, epsilon=1e-5, **kwargs):
        # autocast=False: gamma/beta must stay float32 for the float32 statistics below.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not isinstance(num_styles, int) or isinstance(num_styles, bool) or num_styles < 1:
            raise ValueError(f"num_styles must be an integer >= 1, got {num_styles!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.num_styles = num_styles
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        self._check_shapes(x_shape, w_shape)
        channels = x_shape[-1]
        # Magenta's creation order and names: InstanceNorm/beta, InstanceNorm/gamma, shape [N, C].
        self.beta = self.add_weight(
            name="beta", shape=(self.num_styles, channels), initializer="zeros", dtype="float32"
        )
        self.gamma = self.add_weight(
            name="gamma", shape=(self.num_styles, channels), initializer="ones", dtype="float32"
        )

    def _check_shapes(self, x_shape, w_shape):
        if len(x_shape) != 4 or x_shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected x of shape [batch, height, width, channels] with known "
                f"channels, got {tuple(x_shape)}"
            )
        if len(w_shape) == 2:
            if w_shape[-1] is not None and w_shape[-1] != self.num_styles:
                raise ValueError(
                    f"{self.name}: style_weights must have shape [batch, num_styles={self.num_styles}], "
                    f"got {tuple(w_shape)}"
                )
        elif len(w_shape) != 1:
            raise ValueError(
                f"{self.name}: style_weights must be float [batch, num_styles={self.num_styles}] "
                f"or integer labels [batch], got shape {tuple(w_shape)}"
            )

    def call(self, inputs):
        x, style = inputs
        self._check_shapes(tuple(x.shape), tuple(style.shape))
        if len(style.shape) == 1:
            if "int" not in str(style.dtype):
                raise ValueError(
                    f"{self.name}: rank-1 style input must be integer labels, got dtype {style.dtype}"
                )
            weights = ops.one_hot(style, self.num_styles, dtype="float32")
        else:
            weights = ops.cast(style, "float32")
        gamma = ops.matmul(weights, self.gamma)
        beta = ops.matmul(weights, self.beta)
        return instance_norm(x, gamma, beta, self.epsilon, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(num_styles=self.num_styles, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalStyleNormalization(keras.layers.Layer):
    """Instance normalization whose gamma/beta are predicted from a style embedding (Ghiasi et al.
    2017; Magenta's `ops.conditional_style_norm`, scope `StyleNorm`).

    Called as `layer([x, style_embedding])` with x [B,H,W,C] and style_embedding [B,D]: gamma and
    beta are 1x1 convolutions of the embedding (a D -> C affine map each, Magenta's
    `style_params`), then `instance_norm` normalizes exactly as
    `ConditionalInstanceNormalization` does. A row of N one-hot weights times a CIN table is the
    special case of a linear projection without bias, so mixing embeddings mixes gamma/beta as
    the paper mixes styles.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        kwargs.setdefault("autocast", False)  # float32 gamma/beta for the float32 statistics
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        x_shape, e_shape = input_shape
        self._check_shapes(x_shape, e_shape)
        channels, dim = x_shape[-1], e_shape[-1]
        # Magenta's order: StyleNorm/Conv predicts beta, StyleNorm/Conv_1 gamma.
        self.beta_weights = self.add_weight(
            name="beta_weights", shape=(dim, channels), initializer="glorot_uniform", dtype="float32")
        self.beta_biases = self.add_weight(
            name="beta_biases", shape=(channels,), initializer="zeros", dtype="float32")
        self.gamma_weights = self.add_weight(
            name="gamma_weights", shape=(dim, channels), initializer="glorot_uniform", dtype="float32")
        self.gamma_biases = self.add_weight(
            name="gamma_biases", shape=(channels,), initializer="ones", dtype="float32")

    def _check_shapes(self, x_shape, e_shape):
        if len(x_shape) != 4 or x_shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected x of shape [batch, height, width, channels] with known "
                f"channels, got {tuple(x_shape)}"
            )
        if len(e_shape) != 2 or e_shape[-1] is None:
            raise ValueError(
                f"{self.name}: style_embedding must have shape [batch, dim] with known dim, got "
                f"{tuple(e_shape)}"
            )
        built_dim = getattr(self, "beta_weights", None)
        if built_dim is not None and e_shape[-1] != built_dim.shape[0]:
            raise ValueError(
                f"{self.name}: style_embedding must have {built_dim.shape[0]} values per example, "
                f"got shape {tuple(e_shape)}"
            )

    def call(self, inputs):
        x, embedding = inputs
        self._check_shapes(tuple(x.shape), tuple(embedding.shape))
        embedding = ops.cast(embedding, "float32")
        gamma = ops.matmul(embedding, self.gamma_weights) + self.gamma_biases
        beta = ops.matmul(embedding, self.beta_weights) + self.beta_biases
        return instance_norm(x, gamma, beta, self.epsilon, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Reflection-pads H and W at the bottom/right up to a multiple of `multiple`.

    The two stride-2 convolutions need sizes divisible by 4 to come back to the input size;
    padding here and cropping with `CropToReference` at the end gives an output exactly the size
    of the input, where Magenta's network silently grew it.
    """

    def __init__(self, multiple=4, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        shape = ops.shape(x)
        m = self.multiple
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        y = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
        # With computed pad amounts the LiteRT converter loses every static dimension, the
        # channel count too, and the next Conv2D becomes a Flex op; a reshape restores C.
        size = tf.shape(y)
        return tf.reshape(y, tf.stack([size[0], size[1], size[2], x.shape[-1]]))

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else -(-n // self.multiple) * self.multiple

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(multiple=self.multiple)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropToReference(keras.layers.Layer):
    """Crops `x` to the H,W of `reference` (top-left aligned); undoes `PadToMultiple`."""

    def call(self, inputs):
        x, reference = inputs
        size = ops.shape(reference)
        return x[:, : size[1], : size[2], :]

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageInputCheck(keras.layers.Layer):
    """Checks that the image input is [batch, height, width, 3] with H,W >= 16.

    Keras' own shape error for a grayscale or RGBA array names an internal layer; this one says
    what the network expects.
    """

    min_size = 16

    def call(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"image must be a float RGB batch of shape [batch, height, width, 3] in [0, 1], "
                f"got shape {shape}; convert grayscale or RGBA images to RGB first"
            )
        for n, axis in ((shape[1], "height"), (shape[2], "width")):
            if n is not None and n < self.min_size:
                raise ValueError(f"image {axis} must be >= {self.min_size} px, got {n}")
        return x
