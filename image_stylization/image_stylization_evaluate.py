"""Evaluates a trained N-style network (Magenta's `image_stylization_evaluate`).

Per-style content and style losses over a folder of photos (CSV + TensorBoard scalars in
--eval_dir) and a style grid image (rows: photos; columns: the photo, then its pastiche in each
style, under a first row of the paintings).

  image_stylization_evaluate --checkpoint=runs/paper/model --style_dataset_file=styles.tfrecord \\
      --content_source=photos/ --eval_dir=runs/paper/eval
"""

import os

from absl import flags

from image_stylization import cli

flags.DEFINE_string("checkpoint", None, "Model to evaluate: a model directory, .keras file or Magenta checkpoint.")
flags.DEFINE_string("train_dir", None, "Training directory; its model/ is evaluated when --checkpoint is not given.")
flags.DEFINE_string("eval_dir", None, "Output directory for losses.csv, style_grid.png and TensorBoard events.")
flags.DEFINE_string("style_dataset_file", None, "Style dataset (TFRecord) the model was trained on.")
flags.DEFINE_string("content_source", None, "Photos the losses are averaged over (folder, glob, TFRecords or tfds:).")
flags.DEFINE_string("grid_images", None, "Photos of the style grid rows (default: --content_source).")
flags.DEFINE_integer("grid_max_images", 5, "Number of photos in the style grid.")
flags.DEFINE_integer("batch_size", 16, "Photos per batch.")
flags.DEFINE_integer("image_size", 256, "Size of the square central crops.")
flags.DEFINE_integer("num_evals", 0, "Batches to evaluate (0 = every photo once).")
flags.DEFINE_integer("num_styles", None, "Number of styles; checked against the style dataset.")
flags.DEFINE_boolean("style_grid", True, "Write the style grid image.")
flags.DEFINE_boolean("learning_curves", True, "Compute the per-style losses.")
flags.DEFINE_string("content_weights", None, "Content loss weights (as image_stylization_train).")
flags.DEFINE_string("style_weights", None, "Style loss weights (as image_stylization_train).")
flags.DEFINE_string("style_coefficients", None, "Accepted and checked for Magenta compatibility; not applied.")
flags.DEFINE_enum("loss_network", None, ["vgg16", "vgg19"], "Loss network; must be the style dataset's (default).")
flags.DEFINE_string("vgg_weights", None, "VGG weights file (default: the one the style dataset was made with).")
flags.DEFINE_enum("vgg_pooling", None, ["avg", "max"], "VGG pooling; must be the style dataset's (default).")

FLAGS = flags.FLAGS


def main(argv):
    checkpoint = FLAGS.checkpoint
    if not checkpoint:
        checkpoint = os.path.join(cli.require(FLAGS.train_dir, "checkpoint (or --train_dir)"), "model")
    from image_stylization import evaluate

    config = evaluate.EvalConfig(
        checkpoint=checkpoint,
        style_dataset_file=cli.require(FLAGS.style_dataset_file, "style_dataset_file"),
        eval_dir=cli.require(FLAGS.eval_dir, "eval_dir"),
        content_source=FLAGS.content_source,
        grid_images=FLAGS.grid_images,
        image_size=FLAGS.image_size,
        batch_size=FLAGS.batch_size,
        num_evals=FLAGS.num_evals,
        style_grid=FLAGS.style_grid,
        learning_curves=FLAGS.learning_curves,
        grid_max_images=FLAGS.grid_max_images,
        num_styles=FLAGS.num_styles,
        content_weights=FLAGS.content_weights,
        style_weights=FLAGS.style_weights,
        style_coefficients=FLAGS.style_coefficients,
        loss_network=FLAGS.loss_network,
        vgg_weights=FLAGS.vgg_weights,
        vgg_pooling=FLAGS.vgg_pooling,
    )
    evaluate.evaluate(config)


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
