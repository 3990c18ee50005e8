"""The style dataset: one TFRecord example per style image with its VGG Gram matrices.

Each `tf.train.Example` has:
- `label` int64: the style's position in the sorted file list (the row of gamma/beta it trains);
- `name` bytes: the file stem;
- `image_raw` bytes: the ORIGINAL file bytes (any format Pillow reads, not re-encoded);
- `gram/<end point>` float list: the C x C Gram matrix (`losses.gram_matrix`), row-major, for every
  end point, keyed by canonical Keras layer name (e.g. `gram/block3_conv4`).

A JSON manifest beside it (`<output_file>.json`) records names, labels, the loss network,
pooling, weights file and its sha256, the style image size and per-style sizes, and the end points
with their channel counts, so a trainer can check that its loss network matches the Grams.

Style image size: Magenta computed the Grams at whatever resolution the files had, so the same
painting gave different targets (and different looking pastiches) from a 600 px or a 4000 px scan,
and large scans ran out of memory. Here the image is DOWNSCALED so that its longest side is
`style_image_size` (Lanczos, antialiased, via `image_io.resize_max`); smaller images are NOT
upscaled: interpolation adds no brushwork, it only blurs and shifts the low-layer Grams toward
smooth textures, and for images up to that size the result stays identical to Magenta's. The
manifest records each style's original and used size; a warning names styles smaller than the size.
`style_image_size=0` (or None) keeps the full resolution, as Magenta did.
"""

import dataclasses
import glob
import io
import json
import os
import secrets

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from image_stylization import image_io, losses, outputs, vgg
from image_stylization.errors import DatasetError, StorageError  # noqa: F401  (re-exported)

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".json"
DEFAULT_END_POINTS = ("conv1", "conv2", "conv3", "conv4", "conv5")
DEFAULT_STYLE_IMAGE_SIZE = 512
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")



def manifest_path(output_file):
    """Where the manifest of a style dataset lives: `<output_file>.json`."""
    return os.fspath(output_file) + MANIFEST_SUFFIX


def gram_key(end_point):
    return f"gram/{end_point}"


def find_style_files(style_files):
    """A list of paths/globs, a glob, or a folder -> sorted list of files.

    A folder contributes its image files (by extension, hidden files skipped, not recursive); a
    glob contributes every file it matches, so a non-image among them is reported, not skipped.
    """
    patterns = [style_files] if isinstance(style_files, (str, os.PathLike)) else list(style_files)
    if not patterns:
        raise DatasetError("no style files given")
    files = set()
    for pattern in patterns:
        pattern = os.path.expanduser(os.fspath(pattern))
        if os.path.isdir(pattern):
            found = [
                os.path.join(pattern, f)
                for f in os.listdir(pattern)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
            ]
            if not found:
                raise DatasetError(f"{pattern}: folder has no image files")
        else:
            found = [f for f in glob.glob(pattern) if os.path.isfile(f)]
            if not found:
                raise DatasetError(f"{pattern}: no style image matches")
        files.update(os.path.normpath(f) for f in found)
    files = sorted(files)
    stems = {}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        if stem in stems:
            raise DatasetError(
                f"{f}: style name {stem!r} is also the name of {stems[stem]}; style names (file "
                f"stems) must be unique"
            )
        stems[stem] = f
    return files


def load_style_image(path, style_image_size=DEFAULT_STYLE_IMAGE_SIZE):
    """Reads a style image as float32 [h, w, 3] in [0, 1], downscaled so max(h, w) <= size.

    Returns `(image, original_hw)`. Raises `image_io.ImageError` naming the file when it cannot
    be read, or when it is smaller than the loss network needs.
    """
    image = image_io.load_image(path)
    original = image.shape[:2]
    image = image_io.resize_max(image, style_image_size or None)
    if min(image.shape[:2]) < vgg.MIN_IMAGE_SIZE:
        raise image_io.ImageError(
            f"{os.fspath(path)}: {original[1]}x{original[0]} ({image.shape[1]}x{image.shape[0]} at "
            f"style image size {style_image_size}) is too small for the loss network (needs at "
            f"least {vgg.MIN_IMAGE_SIZE} px per side)"
        )
    return image, original


