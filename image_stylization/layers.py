"""Keras 3 layers of the style transfer network (Magenta's `ops.py` and the helpers of `model.py`).

Every layer here is registered serializable, so a `.keras` file written by this package loads with
`safe_mode=True` and no `custom_objects`.
"""

import contextlib
import contextvars
import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

PACKAGE = "image_stylization"


def _check_odd_kernel(kernel_size):
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be a positive odd integer (reflection padding of k//2 keeps the "
            f"size only for odd k), got {kernel_size!r}"
        )


def _line(x, axis, i):
    """Row (axis 1) or column (axis 2) i of x [B,H,W,C], kept as a dimension; i < 0 from the end."""
    index = [slice(None)] * 4
    index[axis] = slice(i, i + 1 if i != -1 else None)
    return x[tuple(index)]


def reflect_pad(x, p):
    """Reflection padding of x [B,H,W,C] by p on each side of H and W (needs H, W > p).

    Built from one-row/column slices and concatenations rather than MirrorPad: LiteRT's
    MIRROR_PAD kernel is not delegated to XNNPACK and took 471 ms of CPU where slices and
    concatenations took 61 ms (1024x1024x32); in TF the two cost about the same.
    """
    return _mirror_pad(x, p, "REFLECT")


def edge_pad(x):
    """x [B,H,W,C] with its first and last rows and columns repeated once (SYMMETRIC by 1)."""
    return _mirror_pad(x, 1, "SYMMETRIC")


def _mirror_pad(x, p, mode):
    if not p:
        return x
    skip = 1 if mode == "REFLECT" else 0  # REFLECT leaves the edge row out of the mirror

    @tf.custom_gradient
    def pad(x):
        y = x
        for axis in (1, 2):
            y = tf.concat([_line(y, axis, i) for i in range(p - 1 + skip, skip - 1, -1)] + [y]
                          + [_line(y, axis, -1 - i) for i in range(skip, p + skip)], axis=axis)

        def grad(dy):
            # The slices' own gradients are one full-size StridedSliceGrad per row and column
            # plus their sum: 19 vs 6 ms at 4x128x128x32 padded by 4 (BUILD_NOTES, Training).
            return tf.raw_ops.MirrorPadGrad(
                input=dy, paddings=[[0, 0], [p, p], [p, p], [0, 0]], mode=mode)

        return y, grad

    return pad(x)


@tf.custom_gradient
def _stride2_conv_even(x, kernel):
    """A 3x3 stride-2 conv of x [B,H,W,C] (H, W even) reflection-padded by 1, without copying x.

    With H and W even, the outputs never read the bottom row or right column of the padding,
    so the conv zero-pads top and left itself (no copy), and the reflected row and column that
    the zeros stand for are added to the first output row and column: two thin convs and one
    scatter-add (TF copies the output once for it; slicing and concatenating copied it four
    times). 26x256x256x32 -> 32: 0.61x the time of pad + VALID conv, 0.84x with the copies
    (bench/stride2_conv.py). The gradient is the padded conv's: TF's own, through the
    slices, would make full-size StridedSliceGrads.
    """
    y = tf.nn.conv2d(x, kernel, 2, [[0, 0], [1, 0], [1, 0], [0, 0]])
    # Padded row -1 is x's row 1, itself reflected on the left (column -1 is column 1).
    row = tf.concat([x[:, 1:2, 1:2], x[:, 1:2]], axis=2)
    # Padded column -1 is x's column 1, below row -1 (whose corner the row above counts).
    column = tf.pad(x[:, :, 1:2], [[0, 0], [1, 0], [0, 0], [0, 0]])
    row = tf.nn.conv2d(row, kernel[:1], 2, "VALID")[:, 0]  # [B, W/2, F]
    column = tf.nn.conv2d(column, kernel[:, :1], 2, "VALID")[:, :, 0]  # [B, H/2, F]
    # One scatter-add into y's pixels as rows of [B*H/2*W/2, F]: the first row's pixels (the
    # corner takes both corrections), then the first column's below it.
    # Static sizes where known, so that the reshape back keeps them for the layers after.
    batch, height, width, _ = _sizes(x)
    height, width, filters = height // 2, width // 2, kernel.shape[-1]
    row = tf.concat([row[:, :1] + column[:, :1], row[:, 1:]], axis=1)
    first = tf.range(batch)[:, None] * (height * width)
    pixels = tf.concat([tf.reshape(first + tf.range(width)[None], [-1]),
                        tf.reshape(first + tf.range(1, height)[None] * width, [-1])], axis=0)
    updates = tf.concat([tf.reshape(row, [-1, filters]), tf.reshape(column[:, 1:], [-1, filters])],
                        axis=0)
    y = tf.tensor_scatter_nd_add(tf.reshape(y, [-1, filters]), pixels[:, None], updates)
    y = tf.reshape(y, tf.stack([batch, height, width, filters]))

    def grad(dy):
        padded = reflect_pad(x, 1)
        dpadded = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(padded), filter=kernel, out_backprop=dy, strides=[1, 2, 2, 1],
            padding="VALID")
        dkernel = tf.raw_ops.Conv2DBackpropFilter(
            input=padded, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 2, 2, 1],
            padding="VALID")
        dx = tf.raw_ops.MirrorPadGrad(input=dpadded, paddings=[[0, 0], [1, 1], [1, 1], [0, 0]],
                                      mode="REFLECT")
        return dx, dkernel

    return y, grad


