"""Paintings as styles from the command line: what `image_stylization_transform --style_images`
runs (the arbitrary-style network).

`--style_images` is one of:
- files, folders (their images, sorted) or globs, comma-separated: one output per painting;
- a dict `"{'a.jpg': 0.3, 'b.jpg': 0.7}"` (read with `ast.literal_eval`): one blend, the
  paintings' embeddings mixed with the weights normalized to sum 1.
A `.npy` file stands for a saved embedding (`np.save(path, predict_style(painting))`); it is read
with `allow_pickle=False`.

Output names: `<basename>_stylized_<painting stem>.<ext>`, a blend
`<basename>_stylized_<stem>_<www>_<stem>_<www>.<ext>` (www = round(1000 * weight)), and with
several interpolation weights Magenta's `_<i>` suffix (the weight's index).
"""

import ast
import glob
import os
import sys
import time

import numpy as np

from image_stylization import image_io
from image_stylization.errors import InputError, StyleError, file_failure
from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
EMBEDDING_EXTENSION = ".npy"
FLAG = "--style_images"


def _expand(entry):
    """The style files one entry names: a file, a folder's images, or a glob's files."""
    if os.path.isdir(entry):
        found = sorted(os.path.join(entry, f) for f in os.listdir(entry)
                       if f.lower().endswith(IMAGE_EXTENSIONS + (EMBEDDING_EXTENSION,))
                       and os.path.isfile(os.path.join(entry, f)))
        if not found:
            raise StyleError(f"{FLAG}: folder {entry} has no images")
        return found
    if glob.has_magic(entry) and not os.path.exists(entry):
        found = sorted(p for p in glob.glob(entry) if os.path.isfile(p))
        if not found:
            raise StyleError(f"{FLAG}: no files match {entry}")
        return found
    if not os.path.isfile(entry):
        raise StyleError(f"{FLAG}: {entry}: no such file or folder")
    return [entry]


