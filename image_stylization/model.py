"""The N-style transfer network (Dumoulin et al. 2017, Table 1; Magenta's `model.transform`).

The network reads top to bottom: contract, residual, expand. Layer names are Magenta's variable
scopes with "." for "/" (Keras forbids "/" in names), so `magenta_name()` maps every weight to
its Magenta checkpoint name one to one.
"""

import keras

from image_stylization.layers import (
    ConditionalInstanceNormalization,
    CropToReference,
    ImageInputCheck,
    NearestUpsampling2D,
    PadToMultiple,
    ReflectionPadConv2D,
)

# (kernel, stride, filters) per stage, at alpha = 1.
PRESETS = {
    # Table 1 of the paper, Magenta's `model.transform`.
    "paper": dict(
        contract=[(9, 1, 32), (3, 2, 64), (3, 2, 128)],
        residual_blocks=5,
        residual_filters=128,
        expand=[(3, 2, 64), (3, 2, 32), (9, 1, 3)],
    ),
    # The TF Android "stylize" demo network (stylize_quantized.pb / multistyle26.onnx).
    "android_26": dict(
        contract=[(9, 1, 32), (3, 2, 32), (3, 2, 32)],
        residual_blocks=6,
        residual_filters=32,
        expand=[(3, 2, 8), (3, 2, 4), (9, 1, 3)],
    ),
}


def _width(filters, alpha):
    return max(1, int(alpha * filters))


def _conv_cin(x, style_weights, num_styles, filters, kernel, stride, name, activation):
    """Conv -> CIN -> activation, as Magenta's `slim.conv2d` with a normalizer_fn."""
    x = ReflectionPadConv2D(filters, kernel, stride, name=name)(x)
    x = ConditionalInstanceNormalization(num_styles, name=f"{name}.InstanceNorm")([x, style_weights])
    if activation == "relu":
        x = keras.layers.ReLU(name=f"{name}.relu")(x)
    return x


