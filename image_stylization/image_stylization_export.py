"""Exports a trained N-style network as a TF SavedModel (serving) and/or a LiteRT file (phones).

  image_stylization_export --export_dir=export                      # bundled model, SavedModel
  image_stylization_export --export_dir=export --format=both --quantize=dynamic_range
  image_stylization_export --checkpoint=monet --export_dir=export_monet --format=litert \
      --image_size=512

`--export_dir` receives `saved_model/` (signatures `serving_default`, `stylize_encoded`,
`style_names`) and/or `model.tflite` with `style_names.txt` beside it. For an arbitrary-style
checkpoint (`--checkpoint=checkpoints/arbitrary_v1`): `saved_model/` with `serving_default`
(image, style_image), `stylize_embedding` (image, style_embedding) and `predict_style`, and/or
`style_predictor.tflite` and `style_transformer.tflite`. It must be new or empty
unless `--overwrite` is given; everything is written into a temporary directory beside it and
renamed into place, so a failed export leaves nothing behind.
"""

from absl import flags, logging

from image_stylization import cli

flags.DEFINE_string(
    "checkpoint", None,
    "Model to export: one of our model directories (model.keras + manifest.json), a .keras file, "
    "or a Magenta TF1 checkpoint (prefix or directory). Default: the bundled 26-style model.",
)
flags.DEFINE_string("export_dir", None, "Directory to write the export into.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "litert", "both"], "What to write.")
flags.DEFINE_enum(
    "quantize", "none", ["none", "dynamic_range"],
    "LiteRT only: 'dynamic_range' stores weights as int8 (about 3x smaller), activations stay "
    "float.",
)
flags.DEFINE_string(
    "image_size", None,
    "LiteRT only: fix the input size, 'S' (square) or 'H,W', each >= 16. Default: dynamic H,W "
    "(set with the interpreter's resize_tensor_input).",
)
flags.DEFINE_boolean("overwrite", False, "Replace --export_dir if it holds an earlier export.")

FLAGS = flags.FLAGS


def parse_image_size(text):
    """'512' -> 512, '480,640' -> (480, 640); None/'' -> None."""
    if text in (None, ""):
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise cli.UsageError(f"--image_size must be 'S' or 'H,W' (integers), got {text!r}") from None
    if len(sizes) == 1:
        return sizes[0]
    if len(sizes) == 2:
        return tuple(sizes)
    raise cli.UsageError(f"--image_size must be 'S' or 'H,W', got {text!r}")


def main(argv):
    export_dir = cli.require(FLAGS.export_dir, "export_dir")
    image_size = parse_image_size(FLAGS.image_size)
    if not FLAGS["verbosity"].present:
        # tf.saved_model.save and the LiteRT converter log dozens of INFO lines per export.
        logging.set_verbosity(logging.WARNING)
    from image_stylization import export  # TensorFlow; imported after the cheap flag checks

    try:
        written = export.export(
            checkpoint=FLAGS.checkpoint,
            export_dir=export_dir,
            format=FLAGS.format,
            quantize=FLAGS.quantize,
            image_size=image_size,
            overwrite=FLAGS.overwrite,
        )
    except export.ExportError as e:
        raise cli.UsageError(str(e)) from None
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
