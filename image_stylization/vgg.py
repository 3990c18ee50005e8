"""The frozen VGG loss network (Magenta's `vgg.py`), built from `keras.applications` architectures.

`build_loss_network` returns a Keras model that takes RGB images in [0, 1] and returns a dict of
feature maps, one per requested end point. Only the convolutional part is built, truncated at the
deepest end point, so any image of at least 16x16 pixels works (Magenta's slim VGG needed 224 for
its fc layers).

End point names: Magenta's `conv1` ... `conv5` are the ReLU output of the LAST convolution of
block k, before pooling (VGG-16: block1_conv2, block2_conv2, block3_conv3, block4_conv3,
block5_conv3; VGG-19: block1_conv2, block2_conv2, block3_conv4, block4_conv4, block5_conv4), and
`pool1` ... `pool5` the pooling outputs. Magenta's scoped names `vgg_16/conv3` and `vgg_19/conv3`
and Keras layer names (`block3_conv3`) are accepted too; everything is normalized to the Keras layer
name, which is what the returned dict is keyed by.

Weights: "imagenet" (Keras' download of the Caffe-converted VGG weights), a Keras `.h5` /
`.weights.h5` file of a `keras.applications` VGG16/VGG19 with `include_top=False`, or the 8-bit
k-means `.npz` described in `../shared/data/SOURCES.md` section 4, or None (random, for tests).
All these are Caffe weights, so the model's own preprocessing is Caffe's: x*255, RGB -> BGR,
minus the BGR means. Magenta's slim checkpoint was fed RGB minus RGB means instead; it is not
among the supported weights.
"""

import hashlib
import os
import re
import warnings
import zipfile

import keras
import numpy as np
from keras import ops

from image_stylization.errors import WeightsError  # noqa: F401  (re-exported)

PACKAGE = "image_stylization"

NETWORKS = ("vgg16", "vgg19")
POOLINGS = ("avg", "max")
DEFAULT_END_POINTS = ("conv1", "conv2", "conv3", "conv4")
# Caffe's ImageNet mean in BGR order, as in keras.applications' "caffe" preprocessing.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MIN_IMAGE_SIZE = 16

# Convolutions per block.
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}

