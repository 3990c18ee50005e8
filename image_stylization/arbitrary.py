"""Any painting as a style: the arbitrary-style network of Ghiasi et al. 2017 (BMVC), "Exploring
the structure of a real-time, arbitrary neural artistic stylization network" (Magenta's
`arbitrary_image_stylization`).

Two networks:
- the style predictor (`build_style_predictor`): MobileNetV2 (width 1.0) to a 100-d style
  embedding, Magenta's distilled predictor;
- the style transformer (`build_style_transformer`): the paper network of `model.py` at a width
  multiplier (0.25 for Magenta's mobile model), whose 13 normalizations after the residual and
  decoder convolutions take gamma/beta from 1x1 projections of the embedding
  (`ConditionalStyleNormalization`); the encoder has batch norm folded into conv biases.

    from image_stylization import stylize, predict_style
    out = stylize("photo.jpg", style_image="painting.jpg")                  # PIL.Image
    mix = stylize("photo.jpg", style_image=["a.jpg", "b.jpg"], weights=[0.3, 0.7])
    e = predict_style("painting.jpg")                                       # float32 (100,)
    out = stylize("photo.jpg", style_embedding=e, strength=0.5)

A checkpoint is a directory with `manifest.json` (`"kind": "arbitrary"`) and `weights.npz`: the
weights of both networks under their Keras variable paths, either float32 or int8 with a
per-channel scale and zero point (`<key>:q`, `<key>:scale`, `<key>:zero_point`, `<key>:axis`),
dequantized on load as scale * (q - zero_point). It is read with `np.load(allow_pickle=False)`
and needs no optional package.
"""

import functools
import json
import math
import numbers
import os

import keras
import numpy as np
from PIL import Image, ImageDraw

from image_stylization import image_io
from image_stylization.architecture import few as _few
from image_stylization.errors import CheckpointError, StyleError
from image_stylization.layers import (
    ConditionalStyleNormalization,
    CropToReference,
    ImageInputCheck,
    NearestUpsampling2D,
    PadToMultiple,
    ReflectionPadConv2D,
)
from image_stylization.model import PRESETS, fuse_upsampling
from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB

KIND = "arbitrary"
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
EMBEDDING_SIZE = 100
DEFAULT_STYLE_IMAGE_SIZE = 256  # what the predictor was distilled at (Magenta's --style_image_size)
DEFAULT_NAME = "arbitrary_v1"  # the bundled pair

# MobileNetV2 inverted-residual stages: (expansion t, output channels c, repeats n, stride s).
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]


# ----------------------------------------------------------------------------- the networks


def build_style_predictor(embedding_size=EMBEDDING_SIZE, name="style_predictor"):
    """MobileNetV2 (width 1.0) -> global mean -> 1x1 conv to the style embedding.

    Input `style_image` [B,h,w,3] in [0,1], any size >= 16 (TF "SAME" padding, so stride-2 layers
    pad bottom/right as the converted weights expect); output `style_embedding` [B, D].
    Layer names are the TF scopes with "." for "/".
    """
    style_image = keras.Input((None, None, 3), name="style_image")
    x = ImageInputCheck(name="style_image_check")(style_image)

    def conv(x, filters, kernel, stride, scope, relu6=True):
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", name=scope)(x)
        return keras.layers.ReLU(6.0, name=f"{scope}.relu6")(x) if relu6 else x

    x = conv(x, 32, 3, 2, "MobilenetV2.Conv")
    channels, block = 32, 0
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            stride = s if i == 0 else 1
            scope = "MobilenetV2.expanded_conv" + (f"_{block}" if block else "")
            h = conv(x, channels * t, 1, 1, f"{scope}.expand") if t != 1 else x
            h = keras.layers.DepthwiseConv2D(3, stride, padding="same", name=f"{scope}.depthwise")(h)
            h = keras.layers.ReLU(6.0, name=f"{scope}.depthwise.relu6")(h)
            h = conv(h, c, 1, 1, f"{scope}.project", relu6=False)
            x = keras.layers.Add(name=f"{scope}.add")([x, h]) if stride == 1 and channels == c else h
            channels, block = c, block + 1
    x = conv(x, 1280, 1, 1, "MobilenetV2.Conv_1")
    x = keras.layers.GlobalAveragePooling2D(name="bottleneck.mean")(x)
    embedding = keras.layers.Dense(embedding_size, name="mobilenet_conv.Conv")(x)
    embedding = keras.layers.Identity(name="style_embedding")(embedding)
    return keras.Model(style_image, embedding, name=name)


