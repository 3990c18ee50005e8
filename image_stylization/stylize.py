"""Stylizing photos with a trained N-style transformer: the Python API behind `image_stylization_transform`.

    from image_stylization import stylize, load_model
    painting = stylize("photo.jpg", "Starry night")           # PIL.Image
    a, b = stylize(array_uint8, [3, 19])                       # two uint8 arrays, one batched call
    mix = stylize(pil_image, {3: 0.3, 19: 0.7}, strength=0.8)  # one blend, PIL.Image
    big = stylize("48mpix.jpg", 3, max_size=0)                # full size, tiled in ~1.5 GB

Styles are chosen by index or by the manifest's display name. A list gives one output per entry,
computed in batched calls; a dict gives one blend, its weights normalized to sum 1, so each
conditional instance norm uses the convex combination of the styles' gamma/beta (the paper's
style interpolation, section 5), not a mix of output pixels.

Memory: the network's activations get at most `memory_budget_mb`. A photo whose whole-image
pass fits is stylized at once; a larger one goes through `tiled.TiledRunner`, whose result is
the whole-image result (every instance norm with the whole image's statistics) computed tile by
tile.
"""

import ast
import functools
import math
import numbers
import os
import re
import unicodedata
import weakref

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from image_stylization import image_io, tiled
from image_stylization.checkpoint import load_model as _load_checkpoint
from image_stylization.errors import MemoryBudgetError, StyleError  # noqa: F401  (re-exported)
from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB

# Longest side an image is stylized at unless asked otherwise: ~1 s for the bundled network on a
# laptop CPU and well under 1 GB of activations. Larger inputs are downscaled, never upscaled;
# max_size=0 stylizes at full size (tiled when the whole image does not fit the memory budget).
DEFAULT_MAX_SIZE = 1024
# Most batch x pixels per forward call (besides the memory budget), so a long style list on a big
# photo does not need gigabytes of activations at once (the networks hold ~0.6 kB of float32
# per pixel and style).
MAX_BATCH_PIXELS = 4 * 1024 * 1024
MIN_SIZE = 16  # the network's own lower bound (two stride-2 stages and 9x9 kernels)



def load_model(checkpoint=None):
    """The transformer in `checkpoint`; see `checkpoint.load_model`.

    None gives the bundled 26-style model, loaded once per process and shared (as `stylize` does
    when called without a model).
    """
    if checkpoint is None:
        return _default_model()
    return _load_checkpoint(checkpoint)


@functools.lru_cache(maxsize=1)
def _default_model():
    return _load_checkpoint(None)


