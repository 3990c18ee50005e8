"""Evaluation of a trained N-style network (Magenta's `image_stylization_evaluate`).

For every style: the mean content, style and total loss of the network's pastiches of a set of
photos (the learning-curve numbers Magenta streamed as `{loss}_style_{i}`), written as a CSV and
as TensorBoard scalars; and a style grid image, as Magenta's `--style_grid`: the first row shows
each style's painting, every further row one photo followed by its pastiche in every style.

Differences from Magenta: one pass over the given photos instead of watching `train_dir` for new
checkpoints; the VGG weights come from the style dataset's manifest or `--vgg_weights` (Magenta
read them from the training checkpoint, so a VGG-less checkpoint could not be evaluated).
"""

import csv
import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

from image_stylization import checkpoint as checkpoint_lib
from image_stylization import data
from image_stylization.errors import ConfigError, DataError
from image_stylization.model import num_styles_of
from image_stylization.train import config as config_lib
from image_stylization.train.loop import prepare_directory
from image_stylization.train.summaries import style_thumbnails, summary_images, summary_scalar
from image_stylization.train.trainer import SUMMARY_NAMES, StyleTrainer

# Magenta's evaluation names the totals as its learning.py did (`total_loss_style_3`).
MAGENTA_NAMES = {v: k for k, v in SUMMARY_NAMES.items()}

CSV_FILE = "losses.csv"
GRID_FILE = "style_grid.png"


@dataclasses.dataclass
class EvalConfig:
    checkpoint: str  # model directory, .keras file or Magenta checkpoint; None = bundled
    style_dataset_file: str
    eval_dir: str
    content_source: str = None  # photos the losses are averaged over
    grid_images: str = None  # photos of the grid rows; default: content_source
    image_size: int = 256
    batch_size: int = 16
    num_evals: int = 0  # batches of content_source to evaluate; 0 = all
    style_grid: bool = True
    learning_curves: bool = True
    grid_max_images: int = 5
    num_styles: int = None  # checked against the dataset when given
    content_weights: object = None
    style_weights: object = None
    style_coefficients: object = None  # accepted and checked, not applied (as Magenta)
    loss_network: str = None
    vgg_weights: str = None
    vgg_pooling: str = None
    step: int = None  # TensorBoard step; default: the model's training steps


def _style_index(model, style):
    """Model style index of each dataset style: by name when the model knows them, else by
    position when the counts agree (an appended model holds the dataset's styles by name)."""
    names = list(getattr(model, "style_names", []))
    n_model = num_styles_of(model)
    if all(name in names for name in style.names):
        return [names.index(name) for name in style.names]
    if n_model == style.num_styles:
        return list(range(n_model))
    raise ConfigError(
        f"the model has {n_model} styles ({', '.join(names[:4])}...) and the style dataset "
        f"{style.num_styles} with other names; evaluate against the dataset it was trained on"
    )


def _grid(thumbs, photos, pastiches):
    """Rows: [blank, painting_1..N], then [photo_r, pastiche_r1..rN] for every photo."""
    n = thumbs.shape[0]
    s = thumbs.shape[1]
    rows = [np.concatenate([np.ones([s, s, 3], np.float32)] + list(thumbs), axis=1)]
    for r, photo in enumerate(photos):
        rows.append(np.concatenate([photo] + [pastiches[i][r] for i in range(n)], axis=1))
    return np.concatenate(rows, axis=0)


