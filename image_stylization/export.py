"""Export a transformer for serving (TF SavedModel) and for phones (LiteRT flatbuffer).

SavedModel signatures:
- `serving_default`: `image` float [B,H,W,3] in [0,1] (H,W >= 16) and `style_weights` [B,N]
  -> `stylized` [B,H,W,3].
- `stylize_encoded`: `image_bytes` (one encoded JPEG/PNG/GIF/BMP, a scalar string) and
  `style_weights` [N] -> `png_bytes` (a scalar string). Both names end in `_bytes`, which is how TF
  Serving's REST API knows to carry them as `{"b64": ...}` in JSON.
- `style_names`: no inputs -> `style_names` [N] string; the same names are in
  `assets/style_names.txt`, one per line.

Keras' own `model.export()` (an `ExportArchive`) stores every variable twice, under `variables/`
and `_all_variables/`. Here a plain `tf.Module` tracks each variable once, keyed by its Magenta
name, so `tf.train.list_variables` on the export reads like a Magenta checkpoint.

The LiteRT file has one signature, `serving_default`, with inputs `image` [1,H,W,3] and
`style_weights` [1,N] and output `stylized`; H and W are dynamic (set them with
`resize_tensor_input`) unless `image_size` fixes them. It contains builtin ops only: the export
fails rather than write a file that needs the Flex delegate, which no LiteRT runtime ships by
default.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from image_stylization import layers, outputs
from image_stylization.checkpoint import load_model
from image_stylization.errors import ExportError, StorageError  # noqa: F401  (re-exported)
from image_stylization.model import magenta_name, num_styles_of

FORMATS = ("saved_model", "litert", "both")
QUANTIZE = ("none", "dynamic_range")
MIN_SIZE = 16

SAVED_MODEL_DIR = "saved_model"
LITERT_FILE = "model.tflite"
STYLE_NAMES_FILE = "style_names.txt"
SERVING_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "stylize_encoded"
NAMES_SIGNATURE = "style_names"

# What an export writes: `overwrite` replaces a directory only if it holds nothing else, so a
# mistyped --export_dir with --overwrite cannot wipe an unrelated directory.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets",
                        "assets.extra", "fingerprint.pb", "keras_metadata.pb"}
# The arbitrary-style pair's LiteRT files (predictor: style_image -> style_embedding;
# transformer: image, style_embedding -> stylized).
PREDICTOR_LITERT_FILE = "style_predictor.tflite"
TRANSFORMER_LITERT_FILE = "style_transformer.tflite"
EMBEDDING_SIGNATURE = "stylize_embedding"
PREDICT_SIGNATURE = "predict_style"
_EXPORT_ENTRIES = {SAVED_MODEL_DIR, LITERT_FILE, STYLE_NAMES_FILE, PREDICTOR_LITERT_FILE,
                   TRANSFORMER_LITERT_FILE}



def _style_names(model, style_names):
    n = num_styles_of(model)
    if style_names is None:
        style_names = getattr(model, "style_names", None) or [f"style_{i}" for i in range(n)]
    style_names = [str(s) for s in style_names]
    if len(style_names) != n:
        raise ExportError(f"style_names has {len(style_names)} entries, the model has {n} styles")
    for s in style_names:
        if not s or "\n" in s or "\r" in s:
            # One name per line in the asset file.
            raise ExportError(f"style name {s!r} is empty or contains a line break")
    return style_names


def _check_target(path, overwrite, allowed_entries, what):
    """Refuses a target that exists (unless `overwrite` and it looks like an earlier export)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        outputs.check_target(path, "file" if allowed_entries is None else "dir", ExportError,
                             beside=True)
        return path
    if allowed_entries is None:  # a single file
        if os.path.isdir(path):
            raise ExportError(f"{path} is a directory, expected a {what} file path")
        if not overwrite:
            raise ExportError(f"{path} exists (use --overwrite to replace it)")
        return path
    if not os.path.isdir(path):
        raise ExportError(f"{path} exists and is not a directory")
    entries = set(os.listdir(path))
    if entries and not overwrite:
        raise ExportError(f"{path} is not empty (use --overwrite to replace it)")
    foreign = sorted(entries - allowed_entries)
    if foreign:
        raise ExportError(
            f"{path} holds files a {what} export does not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); not replacing it, even with --overwrite"
        )
    outputs.check_target(path, "dir", ExportError, beside=True)  # the parent must be writable
    return path