def compute_grams(loss_network, image):
    """{end point: Gram [C, C] float32 numpy} of one float [h, w, 3] image in [0, 1]."""
    features = loss_network(tf.convert_to_tensor(image[None], tf.float32), training=False)
    return {name: losses.gram_matrix(f)[0].numpy() for name, f in features.items()}


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _example(label, name, image_raw, grams):
    feature = {
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode("utf-8")])),
        "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_raw])),
    }
    for end_point, gram in grams.items():
        feature[gram_key(end_point)] = _float_feature(gram.reshape(-1))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _temp_beside(path):
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def write_style_dataset(
    style_files,
    output_file,
    loss_network="vgg19",
    vgg_weights="imagenet",
    vgg_pooling="avg",
    style_image_size=DEFAULT_STYLE_IMAGE_SIZE,
    end_points=None,
    overwrite=False,
    command=None,
):
    """Writes the style TFRecord and its manifest; returns the manifest dict.

    `style_files`: a list of paths/globs, a glob, or a folder; sorted, label = position.
    `end_points`: any spelling `vgg.normalize_end_point` accepts; default conv1..conv5 (every
    Magenta conv end point, so any style weights over them train from this file).
    `style_image_size`: longest side the Grams are computed at (downscale only; 0 = native).
    Every image is read and checked before the loss network is built; then both files are written
    to temporaries and renamed into place, so a failure leaves nothing behind. `command`, if
    given, is recorded in the manifest (no timestamp: the same inputs give the same files).
    """
    output_file = os.fspath(output_file)
    manifest_file = manifest_path(output_file)
    if style_image_size is not None and (
        isinstance(style_image_size, bool) or not isinstance(style_image_size, int)
        or style_image_size < 0
    ):
        raise DatasetError(f"style_image_size must be an integer >= 0, got {style_image_size!r}")
    if style_image_size and style_image_size < vgg.MIN_IMAGE_SIZE:
        raise DatasetError(
            f"style_image_size {style_image_size} is below the loss network's minimum of "
            f"{vgg.MIN_IMAGE_SIZE}"
        )
    for path in (output_file, manifest_file):
        outputs.check_target(path, "file", DatasetError)
        if not overwrite and os.path.lexists(path):
            raise DatasetError(f"{path} already exists (use --overwrite to replace it)")
    end_points = vgg.sort_end_points(end_points or DEFAULT_END_POINTS, loss_network)
    if vgg_pooling not in vgg.POOLINGS:
        raise DatasetError(f"unknown pooling {vgg_pooling!r}; use one of {', '.join(vgg.POOLINGS)}")
    files = find_style_files(style_files)
    weights_file = vgg.resolve_weights(vgg_weights, loss_network)

    # Decode everything first: a corrupt 30th file should fail before 29 forward passes.
    styles = []
    for label, path in enumerate(files):
        with open(path, "rb") as f:
            raw = f.read()
        image, original = load_style_image(path, style_image_size)
        name = os.path.splitext(os.path.basename(path))[0]
        if style_image_size and max(original) < style_image_size:
            logging.warning(
                "%s: %dx%d is smaller than --style_image_size=%d; its Grams are computed at its "
                "own size (not upscaled)", path, original[1], original[0], style_image_size
            )
        styles.append((label, name, path, raw, image, original))

    network = vgg.build_loss_network(loss_network, weights_file, vgg_pooling, end_points)
    channels = {}
    tmp_record, tmp_manifest = _temp_beside(output_file), _temp_beside(manifest_file)
    created = None
    try:
        created = outputs.make_parents(output_file)
        with tf.io.TFRecordWriter(tmp_record) as writer:
            for label, name, path, raw, image, original in styles:
                logging.info("style %d/%d: %s (%dx%d, Grams at %dx%d)", label + 1, len(styles),
                             path, original[1], original[0], image.shape[1], image.shape[0])
                grams = compute_grams(network, image)
                for end_point, gram in grams.items():
                    if not np.all(np.isfinite(gram)):
                        raise DatasetError(f"{path}: non-finite Gram matrix at {end_point}")
                    channels[end_point] = int(gram.shape[0])
                writer.write(_example(label, name, raw, grams).SerializeToString())
        manifest = {
            "format_version": FORMAT_VERSION,
            "num_styles": len(styles),
            "names": [s[1] for s in styles],
            "labels": [s[0] for s in styles],
            "styles": [
                {
                    "label": label,
                    "name": name,
                    "file": os.path.basename(path),
                    "original_hw": [int(original[0]), int(original[1])],
                    "gram_hw": [int(image.shape[0]), int(image.shape[1])],
                }
                for label, name, path, raw, image, original in styles
            ],
            "loss_network": loss_network,
            "vgg_pooling": vgg_pooling,
            "vgg_weights": vgg_weights if vgg_weights in ("imagenet", None) else os.fspath(vgg_weights),
            "weights_file": os.path.basename(weights_file) if weights_file else None,
            "weights_sha256": network.weights_sha256,
            "style_image_size": style_image_size or 0,
            "end_points": [
                {"name": e, "magenta_name": vgg.magenta_alias(e, loss_network), "channels": channels[e]}
                for e in end_points
            ],
            "gram": "G = F^T F / (H*W) per image, float32, row-major C x C",
        }
        if command:
            manifest["command"] = command
        with open(tmp_manifest, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
            f.write("\n")
        for tmp in (tmp_record, tmp_manifest):
            os.chmod(tmp, 0o644)
        os.replace(tmp_record, output_file)
        os.replace(tmp_manifest, manifest_file)
    except BaseException as e:
        _remove_quietly(tmp_record)
        _remove_quietly(tmp_manifest)
        outputs.remove_created(created, output_file)
        if outputs.is_write_failure(e):  # disk full, a directory gone, ...
            error = StorageError if outputs.is_storage_failure(e) else DatasetError
            raise error(f"{output_file}: cannot write the style dataset "
                        f"({outputs.write_failure_reason(e)})") from None
        raise
    return manifest


@dataclasses.dataclass
class StyleDataset:
    """A style dataset in memory, in label order.

    `grams[end_point]` is float32 [N, C, C]; the Grams of a batch with labels `l` are
    `tf.gather(grams[e], l)`. `manifest` is the JSON manifest ({} if the file has none).
    """

    names: list
    labels: list
    image_raw: list
    grams: dict
    manifest: dict

    @property
    def num_styles(self):
        return len(self.names)

    @property
    def end_points(self):
        return tuple(self.grams)

    def image(self, index):
        """Decoded style image `index` as float32 [H, W, 3] in [0, 1] (original resolution)."""
        return image_io.load_image(Image.open(io.BytesIO(self.image_raw[index])))


def style_feature_spec(channels):
    """`tf.io.parse_example` spec of a style record, given {end point: C}."""
    spec = {
        "label": tf.io.FixedLenFeature([], tf.int64),
        "name": tf.io.FixedLenFeature([], tf.string),
        "image_raw": tf.io.FixedLenFeature([], tf.string),
    }
    for end_point, c in channels.items():
        spec[gram_key(end_point)] = tf.io.FixedLenFeature([c * c], tf.float32)
    return spec


def _first_record_channels(path):
    """{end point: C} from the first record (sizes only; values are parsed by TF, in C++)."""
    for record in tf.data.TFRecordDataset(path).take(1):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        channels = {}
        for key in feature:
            if key.startswith("gram/"):
                n = len(feature[key].float_list.value)
                c = int(round(np.sqrt(n)))
                if c == 0 or c * c != n:
                    raise DatasetError(f"{path}: {key} has {n} values, not C*C")
                channels[key[len("gram/"):]] = c
        return channels
    raise DatasetError(f"{path}: holds no styles")


def read_style_dataset(path):
    """Reads a TFRecord written by `write_style_dataset` (and its manifest, if present)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such style dataset")
    manifest = {}
    if os.path.isfile(manifest_path(path)):
        try:
            with open(manifest_path(path), encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{manifest_path(path)}: cannot read manifest ({e})") from None
    try:
        channels = _first_record_channels(path)
        if not channels:
            raise DatasetError(f"{path}: records have no gram/<end point> features")
        spec = style_feature_spec(channels)
        batches = tf.data.TFRecordDataset(path).batch(64).map(lambda r: tf.io.parse_example(r, spec))
        parts = [{k: v.numpy() for k, v in batch.items()} for batch in batches]
    except DatasetError:
        raise
    except (tf.errors.OpError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(
            f"{path}: not a style dataset written by image_stylization_create_dataset ({message})"
        ) from None
    data = {k: np.concatenate([p[k] for p in parts]) for k in spec}
    order = np.argsort(data["label"], kind="stable")
    labels = [int(v) for v in data["label"][order]]
    if labels != list(range(len(labels))):
        raise DatasetError(f"{path}: labels are {labels}, expected 0..{len(labels) - 1}")
    names = [data["name"][i].decode("utf-8") for i in order]
    by_depth = [e["name"] for e in manifest.get("end_points", [])]
    end_points = by_depth if sorted(by_depth) == sorted(channels) else sorted(channels)
    if manifest and manifest.get("names") != names:
        raise DatasetError(f"{manifest_path(path)}: names do not match the records of {path}")
    grams = {
        e: data[gram_key(e)][order].reshape(len(labels), channels[e], channels[e]).astype(np.float32)
        for e in end_points
    }
    return StyleDataset(
        names=names,
        labels=labels,
        image_raw=[bytes(data["image_raw"][i]) for i in order],
        grams=grams,
        manifest=manifest,
    )