@tf.custom_gradient
def _crop_one(x):
    """x [B,H,W,C] without its first and last rows and columns."""

    def grad(dy):
        # TF's StridedSliceGrad took 14 ms where this pad takes 1.6 (4x130x130x32).
        return tf.pad(dy, [[0, 0], [1, 1], [1, 1], [0, 0]])

    return x[:, 1:-1, 1:-1, :], grad


def _sizes(x):
    """x's dimensions, each a Python int where known when traced, else a scalar tensor."""
    return [n if n is not None else tf.shape(x)[i] for i, n in enumerate(x.shape)]


def _depth_to_space(y):
    """`tf.nn.depth_to_space(y, 2)` as a reshape, a transpose and a reshape: TF's CPU kernel
    took 10.0 ms where the transpose takes 2.7 (26x128x128x12), 3.9 vs 1.1 ms at 1x512x512x12
    (bench/layer_forms.py). The LiteRT converter gets the op itself, which XNNPACK runs."""
    if _LITERT_OPS.get():
        return tf.nn.depth_to_space(y, 2)
    b, h, w, c = _sizes(y)
    z = tf.transpose(tf.reshape(y, tf.stack([b, h, w, 2, 2, c // 4])), [0, 1, 3, 2, 4, 5])
    return tf.reshape(z, tf.stack([b, 2 * h, 2 * w, c // 4]))


def _space_to_depth(x):
    """`tf.nn.space_to_depth(x, 2)` (even H, W) as a reshape, a transpose and a reshape, for
    the same reason as `_depth_to_space`: 9.7 vs 2.6 ms at 26x256x256x4."""
    if _LITERT_OPS.get():
        return tf.nn.space_to_depth(x, 2)
    b, h, w, c = _sizes(x)
    z = tf.transpose(tf.reshape(x, tf.stack([b, h // 2, 2, w // 2, 2, c])), [0, 1, 3, 2, 4, 5])
    return tf.reshape(z, tf.stack([b, h // 2, w // 2, 4 * c]))


@functools.lru_cache(maxsize=None)
def _s2d_taps(kernel_size):
    """0/1 array S[d, t, r, a]: original tap d (per axis) of a stride-1 k-tap kernel is tap t of
    the space_to_depth(2) kernel, reading input phase r for output phase a (d = 2t + r - a)."""
    q = (kernel_size + 1) // 2
    sel = np.zeros((kernel_size, q, 2, 2), np.float32)
    for t in range(q):
        for r in range(2):
            for a in range(2):
                d = 2 * t + r - a
                if 0 <= d < kernel_size:
                    sel[d, t, r, a] = 1.0
    return sel


def _upsample_taps():
    """0/1 array S[d, s, g]: after nearest x2 upsampling and reflection padding by 1, tap d (per
    axis) of a 3x3 kernel, computing output phase a, reads pixel i + a + s of the low-resolution
    image edge-padded by 1 (i: the output's low-resolution position). Its weights go to group
    g = 1 - a of a 2x2 kernel's outputs, so that `depth_to_space` of the conv's output, less its
    first and last rows and columns, is the upsampled conv's output."""
    sel = np.zeros((3, 2, 2), np.float32)
    for d in range(3):
        for a in range(2):
            sel[d, (a + d + 1) // 2 - a, 1 - a] = 1.0
    return sel


def _phase_kernel(kernel):
    """3x3 kernel [3,3,C,F] of a conv after nearest x2 upsampling -> [2,2,C,4F] kernel of the
    same sums at low resolution, one group of F outputs per output phase (depth_to_space
    order, phases swapped; see `_upsample_taps`)."""
    sel = _upsample_taps()
    c, f = kernel.shape[2], kernel.shape[3]
    phased = _combine_taps(np.einsum("ysg,xrh->srghyx", sel, sel), kernel)  # [s,r,g,h,C,F]
    return tf.reshape(tf.transpose(phased, [0, 1, 4, 2, 3, 5]), [2, 2, c, 4 * f])


def _s2d_kernel(kernel):
    """k x k stride-1 kernel [k,k,C,F] -> [q,q,4C,4F] kernel (q = ceil(k/2)) acting on
    space_to_depth(2) of the input and giving depth_to_space(2) of the output."""
    k, c, f = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    q = (k + 1) // 2
    sel = _s2d_taps(k)
    packed = _combine_taps(np.einsum("ytra,xsub->tsruabyx", sel, sel), kernel)  # [t,s,r,u,a,b,C,F]
    return tf.reshape(tf.transpose(packed, [0, 1, 2, 3, 6, 4, 5, 7]), [q, q, 4 * c, 4 * f])


def _combine_taps(taps, kernel):
    """sum over y, x of taps[..., y, x] * kernel[y, x] -> [..., C, F], as one matmul: the
    einsum of the 0/1 taps and the kernel this replaces took 1.6 ms per call for the 9x9 conv,
    in every forward call (BUILD_NOTES, Inference)."""
    k, c, f = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    lead = list(taps.shape[:-2])
    taps = tf.constant(taps.reshape(-1, k * k), kernel.dtype)
    return tf.reshape(tf.matmul(taps, tf.reshape(kernel, [k * k, c * f])), lead + [c, f])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReflectionPadConv2D(keras.layers.Layer):
    """Reflection padding of `kernel_size // 2` on H and W, then a VALID convolution.

    This is Magenta's `model.conv2d` (and, with `upsample=2`, its `model.upsampling`: nearest
    upsampling first). The padding is symmetric even for stride 2 (TF's "SAME" would pad only
    bottom/right), which matters for converted weights. No bias by default: the following
    conditional instance normalization's beta plays that role, as in `slim.conv2d` with a
    normalizer. `use_bias=True` is for convolutions not followed by a normalization (the
    arbitrary-style network's encoder, whose batch norm is folded into a bias).

    The sums are arranged for CPU speed; every arrangement computes the same sums as the plain
    one (tests/test_layers.py checks them against numpy, and their gradients):
    - `upsample=2`, 3x3: edge padding by 1 at low resolution, a 2x2 conv with 4x the output
      channels (one group per output phase: each output pixel reads only 2x2 low-resolution
      pixels, so 4/9 of the plain conv's multiplications), `depth_to_space` and a crop of one
      row and column on each side; no full-resolution copy of the input is made.
    - stride 2, 3x3, even sizes: the conv zero-pads top and left itself and the reflected row
      and column are added to the first output row and column (`_stride2_conv_even`), so the
      input is not copied. (Not under `litert_ops()`: LiteRT gets the pad and a VALID conv.)
    - stride 1, kernel >= 5, few output channels (the network's last 9x9 conv): `space_to_depth`,
      a ceil(k/2) conv with 4x the channels in and out, then `depth_to_space`. A conv with 3 or 4
      output channels uses a CPU's vector lanes poorly: 1.5-1.7x faster (BUILD_NOTES).

    `pad(x)` and `convolve(x)` split `call` (`call(x) == convolve(pad(x))` without upsampling, to
    rounding), for callers that pad themselves (a tile with its neighbours' pixels as halo).
    """

    # Output channels up to which a stride-1 conv with a kernel of 5 or more goes through
    # space_to_depth. Measured at 1024x1024 (bench notes): 9x9 4->3 48 -> 33 ms, 9x9 32->3
    # 321 -> 187 ms; 9x9 3->32 131 vs 91 ms (slower: it already has 32 outputs).
    S2D_MAX_FILTERS = 8

    def __init__(self, filters, kernel_size, strides=1, kernel_initializer=None, upsample=1,
                 use_bias=False,
                 **kwargs):
        super().__init__(**kwargs)
        _check_odd_kernel(kernel_size)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer, got {filters!r}")
        if not isinstance(strides, int) or strides < 1:
            raise ValueError(f"strides must be a positive integer, got {strides!r}")
        if not isinstance(upsample, int) or isinstance(upsample, bool) or upsample < 1:
            raise ValueError(f"upsample must be a positive integer, got {upsample!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.upsample = upsample
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
        if self.upsample > 1:
            if self.upsample == 2 and self.kernel_size == 3 and self.strides == 1:
                kernel = ops.convert_to_tensor(self.kernel)
                # Reflection padding of the upsampled image repeats its edge pixel, which at
                # low resolution is edge padding by 1.
                y = tf.nn.conv2d(edge_pad(x), ops.cast(_phase_kernel(kernel), x.dtype), 1, "VALID")
                return self._add_bias(_crop_one(_depth_to_space(y)))
            x = _nearest_upsample(x, self.upsample)
        if self.strides == 2 and self.kernel_size == 3 and not _LITERT_OPS.get():
            kernel = ops.cast(ops.convert_to_tensor(self.kernel), x.dtype)
            height, width = x.shape[1], x.shape[2]
            if height is not None and width is not None:
                if height % 2 == 0 and width % 2 == 0:
                    return self._add_bias(_stride2_conv_even(x, kernel))
            else:
                shape = tf.shape(x)
                even = tf.logical_and(shape[1] % 2 == 0, shape[2] % 2 == 0)
                return self._add_bias(tf.cond(
                    even, lambda: _stride2_conv_even(x, kernel),
                    lambda: tf.nn.conv2d(reflect_pad(x, 1), kernel, 2, "VALID")))
        return self.convolve(self.pad(x))

    def pad(self, x):
        """Reflection padding by kernel_size // 2 on H and W."""
        return reflect_pad(x, self.kernel_size // 2)

    def convolve(self, x):
        """The VALID convolution of an already padded input [B, H + k - 1, W + k - 1, C]."""
        kernel = ops.cast(ops.convert_to_tensor(self.kernel), x.dtype)
        if self.strides == 1 and self.kernel_size >= 5 and self.filters <= self.S2D_MAX_FILTERS:
            return self._add_bias(self._convolve_s2d(x, kernel))
        return self._add_bias(tf.nn.conv2d(x, kernel, self.strides, "VALID"))

    def _add_bias(self, y):
        return y if self.bias is None else y + ops.cast(self.bias, y.dtype)

    def _convolve_s2d(self, x, kernel):
        k = self.kernel_size
        size = tf.shape(x)[1:3]
        out = size - (k - 1)
        # space_to_depth needs even sizes: an odd output size gets one row/column of zeros,
        # cropped below. TF forwards its input unchanged when the amounts are 0 (the network's
        # sizes are multiples of 4), so the common case copies nothing.
        extra = out % 2
        x = tf.pad(x, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]])
        # tf.pad with computed amounts loses the static channel count (LiteRT then turns the
        # next conv into a Flex op); the reshape restores it.
        padded = tf.shape(x)
        x = tf.reshape(x, tf.stack([padded[0], padded[1], padded[2], kernel.shape[2]]))
        y = tf.nn.conv2d(_space_to_depth(x), _s2d_kernel(kernel), 1, "VALID")
        return _depth_to_space(y)[:, : out[0], : out[1], :]

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n * self.upsample - 1) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            upsample=self.upsample,
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

    In the transformer, `model.fuse_upsampling` hands the factor to the convolution that follows
    (which computes the same sums at low resolution) and leaves this layer at factor 1, a
    pass-through.
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


_LITERT_OPS = contextvars.ContextVar("litert_ops", default=False)


@contextlib.contextmanager
def litert_ops():
    """Within it, layers are traced with ops that LiteRT's converter lowers to builtins.

    These choices differ. `moments` of one example: TF's `FusedBatchNormV3` gives the
    first-stage statistics in one pass, but the converter lowers only that op's normalized
    output, not its statistics, so a LiteRT file gets the same two-stage means as MEAN ops
    (what XNNPACK runs best anyway). Stride-2 convs pad first and run a VALID conv: their
    padding inside the conv was not tried with the converter. The rest keep the ops XNNPACK
    runs and no control flow: `depth_to_space`/`space_to_depth` (TF runs them faster as
    transposes), the plain multiply and add for a 3-channel norm and for several style rows
    of one image, and `PadToMultiple` without its `tf.cond`. The arithmetic is the same; the
    results agree to float32 rounding.
    """
    token = _LITERT_OPS.set(True)
    try:
        yield
    finally:
        _LITERT_OPS.reset(token)


def moments(x):
    """Per-example, per-channel mean and biased variance of x [B,H,W,C] over H and W, in float32,
    each [B,1,1,C].

    Means over H, then over W: one float32 reduction over a 1024x1024 plane is off by 3.6e-4 in
    TF and 2.9e-3 in LiteRT (against float64); two of <= 1024 terms by ~4e-5.
    """
    x32 = ops.cast(x, "float32")
    if _LITERT_OPS.get() or (x32.shape[0] or 0) > 1:
        return _moments_batched(x32)
    if x32.shape[0] == 1:
        return _moments_one(x32)
    # Batch unknown when traced (a SavedModel's signature): decided per call.
    return tf.cond(tf.equal(tf.shape(x32)[0], 1), lambda: _moments_one(x32),
                   lambda: _moments_batched(x32))


@tf.custom_gradient
def _moments_batched(x):
    mean = ops.mean(ops.mean(x, axis=1, keepdims=True), axis=2, keepdims=True)
    centred = tf.math.squared_difference(x, mean)
    variance = ops.mean(ops.mean(centred, axis=1, keepdims=True), axis=2, keepdims=True)
    # TF's own gradient of the two-stage means tiles and re-reduces full-size tensors about ten
    # times per norm; the written-out one passes over x three times.
    return (mean, variance), functools.partial(_moments_grad, x, mean)


def _moments_grad(x, mean, dmean, dvariance):
    """Gradient of (mean, biased variance) over H and W: (dmean + 2 dvariance (x - mean)) / n."""
    dynamic = tf.shape(x)
    n = tf.cast(dynamic[1] * dynamic[2], tf.float32)
    dmean = tf.zeros_like(mean) if dmean is None else dmean
    dvariance = tf.zeros_like(mean) if dvariance is None else dvariance
    return (x - mean) * (2.0 * dvariance / n) + dmean / n


@tf.custom_gradient
def _moments_one(x):
    """`moments` of one example (batch 1 known when traced), the first stage in one fused op.

    x [1,H,W,C] reshaped to [H,1,1,W*C] is a batch of H "examples" with W*C channels, so TF's
    training-mode `FusedBatchNormV3` gives every column's mean and variance over H in one pass:
    the same first stage as the two means above, 44 vs 94 ms at 1024x1024x32. The second stage
    combines the W columns exactly (the mean of the column variances plus the variance of the
    column means). The op's `batch_variance` is Bessel-corrected (H - 1 in the denominator;
    left as is for H = 1), hence the (H - 1) / H. Its y output is not used. The op's gradient
    covers y only, so the statistics' gradient is written out. Its variance is less exact
    than the two means where the mean is large against the spread (2.6e-5 relative at 25
    standard deviations); the bundled networks at 1024 px are as close to float64 as before
    (8.1e-5 and 1.7e-5, tests/test_model.py).
    """
    dynamic = tf.shape(x)
    h, w, c = (x.shape[i] if x.shape[i] is not None else dynamic[i] for i in (1, 2, 3))
    # The batch (1) stays in the new shape: from a constant one, TF's graph optimizer would
    # infer x's batch, and fold the `tf.cond` of an unknown batch (`moments`) to this branch.
    columns = tf.reshape(x, tf.stack([(x.shape[0] or dynamic[0]) * h, 1, 1, w * c]))
    ones = tf.ones(tf.reshape(w * c, [1]), tf.float32)
    _, col_mean, col_var, *_ = tf.raw_ops.FusedBatchNormV3(
        x=columns, scale=ones, offset=tf.zeros_like(ones), mean=tf.zeros_like(ones),
        variance=ones, epsilon=1e-3, is_training=True)
    hf = tf.cast(h, tf.float32)
    col_mean = tf.reshape(col_mean, tf.stack([1, 1, w, c]))
    # A guard: a rounding error below zero that epsilon does not cover would be a NaN image.
    col_var = tf.reshape(tf.maximum(col_var * ((hf - 1.0) / hf), 0.0), tf.stack([1, 1, w, c]))
    mean = tf.reduce_mean(col_mean, axis=2, keepdims=True)
    variance = (tf.reduce_mean(col_var, axis=2, keepdims=True)
                + tf.reduce_mean(tf.math.squared_difference(col_mean, mean), axis=2, keepdims=True))

    return (mean, variance), functools.partial(_moments_grad, x, mean)


def normalize(x, mean, variance, gamma, beta, epsilon, dtype):
    """(x - mean) / sqrt(variance + epsilon) * gamma + beta, as one scale and one shift per example
    and channel.

    mean, variance: [B,1,1,C] (from `moments`, or statistics accumulated elsewhere, e.g. over
    the tiles of a large image); gamma, beta: [B,C]. Batches broadcast: an x of batch 1 with
    gamma/beta of batch S gives S outputs, one per row (several styles of one image).
    """
    x = ops.cast(x, "float32")
    if x.shape[0] == 1 and gamma.shape[0] == 1:
        return ops.cast(_normalize_one(x, mean, variance, gamma, beta, epsilon), dtype)
    if x.shape[0] == 1 and not _LITERT_OPS.get():
        # Several rows for one image: the fused op once per row, each reading x while it is
        # in cache, where the broadcast multiply and add pass over all S outputs twice: 76 vs
        # 58 ms for 26 rows at 256x256x32 (BUILD_NOTES, Inference).
        rows = tf.map_fn(
            lambda row: _normalize_one(x, mean, variance, row[0][None], row[1][None], epsilon)[0],
            (gamma, beta), fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32),
            parallel_iterations=1)
        return ops.cast(rows, dtype)
    scale = gamma[:, None, None, :] * ops.rsqrt(variance + epsilon)
    shift = beta[:, None, None, :] - mean * scale
    return ops.cast(x * scale + shift, dtype)


def _normalize_one(x, mean, variance, gamma, beta, epsilon):
    """`normalize` of one example (batch 1 known when traced) as TF's inference batch norm.

    TF fuses that op with a ReLU that follows into one pass over x (`_FusedBatchNormEx`), where
    x * scale + shift and a ReLU take three: 76 vs 132 ms of CPU at 1024x1024x32. The LiteRT
    converter lowers it to the same MUL and ADD as the batched form. The op's own gradient
    treats mean and variance as constants; here they are functions of x, so the gradient is
    written out.
    """
    channels = x.shape[-1]
    # TF's CPU kernel is slow on a channel count that is not a multiple of 4 (the networks'
    # last norm has 3: 20 ms at 1024x1024). Each row [W, C] as one pixel of W*C channels,
    # with the per-channel values repeated W times, takes 3.3 ms (BUILD_NOTES, Inference).
    # Not for LiteRT, whose converter would keep the reshapes and tiles.
    by_rows = channels % 4 != 0 and not _LITERT_OPS.get()

    @tf.custom_gradient
    def norm(x, mean, variance, gamma, beta):
        params = [tf.reshape(v, [channels]) for v in (gamma, beta, mean, variance)]
        z = x
        if by_rows:
            shape = tf.shape(x)
            z = tf.reshape(x, tf.stack([shape[0] * shape[1], 1, 1, shape[2] * channels]))
            params = [tf.tile(v, tf.reshape(shape[2], [1])) for v in params]
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=z, scale=params[0], offset=params[1], mean=params[2], variance=params[3],
            epsilon=epsilon, is_training=False)
        if by_rows:
            y = tf.reshape(y, tf.shape(x))

        def grad(dy):
            r = tf.math.rsqrt(variance + epsilon)  # [1,1,1,C]
            g = gamma[:, None, None, :]
            centred = x - mean
            sum_dy = tf.reduce_sum(dy, axis=[1, 2], keepdims=True)
            sum_dy_centred = tf.reduce_sum(dy * centred, axis=[1, 2], keepdims=True)
            return (dy * (r * g),
                    -sum_dy * r * g,
                    -0.5 * sum_dy_centred * g * r * r * r,
                    tf.reshape(sum_dy_centred * r, [1, channels]),
                    tf.reshape(sum_dy, [1, channels]))

        return y, grad

    return norm(x, mean, variance, gamma, beta)


def instance_norm(x, gamma, beta, epsilon, dtype):
    """Instance normalization of x [B,H,W,C] with per-example gamma, beta [B,C], in float32.

    The one normalization of the package: every conditional norm (style weights, or a style
    embedding's projection) computes its gamma/beta and calls this. An x of batch 1 with gamma,
    beta of batch S is normalized once and gives S outputs (see `normalize`).
    """
    mean, variance = moments(x)
    return normalize(x, mean, variance, gamma, beta, epsilon, dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalInstanceNormalization(keras.layers.Layer):
    """Conditional instance normalization (Dumoulin et al. 2017, eq. 5).

    Called as `layer([x, style_weights])`:
    - `style_weights` float [B, N]: gamma = w @ Gamma and beta = w @ Beta per example. A one-hot
      row selects one style; any other row blends styles (the paper's convex combination; the
      weights are used as given, not renormalized, as in Magenta's `weighted_instance_norm`).
    - `style_weights` integer [B]: one style label per example (Magenta's
      `conditional_instance_norm`).
    An x of batch 1 with B style rows gives B outputs: the moments of x are computed once and
    each row's gamma/beta applied to them (several styles of one image share everything before
    the first norm).

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
        gamma, beta = self.gamma_beta(style)
        return instance_norm(x, gamma, beta, self.epsilon, self.compute_dtype)

    def gamma_beta(self, style):
        """float32 gamma, beta [B, C] for `style` (weights [B, N] or integer labels [B]).

        Split from `call` for callers that normalize with statistics gathered elsewhere (the
        tiled executor, `tiled.py`, applies `normalize` with whole-image statistics).
        """
        if len(style.shape) == 1:
            if "int" not in str(style.dtype):
                raise ValueError(
                    f"{self.name}: rank-1 style input must be integer labels, got dtype {style.dtype}"
                )
            weights = ops.one_hot(style, self.num_styles, dtype="float32")
        else:
            weights = ops.cast(style, "float32")
        return ops.matmul(weights, self.gamma), ops.matmul(weights, self.beta)

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
        gamma, beta = self.gamma_beta(embedding)
        return instance_norm(x, gamma, beta, self.epsilon, self.compute_dtype)

    def gamma_beta(self, embedding):
        """float32 gamma, beta [B, C] for `embedding` [B, D] (the tiled executor applies them
        with whole-image statistics, as for `ConditionalInstanceNormalization`)."""
        embedding = ops.cast(embedding, "float32")
        return (ops.matmul(embedding, self.gamma_weights) + self.gamma_biases,
                ops.matmul(embedding, self.beta_weights) + self.beta_biases)

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
        m = self.multiple
        if m == 1:
            return x
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None:
            return x if height % m == 0 and width % m == 0 else self._pad(x)
        if _LITERT_OPS.get():
            return self._pad(x)
        # Sizes open when traced: most photos are already a multiple, and the pad copies the
        # image twice even when it adds nothing (1 ms at 512 px, 4 at 1024).
        shape = tf.shape(x)
        aligned = tf.reduce_all(tf.equal(shape[1:3] % m, 0))
        return tf.cond(aligned, lambda: tf.identity(x), lambda: self._pad(x))

    def _pad(self, x):
        m = self.multiple
        channels = x.shape[-1]
        shape = tf.shape(x)
        size = (shape[1:3] + m - 1) // m * m
        # Reflect m - 1 rows/columns (as `reflect_pad` does, for LiteRT's sake), keep what is
        # needed. Needs H, W >= m (the network needs >= 16).
        for axis in (1, 2):
            x = tf.concat([x] + [_line(x, axis, -i) for i in range(2, m + 1)], axis=axis)
        x = x[:, : size[0], : size[1], :]
        # With computed sizes the LiteRT converter loses every static dimension, the channel
        # count too, and the next Conv2D becomes a Flex op; a reshape restores C.
        size = tf.shape(x)
        return tf.reshape(x, tf.stack([size[0], size[1], size[2], channels]))

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