def parse_style_images(text):
    """A list of style files (one output each), or a dict {file: weight} (one blend, weights
    normalized to sum 1)."""
    if not isinstance(text, str) or not text.strip():
        raise StyleError(f"{FLAG} is empty: give painting files, folders or globs, or a "
                         f"{{'a.jpg': 0.3, 'b.jpg': 0.7}} blend")
    text = text.strip()
    if text.startswith("{"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise StyleError(f"{FLAG}: cannot parse {text!r}: expected a dict like "
                             f"{{'a.jpg': 0.3, 'b.jpg': 0.7}} (quote the file names)") from None
        if not isinstance(value, dict) or not value:
            raise StyleError(f"{FLAG}: a blend is a non-empty dict {{file: weight}}, got {text!r}")
        from image_stylization.arbitrary import blend_weights

        files = []
        for key in value:
            if not isinstance(key, str):
                raise StyleError(f"{FLAG}: blend keys must be quoted file names, got {key!r}")
            found = _expand(key)
            if len(found) != 1:
                raise StyleError(f"{FLAG}: blend key {key!r} names {len(found)} files, not one")
            files.append(found[0])
        try:
            weights = blend_weights(list(value.values()), len(files))
        except StyleError as e:
            raise StyleError(f"{FLAG}: {e}") from None
        return dict(zip(files, (float(w) for w in weights)))
    entries = [text] if os.path.exists(text) else [e.strip() for e in text.split(",") if e.strip()]
    files = []
    for entry in entries:
        files.extend(f for f in _expand(entry) if f not in files)
    return files


def parse_interpolation_weights(text):
    """Magenta's `--interpolation_weights`: a number or a list of numbers in [0, 1]."""
    try:
        value = ast.literal_eval(text.strip()) if isinstance(text, str) else text
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise StyleError(f"--interpolation_weights: cannot parse {text!r}; expected e.g. "
                         f"'[0.0, 0.5, 1.0]'") from None
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise StyleError("--interpolation_weights is an empty list")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise StyleError(f"--interpolation_weights: each weight must be a number in [0, 1], "
                             f"got {v!r}")
    return [float(v) for v in values]


def stems(paths):
    """Display stems, unique: a.jpg, a.png -> a_jpg, a_png; then an index if still repeated."""
    raw = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    out = [f"{s}_{os.path.splitext(p)[1].lstrip('.').lower()}" if raw.count(s) > 1 else s
           for s, p in zip(raw, paths)]
    return [f"{s}_{i}" if out.count(s) > 1 else s for i, s in enumerate(out)]


def style_labels(styles):
    """One label per output style: painting stems, or one label describing a blend."""
    if isinstance(styles, dict):
        return ["_".join(f"{s}_{int(round(w * 1000)):03d}"
                         for s, w in zip(stems(list(styles)), styles.values()))]
    return stems(styles)


def output_names(basename, styles, strengths, ext, all_styles=False):
    if all_styles:
        return [f"{basename}_all_styles{ext}"]
    names = []
    for label in style_labels(styles):
        for i in range(len(strengths)):
            suffix = f"_{i}" if len(strengths) > 1 else ""
            names.append(f"{basename}_stylized_{label}{suffix}{ext}")
    return names


def embedding_of(model, path, style_image_size):
    """The embedding [D] of a style file: a painting through the predictor, or a saved .npy."""
    from image_stylization.arbitrary import check_embeddings, predict_style

    if path.lower().endswith(EMBEDDING_EXTENSION):
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise StyleError(f"{path}: not a readable .npy embedding ({e})") from None
        embeddings, single = check_embeddings(value, model.embedding_size, name=path)
        if not single:
            raise StyleError(f"{path}: expected one embedding of shape ({model.embedding_size},), "
                             f"got {value.shape}")
        return embeddings[0]
    return predict_style(path, model, style_image_size)


def style_matrix(model, styles, style_image_size):
    """[K, D]: one row per painting of a list, one blended row for a dict."""
    if isinstance(styles, dict):
        rows = np.stack([embedding_of(model, p, style_image_size) for p in styles])
        return (np.asarray(list(styles.values()), np.float32) @ rows)[None]
    return np.stack([embedding_of(model, p, style_image_size) for p in styles])


def frame_stylizer(model, styles, strengths=(1.0,), max_size=None, preserve_color=False,
                   style_image_size=None):
    """A per-frame callable for `video.stylize_video(stylizer=...)`: uint8 frame -> one float
    image per painting (or blend) and strength, named as `output_names` names them.

    The paintings are embedded once, here; a strength below 1 mixes in each frame's own
    embedding, exactly as for a photo.
    """
    from image_stylization import arbitrary
    from image_stylization.stylize import _finish

    matrix = style_matrix(model, styles, style_image_size)

    def run(frame):
        content = image_io.resize_max(frame.astype(np.float32) / 255.0, max_size)
        rows = arbitrary.interpolate(model, content, matrix, strengths, style_image_size)
        return [_finish(content, s, 1.0, preserve_color) for s in model.transform(content, rows)]

    run.num_outputs = len(matrix) * len(strengths)
    return run


def transform_images(paths, output_dir, basenames, model, styles, strengths=(1.0,),
                     max_size=1024, preserve_color=False, style_image_size=None,
                     output_format="png", all_styles=False, tile_size=160, several=False,
                     out=sys.stdout, err=sys.stderr, memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB):
    """Stylizes each content path with each painting (or the blend) and interpolation weight;
    returns the list of (path, error) failures.

    The paintings are read and embedded first, so a bad painting fails before any output. With
    `several` False the first failing content image raises; otherwise it is reported on `err`
    and the next one is processed. A photo too large for `memory_budget_mb` in one pass is
    stylized tiled (same result).
    """
    from image_stylization import arbitrary

    if all_styles and isinstance(styles, dict):
        raise StyleError("--all_styles takes a list of paintings, not a blend")
    matrix = None if all_styles else style_matrix(model, styles, style_image_size)
    ext = image_io.EXTENSIONS[output_format]
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise StyleError(f"--output_dir: cannot create {output_dir} ({e.strerror or e})") from None
    failures = []
    for k, (path, base) in enumerate(zip(paths, basenames), start=1):
        prefix = f"[{k}/{len(paths)}] " if several else ""
        start = time.perf_counter()
        targets = [os.path.join(output_dir, n)
                   for n in output_names(base, styles, strengths, ext, all_styles)]
        try:
            image = image_io.load_image(path)
            if all_styles:
                results = [arbitrary.contact_sheet(
                    image, styles, model, tile_size=tile_size, max_size=max_size,
                    strength=strengths[0], preserve_color=preserve_color,
                    style_image_size=style_image_size)]
            else:
                content = image_io.resize_max(image, max_size)
                rows = arbitrary.interpolate(model, content, matrix, strengths, style_image_size)
                results = arbitrary.transform_rows(model, content, rows, np.uint8, preserve_color,
                                                   memory_budget_mb)
            for result, target in zip(results, targets):
                image_io.save_image(result, target)
        except (image_io.ImageError, ValueError) as e:
            if not several:
                if isinstance(e, InputError):
                    raise
                raise InputError(str(e)) from None  # e.g. an image under 16 px
            failures.append((path, str(e)))
            print(f"{prefix}error: {file_failure(path, e)}", file=err, flush=True)
            continue
        seconds = time.perf_counter() - start
        print(f"{prefix}{path} -> {', '.join(targets)} ({seconds:.1f} s)", file=out, flush=True)
    return failures