def build_style_transformer(embedding_size=EMBEDDING_SIZE, alpha=0.25, epsilon=1e-5,
                            name="style_transformer"):
    """The paper's transformer (Table 1) at width `alpha`, conditioned on a style embedding.

    Magenta's `nza_model.transform`: the encoder convolutions carry a bias (their batch norm,
    folded) and a ReLU; every later convolution is followed by `ConditionalStyleNormalization`.
    Inputs `image` [B,H,W,3] in [0,1] (any H,W >= 16) and `style_embedding` [B, D]; output
    `stylized` [B,H,W,3], the input's size.
    """
    if not 0 < alpha <= 8:
        raise ValueError(f"alpha must be in (0, 8], got {alpha!r}")
    spec = PRESETS["paper"]
    width = lambda f: max(1, int(alpha * f))  # noqa: E731  (model.py's rule)

    image = keras.Input((None, None, 3), name="image")
    embedding = keras.Input((embedding_size,), name="style_embedding")
    x = ImageInputCheck(name="image_check")(image)
    x = PadToMultiple(4, name="pad_to_multiple")(x)

    for i, (k, s, f) in enumerate(spec["contract"], start=1):
        x = ReflectionPadConv2D(width(f), k, s, use_bias=True, name=f"contract.conv{i}")(x)
        x = keras.layers.ReLU(name=f"contract.conv{i}.relu")(x)

    def conv_norm(x, filters, kernel, scope, relu):
        x = ReflectionPadConv2D(filters, kernel, 1, name=scope)(x)
        x = ConditionalStyleNormalization(epsilon, name=f"{scope}.StyleNorm")([x, embedding])
        return keras.layers.ReLU(name=f"{scope}.relu")(x) if relu else x

    c = width(spec["residual_filters"])
    for b in range(1, spec["residual_blocks"] + 1):
        scope = f"residual.residual{b}"
        h = conv_norm(x, c, 3, f"{scope}.conv1", relu=True)
        h = conv_norm(h, c, 3, f"{scope}.conv2", relu=False)
        x = keras.layers.Add(name=f"{scope}.add")([x, h])

    last = len(spec["expand"])
    for i, (k, s, f) in enumerate(spec["expand"], start=1):
        if s > 1:
            x = NearestUpsampling2D(s, name=f"expand.conv{i}.upsample")(x)
        x = conv_norm(x, f if i == last else width(f), k, f"expand.conv{i}.conv", relu=i != last)

    x = CropToReference(name="crop")([x, image])
    stylized = keras.layers.Activation("sigmoid", dtype="float32", name="stylized")(x)
    # The upsampling convolutions run at low resolution, as in the N-style network.
    return fuse_upsampling(
        keras.Model({"image": image, "style_embedding": embedding}, stylized, name=name))


# ----------------------------------------------------------------------------- the model pair