def _write_csv(path, rows, fields):
    """Writes the CSV beside `path` and renames it into place: a failed write (a full disk)
    leaves the previous file as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        _write_csv_atomically(path, directory, rows, fields)
    except OSError as e:
        raise ConfigError(f"--eval_dir={directory}: cannot write {path} ({e.strerror or e})") from None


def _write_csv_atomically(path, directory, rows, fields):
    fd, tmp = tempfile.mkstemp(prefix=".losses-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def evaluate(config, log=print):
    """Runs the evaluation; returns {"rows": per-style dicts, "csv": path, "grid": path or None}."""
    c = config
    if not c.eval_dir:
        raise ConfigError("--eval_dir is required")
    if not isinstance(c.image_size, int) or c.image_size < data.MIN_IMAGE_SIZE:
        raise ConfigError(f"--image_size must be >= {data.MIN_IMAGE_SIZE}, got {c.image_size}")
    if c.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {c.batch_size}")
    if c.learning_curves and not c.content_source:
        raise ConfigError("--content_source (a folder of photos) is required for the learning curves")
    if c.style_grid and not (c.grid_images or c.content_source):
        raise ConfigError("--grid_images or --content_source is required for the style grid")
    config_lib.check_train_dir(c.eval_dir, flag="--eval_dir")
    style = config_lib.read_style(c.style_dataset_file)
    setup = config_lib.loss_setup(
        style, c.style_dataset_file, num_styles=c.num_styles, loss_network=c.loss_network,
        vgg_weights=c.vgg_weights, vgg_pooling=c.vgg_pooling, content_weights=c.content_weights,
        style_weights=c.style_weights, style_coefficients=c.style_coefficients,
    )
    # Magenta's evaluation: the style coefficients are checked, not applied; no total variation.
    setup = dataclasses.replace(setup, coefficients=np.ones_like(setup.coefficients), total_variation_weight=0.0)
    try:
        model = checkpoint_lib.load_model(c.checkpoint)
    except checkpoint_lib.CheckpointError as e:
        raise ConfigError(f"--checkpoint: {e}") from None
    index = _style_index(model, style)
    n_model = num_styles_of(model)
    if c.content_source and (c.learning_curves or not c.grid_images):
        # Before anything is written: a source with nothing readable leaves no --eval_dir.
        probe = data.content_dataset(c.content_source, c.image_size, 1, training=False)
        if next(iter(probe), None) is None:
            raise DataError(f"--content_source={c.content_source}: no readable image in it")
    prepare_directory(c.eval_dir, flag="--eval_dir")
    step = c.step
    if step is None:
        step = int((getattr(model, "manifest", {}) or {}).get("recipe", {}).get("train_steps", 0) or 0)

    @tf.function(reduce_retracing=True)
    def stylize(images, model_style):
        weights = tf.one_hot(tf.fill([tf.shape(images)[0]], model_style), n_model)
        return model({"image": images, "style_weights": weights}, training=False)

    result = {"rows": [], "csv": None, "grid": None}
    writer = tf.summary.create_file_writer(c.eval_dir)
    with writer.as_default():
        if c.learning_curves:
            # The training step's losses, without an update (the trainer maps dataset styles to
            # the model's by `index`).
            trainer = StyleTrainer(model, setup, style.grams, style_index=index)
            content_features = tf.function(trainer.content_features, reduce_retracing=True)

            @tf.function(reduce_retracing=True)
            def batch_losses(images, content_feats, label):
                labels = tf.fill([tf.shape(images)[0]], label)
                details = trainer.losses_of(trainer.stylize(images, labels), labels, content_feats)
                return {MAGENTA_NAMES.get(k, k): tf.reduce_sum(v) for k, v in details.items()}

            sums = [dict() for _ in index]
            count = 0
            dataset = data.content_dataset(c.content_source, c.image_size, c.batch_size, training=False)
            skipped = 0
            for b, batch in enumerate(dataset):
                if c.num_evals and b >= c.num_evals:
                    break
                images = batch["image"]
                skipped = max(skipped, int(tf.reduce_max(batch["skipped"])))
                content_feats = content_features(images)
                for label in range(len(index)):
                    for k, v in batch_losses(images, content_feats, tf.constant(label)).items():
                        sums[label][k] = sums[label].get(k, 0.0) + float(v)
                count += int(images.shape[0])
            if count == 0:
                raise ConfigError(f"--content_source: {c.content_source}: no readable images")
            keys = sorted(sums[0], key=lambda k: (k.count("/"), k))
            fields = ["style_index", "model_style_index", "style_name", "images"] + keys
            for label, model_style in enumerate(index):
                row = {"style_index": label, "model_style_index": model_style,
                       "style_name": style.names[label], "images": count}
                for k in keys:
                    row[k] = sums[label][k] / count
                    # Magenta's streaming-mean names: "{key}_style_{i}".
                    summary_scalar(f"{k}_style_{label}", row[k], step)
                result["rows"].append(row)
                log(f"style {label} {style.names[label]}: total {row['total_loss']:.4g} "
                    f"content {row.get('content_loss', 0):.4g} style {row.get('style_loss', 0):.4g}")
            result["csv"] = os.path.join(c.eval_dir, CSV_FILE)
            _write_csv(result["csv"], result["rows"], fields)
            log(f"wrote {result['csv']} ({count} images x {len(index)} styles"
                + (f"; {skipped} unreadable images skipped)" if skipped else ")"))

        if c.style_grid:
            photos, _, bad = data.load_images(c.grid_images or c.content_source, c.image_size,
                                              limit=c.grid_max_images)
            for path, error in bad:
                log(f"warning: skipped {path}: {error}")
            thumbs = style_thumbnails(style, c.image_size)
            pastiches = [stylize(photos, tf.constant(m)).numpy() for m in index]
            grid = _grid(thumbs, photos.numpy(), pastiches)
            if not np.all(np.isfinite(grid)):
                raise RuntimeError("the style grid has non-finite values; the model is broken")
            from image_stylization import image_io

            # Written beside and renamed into place; a failed write is a one-line ImageError.
            result["grid"] = image_io.save_image(grid, os.path.join(c.eval_dir, GRID_FILE))
            summary_images("style_grid", grid[None], step, max_outputs=1)
            log(f"wrote {result['grid']} ({photos.shape[0]} photos x {len(index)} styles)")
    writer.flush()
    return result