def build_transformer(num_styles, preset="paper", alpha=1.0, name="transformer"):
    """Builds the style transfer network.

    Args:
      num_styles: N, the number of styles (rows of every gamma/beta table).
      preset: "paper" (Table 1, 1.67M conv weights) or "android_26" (the TF Android demo
        network, 140k conv weights).
      alpha: width multiplier, Magenta's `--alpha`: every width except the 3 output channels
        becomes int(alpha * C).

    Returns:
      A `keras.Model` with inputs `image` [B,H,W,3] float in [0,1] and `style_weights` [B,N]
      (one-hot selects a style, convex weights blend), and output `stylized` [B,H,W,3] in (0,1),
      the same H,W as the input for any H,W >= 16.
    """
    if not isinstance(num_styles, int) or isinstance(num_styles, bool) or num_styles < 1:
        raise ValueError(f"num_styles must be an integer >= 1, got {num_styles!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if not 0 < alpha <= 8:
        raise ValueError(f"alpha must be in (0, 8], got {alpha!r}")
    spec = PRESETS[preset]

    image = keras.Input((None, None, 3), name="image")
    style_weights = keras.Input((num_styles,), name="style_weights")
    x = ImageInputCheck(name="image_check")(image)
    x = PadToMultiple(4, name="pad_to_multiple")(x)

    for i, (k, s, f) in enumerate(spec["contract"], start=1):
        x = _conv_cin(x, style_weights, num_styles, _width(f, alpha), k, s, f"contract.conv{i}", "relu")

    c = _width(spec["residual_filters"], alpha)
    for b in range(1, spec["residual_blocks"] + 1):
        scope = f"residual.residual{b}"
        h = _conv_cin(x, style_weights, num_styles, c, 3, 1, f"{scope}.conv1", "relu")
        h = _conv_cin(h, style_weights, num_styles, c, 3, 1, f"{scope}.conv2", None)
        # No ReLU after the addition, as in Magenta.
        x = keras.layers.Add(name=f"{scope}.add")([x, h])

    last = len(spec["expand"])
    for i, (k, s, f) in enumerate(spec["expand"], start=1):
        scope = f"expand.conv{i}"
        if s > 1:
            x = NearestUpsampling2D(s, name=f"{scope}.upsample")(x)
        out_channels = f if i == last else _width(f, alpha)
        x = _conv_cin(
            x, style_weights, num_styles, out_channels, k, 1, f"{scope}.conv",
            None if i == last else "relu",
        )

    x = CropToReference(name="crop")([x, image])
    # float32 output under mixed precision: float16 rounding would saturate values near 0 and 1.
    stylized = keras.layers.Activation("sigmoid", dtype="float32", name="stylized")(x)
    model = keras.Model(inputs={"image": image, "style_weights": style_weights},
                        outputs=stylized, name=name)
    return fuse_upsampling(model)


def fuse_upsampling(model):
    """Moves each nearest upsampling into the convolution it feeds; returns `model`, changed in place.

    A `NearestUpsampling2D` whose output goes only to a `ReflectionPadConv2D` (Magenta's
    `upsampling`: resize, then conv) becomes factor 1, a pass-through, and the conv gets
    `upsample=factor`, which computes the same sums at low resolution (see the conv's docstring)
    instead of convolving a 4x larger copy. The layers stay where they were, so layer names,
    variables, the order of layers (what a training checkpoint's object graph is keyed by) and
    the `.keras` layout do not change. `build_transformer` and `checkpoint.load_model` apply it;
    any network built from these layers can. Idempotent.
    """
    consumers = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        for tensor in inputs:
            consumers.setdefault(id(tensor), []).append(layer)
    outputs = {id(t) for t in model.outputs}
    for layer in model.layers:
        if not isinstance(layer, NearestUpsampling2D) or layer.factor == 1:
            continue
        if len(layer._inbound_nodes) != 1 or id(layer.output) in outputs:
            continue
        users = consumers.get(id(layer.output), [])
        if len(users) != 1 or not isinstance(users[0], ReflectionPadConv2D):
            continue
        conv = users[0]
        if conv.upsample != 1 or conv.strides != 1 or len(conv._inbound_nodes) != 1:
            continue
        conv.upsample, layer.factor = layer.factor, 1
    return model


def with_compute_dtype(model, policy):
    """A copy of `model` with the same weights whose layers compute under the Keras dtype policy
    `policy` (e.g. "mixed_bfloat16": bfloat16 convolutions, float32 variables). The norms keep
    their statistics in float32 and the output layer stays float32, as under mixed precision
    training. The model is left unchanged."""
    output_layer = model.layers[-1]

    def clone(layer):
        config = layer.get_config()
        if layer is not output_layer and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    for attribute in ("style_names", "manifest"):
        if hasattr(model, attribute):
            setattr(copy, attribute, getattr(model, attribute))
    return fuse_upsampling(copy)


def magenta_name(variable):
    """Magenta checkpoint name of one of our weights, e.g.
    `contract.conv1.InstanceNorm/gamma` -> `transformer/contract/conv1/InstanceNorm/gamma`."""
    layer, _, var = variable.path.rpartition("/")
    return "transformer/" + layer.replace(".", "/") + "/" + var


def conv_layers(model):
    return [l for l in model.layers if isinstance(l, ReflectionPadConv2D)]


def norm_layers(model):
    return [l for l in model.layers if isinstance(l, ConditionalInstanceNormalization)]


def num_styles_of(model):
    return norm_layers(model)[0].num_styles


def count_parameters(model):
    """(conv weights, CIN parameters per style) of a transformer."""
    conv = sum(_prod(l.kernel.shape) for l in conv_layers(model))
    per_style = sum(2 * int(l.gamma.shape[1]) for l in norm_layers(model))
    return conv, per_style


def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n