class ArbitraryModel:
    """A style predictor and a style transformer that share one embedding space.

    `predictor` and `transformer` are plain Keras models (what the API runs is what exports);
    `manifest` is the checkpoint's manifest. `embed` and `transform` run them through one
    `tf.function` each, with batch and image sizes left free so new sizes do not retrace.
    """

    kind = KIND

    def __init__(self, predictor, transformer, manifest=None):
        dim = predictor.output_shape[-1]
        takes = transformer.get_layer("style_embedding").output.shape[-1]
        if takes != dim:
            raise CheckpointError(
                f"the predictor's embedding has {dim} values, the transformer takes {takes}")
        self.predictor = predictor
        self.transformer = transformer
        self.embedding_size = int(dim)
        self.manifest = dict(manifest or {})
        self._functions = None

    @property
    def style_image_size(self):
        return int(self.manifest.get("style_image_size", DEFAULT_STYLE_IMAGE_SIZE))

    def _compiled(self):
        if self._functions is None:
            import tensorflow as tf

            predictor, transformer, d = self.predictor, self.transformer, self.embedding_size

            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                         reduce_retracing=True)
            def embed(style_image):
                return predictor(style_image, training=False)

            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                          tf.TensorSpec([None, d], tf.float32)],
                         reduce_retracing=True)
            def transform(image, style_embedding):
                return transformer({"image": image, "style_embedding": style_embedding},
                                   training=False)

            self._functions = (embed, transform)
        return self._functions

    def embed(self, style_images):
        """float [B,h,w,3] in [0,1] -> float32 [B, D]."""
        return np.asarray(self._compiled()[0](np.asarray(style_images, np.float32)))

    def transform(self, image, embeddings):
        """One float image [H,W,3] with each row of `embeddings` [K, D] -> float32 [K,H,W,3].

        Rows run as a batch of the image, split when batch x pixels exceeds the budget of
        `stylize.MAX_BATCH_PIXELS`. The whole image must fit in memory; `stylize` tiles larger
        ones (`stylize._tiled`).
        """
        from image_stylization.stylize import MAX_BATCH_PIXELS, MIN_SIZE

        h, w = image.shape[:2]
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"image is {w}x{h} px; the network needs both sides >= {MIN_SIZE} px")
        embeddings = np.asarray(embeddings, np.float32).reshape(-1, self.embedding_size)
        chunk = max(1, MAX_BATCH_PIXELS // (h * w))
        image = np.asarray(image, np.float32)[None]
        outs = []
        for start in range(0, len(embeddings), chunk):
            rows = embeddings[start:start + chunk]
            batch = np.ascontiguousarray(np.broadcast_to(image, (len(rows),) + image.shape[1:]))
            outs.append(np.asarray(self._compiled()[1](batch, rows)))
        return np.concatenate(outs, axis=0)


def build_pair(manifest=None):
    """An untrained `ArbitraryModel` with the architecture a manifest describes."""
    arch = dict((manifest or {}).get("architecture", {}))
    dim = int(arch.get("embedding_size", EMBEDDING_SIZE))
    predictor = build_style_predictor(dim)
    transformer = build_style_transformer(dim, alpha=float(arch.get("alpha", 0.25)),
                                          epsilon=float(arch.get("epsilon", 1e-5)))
    return ArbitraryModel(predictor, transformer, manifest)


def weight_keys(model):
    """{storage key: variable} for both networks, e.g. `transformer/contract.conv1/weights`."""
    keys = {}
    for prefix, net in (("predictor", model.predictor), ("transformer", model.transformer)):
        for v in net.weights:
            keys[f"{prefix}/{v.path}"] = v
    return keys


# ----------------------------------------------------------------------------- storage


def dequantize(q, scale, zero_point, axis):
    """scale * (q - zero_point) in float32, per channel along `axis` (ONNX DequantizeLinear)."""
    q = np.asarray(q)
    scale = np.asarray(scale, np.float32)
    zero_point = np.asarray(zero_point)
    if scale.ndim:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero_point = zero_point.reshape(shape)
    # The integer difference is exact; one float32 product per value, as onnxruntime computes it.
    return (q.astype(np.int64) - zero_point.astype(np.int64)).astype(np.float32) * scale


def _read_weights(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as e:  # zipfile.BadZipFile, ValueError for object arrays, OSError
        raise CheckpointError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    weights, quantized = {}, {}
    for key, value in arrays.items():
        base, _, part = key.rpartition(":")
        if part in ("q", "scale", "zero_point", "axis") and base:
            quantized.setdefault(base, {})[part] = value
        else:
            weights[key] = value
    for base, parts in quantized.items():
        missing = {"q", "scale", "zero_point", "axis"} - set(parts)
        if missing:
            raise CheckpointError(f"{path}: {base} lacks {', '.join(sorted(missing))}")
        try:
            weights[base] = dequantize(parts["q"], parts["scale"], parts["zero_point"],
                                       int(parts["axis"]))
        except (ValueError, IndexError) as e:
            raise CheckpointError(f"{path}: {base}: bad quantization parameters ({e})") from None
    return weights


def assign_weights(model, weights, source="weights"):
    """Copies {storage key: float array} into `model`, refusing missing, extra, misshapen or
    non-finite values."""
    keys = weight_keys(model)
    missing = sorted(set(keys) - set(weights))
    extra = sorted(set(weights) - set(keys))
    if missing or extra:
        what = (f"missing {_few(missing)}" if missing else "") + ("; " if missing and extra else "") \
            + (f"unexpected {_few(extra)}" if extra else "")
        raise CheckpointError(f"{source}: does not fit the network ({what})")
    for key, v in keys.items():
        value = np.asarray(weights[key])
        if tuple(value.shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {key} has shape {value.shape}, expected {tuple(v.shape)}")
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: {key} is not a finite float array")
        v.assign(value.astype(np.float32))
    return model


def is_arbitrary_checkpoint(directory):
    path = os.path.join(os.fspath(directory), MANIFEST_FILE)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def bundled_dir(name=DEFAULT_NAME):
    from image_stylization.checkpoint import bundled_checkpoint_dir

    return bundled_checkpoint_dir(name)


def load_arbitrary_model(checkpoint=None):
    """Loads an arbitrary-style checkpoint directory (None: the bundled `arbitrary_v1`)."""
    directory = os.fspath(checkpoint) if checkpoint is not None else bundled_dir()
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_path}: no manifest") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise CheckpointError(f"{directory}: not an arbitrary-style checkpoint (manifest kind "
                              f"{manifest.get('kind') if isinstance(manifest, dict) else None!r})")
    model = build_pair(manifest)
    path = os.path.join(directory, WEIGHTS_FILE)
    return assign_weights(model, _read_weights(path), path)


@functools.lru_cache(maxsize=1)
def _default_model():
    return load_arbitrary_model(None)


def save_arbitrary_model(model, directory, quantized=None, overwrite=False, **manifest_fields):
    """Writes `manifest.json` and `weights.npz` into `directory`, atomically.

    `quantized` maps storage keys to (q, scale, zero_point, axis) for weights kept as integers
    (what the converter read); every other weight is stored as float32. Returns the directory.
    """
    quantized = dict(quantized or {})
    keys = weight_keys(model)
    arrays = {}
    for key, v in keys.items():
        value = np.asarray(v.numpy(), np.float32)
        if key in quantized:
            q, scale, zero_point, axis = quantized[key]
            if not np.array_equal(dequantize(q, scale, zero_point, axis), value):
                raise CheckpointError(f"{key}: the integer weights do not dequantize to the model's")
            arrays.update({f"{key}:q": np.asarray(q), f"{key}:scale": np.asarray(scale, np.float32),
                           f"{key}:zero_point": np.asarray(zero_point),
                           f"{key}:axis": np.asarray(axis, np.int64)})
        else:
            arrays[key] = value
    manifest = {"format_version": MANIFEST_VERSION, "kind": KIND}
    manifest.update(model.manifest)
    manifest.update(manifest_fields)
    manifest["kind"] = KIND
    from image_stylization.checkpoint import write_directory

    directory = write_directory(
        directory, manifest,
        lambda tmp: np.savez_compressed(os.path.join(tmp, WEIGHTS_FILE), **arrays), overwrite,
        files=(WEIGHTS_FILE,))
    model.manifest = manifest
    return directory


# ----------------------------------------------------------------------------- Python API


def _api():
    # The module, not the function the package re-exports under the same name.
    import importlib

    return importlib.import_module("image_stylization.stylize")


def _model(model):
    model = model if model is not None else _default_model()
    if not isinstance(model, ArbitraryModel):
        raise StyleError("style_image/style_embedding need an arbitrary-style model (such as the "
                         "bundled arbitrary_v1), not an N-style transformer")
    return model


def _check_size(style_image_size, model):
    size = model.style_image_size if style_image_size is None else style_image_size
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 16:
        raise StyleError(f"style_image_size must be an integer >= 16, got {style_image_size!r}")
    return int(size)


def _paintings(style_image):
    """(list of paintings, single) from one painting or a list/tuple of them."""
    if isinstance(style_image, (list, tuple)):
        if not style_image:
            raise StyleError("style_image list is empty")
        return list(style_image), False
    return [style_image], True


def prepare_style_image(painting, style_image_size=DEFAULT_STYLE_IMAGE_SIZE):
    """A painting (path, PIL image or array) as float [h, w, 3], its longest side resized (up or
    down) to `style_image_size`: the predictor's statistics depend on the painting's scale."""
    image = image_io.load_image(painting)
    return image_io.resize_longest_side(image, style_image_size)


def predict_style(painting, model=None, style_image_size=None):
    """The style embedding of a painting: float32 (D,) (D = 100), or (K, D) for a list.

    Embeddings can be saved (`np.save`), compared, averaged and passed back as
    `stylize(..., style_embedding=e)`.
    """
    model = _model(model)
    size = _check_size(style_image_size, model)
    items, single = _paintings(painting)
    embeddings = np.stack([model.embed(prepare_style_image(p, size)[None])[0] for p in items])
    return embeddings[0] if single else embeddings


def check_embeddings(embedding, dim=EMBEDDING_SIZE, name="style_embedding"):
    """(float32 [K, dim], single) from a (dim,) or (K, dim) array; StyleError otherwise."""
    try:
        e = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        raise StyleError(f"{name} must be a float array of {dim} values") from None
    if e.ndim == 4 and e.shape[1:3] == (1, 1):  # [K,1,1,D], as Magenta's and TFLite's graphs give it
        e = e[:, 0, 0, :]
    if e.ndim not in (1, 2) or e.shape[-1] != dim or e.size == 0:
        raise StyleError(f"{name} must have shape ({dim},) or (K, {dim}), got {e.shape}")
    if not np.all(np.isfinite(e)):
        raise StyleError(f"{name} contains NaN or infinite values")
    return (e[None] if e.ndim == 1 else e), e.ndim == 1


def blend_weights(weights, count):
    """Validated blend weights, normalized to sum 1 (finite, >= 0, a positive sum)."""
    if isinstance(weights, dict):
        raise StyleError("weights must be a list of numbers, one per style image")
    weights = list(weights) if isinstance(weights, (list, tuple, np.ndarray)) else [weights]
    if len(weights) != count:
        raise StyleError(f"{len(weights)} weights given for {count} style images")
    for w in weights:
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Real) or not math.isfinite(w):
            raise StyleError(f"blend weights must be finite numbers, got {w!r}")
        if w < 0:
            raise StyleError(f"blend weights must be >= 0, got {w!r}")
    total = float(sum(weights))
    if not total > 0:
        raise StyleError("blend weights sum to 0; at least one weight must be positive")
    return np.asarray(weights, np.float32) / np.float32(total)


def interpolate(model, content, embeddings, strengths, style_image_size=None):
    """Rows s * e + (1 - s) * e_photo for every embedding e and strength s (embedding-major):
    Magenta's `interpolation_weights`, which blends a painting's embedding with the content
    photo's own (the "identity" style), rather than fading pixels."""
    embeddings = np.asarray(embeddings, np.float32)
    strengths = [float(s) for s in strengths]
    if all(s == 1.0 for s in strengths):
        return np.repeat(embeddings, len(strengths), axis=0)
    size = _check_size(style_image_size, model)
    identity = model.embed(prepare_style_image(content, size)[None])[0]
    return np.stack([np.float32(s) * e + np.float32(1.0 - s) * identity
                     for e in embeddings for s in strengths])


def style_embeddings(model, style_image=None, style_embedding=None, weights=None,
                     style_image_size=None):
    """(embeddings [K, D], single) for stylize: from paintings or given embeddings, blended into
    one row when `weights` is given."""
    if (style_image is None) == (style_embedding is None):
        raise StyleError("give one of style_image or style_embedding")
    if style_embedding is not None:
        embeddings, single = check_embeddings(style_embedding, model.embedding_size)
        count = len(embeddings)
    else:
        items, single = _paintings(style_image)
        count = len(items)
    w = blend_weights(weights, count) if weights is not None else None  # before any pixel work
    if style_image is not None:
        embeddings = predict_style(items, model, style_image_size)
    if w is not None:
        return (w @ embeddings)[None], True
    return embeddings, single


def stylize(image, style_image=None, weights=None, model=None, max_size=None, strength=1.0,
            preserve_color=False, style_image_size=None, style_embedding=None,
            memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB, progress=None):
    """Stylizes `image` with any painting (see `stylize.stylize`, which delegates here).

    Args:
      image: a path, PIL image (the result is a PIL image) or array (the result is an array of
        its dtype), as for `stylize.stylize`.
      style_image: a painting (path, PIL image or array), or a list of them: one result each,
        or one blend with `weights`.
      weights: one number per painting; the embeddings are mixed with these weights
        (normalized to sum 1), as the N-style network mixes gamma/beta rows.
      model: an `ArbitraryModel` (default: the bundled `arbitrary_v1`).
      max_size: longest side to stylize at (default `stylize.DEFAULT_MAX_SIZE`; downscaled only).
      strength: in [0, 1]; interpolates the embedding between the photo's own (0) and the
        painting's (1), Magenta's `interpolation_weights`.
      preserve_color: keep the photo's colours (luminance-only transfer).
      style_image_size: the longest side paintings are resized to before the predictor (default
        the model's, 256).
      style_embedding: instead of paintings, an embedding (D,) or several (K, D), e.g. from
        `predict_style`.
      memory_budget_mb, progress: as for `stylize.stylize`: a photo whose whole-image pass does
        not fit the budget is stylized tiled, with the same result (None: always whole-image).
    """
    api = _api()

    strength = api._check_strength(strength)
    model = _model(model)
    embeddings, single = style_embeddings(model, style_image, style_embedding, weights,
                                          style_image_size)
    content, kind = api._read(image)
    content = image_io.resize_max(content, api.DEFAULT_MAX_SIZE if max_size is None else max_size,
                                  to_float32=True)
    h, w = content.shape[:2]
    if min(h, w) < api.MIN_SIZE:
        raise ValueError(f"image is {w}x{h} px; the network needs both sides >= {api.MIN_SIZE} px")
    rows = interpolate(model, content, embeddings, [strength], style_image_size)
    results = transform_rows(model, content, rows, kind, preserve_color, memory_budget_mb,
                             progress)
    return results[0] if single else results


def transform_rows(model, content, rows, kind=np.float32, preserve_color=False,
                   memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB, progress=None):
    """One result per embedding row of `content` (float [H, W, 3]), finished (colour) and given
    back as `kind` ("pil", or an array dtype) as `stylize.stylize` gives them.

    A photo whose whole-image pass does not fit `memory_budget_mb` runs tiled with the whole
    image's statistics, as for the N-style network (the embedding rows condition the norms as
    style weights do): the same result in bounded memory.
    """
    api = _api()
    h, w = content.shape[:2]
    if api.rows_per_call(model.transformer, h, w, 1, memory_budget_mb) == 0:
        return list(api._tiled(model.transformer, content, rows, kind,
                               api._budget_bytes(memory_budget_mb), 1.0, preserve_color, progress))
    results = [api._give_back(api._finish(content, s, 1.0, preserve_color), kind)
               for s in model.transform(content, rows)]
    if progress is not None:
        progress(1.0)
    return results


# ----------------------------------------------------------------------------- pictures

DEMO_PAINTINGS = ("swirls", "waves", "stained_glass", "pointillism", "cubist", "geometric")


def demo_paintings():
    """Paths of the six painting-like style images that ship with the package (CC0; made by
    bench/make_paintings.py, see assets/paintings/README.md)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "paintings")
    return [os.path.join(here, f"{name}.jpg") for name in DEMO_PAINTINGS]


def painting_name(painting, index=0):
    """A short display name: the file's stem, else "painting <index>"."""
    if isinstance(painting, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fspath(painting)))[0]
    filename = getattr(painting, "filename", "")
    if filename:
        return os.path.splitext(os.path.basename(filename))[0]
    return f"painting {index}"


