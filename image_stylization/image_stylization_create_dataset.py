"""Writes the style dataset a multi-style network trains on: Gram matrices of each style image.

One TFRecord example per style (label = position in sorted file order) with the original image
bytes and the VGG Gram matrix of every end point, plus a JSON manifest beside it
(`<output_file>.json`). See `image_stylization.style_dataset`.

  image_stylization_create_dataset --style_files='styles/*.jpg' --output_file=styles.tfrecord \\
      --vgg_weights=vgg19_notop_q8.npz
"""

import sys

from absl import flags

from image_stylization import cli

flags.DEFINE_string(
    "style_files", None,
    "Style images: a glob or a folder. Sorted by path; each style's label is its position.",
)
flags.DEFINE_string("output_file", None, "TFRecord to write; the manifest goes to <output_file>.json.")
flags.DEFINE_enum("loss_network", "vgg19", ["vgg16", "vgg19"], "VGG network computing the Grams.")
flags.DEFINE_string(
    "vgg_weights", "imagenet",
    "'imagenet' (Keras' download) or a local weights file: a Keras .h5 / .weights.h5 of a VGG "
    "with include_top=False, or the 8-bit quantized VGG-19 .npz.",
)
flags.DEFINE_enum("vgg_pooling", "avg", ["avg", "max"], "Pooling in the loss network (Magenta: avg).")
flags.DEFINE_integer(
    "style_image_size", 512,
    "Longest side, in pixels, the Grams are computed at; larger images are downscaled, smaller "
    "ones are kept as they are. 0 keeps every image at full resolution (Magenta's behaviour).",
)
flags.DEFINE_list(
    "end_points", None,
    "Comma-separated end points to store Grams for (conv1..conv5, vgg_16/convK, block3_conv3...). "
    "Default: conv1,conv2,conv3,conv4,conv5.",
)
flags.DEFINE_boolean("overwrite", False, "Replace --output_file (and its manifest) if they exist.")

FLAGS = flags.FLAGS


def main(argv):
    style_files = cli.require(FLAGS.style_files, "style_files")
    output_file = cli.require(FLAGS.output_file, "output_file")
    if FLAGS.style_image_size < 0:
        raise cli.UsageError(f"--style_image_size must be >= 0, got {FLAGS.style_image_size}")
    from image_stylization import style_dataset, vgg

    if FLAGS.end_points:
        try:
            vgg.sort_end_points(FLAGS.end_points, FLAGS.loss_network)
        except ValueError as e:
            raise cli.UsageError(f"--end_points: {e}") from None
    try:
        manifest = style_dataset.write_style_dataset(
            style_files,
            output_file,
            loss_network=FLAGS.loss_network,
            vgg_weights=FLAGS.vgg_weights,
            vgg_pooling=FLAGS.vgg_pooling,
            style_image_size=FLAGS.style_image_size,
            end_points=FLAGS.end_points,
            overwrite=FLAGS.overwrite,
            command=" ".join(["image_stylization_create_dataset"] + sys.argv[1:]),
        )
    except (style_dataset.DatasetError, vgg.WeightsError) as e:
        raise cli.UsageError(str(e)) from None
    print(
        f"wrote {output_file}: {manifest['num_styles']} styles, {manifest['loss_network']} "
        f"({manifest['vgg_pooling']} pooling), Grams at up to {manifest['style_image_size'] or 'full'} px"
    )


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
