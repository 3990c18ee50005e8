"""Stylizes photos with a trained N-style network (Magenta's `image_stylization_transform`).

  image_stylization_transform --input_image=photo.jpg --output_dir=out --which_styles="[0,5,7]"
  image_stylization_transform --input_image=photos/ --output_dir=out --which_styles="{0:0.3,5:0.7}"
  image_stylization_transform --input_image=photo.jpg --output_dir=out --all_styles
  image_stylization_transform --input_video=clip.mp4 --output_dir=out --which_styles="[7]"

Output names follow Magenta: `<basename>_<index>.<ext>` for each style of a list,
`<basename>_<i>_<www>_<j>_<www>.<ext>` for a blend (www = round(1000 * normalized weight), at
least 3 digits), `<basename>_all_styles.<ext>` for `--all_styles`; a video gives the same names
with `.mp4` (see `image_stylization.video`). Every file is written to a
temporary name and renamed, and its bytes match its extension.

Any painting as a style (the arbitrary-style network, bundled as checkpoints/arbitrary_v1):

  image_stylization_transform --input_image=photo.jpg --style_images=painting.jpg --output_dir=out
  image_stylization_transform --input_image=photo.jpg --output_dir=out \
      --style_images="{'a.jpg': 0.3, 'b.jpg': 0.7}"

writes `<basename>_stylized_<painting stem>.<ext>` per painting (files, folders or globs), or one
blend; see `image_stylization.style_images`. Magenta's `--style_images_paths`,
`--content_images_paths` and `--interpolation_weights` are accepted.

Bad input (missing or unreadable image, bad `--which_styles`, an index out of range, a checkpoint
with another number of styles) ends with one line on stderr and exit status 2, before anything is
written. With several inputs (a folder or a glob), an image that cannot be read is reported on
stderr, the others are still stylized, and the exit status is 1.
"""

import glob
import os
import sys
import time
import unicodedata

from absl import flags

from image_stylization import cli, outputs, video
from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB
from image_stylization.errors import file_failure

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
flags.DEFINE_string(
    "style_images", None,
    "Any painting as a style (arbitrary-style network): image files, folders or globs, "
    "comma-separated (one output per painting; .npy files are saved embeddings), or a blend "
    "\"{'a.jpg': 0.3, 'b.jpg': 0.7}\". --checkpoint then defaults to the bundled arbitrary_v1.",
)
flags.DEFINE_integer(
    "style_image_size", None,
    "With --style_images: longest side paintings are resized to for the style predictor "
    "(default 256, the model's).",
)
flags.DEFINE_string(
    "interpolation_weights", None,
    "With --style_images (Magenta's flag): a list '[0.0,0.5,1.0]' of strengths, one output "
    "each (suffix _<i>); each blends the photo's own style embedding (0) with the painting's (1).",
)
flags.DEFINE_alias("style_images_paths", "style_images")
flags.DEFINE_alias("content_images_paths", "input_image")
flags.DEFINE_string(
    "input_video", None,
    "A video file to stylize instead of --input_image: one .mp4 per style (H.264, the input's "
    "frame count, size, frame rate, rotation and sound). Needs the [video] extra. Stylized at "
    "full size unless --max_size is given.",
)
flags.DEFINE_integer(
    "video_crf", video.DEFAULT_CRF,
    "With --input_video: H.264 quality, 0..51 (lower is better; 15 is visually lossless).",
)
flags.DEFINE_float(
    "temporal_smoothing", video.DEFAULT_TEMPORAL_SMOOTHING,
    "With --input_video: in [0, 1), how much of the previous output frame, moved along the "
    "optical flow, is kept where the flow is reliable (less flicker); no pixel moves more than "
    "0.05 from its per-frame stylization. 0: frame by frame.",
)

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


def check_basename(name):
    """An --output_basename is a plain file name: no directory part, no control characters."""
    bad = None
    if not name:
        bad = "is empty"
    elif any(sep and sep in name for sep in ("/", os.sep, os.altsep)):
        bad = "contains a path separator (use --output_dir for the directory)"
    elif name in (".", ".."):
        bad = "is not a file name"
    elif any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        bad = "contains a control character or line break"
    if bad:
        raise cli.UsageError(f"--output_basename {name!r} {bad}")
    return name


def basenames(paths, output_basename=None):
    """Output prefix per input: the file's stem, made unique (a.jpg, a.png -> a_jpg, a_png)."""
    if output_basename is not None:
        return [output_basename] * len(paths)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [
        (f"{s}_{os.path.splitext(p)[1].lstrip('.').lower()}" if stems.count(s) > 1 else s)
        for s, p in zip(stems, paths)
    ]


def check_output_dir(path):
    """Refuses an --output_dir that cannot become a writable directory, before any work."""
    outputs.check_target(path, "dir", cli.UsageError, name=f"--output_dir {path}")