def demo_image_path():
    """Path of the photo that ships with the package (NASA, public domain; see assets/README.md)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "astronaut.jpg")


def style_names_of(model):
    from image_stylization.model import num_styles_of

    names = getattr(model, "style_names", None)
    return list(names) if names is not None else [f"style_{i}" for i in range(num_styles_of(model))]


# ----------------------------------------------------------------------------- style selection


def _normalize_name(name):
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower())


def _resolve_one(style, style_names):
    """An index (int, or a string of digits) or a display name -> index in range."""
    n = len(style_names)
    if isinstance(style, (bool, np.bool_)):
        raise StyleError(f"style must be an index or a name, got {style!r}")
    if isinstance(style, numbers.Integral):
        index = int(style)
    elif isinstance(style, str):
        text = style.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            index = int(text)
        else:
            if text in style_names:
                return style_names.index(text)
            key = _normalize_name(text)
            # Exact name, then the same ignoring case/spaces/underscores, then a unique part of
            # a name ("starry night" for "The Starry Night (van Gogh)").
            for matches in (
                [i for i, s in enumerate(style_names) if _normalize_name(s) == key],
                [i for i, s in enumerate(style_names) if key and key in _normalize_name(s)],
            ):
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise StyleError(
                        f"style name {style!r} is ambiguous: it matches "
                        + ", ".join(f"{i} {style_names[i]!r}" for i in matches)
                    )
            raise StyleError(
                f"unknown style name {style!r}; use an index 0..{n - 1} or one of the model's names"
            )
    else:
        raise StyleError(f"style must be an index or a name, got {type(style).__name__} {style!r}")
    if not 0 <= index < n:
        raise StyleError(f"style index {index} is out of range: this model has {n} styles (0..{n - 1})")
    return index


def _weight(value, key):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise StyleError(f"weight of style {key!r} must be a number, got {value!r}")
    w = float(value)
    if not math.isfinite(w):
        raise StyleError(f"weight of style {key!r} must be finite, got {value!r}")
    if w < 0:
        raise StyleError(f"weight of style {key!r} must be >= 0, got {value!r}")
    return w


def resolve_styles(styles, style_names):
    """Validates a style selection.

    Returns a list of indices for a single style (int or name) or a list/tuple of them, or a dict
    {index: weight} with weights normalized to sum 1 for a dict (repeated styles add up).
    Raises `StyleError` with a message saying what is wrong.
    """
    style_names = list(style_names)
    if isinstance(styles, dict):
        if not styles:
            raise StyleError("style blend is empty: give at least one {style: weight}")
        blend = {}
        for key, value in styles.items():
            index = _resolve_one(key, style_names)
            blend[index] = blend.get(index, 0.0) + _weight(value, key)
        total = sum(blend.values())
        if not total > 0:
            raise StyleError("style weights sum to 0; at least one weight must be positive")
        return {i: w / total for i, w in sorted(blend.items())}
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise StyleError("style list is empty")
        return [_resolve_one(s, style_names) for s in styles]
    return [_resolve_one(styles, style_names)]


def parse_which_styles(text, style_names):
    """Parses Magenta's `--which_styles`: `"[0,5,7]"` (one output each) or `"{0:0.3,5:0.7}"` (a blend).

    The text is read with `ast.literal_eval` (never `eval`). Quoted display names may stand in for
    indices (`"['Starry night', 3]"`); a bare index or name (`7`, `Starry night`) means one style.
    Returns what `resolve_styles` returns.
    """
    if not isinstance(text, str) or not text.strip():
        raise StyleError("which_styles is empty; expected e.g. \"[0,5,7]\" or \"{0:0.3,5:0.7}\"")
    stripped = text.strip()
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if stripped[0] in "[{(":
            raise StyleError(
                f"cannot parse which_styles {text!r}: expected a list like [0,5,7] or a dict like "
                f"{{0:0.3,5:0.7}} (quote names: ['Starry night', 3])"
            ) from None
        value = stripped  # an unquoted single name
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, (list, dict, int, str)) or isinstance(value, bool):
        raise StyleError(f"which_styles must be a list or a dict, got {type(value).__name__} {text!r}")
    return resolve_styles(value, style_names)


def weight_matrix(selection, num_styles):
    """[B, N] float32 style weights: one one-hot row per index of a list, one row for a blend."""
    if isinstance(selection, dict):
        w = np.zeros((1, num_styles), np.float32)
        for i, v in selection.items():
            w[0, i] = v
        return w
    return np.eye(num_styles, dtype=np.float32)[list(selection)]


# ----------------------------------------------------------------------------- running the network

_FORWARDS = weakref.WeakKeyDictionary()


PRECISIONS = ("float32", "bfloat16")


def compiled_forward(model, jit_compile=False, precision="float32"):
    """A function running `model` on (image [B,H,W,3], style_weights [S,N]) as a `tf.function`.

    B is S, or 1 for S styles of one image (the network then computes everything before the
    first norm once). The signatures leave height and width free, so new sizes reuse the same
    graph instead of retracing. One image runs a graph traced with its batch of 1 known, where
    the norms' statistics take one fused op (`layers.moments`), and one image with one style a
    graph where the norms also fuse their scale, shift and ReLU into one pass
    (`layers.normalize`). This is the model's own graph, the one the SavedModel and LiteRT
    exports run. `jit_compile=True` asks
    XLA for a kernel per shape: faster for repeated sizes, but every new size compiles for
    several seconds. `precision="bfloat16"` runs a copy of the model whose convolutions compute
    in bfloat16 (norm statistics and output stay float32): on CPUs with AMX or AVX512_BF16 several
    times faster, at a pixel error of about 1 uint8 level on average (BUILD_NOTES). One per model
    and setting.
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    key = (bool(jit_compile), precision)
    per_model = _FORWARDS.setdefault(model, {})
    if key not in per_model:
        from image_stylization.model import num_styles_of, with_compute_dtype

        n = num_styles_of(model)
        if precision == "bfloat16":
            # Kept alive by the dict entry below, which dies with `model`.
            per_model["bfloat16 model"] = with_compute_dtype(model, "mixed_bfloat16")
            ref = weakref.ref(per_model["bfloat16 model"])
        else:
            ref = weakref.ref(model)  # the graphs hold the variables, not the model

        def trace(images, rows):
            @tf.function(
                input_signature=[
                    tf.TensorSpec([images, None, None, 3], tf.float32),
                    tf.TensorSpec([rows, n], tf.float32),
                ],
                jit_compile=bool(jit_compile),
            )
            def forward(image, style_weights):
                return ref()({"image": image, "style_weights": style_weights}, training=False)

            return forward

        # Traced lazily, each the first time its case comes up.
        traces = {}

        def forward(image, style_weights):
            key = (1 if len(image) == 1 else None,
                   1 if len(image) == 1 and len(style_weights) == 1 else None)
            if key not in traces:
                traces[key] = trace(*key)
            return traces[key](image, style_weights)

        per_model[key] = forward
    return per_model[key]


