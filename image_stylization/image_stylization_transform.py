"""Stylizes photos with a trained N-style network (Magenta's `image_stylization_transform`).

  image_stylization_transform --input_image=photo.jpg --output_dir=out --which_styles="[0,5,7]"
  image_stylization_transform --input_image=photos/ --output_dir=out --which_styles="{0:0.3,5:0.7}"
  image_stylization_transform --input_image=photo.jpg --output_dir=out --all_styles

Output names follow Magenta: `<basename>_<index>.<ext>` for each style of a list,
`<basename>_<i>_<www>_<j>_<www>.<ext>` for a blend (www = round(1000 * normalized weight), at
least 3 digits), `<basename>_all_styles.<ext>` for `--all_styles`. Every file is written to a
temporary name and renamed, and its bytes match its extension.

Bad input (missing or unreadable image, bad `--which_styles`, an index out of range, a checkpoint
with another number of styles) ends with one line on stderr and exit status 2, before anything is
written. With several inputs (a folder or a glob), an image that cannot be read is reported on
stderr, the others are still stylized, and the exit status is 1.
"""

import glob
import os
import sys
import time

from absl import flags

from image_stylization import cli
from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB

flags.DEFINE_string(
    "checkpoint", None,
    "Model to use: one of our model directories (model.keras + manifest.json), a .keras file, or "
    "a Magenta TF1 checkpoint (prefix or directory). Default: the bundled 26-style model.",
)
flags.DEFINE_integer(
    "num_styles", None,
    "Magenta's flag; optional here (N is read from the checkpoint). If given, it must match.",
)
flags.DEFINE_string("input_image", None, "An image file, a glob (quote it) or a folder of images.")
flags.DEFINE_string("output_dir", None, "Directory for the results (created if missing).")
flags.DEFINE_string(
    "output_basename", None,
    "Output file name prefix. Default: the input file's name without extension (always so "
    "with several inputs).",
)
flags.DEFINE_string(
    "which_styles", "[0]",
    "A list \"[0,5,7]\" (one output per style, one batched call) or a dict \"{0:0.3,5:0.7}\" (one "
    "blend; weights finite, >= 0, normalized to sum 1). Quoted style names work as indices.",
)
flags.DEFINE_boolean(
    "all_styles", False,
    "Write one contact sheet: the input and every style (or the --which_styles list), labelled.",
)
flags.DEFINE_integer(
    "max_size", 1024,
    "Longest side to stylize at; larger inputs are downscaled (never upscaled). 0: full size "
    "(tiled when the whole image does not fit --memory_budget_mb). With --all_styles the "
    "default is 2 x --tile_size.",
)
flags.DEFINE_integer(
    "memory_budget_mb", DEFAULT_MEMORY_BUDGET_MB,
    "The most memory (MB) the network's activations may use. An image that fits is stylized "
    "at once; a larger one tile by tile, with the same result (the whole image's statistics "
    "for every instance norm), in more time.",
)
flags.DEFINE_integer(
    "max_image_pixels", None,
    "Refuse input images of more pixels than this (a guard against decompression bombs). "
    "Default: Pillow's limit, 89478485. 0: no limit (only for files you trust).",
)
flags.DEFINE_integer("tile_size", 160, "With --all_styles: longest side of each tile.")
flags.DEFINE_float("strength", 1.0, "In [0, 1]: mix of stylized (1) and input (0) pixels.")
flags.DEFINE_boolean(
    "preserve_color", False,
    "Keep the input's colours: transfer luminance only (Gatys et al. 2016a, YCbCr).",
)
flags.DEFINE_enum("output_format", "png", ["png", "jpg", "webp"], "Output file format.")

FLAGS = flags.FLAGS