def _grid(rows, tile_size, captions=None):
    """A white sheet of equally sized cells holding float/uint8 images (None: empty), each fitted
    into a tile_size box; `captions` (same layout, or None) go under the cells."""
    from image_stylization.stylize import _ascii, _font, _wrap

    cols = max(len(r) for r in rows)
    pad, font_px = 2, max(9, min(13, tile_size // 12))
    line_h = font_px + 2
    label_h = 2 * line_h + 4 if captions else 0
    sheet = Image.new("RGB", (cols * (tile_size + pad) + pad,
                              len(rows) * (tile_size + label_h + pad) + pad), "white")
    draw, font = ImageDraw.Draw(sheet), _font(font_px)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            x, y = pad + c * (tile_size + pad), pad + r * (tile_size + label_h + pad)
            if tile is not None:
                t = image_io.to_uint8(image_io.resize_longest_side(np.asarray(tile), tile_size))
                sheet.paste(Image.fromarray(t), (x + (tile_size - t.shape[1]) // 2,
                                                 y + (tile_size - t.shape[0]) // 2))
            caption = captions[r][c] if captions else None
            if caption:
                for j, line in enumerate(_wrap(draw, _ascii(caption), font, tile_size - 4, 2)):
                    draw.text((x + 2, y + tile_size + 2 + j * line_h), line, fill="black", font=font)
    return sheet


def contact_sheet(image, paintings, model=None, tile_size=160, max_size=None, strength=1.0,
                  preserve_color=False, style_image_size=None, labels=True):
    """The photo and each painting (top row), the photo in each painting's style (bottom row).

    The stylized images are computed at `max_size` (default 2 x `tile_size`) in one batched call.
    Returns an RGB `PIL.Image`.
    """
    api = _api()

    model = _model(model)
    items, _ = _paintings(paintings)
    embeddings = predict_style(items, model, style_image_size)
    content = image_io.resize_max(image_io.load_image(image), max_size or 2 * tile_size)
    rows = interpolate(model, content, embeddings, [api._check_strength(strength)], style_image_size)
    stylized = [api._finish(content, s, 1.0, preserve_color) for s in model.transform(content, rows)]
    thumbs = [image_io.resize_longest_side(image_io.load_image(p), tile_size) for p in items]
    names = [painting_name(p, i) for i, p in enumerate(items)]
    captions = [["input"] + names, [""] + [f"-> {n}" for n in names]] if labels else None
    return _grid([[content] + thumbs, [None] + stylized], tile_size, captions)


def interpolation_strip(image, painting, other=None, steps=6, model=None, tile_size=160,
                        max_size=None, style_image_size=None, labels=True):
    """One row of `steps` images: from the photo's own style to `painting` (strength 0 -> 1),
    or, with `other`, from `painting` to `other` (embeddings mixed (1 - a, a)); the paintings
    are shown at both ends. Returns an RGB `PIL.Image`."""
    if not isinstance(steps, numbers.Integral) or steps < 2:
        raise StyleError(f"steps must be an integer >= 2, got {steps!r}")
    model = _model(model)
    content = image_io.resize_max(image_io.load_image(image), max_size or 2 * tile_size)
    alphas = np.linspace(0.0, 1.0, int(steps))
    a = predict_style(painting, model, style_image_size)
    if other is None:
        rows = interpolate(model, content, a[None], alphas, style_image_size)
        first, captions = content, [f"strength {x:.2f}" for x in alphas]
        ends = ("photo", painting_name(painting))
    else:
        b = predict_style(other, model, style_image_size)
        rows = np.stack([(1 - x) * a + x * b for x in alphas]).astype(np.float32)
        first = image_io.load_image(painting)
        captions = [f"{1 - x:.2f} / {x:.2f}" for x in alphas]
        ends = (painting_name(painting), painting_name(other, 1))
    tiles = [first] + list(model.transform(content, rows)) + [
        image_io.load_image(other if other is not None else painting)]
    caption_row = [ends[0]] + captions + [ends[1]]
    return _grid([tiles], tile_size, [caption_row] if labels else None)