_GRAPHS = weakref.WeakKeyDictionary()


def _graph(model):
    """The model's `tiled.Graph`, or None for a network the tiled executor does not know."""
    if model not in _GRAPHS:
        try:
            _GRAPHS[model] = tiled.Graph(model)
        except tiled.UnsupportedNetwork:
            _GRAPHS[model] = None
    return _GRAPHS[model]


def _budget_bytes(memory_budget_mb):
    if memory_budget_mb is None:
        return None
    if isinstance(memory_budget_mb, bool) or not isinstance(memory_budget_mb, numbers.Real) or not (
            memory_budget_mb > 0):
        raise ValueError(f"memory_budget_mb must be a number > 0, got {memory_budget_mb!r}")
    return int(memory_budget_mb * tiled.MB)


def rows_per_call(model, height, width, rows, memory_budget_mb=None):
    """How many style rows one whole-image call may take: at most `MAX_BATCH_PIXELS` in total
    and, with a budget, the most whose estimated activations fit it (0: not even one row fits,
    so the image must be tiled)."""
    chunk = max(1, min(rows, MAX_BATCH_PIXELS // (height * width)))
    budget = _budget_bytes(memory_budget_mb)
    graph = _graph(model) if budget is not None else None
    if graph is None:
        return chunk
    while chunk and graph.whole_image_bytes(height, width, chunk) > budget:
        chunk = chunk // 2 if chunk > 1 else 0
    return chunk


def run_model(model, image, weights, jit_compile=False, precision="float32", memory_budget_mb=None,
              progress=None):
    """Stylizes one float image [H, W, 3] with each row of `weights` [S, N] -> float32 [S, H, W, 3].

    The image goes in once with all rows (the network shares its style-independent start
    between them); rows are split into several calls when S x pixels exceeds
    `MAX_BATCH_PIXELS` or their activations would exceed `memory_budget_mb` (one row per call
    at least: the whole image must fit, see `stylize` for larger ones).
    """
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"image is {w}x{h} px; the network needs both sides >= {MIN_SIZE} px")
    forward = compiled_forward(model, jit_compile, precision)
    weights = np.asarray(weights, np.float32)
    chunk = max(1, rows_per_call(model, h, w, len(weights), memory_budget_mb))
    image = np.ascontiguousarray(image, np.float32)[None]
    outs = []
    for start in range(0, len(weights), chunk):
        outs.append(np.asarray(forward(image, weights[start:start + chunk])))
        if progress is not None:
            progress(min(1.0, (start + chunk) / len(weights)))
    return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)