# What a folder input picks up (anything else in the folder is ignored).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_inputs(spec):
    """(paths, several): a file, a folder's images (sorted), or a glob's files (sorted)."""
    if os.path.isdir(spec):
        paths = sorted(
            os.path.join(spec, f) for f in os.listdir(spec)
            if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(spec, f))
        )
        if not paths:
            raise cli.UsageError(f"--input_image: folder {spec} has no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        return paths, True
    if glob.has_magic(spec) and not os.path.exists(spec):
        paths = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        if not paths:
            raise cli.UsageError(f"--input_image: no files match {spec}")
        return paths, len(paths) > 1
    if not os.path.isfile(spec):
        raise cli.UsageError(f"--input_image: {spec}: no such file or folder")
    return [spec], False


def basenames(paths, output_basename=None):
    """Output prefix per input: the file's stem, made unique (a.jpg, a.png -> a_jpg, a_png)."""
    if output_basename is not None:
        return [output_basename] * len(paths)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [
        (f"{s}_{os.path.splitext(p)[1].lstrip('.').lower()}" if stems.count(s) > 1 else s)
        for s, p in zip(stems, paths)
    ]


def describe_style(blend):
    """Magenta's `_describe_style`: {0: 0.3, 5: 0.7} -> "0_300_5_700" (sorted by index)."""
    return "_".join(f"{i}_{int(round(w * 1000)):03d}" for i, w in sorted(blend.items()))


def output_names(basename, selection, ext, all_styles=False):
    if all_styles:
        return [f"{basename}_all_styles{ext}"]
    if isinstance(selection, dict):
        return [f"{basename}_{describe_style(selection)}{ext}"]
    return [f"{basename}_{i}{ext}" for i in selection]


def transform_images(paths, output_dir, basenames_, model, selection, all_styles=False,
                     max_size=1024, tile_size=160, strength=1.0, preserve_color=False,
                     output_format="png", several=False, out=sys.stdout, err=sys.stderr,
                     memory_budget_mb=None, progress_delay=3.0):
    """Stylizes each path and writes its outputs; returns the list of (path, error) failures.

    With `several` False, the first failure raises; otherwise it is reported on `err` and the
    next image is processed. Each output is written as soon as it is done (a list of styles of
    a large photo holds one result at a time); a photo taking more than `progress_delay` s
    shows a progress line with ETA on `err`.
    """
    from image_stylization import image_io
    from image_stylization.stylize import contact_sheet, iter_stylize

    if memory_budget_mb is None:
        memory_budget_mb = DEFAULT_MEMORY_BUDGET_MB

    ext = image_io.EXTENSIONS[output_format]
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise cli.UsageError(f"--output_dir: cannot create {output_dir} ({e.strerror or e})") from None
    failures = []
    total = len(paths)
    for k, (path, base) in enumerate(zip(paths, basenames_), start=1):
        prefix = f"[{k}/{total}] " if several else ""
        start = time.perf_counter()
        progress = cli.ProgressLine(f"{prefix}{path}", err, delay=progress_delay)
        try:
            # uint8 for 8-bit files: 144 MB for a 48 Mpix photo where float32 takes 576 MB.
            image = image_io.load_image(path, keep_uint8=True)
            names = output_names(base, selection, ext, all_styles)
            targets = [os.path.join(output_dir, n) for n in names]
            if all_styles:
                results = [contact_sheet(
                    image, model, tile_size=tile_size, max_size=max_size, styles=selection,
                    strength=strength, preserve_color=preserve_color,
                    memory_budget_mb=memory_budget_mb)]
            else:
                results = iter_stylize(
                    image, selection, model=model, max_size=max_size, strength=strength,
                    preserve_color=preserve_color, memory_budget_mb=memory_budget_mb,
                    progress=progress)
            del image
            for result, target in zip(results, targets):
                image_io.save_image(result, target)
                del result
            progress.close()
        except (image_io.ImageError, ValueError) as e:
            progress.close()
            if not several:
                raise cli.UsageError(str(e)) from None
            failures.append((path, str(e)))
            # The message starts with the file name (ImageError) or is about this file.
            message = str(e).splitlines()[0]
            if not message.startswith(path):
                message = f"{path}: {message}"
            print(f"{prefix}error: {message}", file=err, flush=True)
            continue
        seconds = time.perf_counter() - start
        print(f"{prefix}{path} -> {', '.join(targets)} ({seconds:.1f} s)", file=out, flush=True)
    return failures


def main(argv):
    spec = cli.require(FLAGS.input_image, "input_image")
    output_dir = cli.require(FLAGS.output_dir, "output_dir")
    if not 0.0 <= FLAGS.strength <= 1.0:  # also rejects NaN
        raise cli.UsageError(f"--strength must be in [0, 1], got {FLAGS.strength}")
    if FLAGS.max_size < 0:
        raise cli.UsageError(f"--max_size must be >= 0 (0: full size), got {FLAGS.max_size}")
    if FLAGS.tile_size < 16:
        raise cli.UsageError(f"--tile_size must be >= 16, got {FLAGS.tile_size}")
    if FLAGS.memory_budget_mb <= 0:
        raise cli.UsageError(f"--memory_budget_mb must be > 0, got {FLAGS.memory_budget_mb}")
    if FLAGS.max_image_pixels is not None:
        if FLAGS.max_image_pixels < 0:
            raise cli.UsageError(
                f"--max_image_pixels must be >= 0 (0: no limit), got {FLAGS.max_image_pixels}")
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = FLAGS.max_image_pixels or None
    paths, several = find_inputs(spec)
    if several and FLAGS["output_basename"].present:
        raise cli.UsageError("--output_basename needs a single --input_image (several inputs "
                             "are named after their files)")

    # `from ... import` names, not the module: the package may re-export the `stylize` function
    # under the module's name.
    from image_stylization.stylize import StyleError, load_model, parse_which_styles, style_names_of

    model = load_model(FLAGS.checkpoint)
    names = style_names_of(model)
    if FLAGS.num_styles is not None and FLAGS.num_styles != len(names):
        raise cli.UsageError(
            f"--num_styles={FLAGS.num_styles} but the checkpoint "
            f"{FLAGS.checkpoint or '(bundled)'} has {len(names)} styles"
        )
    all_styles_default = FLAGS.all_styles and not FLAGS["which_styles"].present
    try:
        selection = (list(range(len(names))) if all_styles_default
                     else parse_which_styles(FLAGS.which_styles, names))
    except StyleError as e:
        raise cli.UsageError(f"--which_styles: {e}") from None
    if FLAGS.all_styles and isinstance(selection, dict):
        raise cli.UsageError("--all_styles takes a list in --which_styles, not a blend")
    max_size = FLAGS.max_size
    if FLAGS.all_styles and not FLAGS["max_size"].present:
        max_size = None  # contact_sheet's own default, 2 x tile_size
    failures = transform_images(
        paths, output_dir, basenames(paths, FLAGS.output_basename), model, selection,
        all_styles=FLAGS.all_styles, max_size=max_size, tile_size=FLAGS.tile_size,
        strength=FLAGS.strength, preserve_color=FLAGS.preserve_color,
        output_format=FLAGS.output_format, several=several,
        memory_budget_mb=FLAGS.memory_budget_mb,
    )
    if failures:
        print(f"{len(failures)} of {len(paths)} images failed", file=sys.stderr)
        sys.exit(1)


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