def _missing_ancestor(path):
    """The topmost missing directory above `path` (what `makedirs` would create), or None."""
    top = None
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        top = parent
        parent = os.path.dirname(parent)
    return top


class _TempBeside:
    """A temporary file or directory beside `path`, removed on exit with any parent directories
    it had to create, unless the caller moved it into place (`.done = True`)."""

    def __init__(self, path, directory):
        self.path = path
        self.directory = directory
        self.done = False

    def __enter__(self):
        parent = os.path.dirname(self.path)
        prefix = f".{os.path.basename(self.path)}.tmp-"
        self.created = _missing_ancestor(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            if self.directory:
                self.tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
                os.chmod(self.tmp, 0o755)  # mkdtemp's 0700 would survive the rename
            else:
                fd, self.tmp = tempfile.mkstemp(prefix=prefix, dir=parent)
                os.close(fd)
                os.chmod(self.tmp, 0o644)
        except OSError as e:
            self._remove_created()
            raise ExportError(f"{self.path}: cannot write there ({e.strerror or e})") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        _remove(self.tmp)
        if not self.done:
            self._remove_created()
        # A write that failed (disk full) is reported for the path asked for, not a temporary.
        if isinstance(exc, (_WriteFailed, _StorageFailed)):
            raise type(exc)(self.path, exc.reason) from None
        if exc is not None and outputs.is_write_failure(exc):
            error = _StorageFailed if outputs.is_storage_failure(exc) else _WriteFailed
            raise error(self.path, outputs.write_failure_reason(exc)) from None
        return False

    def _remove_created(self):
        if self.created is None:
            return
        # Only directories that this export made and that are empty again.
        d = os.path.dirname(self.path)
        while True:
            try:
                os.rmdir(d)
            except OSError:
                return
            if d == self.created:
                return
            d = os.path.dirname(d)


class _WriteFailed(ExportError):
    def __init__(self, path, reason):
        super().__init__(f"{path}: cannot write the export ({reason})")
        self.reason = reason


class _StorageFailed(StorageError):
    def __init__(self, path, reason):
        super().__init__(f"{path}: cannot write the export ({reason})")
        self.reason = reason


def _move_into_place(tmp, path):
    """Renames `tmp` to `path`; an existing `path` is moved aside first and deleted only after."""
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
        os.replace(path, os.path.join(old, "x"))
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(os.path.join(old, "x"), path)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


class _VariableHolder(tf.Module):
    """Tracks each of the model's TF variables exactly once, keyed by its Magenta name.

    The Keras model itself is deliberately not an attribute: tracking it as well is what makes
    Keras' exporter save every variable a second time.
    """

    def __init__(self, model):
        super().__init__(name="transformer")
        self.weights_by_name = {magenta_name(v): v.value for v in model.weights}


def _image_checks(image):
    shape = tf.shape(image)
    return [
        tf.debugging.assert_greater_equal(
            shape[1], MIN_SIZE, message=f"image height must be >= {MIN_SIZE} px"),
        tf.debugging.assert_greater_equal(
            shape[2], MIN_SIZE, message=f"image width must be >= {MIN_SIZE} px"),
    ]


def _decode_rgb(image_bytes):
    """Encoded image -> float [H,W,3] in [0,1], with image_io.load_image's conventions.

    Grayscale becomes RGB, and transparent pixels are composited onto white (decoding straight to
    3 channels would drop alpha and expose whatever colour hides under it). JPEGs use libjpeg's
    accurate integer DCT, as Pillow does: TF's default fast DCT is off by up to 5 levels, which
    the network amplifies several times. EXIF orientation is not applied: TF's decoders ignore it.
    """
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.image.convert_image_dtype(
            tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"), tf.float32),
        lambda: tf.io.decode_image(image_bytes, channels=0, dtype=tf.float32,
                                   expand_animations=False),
    )
    channels = tf.shape(image)[2]
    has_alpha = tf.equal(channels % 2, 0)  # LA or RGBA
    color = image[:, :, : channels - tf.cast(has_alpha, tf.int32)]
    color = tf.broadcast_to(color, tf.concat([tf.shape(image)[:2], [3]], 0))
    alpha = tf.where(has_alpha, image[:, :, channels - 1:], tf.ones_like(image[:, :, :1]))
    return color * alpha + (1.0 - alpha)


def _to_png(image):
    """float [H,W,3] -> PNG bytes, rounded as image_io.to_uint8 rounds (half to even)."""
    pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    return tf.io.encode_png(pixels)


def export_saved_model(model, export_dir, style_names=None, overwrite=False):
    """Writes `model` as a TF SavedModel at `export_dir` (atomically) and returns the path.

    Loading it needs TensorFlow only, not this package. See the module docstring for the
    signatures.
    """
    names = _style_names(model, style_names)
    n = len(names)
    export_dir = _check_target(export_dir, overwrite, _SAVED_MODEL_ENTRIES, "SavedModel")

    def stylize(image, style_weights):
        with tf.control_dependencies(_image_checks(image)):
            image = tf.identity(image)
        return {"stylized": model({"image": image, "style_weights": style_weights}, training=False)}

    serve = tf.function(stylize, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="image"),
        tf.TensorSpec([None, n], tf.float32, name="style_weights"),
    ])

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name="image_bytes"),
        tf.TensorSpec([n], tf.float32, name="style_weights"),
    ])
    def stylize_encoded(image_bytes, style_weights):
        image = _decode_rgb(image_bytes)
        stylized = serve(image[None], style_weights[None])["stylized"][0]
        return {"png_bytes": _to_png(stylized)}

    @tf.function(input_signature=[])
    def style_names_fn():
        return {"style_names": tf.constant(names)}

    temp = _TempBeside(export_dir, directory=True)
    with temp as tmp:
        asset_dir = tempfile.mkdtemp(dir=tmp)
        asset_path = os.path.join(asset_dir, STYLE_NAMES_FILE)
        with open(asset_path, "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        module = _VariableHolder(model)
        module.style_names_file = tf.saved_model.Asset(asset_path)
        # The functions are saved as signatures only: also attaching them to the module would
        # save a second trace of the whole network in saved_model.pb.
        out = os.path.join(tmp, "export")
        tf.saved_model.save(module, out, signatures={
            SERVING_SIGNATURE: serve.get_concrete_function(),
            ENCODED_SIGNATURE: stylize_encoded.get_concrete_function(),
            NAMES_SIGNATURE: style_names_fn.get_concrete_function(),
        })
        _move_into_place(out, export_dir)
        temp.done = True
    return export_dir


def _parse_image_size(image_size):
    if image_size is None:
        return None, None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        h = w = image_size
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        h, w = image_size
    else:
        raise ExportError(f"--image_size must be one size or (height, width), got {image_size!r}")
    for v in (h, w):
        if not isinstance(v, int) or isinstance(v, bool) or v < MIN_SIZE:
            raise ExportError(f"--image_size must be integers >= {MIN_SIZE}, got {image_size!r}")
    return h, w


def litert_op_names(model_content):
    """Sorted names of the operators in a LiteRT flatbuffer, in every subgraph.

    Builtins come out as their schema names (CONV_2D, MIRROR_PAD, ...), custom ops as their custom
    code, which for the Flex delegate starts with "Flex".
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    fb = schema.Model.GetRootAsModel(bytearray(model_content), 0)
    used = set()
    for s in range(fb.SubgraphsLength()):
        sub = fb.Subgraphs(s)
        for i in range(sub.OperatorsLength()):
            used.add(sub.Operators(i).OpcodeIndex())
    names = set()
    for index in used:
        code = fb.OperatorCodes(index)
        # Old files keep codes < 127 in the deprecated field only.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add(code.CustomCode().decode())
        else:
            names.add(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


def litert_bytes(model, quantize="none", image_size=None):
    """Converts `model` to a LiteRT flatbuffer (bytes); see `export_litert`."""
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    h, w = _parse_image_size(image_size)
    n = num_styles_of(model)

    # No size assertions here: Assert is not a LiteRT builtin.
    @tf.function(input_signature=[
        tf.TensorSpec([1, h, w, 3], tf.float32, name="image"),
        tf.TensorSpec([1, n], tf.float32, name="style_weights"),
    ])
    def stylize(image, style_weights):
        return {"stylized": model({"image": image, "style_weights": style_weights}, training=False)}

    return _to_litert(stylize, _VariableHolder(model), quantize)


def _to_litert(function, holder, quantize):
    """One `tf.function` with an input signature -> LiteRT bytes, builtin ops only."""
    with layers.litert_ops():  # traced with the ops LiteRT's converter can lower
        concrete_function = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "dynamic_range":
        # No representative dataset: weights become int8, activations stay float.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        content = converter.convert()
    except Exception as e:  # noqa: BLE001  (ConverterError and friends; keep the first line)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"LiteRT conversion failed: {first}") from e
    flex = [op for op in litert_op_names(content) if not op.isupper() or op.startswith("FLEX")]
    if flex:
        raise ExportError(f"LiteRT conversion produced non-builtin ops: {', '.join(flex)}")
    return content


def export_litert(model, path, quantize="none", image_size=None, overwrite=False):
    """Writes `model` as a LiteRT flatbuffer at `path` (atomically) and returns the path.

    quantize: "none" (float32) or "dynamic_range" (int8 weights, float activations).
    image_size: None for dynamic H,W (call `resize_tensor_input` before `allocate_tensors`), an
      int for a fixed square size, or (height, width).
    """
    path = _check_target(path, overwrite, None, "LiteRT")
    content = litert_bytes(model, quantize=quantize, image_size=image_size)
    temp = _TempBeside(path, directory=False)
    with temp as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
        temp.done = True
    return path


def export(checkpoint=None, export_dir=None, format="saved_model", quantize="none",
           image_size=None, overwrite=False):
    """Loads a checkpoint and writes the requested formats into `export_dir`.

    Layout: `saved_model/` (format saved_model or both), and `model.tflite` with
    `style_names.txt` beside it (litert or both). Everything is written into a temporary
    directory beside `export_dir` and renamed into place, so a failure leaves nothing behind.
    Returns a dict of what was written: {"saved_model": path, "litert": path, "style_names": path}.
    """
    if format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if format == "saved_model" and (quantize != "none" or image_size is not None):
        raise ExportError("--quantize and --image_size apply to LiteRT only (use --format=litert "
                          "or --format=both)")
    _parse_image_size(image_size)
    if not export_dir:
        raise ExportError("--export_dir is required")
    export_dir = _check_target(export_dir, overwrite, _EXPORT_ENTRIES, "model")

    model = load_model(checkpoint)
    if getattr(model, "kind", None) == "arbitrary":
        write = _arbitrary_writer(model, format, quantize, image_size)
    else:
        write = _n_style_writer(model, format, quantize, image_size)
    temp = _TempBeside(export_dir, directory=True)
    with temp as tmp:
        out = os.path.join(tmp, "export")
        os.mkdir(out)
        os.chmod(out, 0o755)
        written = {kind: os.path.join(export_dir, name) for kind, name in write(out).items()}
        _move_into_place(out, export_dir)
        temp.done = True
    return written


def _n_style_writer(model, format, quantize, image_size):
    """A function writing the N-style export into a directory; returns {kind: file name}."""
    names = _style_names(model, None)

    def write(out):
        written = {}
        if format in ("saved_model", "both"):
            export_saved_model(model, os.path.join(out, SAVED_MODEL_DIR), style_names=names)
            written["saved_model"] = SAVED_MODEL_DIR
        if format in ("litert", "both"):
            export_litert(model, os.path.join(out, LITERT_FILE), quantize=quantize,
                          image_size=image_size)
            with open(os.path.join(out, STYLE_NAMES_FILE), "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
            written["litert"] = LITERT_FILE
            written["style_names"] = STYLE_NAMES_FILE
        return written

    return write


# ----------------------------------------------------------------------------- arbitrary style


class _PairHolder(tf.Module):
    """Each variable of an arbitrary-style pair once, under its storage key
    (`predictor/...`, `transformer/...`)."""

    def __init__(self, model):
        from image_stylization.arbitrary import weight_keys

        super().__init__(name="arbitrary")
        self.weights_by_name = {k: v.value for k, v in weight_keys(model).items()}


def export_arbitrary_saved_model(model, export_dir, overwrite=False):
    """Writes an `arbitrary.ArbitraryModel` as a SavedModel (atomically); returns the path.

    Signatures:
    - `serving_default`: `image` [B,H,W,3] and `style_image` [B or 1,h,w,3], both float in [0,1],
      -> `stylized` [B,H,W,3]. Resize paintings to 256 px on the longest side first, as
      `predict_style` does: the predictor's statistics depend on the painting's scale.
    - `stylize_embedding`: `image` and `style_embedding` [B or 1, D] -> `stylized`.
    - `predict_style`: `style_image` -> `style_embedding` [B, D].
    """
    export_dir = _check_target(export_dir, overwrite, _SAVED_MODEL_ENTRIES, "SavedModel")
    predictor, transformer, d = model.predictor, model.transformer, model.embedding_size

    def checked(image):
        with tf.control_dependencies(_image_checks(image)):
            return tf.identity(image)

    def transform(image, embedding):
        embedding = tf.broadcast_to(embedding, [tf.shape(image)[0], d])
        return {"stylized": transformer({"image": image, "style_embedding": embedding},
                                        training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="style_image")])
    def predict_style(style_image):
        return {"style_embedding": predictor(checked(style_image), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image"),
                                  tf.TensorSpec([None, d], tf.float32, name="style_embedding")])
    def stylize_embedding(image, style_embedding):
        return transform(checked(image), style_embedding)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image"),
                                  tf.TensorSpec([None, None, None, 3], tf.float32, name="style_image")])
    def stylize(image, style_image):
        embedding = predictor(checked(style_image), training=False)
        return transform(checked(image), embedding)

    temp = _TempBeside(export_dir, directory=True)
    with temp as tmp:
        out = os.path.join(tmp, "export")
        tf.saved_model.save(_PairHolder(model), out, signatures={
            SERVING_SIGNATURE: stylize.get_concrete_function(),
            EMBEDDING_SIGNATURE: stylize_embedding.get_concrete_function(),
            PREDICT_SIGNATURE: predict_style.get_concrete_function(),
        })
        _move_into_place(out, export_dir)
        temp.done = True
    return export_dir


def arbitrary_litert_bytes(model, quantize="none", image_size=None, style_image_size=None):
    """(predictor, transformer) LiteRT flatbuffers of an arbitrary-style pair.

    The predictor takes `style_image` [1,h,w,3] (h,w = `style_image_size`, default dynamic) and
    returns `style_embedding` [1,D]; the transformer takes `image` [1,H,W,3] (`image_size`,
    default dynamic) and `style_embedding` [1,D] and returns `stylized`.
    """
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    h, w = _parse_image_size(image_size)
    sh, sw = _parse_image_size(style_image_size)
    predictor, transformer, d = model.predictor, model.transformer, model.embedding_size
    holder = _PairHolder(model)

    @tf.function(input_signature=[tf.TensorSpec([1, sh, sw, 3], tf.float32, name="style_image")])
    def predict_style(style_image):
        return {"style_embedding": predictor(style_image, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image"),
                                  tf.TensorSpec([1, d], tf.float32, name="style_embedding")])
    def stylize(image, style_embedding):
        return {"stylized": transformer({"image": image, "style_embedding": style_embedding},
                                        training=False)}

    return (_to_litert(predict_style, holder, quantize), _to_litert(stylize, holder, quantize))


def _arbitrary_writer(model, format, quantize, image_size):
    """A function writing the arbitrary-style export into a directory; returns {kind: name}."""

    def write(out):
        written = {}
        if format in ("saved_model", "both"):
            export_arbitrary_saved_model(model, os.path.join(out, SAVED_MODEL_DIR))
            written["saved_model"] = SAVED_MODEL_DIR
        if format in ("litert", "both"):
            files = dict(zip((PREDICTOR_LITERT_FILE, TRANSFORMER_LITERT_FILE),
                             arbitrary_litert_bytes(model, quantize, image_size)))
            for name, content in files.items():
                with open(os.path.join(out, name), "wb") as f:
                    f.write(content)
                os.chmod(os.path.join(out, name), 0o644)
            written["litert_predictor"] = PREDICTOR_LITERT_FILE
            written["litert_transformer"] = TRANSFORMER_LITERT_FILE
        return written

    return write