# ----------------------------------------------------------------------------- colour and strength

# ITU-R BT.601 full-range YCbCr (as JPEG): rows give Y, Cb, Cr from R, G, B in [0, 1].
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)


def preserve_colors(content, stylized):
    """Luminance-only transfer (Gatys et al. 2016a, "Preserving color in neural artistic style
    transfer"): the stylized image's luma Y with the content's chroma Cb, Cr."""
    y = stylized @ _RGB_TO_YCBCR[0]
    chroma = content @ _RGB_TO_YCBCR[1:].T
    ycc = np.concatenate([y[..., None], np.broadcast_to(chroma, y.shape + (2,))], axis=-1)
    return np.clip(ycc @ _YCBCR_TO_RGB.T, 0.0, 1.0).astype(np.float32)


def _finish(content, stylized, strength, preserve_color):
    if preserve_color:
        stylized = preserve_colors(content, stylized)
    if strength != 1.0:
        stylized = strength * stylized + (1.0 - strength) * content
    return stylized.astype(np.float32)


def _check_strength(strength):
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not (
        0.0 <= float(strength) <= 1.0
    ):
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
    return float(strength)


# ----------------------------------------------------------------------------- public API


def _read(image):
    """(image [H,W,3], kind) where kind says how to give the result back; the image is uint8 for
    8-bit inputs (converted to float per tile or once it is known to fit), float32 otherwise."""
    if isinstance(image, (str, os.PathLike, Image.Image)):
        return image_io.load_image(image, keep_uint8=True), "pil"
    if isinstance(image, np.ndarray):
        kind = image.dtype if image.dtype in (np.uint8, np.uint16) else np.dtype(np.float32)
        return image_io.load_image(image, keep_uint8=True), kind
    raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")


def _convert(array, kind):
    """float [.., 3] in [0, 1] -> the array type of `kind` (uint8 for PIL results)."""
    if kind in ("pil", np.uint8):
        return image_io.to_uint8(array)
    if kind == np.uint16:
        return np.rint(np.clip(array, 0, 1) * 65535).astype(np.uint16)
    return array.astype(np.float32, copy=False)  # `_finish` gave a writable array of our own


def _give_back(array, kind):
    array = _convert(array, kind)
    return Image.fromarray(array) if kind == "pil" else array


