"""Content images for training and evaluation, as a `tf.data` pipeline (Magenta's `imagenet_inputs`).

Sources (`--content_source`):
- `tfds:imagenet2012[:split]`: TensorFlow Datasets, prepared from the ILSVRC tars in a manual
  directory (no download);
- Magenta / inception-style TFRecords (`image/encoded` JPEG): a directory holding `train-*`
  shards (the layout of inception's `build_imagenet_data.py`), a glob, or one file;
- a folder (searched recursively) or glob of JPEG/PNG/BMP/GIF photos.

Every source goes through the same preprocessing: aspect-preserving bilinear resize of the short
side to `image_size + 2` (Magenta's margin), then a crop of `image_size` (random while training,
central for evaluation), float32 in [0, 1].

Determinism, so a resumed run sees the same images as an uninterrupted one: each epoch's file
order is a stateless permutation of (seed, epoch) and each random crop is seeded by (seed,
element index); no transformation draws from a global RNG. The iterator is checkpointable
(`tf.train.Checkpoint(iterator=...)`) for every source except tfds' mock data.

An unreadable image never stops a run: the decode error drops the element (`ignore_errors`) and a
running count of dropped elements travels with every example as `skipped`, worked out from gaps
in the element index (`ignore_errors` alone would lose the count). A stream in which nothing can
be read any more (every file corrupt, a disk gone) ends instead of spinning: after
`max_unreadable_in_a_row(source)` failures in a row, a repeating (training) dataset stops, and
the training loop turns the end of the stream into a one-line error.
"""

import glob
import os
import re

import tensorflow as tf

from image_stylization.errors import DataError  # noqa: F401  (re-exported)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TFRECORD_PREFIX = "tfrecord:"
TFDS_PREFIX = "tfds:"
RESIZE_MARGIN = 2  # Magenta resizes the short side to image_size + 2 before cropping.
MIN_IMAGE_SIZE = 16
AUTOTUNE = tf.data.AUTOTUNE



# ----------------------------------------------------------------------------- preprocessing


def decode_image(encoded):
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 [H, W, 3] (grayscale and RGBA become RGB)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_short_side(image, short_side):
    """Aspect-preserving bilinear resize so that min(H, W) == short_side; float32 output.

    Tiny images (tfds mock data is e.g. 47x17) are scaled up the same way, so a crop always fits.
    """
    shape = tf.shape(image)[:2]
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    scale = tf.cast(short_side, tf.float32) / tf.minimum(h, w)
    # ceil so that rounding never leaves a side one pixel short of the crop.
    new_h = tf.maximum(tf.cast(tf.math.ceil(h * scale - 1e-3), tf.int32), short_side)
    new_w = tf.maximum(tf.cast(tf.math.ceil(w * scale - 1e-3), tf.int32), short_side)
    return tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w], method="bilinear")