# The Caffe-converted weights `keras.applications` downloads for weights="imagenet" (same URLs
# and md5 hashes as keras/src/applications/vgg{16,19}.py), fetched here ourselves so that the
# file, and so its sha256, is known.
_IMAGENET = {
    "vgg16": (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
    "vgg19": (
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    ),
}



def _check_network(network):
    if network not in NETWORKS:
        raise ValueError(f"unknown loss network {network!r}; use one of {', '.join(NETWORKS)}")


def layer_names(network):
    """Keras layer names of the convolutional part, in order (convs and pools)."""
    _check_network(network)
    names = []
    for block, n in enumerate(_BLOCKS[network], start=1):
        names += [f"block{block}_conv{i}" for i in range(1, n + 1)]
        names.append(f"block{block}_pool")
    return names


def magenta_end_points(network):
    """Magenta's end point names -> Keras layer names, e.g. {"conv3": "block3_conv4", ...}."""
    _check_network(network)
    out = {}
    for block, n in enumerate(_BLOCKS[network], start=1):
        out[f"conv{block}"] = f"block{block}_conv{n}"
        out[f"pool{block}"] = f"block{block}_pool"
    return out


def normalize_end_point(name, network):
    """Any accepted spelling of an end point -> its canonical Keras layer name.

    Accepts `conv3`, `pool3`, `vgg_16/conv3`, `vgg_19/conv3` and Keras names such as
    `block3_conv3`. The `vgg_16/` or `vgg_19/` prefix only names Magenta's scope: `vgg_16/conv3`
    means "the last conv of block 3" of whichever network is built, so Magenta's default weight
    strings keep their meaning with VGG-19. Unknown names raise ValueError listing valid ones.
    """
    _check_network(network)
    if not isinstance(name, str):
        raise ValueError(f"end point names are strings, got {name!r}")
    key = re.sub(r"^vgg_(16|19)/", "", name.strip())
    aliases = magenta_end_points(network)
    if key in aliases:
        return aliases[key]
    if key in layer_names(network):
        return key
    raise ValueError(
        f"unknown {network} end point {name!r}; valid: {', '.join(aliases)} (or vgg_16/convK, "
        f"vgg_19/convK), or a layer name: {', '.join(layer_names(network))}"
    )


def sort_end_points(names, network):
    """Canonical names of `names`, without duplicates, ordered by depth in the network."""
    order = {n: i for i, n in enumerate(layer_names(network))}
    return sorted({normalize_end_point(n, network) for n in names}, key=order.__getitem__)


def magenta_alias(layer_name, network):
    """`block3_conv4` -> `conv3` for VGG-19 (None for layers that are no Magenta end point)."""
    for alias, layer in magenta_end_points(network).items():
        if layer == layer_name:
            return alias
    return None


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePreprocessing(keras.layers.Layer):
    """RGB in [0, 1] -> the Caffe VGG input: x*255, channels reversed to BGR, BGR means removed.

    Casts to float32 first, so mixed-precision (float16/bfloat16) images are accepted.
    """

    def call(self, x):
        x = ops.cast(x, "float32") * 255.0
        x = ops.flip(x, axis=-1)
        return x - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape


def _application(network):
    """The keras.applications model whose layer configs we copy (no weights fetched)."""
    app = keras.applications.VGG16 if network == "vgg16" else keras.applications.VGG19
    return app(include_top=False, weights=None, input_shape=(None, None, 3))


def build_loss_network(
    network="vgg19",
    weights="imagenet",
    pooling="avg",
    end_points=DEFAULT_END_POINTS,
    compute_dtype="float32",
):
    """The frozen VGG loss network: RGB [B, H, W, 3] in [0, 1] -> {end point: features}.

    Args:
      network: "vgg16" (the paper's and Magenta's) or "vgg19".
      weights: "imagenet", a path to a `.h5`/`.weights.h5` or `.npz` weights file, or None.
      pooling: "avg" (Magenta replaces VGG's max-pooling with average pooling) or "max".
      end_points: names in any form `normalize_end_point` accepts; the dict returned by the model
        is keyed by the canonical Keras layer names, and the model is cut after the deepest one.
      compute_dtype: dtype the convolutions run in. float32 by default even under a global
        mixed-precision policy: VGG activations reach the thousands and their Gram matrices
        overflow float16. Outputs are always float32.

    The model is frozen (`trainable=False`; gradients still flow to its input). Attributes:
    `network`, `pooling`, `end_points` (canonical, by depth), `weights_file` (the local file the
    weights came from, or None) and `weights_sha256`.
    """
    _check_network(network)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    if isinstance(end_points, str):
        end_points = (end_points,)
    if not end_points:
        raise ValueError("end_points is empty; name at least one layer")
    wanted = sort_end_points(end_points, network)
    weights_file = resolve_weights(weights, network)

    template = _application(network)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = CaffePreprocessing(name="caffe_preprocessing")(inputs)
    outputs = {}
    for layer in template.layers[1:]:
        config = layer.get_config()
        config["dtype"] = compute_dtype
        config["trainable"] = False
        if isinstance(layer, keras.layers.MaxPooling2D) and pooling == "avg":
            # Same pool size and strides as the max-pooling it replaces; no weights either way.
            new = keras.layers.AveragePooling2D(
                pool_size=config["pool_size"],
                strides=config["strides"],
                padding=config["padding"],
                name=config["name"],
                dtype=compute_dtype,
                trainable=False,
            )
        else:
            new = layer.__class__.from_config(config)
        x = new(x)
        if layer.name in wanted:
            outputs[layer.name] = ops.cast(x, "float32")
        if len(outputs) == len(wanted):
            break
    model = keras.Model(inputs, outputs, name=f"{network}_loss_network")
    if weights_file is not None:
        _load_weights(model, weights_file, network)
    model.trainable = False
    model.network = network
    model.pooling = pooling
    model.end_points = tuple(wanted)
    model.weights_file = weights_file
    model.weights_sha256 = file_sha256(weights_file) if weights_file else None
    return model


def resolve_weights(weights, network):
    """The local weights file for `weights` ("imagenet" downloads it, once), or None."""
    _check_network(network)
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be 'imagenet', a file path or None, got {weights!r}")
    weights = os.fspath(weights)
    if weights == "imagenet":
        fname, url, md5 = _IMAGENET[network]
        try:
            return keras.utils.get_file(fname, url, cache_subdir="models", file_hash=md5)
        except Exception as e:  # noqa: BLE001  (urllib, hash and OS errors all mean "not here")
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WeightsError(
                f"cannot fetch the ImageNet {network} weights ({reason}); pass a local weights "
                f"file instead"
            ) from None
    if not os.path.isfile(weights):
        raise WeightsError(f"{weights}: no such weights file")
    if not weights.endswith((".npz", ".h5", ".hdf5")):
        raise WeightsError(f"{weights}: unknown weights format; use a .npz, .h5 or .weights.h5 file")
    return weights


def file_sha256(path):
    """Hex sha256 of a file (recorded in dataset manifests next to the weights file name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(weights, network="vgg19"):
    """sha256 of the file behind `weights` ("imagenet" included, once downloaded), None for None."""
    path = resolve_weights(weights, network)
    return file_sha256(path) if path else None


def _network_of(conv_names):
    """vgg19 if any block has a fourth conv, else vgg16."""
    return "vgg19" if any(re.fullmatch(r"block\d_conv4", n) for n in conv_names) else "vgg16"


def _conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def read_npz_weights(path):
    """The 8-bit k-means `.npz`: {layer: (kernel HWIO float32, bias float32)}.

    Format (SOURCES.md section 4): per layer `L_W_q` uint8 [out, in, 3, 3] (OIHW) indexing the
    256-entry float32 table `L_W_table`, and `L_b` float32 [out]. Never unpickles.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            layers = sorted({k[: -len("_W_q")] for k in files if k.endswith("_W_q")})
            if not layers:
                raise WeightsError(f"{path}: no '<layer>_W_q' arrays; not a quantized VGG .npz")
            out = {}
            for name in layers:
                missing = {f"{name}_W_table", f"{name}_b"} - files
                if missing:
                    raise WeightsError(f"{path}: layer {name} lacks {', '.join(sorted(missing))}")
                q, table, bias = z[f"{name}_W_q"], z[f"{name}_W_table"], z[f"{name}_b"]
                if q.dtype != np.uint8 or q.ndim != 4 or table.shape != (256,):
                    raise WeightsError(
                        f"{path}: layer {name} has W_q {q.dtype}{list(q.shape)} and table "
                        f"{list(table.shape)}; expected uint8 OIHW and 256 entries"
                    )
                kernel = table.astype(np.float32)[q].transpose(2, 3, 1, 0)  # OIHW -> HWIO
                out[name] = (np.ascontiguousarray(kernel), bias.astype(np.float32))
            return out
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{path}: cannot read weights ({e})") from None


def read_h5_weights(path, network):
    """A Keras VGG `.h5` / `.weights.h5` (include_top=False) -> {layer: (kernel, bias)}.

    Loaded by Keras into the full `keras.applications` architecture, which checks that the file
    is that network (a VGG-19 file does not fit VGG-16 and vice versa).
    """
    full = _application(network)
    # Keras warns once per layer it cannot match ("Skipping nested container", 32 lines for a
    # VGG-19 file loaded as VGG-16) before it raises: the one-line error says it all.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            full.load_weights(path)
            error = None
        except Exception as e:  # noqa: BLE001  (h5py and Keras raise many types for a bad file)
            error = e
    if error is not None:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsError(
            f"{path}: not {network} weights of keras.applications with include_top=False ({message})"
        ) from None
    for w in caught:  # a file that did load: its warnings still matter
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return {layer.name: tuple(np.asarray(w) for w in layer.get_weights()) for layer in _conv_layers(full)}


def _load_weights(model, path, network):
    if path.endswith(".npz"):
        arrays = read_npz_weights(path)
        file_network = _network_of(arrays)
        if file_network != network:
            raise WeightsError(f"{path}: holds {file_network} weights, but the network is {network}")
    else:
        arrays = read_h5_weights(path, network)
    for layer in _conv_layers(model):
        if layer.name not in arrays:
            raise WeightsError(f"{path}: no weights for layer {layer.name}")
        kernel, bias = arrays[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        if [kernel.shape, bias.shape] != expected:
            raise WeightsError(
                f"{path}: layer {layer.name} has shapes {[kernel.shape, bias.shape]}, the network "
                f"needs {expected}"
            )
        layer.set_weights([kernel, bias])