def stylize(image, styles=None, model=None, max_size=DEFAULT_MAX_SIZE, strength=1.0,
            preserve_color=False, jit_compile=False, precision="float32",
            memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB, progress=None, style_image=None,
            weights=None, style_embedding=None, style_image_size=None):
    """Stylizes `image` with one style, several styles, or a blend; or with any painting.

    With `style_image` (a painting: path, PIL image or array, or a list of them) or
    `style_embedding`, the arbitrary-style network runs instead (`arbitrary.stylize`): `weights`
    blend several paintings, `strength` interpolates between the photo's own style embedding and
    the painting's, and `model` is an arbitrary-style model (default: the bundled
    `arbitrary_v1`).

    Args:
      image: a path or a PIL image (the result is an RGB `PIL.Image`), or a numpy array: uint8
        or uint16 [H, W] / [H, W, 3] / [H, W, 4], or float in [0, 1] (the result is an [H, W, 3]
        array of the same dtype; float inputs give float32).
      styles: an index or display name (one result); a list of them (a list of results, in
        batched calls); or a dict {index_or_name: weight} (one blend; weights finite, >= 0,
        with a positive sum, normalized to sum 1).
      model: a transformer from `load_model` (default: the bundled 26-style model).
      max_size: the longest side is downscaled to this (Lanczos) if larger; never upscaled.
        None or 0: full size. The result has the (possibly downscaled) input's size.
      strength: in [0, 1]; the result is `strength * stylized + (1 - strength) * input`.
      preserve_color: keep the input's colours (chroma) and transfer only luminance.
      jit_compile: run the network through XLA (see `compiled_forward`; whole images only).
      precision: "float32", or "bfloat16" for bfloat16 convolutions: faster on CPUs with AMX or
        AVX512_BF16, about 1 uint8 level of difference on average (see `compiled_forward`;
        whole images only, a tiled run is float32).
      memory_budget_mb: the most memory the network's activations may take (default 1536).
        An image whose whole-image pass fits runs at once; a larger one runs tiled, with the
        same result, in passes over the image (about 1.4-2x the work; `tiled.py`). None: always
        whole-image, however large.
      progress: optional callable getting the fraction done (0..1) as the work proceeds (per
        tile of a tiled run, per call of a whole-image one).
      style_image, weights, style_embedding, style_image_size: see `arbitrary.stylize`.

    Raises `MemoryBudgetError` when even the tiled run cannot fit the budget (the message says
    which budget would do).
    """
    if style_image is not None or style_embedding is not None:
        if styles is not None:
            raise StyleError("give styles (an N-style model's) or style_image/style_embedding "
                             "(any painting), not both")
        from image_stylization import arbitrary

        return arbitrary.stylize(image, style_image=style_image, weights=weights, model=model,
                                 max_size=max_size, strength=strength,
                                 preserve_color=preserve_color, style_image_size=style_image_size,
                                 style_embedding=style_embedding,
                                 memory_budget_mb=memory_budget_mb, progress=progress)
    if styles is None:
        raise StyleError("styles is required: an index, a name, a list or a {style: weight} "
                         "blend (or style_image= for any painting)")
    if weights is not None:
        raise StyleError("weights blend style images; for an N-style blend give styles as a dict")
    results = list(iter_stylize(
        image, styles, model=model, max_size=max_size, strength=strength,
        preserve_color=preserve_color, jit_compile=jit_compile, precision=precision,
        memory_budget_mb=memory_budget_mb, progress=progress))
    single = isinstance(styles, dict) or not isinstance(styles, (list, tuple))
    return results[0] if single else results


def iter_stylize(image, styles, model=None, max_size=DEFAULT_MAX_SIZE, strength=1.0,
                 preserve_color=False, jit_compile=False, precision="float32",
                 memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB, progress=None):
    """`stylize`, one result at a time, in the order of `styles` (a blend gives one): a list of
    styles of a large photo then holds one finished result at a time, not all of them."""
    if getattr(model, "kind", None) == "arbitrary":
        raise StyleError("this is an arbitrary-style model: give style_image= (a painting)")
    strength = _check_strength(strength)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    budget = _budget_bytes(memory_budget_mb)
    model = model if model is not None else _default_model()
    names = style_names_of(model)
    selection = resolve_styles(styles, names)  # validated before any pixel work
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be >= 0 (0: full size), got {max_size}")
    content, kind = _read(image)
    if image_io.fit_size(*content.shape[:2], max_size) != content.shape[:2]:
        # In float, as before uint8 inputs were kept: no 8-bit rounding of the resized photo.
        content = image_io.resize_max(content, max_size, to_float32=True)
    weights = weight_matrix(selection, len(names))
    h, w = content.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"image is {w}x{h} px; the network needs both sides >= {MIN_SIZE} px")
    if strength == 0.0:
        for _ in weights:
            yield _give_back(image_io.to_float(content).copy(), kind)  # one array per result
        return
    if rows_per_call(model, h, w, 1, memory_budget_mb) == 0:
        yield from _tiled(model, content, weights, kind, budget, strength, preserve_color,
                          progress)
        return
    content = image_io.to_float(content)
    chunk = rows_per_call(model, h, w, len(weights), memory_budget_mb)
    for start in range(0, len(weights), chunk):
        stylized = run_model(model, content, weights[start:start + chunk], jit_compile, precision)
        if progress is not None:
            progress(min(1.0, (start + chunk) / len(weights)))
        for s in stylized:
            yield _give_back(_finish(content, s, strength, preserve_color), kind)