def preprocess(image, image_size, training, seed=None, resize_margin=RESIZE_MARGIN):
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3] in [0, 1].

    `seed` (int64 [2]) makes the random crop a function of the seed only (training).
    """
    image = resize_short_side(image, image_size + resize_margin)
    if training:
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seed)
    else:
        shape = tf.shape(image)
        top = (shape[0] - image_size) // 2
        left = (shape[1] - image_size) // 2
        image = image[top : top + image_size, left : left + image_size, :]
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    image.set_shape([image_size, image_size, 3])
    return image


# ----------------------------------------------------------------------------- sources


def list_image_files(pattern_or_dir):
    """Sorted image files of a folder (recursive) or a glob; DataError when there are none."""
    if os.path.isdir(pattern_or_dir):
        files = []
        for root, dirs, names in os.walk(pattern_or_dir, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [
                os.path.join(root, n)
                for n in names
                if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
            ]
    else:
        files = [
            f
            for f in glob.glob(pattern_or_dir, recursive=True)
            if os.path.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    files = sorted(files)
    if not files:
        raise DataError(f"{pattern_or_dir}: no JPEG/PNG/BMP/GIF images found")
    return files


def list_tfrecord_files(pattern_or_dir):
    """TFRecord shards: `train-*` in a directory (inception layout) or every file; a glob; a file."""
    if os.path.isdir(pattern_or_dir):
        files = sorted(glob.glob(os.path.join(pattern_or_dir, "train-*")))
        if not files:
            files = sorted(
                os.path.join(pattern_or_dir, n)
                for n in os.listdir(pattern_or_dir)
                if ".tfrecord" in n or n.endswith(".tfr")
            )
    else:
        files = sorted(f for f in glob.glob(pattern_or_dir) if os.path.isfile(f))
    if not files:
        raise DataError(f"{pattern_or_dir}: no TFRecord files found")
    return files


def _looks_like_tfrecords(path):
    if os.path.isdir(path):
        names = os.listdir(path)
        return any(n.startswith("train-") or ".tfrecord" in n for n in names) and not any(
            n.lower().endswith(IMAGE_EXTENSIONS) for n in names
        )
    return ".tfrecord" in os.path.basename(path) or os.path.basename(path).startswith("train-")


def describe_source(source):
    """("tfds", name, split) | ("tfrecord", files) | ("images", files), or DataError."""
    if not source:
        raise DataError("no content source given")
    source = os.fspath(source)
    if source.startswith(TFDS_PREFIX):
        name, _, split = source[len(TFDS_PREFIX) :].partition(":")
        if not name:
            raise DataError(f"{source}: expected tfds:NAME[:SPLIT], e.g. tfds:imagenet2012:train")
        return ("tfds", name, split or "train")
    if source.startswith(TFRECORD_PREFIX):
        return ("tfrecord", list_tfrecord_files(source[len(TFRECORD_PREFIX) :]))
    if not os.path.exists(source) and not glob.glob(source, recursive=True):
        raise DataError(f"{source}: no such file, folder or glob")
    if _looks_like_tfrecords(source):
        return ("tfrecord", list_tfrecord_files(source))
    return ("images", list_image_files(source))


def _epoch_permutations(files, seed, repeat, shuffle):
    """Dataset of file names: every epoch a fresh stateless permutation of (seed, epoch)."""
    files = tf.constant(files)
    n = int(files.shape[0])

    def one_epoch(epoch):
        if not shuffle:
            return tf.data.Dataset.from_tensor_slices(files)
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch])))
        return tf.data.Dataset.from_tensor_slices(tf.gather(files, order))

    epochs = tf.data.Dataset.range(2**62 if repeat else 1)
    return epochs.flat_map(one_epoch)


def _parse_inception_record(serialized):
    features = tf.io.parse_single_example(
        serialized, {"image/encoded": tf.io.FixedLenFeature([], tf.string, default_value="")}
    )
    return features["image/encoded"]


def _encoded_images(source, training, seed, repeat, num_pipelines, pipeline_id, shuffle_buffer,
                    tfds_data_dir, tfds_manual_dir):
    """Dataset of encoded image bytes (file names for a folder source), sharded for this pipeline."""
    kind = source[0]
    if kind == "images":
        files = source[1]
        ds = _epoch_permutations(files, seed, repeat, shuffle=training)
        if num_pipelines > 1:
            ds = ds.shard(num_pipelines, pipeline_id)
        return ds  # file names: read after `enumerate`, so a file that vanished is counted too

    if kind == "tfrecord":
        files = source[1]
        shard_files = num_pipelines > 1 and len(files) >= num_pipelines
        if shard_files:
            files = files[pipeline_id::num_pipelines]
        names = _epoch_permutations(files, seed, repeat, shuffle=training)
        ds = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(16, len(files)),
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        if num_pipelines > 1 and not shard_files:
            ds = ds.shard(num_pipelines, pipeline_id)
        if training and shuffle_buffer > 1:
            # Serialized records are mixed a little more (inception's shards are already
            # shuffled); the buffer is part of the iterator checkpoint, so it stays small.
            ds = ds.shuffle(shuffle_buffer, seed=seed)
        return ds.map(_parse_inception_record, num_parallel_calls=AUTOTUNE, deterministic=True)

    import tensorflow_datasets as tfds  # imported lazily: slow, and only this source needs it

    _, name, split = source
    builder = tfds.builder(name, data_dir=tfds_data_dir)
    if not builder.is_prepared() and tfds_manual_dir:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=tfds_manual_dir)
        )
    input_context = None
    if num_pipelines > 1:
        input_context = tf.distribute.InputContext(num_pipelines, pipeline_id, 1)
    read_config = tfds.ReadConfig(
        shuffle_seed=seed if training else None,
        input_context=input_context,
        interleave_cycle_length=16,
    )
    try:
        ds = builder.as_dataset(
            split=split,
            shuffle_files=training,
            read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except AssertionError as e:  # tfds reports an unprepared dataset with an assert
        raise DataError(
            f"tfds:{name}: not prepared in {tfds_data_dir or 'the default data_dir'}; pass the "
            f"folder holding the ILSVRC2012 tars as --tfds_manual_dir ({str(e).splitlines()[0]})"
        ) from None
    if repeat:
        ds = ds.repeat()
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed)

    def encoded(example):
        image = example["image"]
        if image.dtype != tf.string:  # a decoder that ignored SkipDecoding (tfds mock data)
            image = tf.io.encode_png(image)
        return image

    return ds.map(encoded, num_parallel_calls=AUTOTUNE, deterministic=True)


def content_dataset(
    source,
    image_size,
    batch_size,
    *,
    training=True,
    seed=0,
    repeat=None,
    input_context=None,
    shuffle_buffer=256,
    tfds_data_dir=None,
    tfds_manual_dir=None,
    prefetch=2,
):
    """Batches of content images.

    Args:
      source: see the module docstring (a string), or the result of `describe_source`.
      image_size: crop size S (>= 16).
      batch_size: examples per batch *for this input pipeline* (the per-replica batch under
        `strategy.distribute_datasets_from_function`).
      training: random crops, shuffled, repeated, `drop_remainder`; else central crops in file
        order, one pass, the last batch kept.
      seed: int; the same seed gives the same stream of crops.
      repeat: defaults to `training`.
      input_context: a `tf.distribute.InputContext`; the source is sharded per input pipeline.
      shuffle_buffer: serialized-example shuffle buffer for TFRecord/tfds sources (folder
        sources are shuffled by file name, which costs nothing).

    Returns:
      A dataset of dicts {"image": float32 [B, S, S, 3] in [0, 1], "skipped": int64 [B], the
      number of unreadable images dropped so far by this pipeline}.
    """
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise DataError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    repeat = training if repeat is None else repeat
    if isinstance(source, (str, os.PathLike)):
        source = describe_source(source)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    seed = int(seed)

    ds = _encoded_images(
        source, training, seed, repeat, num_pipelines, pipeline_id, shuffle_buffer,
        tfds_data_dir, tfds_manual_dir,
    )
    # Crop seeds depend on (seed, pipeline, element index): distinct across workers, and the
    # same for every run and every resume.
    crop_seed0 = tf.constant(seed * 1_000_003 + pipeline_id, tf.int64)

    read_files = source[0] == "images"
    limit = max_unreadable_in_a_row(source) if repeat else None

    def load(index, encoded, tick):
        def read():
            raw = tf.io.read_file(encoded) if read_files else encoded
            image = decode_image(raw)
            return preprocess(image, image_size, training, seed=tf.stack([crop_seed0, index]))

        # A tick never fails, so `ignore_errors` below cannot spin forever on a stream where
        # every element fails: the scan sees every tick and counts the failures in a row.
        image = tf.cond(tick, lambda: tf.zeros([image_size, image_size, 3]), read)
        return index, image, tick

    def with_ticks(index, encoded):
        return tf.stack([index, index]), tf.stack([encoded, encoded]), tf.constant([False, True])

    ds = ds.enumerate().map(with_ticks).unbatch()
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()

    def count_skipped(state, element):
        last_index, total = state
        index, image, tick = element
        # Indices are consecutive, so a gap is the number of elements a decode error dropped;
        # at the tick of element i, i - last_index elements in a row have failed.
        failed_in_a_row = index - last_index
        total = tf.where(tick, total, total + index - last_index - 1)
        last_index = tf.where(tick, last_index, index)
        stop = tf.logical_and(tick, failed_in_a_row >= (limit or 2**62))
        return (last_index, total), {"image": image, "skipped": total, "tick": tick, "stop": stop}

    ds = ds.scan((tf.constant(-1, tf.int64), tf.constant(0, tf.int64)), count_skipped)
    if limit:
        ds = ds.take_while(lambda x: tf.logical_not(x["stop"]))
    ds = ds.filter(lambda x: tf.logical_not(x["tick"]))
    ds = ds.map(lambda x: {"image": x["image"], "skipped": x["skipped"]})
    ds = ds.batch(batch_size, drop_remainder=training)
    if prefetch:
        ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = True
    # We shard ourselves (per input pipeline); tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


# A repeating stream ends after this many unreadable elements in a row (see content_dataset).
MAX_UNREADABLE_IN_A_ROW = 100_000


def max_unreadable_in_a_row(source):
    """How many elements in a row may fail before a repeating stream of `source` ends.

    Ten epochs (plus 1000) of a photo folder, so that a pipeline sharded off a folder with a few
    good photos among many bad ones does not stop by bad luck; at most MAX_UNREADABLE_IN_A_ROW.
    """
    if not isinstance(source, tuple):
        source = describe_source(source)
    if source[0] == "images":
        return min(10 * len(source[1]) + 1000, MAX_UNREADABLE_IN_A_ROW)
    return MAX_UNREADABLE_IN_A_ROW


def skipped_count(batch):
    """Unreadable images dropped so far, from a batch of `content_dataset` (a Python int)."""
    skipped = batch["skipped"]
    if isinstance(skipped, tf.distribute.DistributedValues):
        skipped = tf.concat([tf.reshape(v, [-1]) for v in skipped.values], 0)
    return int(tf.reduce_max(skipped)) if tf.size(skipped) else 0


def _op_message(error):
    """The readable part of a TF op error ("{{function_node ...}} MESSAGE [Op:DecodeImage]")."""
    text = str(getattr(error, "message", error)).splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text)


def load_images(source, image_size, limit=None):
    """Central crops of a folder/glob of photos (evaluation): float32 [N, S, S, 3], file names.

    Unreadable files are skipped and reported in the returned list of (path, error).
    """
    files = list_image_files(source)
    if limit:
        files = files[:limit]
    images, names, bad = [], [], []
    for path in files:
        try:
            image = decode_image(tf.io.read_file(path))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            bad.append((path, _op_message(e)))
            continue
        images.append(preprocess(image, image_size, training=False))
        names.append(path)
    if not images:
        raise DataError(f"{source}: none of the {len(files)} images could be read")
    return tf.stack(images), names, bad