def make_output_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise cli.UsageError(f"--output_dir: cannot create {path} ({e.strerror or e})") from None


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

    With `several` False, the first failure raises; otherwise an image that cannot be read or
    stylized is reported on `err` and the next image is processed. An output that cannot be
    written ends the run either way (every next one would fail too). `output_dir` is created
    when the first result is ready. Each output is written as soon as it is done (a list of
    styles of a large photo holds one result at a time); a photo taking more than
    `progress_delay` s shows a progress line with ETA on `err`.
    """
    from image_stylization import image_io
    from image_stylization.stylize import contact_sheet, iter_stylize

    if memory_budget_mb is None:
        memory_budget_mb = DEFAULT_MEMORY_BUDGET_MB
    ext = image_io.EXTENSIONS[output_format]
    check_output_dir(output_dir)
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
                results = iter([contact_sheet(
                    image, model, tile_size=tile_size, max_size=max_size, styles=selection,
                    strength=strength, preserve_color=preserve_color,
                    memory_budget_mb=memory_budget_mb)])
            else:
                results = iter_stylize(
                    image, selection, model=model, max_size=max_size, strength=strength,
                    preserve_color=preserve_color, memory_budget_mb=memory_budget_mb,
                    progress=progress)
            del image
            for target in targets:
                result = next(results)  # a stylization error is this image's failure
                # Created only now: a run that fails before its first result leaves nothing.
                make_output_dir(output_dir)
                try:
                    image_io.save_image(result, target)
                except image_io.ImageError as e:
                    # The output side failed (disk full, directory gone): so would every next one.
                    raise _OutputFailed(str(e)) from None
                del result
            progress.close()
        except _OutputFailed as e:
            progress.close()
            raise cli.UsageError(str(e)) from None
        except (image_io.ImageError, ValueError) as e:
            progress.close()
            if not several:
                raise cli.UsageError(str(e)) from None
            failures.append((path, str(e)))
            print(f"{prefix}error: {file_failure(path, e)}", file=err, flush=True)
            continue
        except BaseException:
            progress.close()
            raise
        seconds = time.perf_counter() - start
        print(f"{prefix}{path} -> {', '.join(targets)} ({seconds:.1f} s)", file=out, flush=True)
    return failures


class _OutputFailed(Exception):
    """An output could not be written: ends the run even when other images remain."""


def transform_video(path, output_dir, basename, model, selection, max_size=None, strength=1.0,
                    preserve_color=False, temporal_smoothing=video.DEFAULT_TEMPORAL_SMOOTHING,
                    crf=video.DEFAULT_CRF, stylizer=None, names=None, out=None, err=None):
    """Stylizes the video at `path` into `output_dir/<basename>_<style>.mp4` (names as for
    images, from `selection`); progress goes to `err`.

    `stylizer` (see `video.stylize_video`) replaces the model and selection for the pixels, e.g.
    paintings (`style_images.frame_stylizer`); `names` then gives the output file names.
    """
    out, err = out or sys.stdout, err or sys.stderr  # looked up now, so redirection applies
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise cli.UsageError(
            f"--output_dir: cannot create {output_dir} ({e.strerror or e})") from None
    names = names if names is not None else output_names(basename, selection, ".mp4")
    targets = [os.path.join(output_dir, n) for n in names]
    try:
        summary = video.stylize_video(
            path, None if stylizer is not None else selection, targets, model=model,
            stylizer=stylizer, temporal_smoothing=temporal_smoothing, crf=crf, max_size=max_size,
            strength=strength, preserve_color=preserve_color, progress=video.Progress(err))
    except KeyboardInterrupt:
        end = "\n" if hasattr(err, "isatty") and err.isatty() else ""  # after a \r progress line
        print(f"{end}interrupted: unfinished outputs removed", file=err, flush=True)
        sys.exit(130)
    print(f"{path} -> {', '.join(targets)} ({summary.frames} frames in {summary.seconds:.1f} s, "
          f"{summary.frames / max(summary.seconds, 1e-9):.2f} frames/s)", file=out, flush=True)
    return summary


def main(argv):
    video_path = FLAGS.input_video
    if video_path is not None:
        _check_video_flags()
        spec = video_path
    else:
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
    paths, several = find_inputs(spec) if video_path is None else ([video_path], False)
    if several and FLAGS["output_basename"].present:
        raise cli.UsageError("--output_basename needs a single --input_image (several inputs "
                             "are named after their files)")
    if FLAGS.output_basename is not None:
        check_basename(FLAGS.output_basename)
    check_output_dir(output_dir)

    if FLAGS.style_images is not None or FLAGS.interpolation_weights is not None \
            or FLAGS.style_image_size is not None:
        return _main_style_images(paths, several, output_dir)

    # `from ... import` names, not the module: the package may re-export the `stylize` function
    # under the module's name.
    from image_stylization.stylize import StyleError, load_model, parse_which_styles, style_names_of

    model = load_model(FLAGS.checkpoint)
    if getattr(model, "kind", None) == "arbitrary":
        raise cli.UsageError(f"--checkpoint={FLAGS.checkpoint} is an arbitrary-style model: give "
                             f"paintings with --style_images")
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
    if video_path is not None:
        transform_video(
            video_path, output_dir, basenames(paths, FLAGS.output_basename)[0], model, selection,
            max_size=max_size if FLAGS["max_size"].present else None, strength=FLAGS.strength,
            preserve_color=FLAGS.preserve_color, temporal_smoothing=FLAGS.temporal_smoothing,
            crf=FLAGS.video_crf)
        return
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


def _main_style_images(paths, several, output_dir):
    """--style_images: the arbitrary-style network (library: image_stylization.style_images)."""
    from image_stylization import style_images
    from image_stylization.stylize import load_model

    if FLAGS.style_images is None:
        raise cli.UsageError("--interpolation_weights and --style_image_size need --style_images")
    for name in ("which_styles", "num_styles"):
        if FLAGS[name].present:
            raise cli.UsageError(f"--{name} selects an N-style model's styles; it does not apply "
                                 f"to --style_images")
    if FLAGS.style_image_size is not None and FLAGS.style_image_size < 16:
        raise cli.UsageError(f"--style_image_size must be >= 16, got {FLAGS.style_image_size}")
    if FLAGS.interpolation_weights is not None and FLAGS["strength"].present:
        raise cli.UsageError("give --strength or --interpolation_weights, not both")
    styles = style_images.parse_style_images(FLAGS.style_images)
    strengths = ([FLAGS.strength] if FLAGS.interpolation_weights is None
                 else style_images.parse_interpolation_weights(FLAGS.interpolation_weights))
    if FLAGS.all_styles and len(strengths) > 1:
        raise cli.UsageError("--all_styles takes one --strength, not several --interpolation_weights")
    from image_stylization.arbitrary import bundled_dir

    model = load_model(FLAGS.checkpoint or bundled_dir())
    if getattr(model, "kind", None) != "arbitrary":
        raise cli.UsageError(f"--checkpoint={FLAGS.checkpoint} is an N-style model; --style_images "
                             f"needs an arbitrary-style one (default: the bundled arbitrary_v1)")
    if FLAGS.input_video is not None:
        base = basenames(paths, FLAGS.output_basename)[0]
        stylizer = style_images.frame_stylizer(
            model, styles, strengths, max_size=FLAGS.max_size if FLAGS["max_size"].present else None,
            preserve_color=FLAGS.preserve_color, style_image_size=FLAGS.style_image_size)
        transform_video(paths[0], output_dir, base, model, None,
                        temporal_smoothing=FLAGS.temporal_smoothing, crf=FLAGS.video_crf,
                        stylizer=stylizer,
                        names=style_images.output_names(base, styles, strengths, ".mp4"))
        return
    max_size = FLAGS.max_size
    if FLAGS.all_styles and not FLAGS["max_size"].present:
        max_size = None  # contact_sheet's own default, 2 x tile_size
    failures = style_images.transform_images(
        paths, output_dir, basenames(paths, FLAGS.output_basename), model, styles, strengths,
        max_size=max_size, preserve_color=FLAGS.preserve_color,
        style_image_size=FLAGS.style_image_size, output_format=FLAGS.output_format,
        all_styles=FLAGS.all_styles, tile_size=FLAGS.tile_size, several=several,
        memory_budget_mb=FLAGS.memory_budget_mb)
    if failures:
        print(f"{len(failures)} of {len(paths)} images failed", file=sys.stderr)
        sys.exit(1)


def _check_video_flags():
    """--input_video's flags, and the video itself, checked before the model loads."""
    if FLAGS.input_image:
        raise cli.UsageError("give --input_image or --input_video, not both")
    if FLAGS.all_styles:
        raise cli.UsageError("--all_styles makes a contact sheet of a photo; it does not apply to "
                             "--input_video")
    if FLAGS["output_format"].present:
        raise cli.UsageError("--output_format is for images; videos are written as .mp4")
    if not 0 <= FLAGS.video_crf <= 51:
        raise cli.UsageError(f"--video_crf must be in 0..51, got {FLAGS.video_crf}")
    if not 0.0 <= FLAGS.temporal_smoothing < 1.0:  # also rejects NaN
        raise cli.UsageError(f"--temporal_smoothing must be in [0, 1), got "
                             f"{FLAGS.temporal_smoothing}")
    video.check_input(FLAGS.input_video)


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