def _tiled(model, content, weights, kind, budget, strength, preserve_color, progress):
    """Each row of `weights` through `tiled.TiledRunner`; output tiles are finished (colour,
    strength) and converted as they come, so no float copy of the whole result is made."""
    runner = tiled.TiledRunner(model, content, budget, graph=_graph(model), progress=progress)
    runner.expect(len(weights))
    h, w = content.shape[:2]
    dtype = np.uint16 if kind == np.uint16 else np.float32 if kind == np.float32 else np.uint8
    for k, row in enumerate(weights, start=1):
        out = np.empty((h, w, 3), dtype)

        def emit(region, tile):
            r0, r1, c0, c1 = region
            piece = image_io.to_float(content[r0:r1, c0:c1])
            out[r0:r1, c0:c1] = _convert(_finish(piece, tile, strength, preserve_color), kind)

        runner.run(row[None], emit)
        if progress is not None and k == len(weights):
            progress(1.0)  # not 0.99999...: the tiles' shares add up in floating point
        yield Image.fromarray(out) if kind == "pil" else out


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled font; no download
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _ascii(text):
    # Pillow's bundled font has no accented glyphs: "Léger" would show a box, "Leger" reads fine.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).encode(
        "ascii", "replace").decode("ascii")


def _wrap(draw, text, font, width, max_lines):
    """Word-wraps `text` into at most `max_lines` lines of `width` px; the last one ellipsized."""
    lines, words = [], text.split()
    while words and len(lines) < max_lines:
        line = words.pop(0)
        while words and draw.textlength(line + " " + words[0], font=font) <= width:
            line += " " + words.pop(0)
        lines.append(line)
    if words:
        lines[-1] += " " + " ".join(words)
    last = lines[-1]
    if draw.textlength(last, font=font) > width:
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def _columns(cells):
    """Grid width near sqrt(cells), preferring the one that leaves the fewest empty cells."""
    base = math.ceil(math.sqrt(cells))
    return min(range(base, base + 3), key=lambda c: (-cells % c, c))


def contact_sheet(image, model=None, tile_size=160, max_size=None, columns=None, styles=None,
                  strength=1.0, preserve_color=False, labels=True,
                  memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB):
    """One image: the input and every style (or `styles`), each labelled "index name" below it.

    The styles are computed at `max_size` (default: 2 x `tile_size`, so brush strokes stay visible
    after downscaling) in batched calls (tiled within `memory_budget_mb` if that is large),
    then each tile is shrunk so its longest side is `tile_size`. Returns an RGB `PIL.Image`.
    """
    model = model if model is not None else _default_model()
    names = style_names_of(model)
    strength = _check_strength(strength)
    indices = list(range(len(names))) if styles is None else resolve_styles(list(styles), names)
    if isinstance(indices, dict):
        raise StyleError("contact_sheet takes a list of styles, not a blend")
    content = image_io.load_image(image, keep_uint8=True)
    content = image_io.resize_max(content, max_size or 2 * tile_size, to_float32=True)
    # One finished style at a time, shrunk at once: a sheet of a large photo holds one.
    results = iter_stylize(content, indices, model, max_size=0, strength=strength,
                           preserve_color=preserve_color, memory_budget_mb=memory_budget_mb)
    tiles = [image_io.to_uint8(image_io.resize_max(t, tile_size)) for t in [content, *results]]
    captions = ["input"] + [f"{i} {names[i]}" for i in indices]
    th, tw = tiles[0].shape[:2]
    cols = columns or _columns(len(tiles))
    rows = math.ceil(len(tiles) / cols)
    font_px = max(9, min(13, tw // 12))
    line_h = font_px + 2
    label_lines = 2 if labels else 0
    label_h = label_lines * line_h + 4 if labels else 0
    pad = 2
    sheet = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)
    for k, (tile, caption) in enumerate(zip(tiles, captions)):
        x = pad + (k % cols) * (tw + pad)
        y = pad + (k // cols) * (th + label_h + pad)
        sheet.paste(Image.fromarray(tile), (x, y))
        if labels:
            for j, line in enumerate(_wrap(draw, _ascii(caption), font, tw - 4, label_lines)):
                draw.text((x + 2, y + th + 2 + j * line_h), line, fill="black", font=font)
    return sheet
