"""Reading and writing images: every input mode to float RGB in [0, 1], and atomic, rounded saves.

This module needs only Pillow and numpy (no TensorFlow).
"""

import errno
import io
import os
import re
import secrets
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from image_stylization.errors import ImageError, StorageError  # noqa: F401  (re-exported)

# Extension -> Pillow format name. A file's bytes always match its extension (Magenta wrote JPEG
# bytes into ".png" files).
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
_SAVE_OPTIONS = {"PNG": {}, "JPEG": {"quality": 90}, "WEBP": {"quality": 90}}
# PNGs larger than this are written with zlib level 1 instead of Pillow's 6: an 8000x6000
# photo takes 7.7 s instead of 15.8 s to write, for a 10% larger file (104 vs 94 MB).
FAST_PNG_PIXELS = 16_000_000

# A full disk, a file over the size limit, an I/O error: the file system failed, not the path.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}

_WHITE = 1.0  # transparent pixels are composited onto white, as image viewers show them



def _name(source):
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    return "<array>"


def _too_large(name, pixels, size=None):
    dims = f"{size[0]}x{size[1]}, " if size else ""
    return ImageError(
        f"{name}: image too large ({dims}{pixels:,} pixels; the limit against decompression "
        f"bombs is {Image.MAX_IMAGE_PIXELS:,}); if you trust this file, allow it with "
        f"--max_image_pixels={pixels} (PIL.Image.MAX_IMAGE_PIXELS in Python)")


def _open(source, name=None, max_pixels=None):
    """Opens and fully decodes `source` (a path or a binary file object), turning every failure
    into an ImageError naming it (`name`, default the path).

    Pillow's decompression-bomb guard stays on: an image of more than `PIL.Image.MAX_IMAGE_PIXELS`
    pixels (Pillow's default, 89.5 Mpix, unless a caller such as `--max_image_pixels` changed it)
    is refused before it is decoded, in one line naming the flag that allows it. Pillow only
    warns between 1x and 2x its limit; here the limit is the limit. `max_pixels` is a caller's
    own, lower limit (the web app's uploads).
    """
    name = os.fspath(source) if name is None else name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(source)
        with opened as img:
            # Both checked from the header, before decoding allocates anything.
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageError(f"{name}: image is {img.width}x{img.height} px, more than "
                                 f"{max_pixels / 1e6:g} megapixels")
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.size[0] * img.size[1] > limit:
                raise _too_large(name, img.size[0] * img.size[1], img.size)
            img.load()  # decode now: a truncated file fails here, not later
            try:
                out = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001  (a malformed EXIF block is not worth failing for)
                out = img.copy()
            return out
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(name, int(pixels.group(1)) if pixels else 0) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated/corrupt data as OSError, and some plugins as SyntaxError.
        raise ImageError(f"{name}: cannot read image ({e})") from None


# 8-bit modes without transparency that `keep_uint8` returns as uint8 RGB (Pillow converts
# them exactly as `_pil_to_float` does, before the division by 255).
_UINT8_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV")


def _pil_to_float(img, name, keep_uint8=False):
    """Any Pillow mode -> float32 [H, W, 3] in [0, 1] (uint8 [H, W, 3] with `keep_uint8` for
    8-bit modes without transparency)."""
    mode = img.mode
    if keep_uint8 and mode in _UINT8_MODES and "transparency" not in img.info:
        if mode != "RGB":
            try:
                img = img.convert("RGB")
            except (ValueError, OSError) as e:
                raise ImageError(f"{name}: cannot convert {mode} image to RGB ({e})") from None
        return np.asarray(img)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grayscale (PNG, TIFF): full 0..65535 range, not clipped to 8 bits.
        gray = np.asarray(img).astype(np.float32) / 65535.0
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "I":
        # 32-bit integer mode: what Pillow gives for 16-bit grayscale PNGs in some versions, so
        # it is read on the 16-bit scale.
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 65535).astype(np.float32) / 65535.0
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        # Pillow's own convention for float images is the 0..255 scale (convert("L") clips there).
        gray = np.asarray(img, dtype=np.float32)
        if not np.all(np.isfinite(gray)):
            raise ImageError(f"{name}: float image contains NaN or infinite values")
        gray = np.clip(gray / 255.0, 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2)

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    ) or (mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[:, :, 3:4]
        # Premultiplied modes store colour already multiplied by alpha.
        if mode in ("RGBa", "La"):
            rgb = rgba[:, :, :3] + _WHITE * (1.0 - alpha)
        else:
            rgb = rgba[:, :, :3] * alpha + _WHITE * (1.0 - alpha)
        return np.clip(rgb, 0.0, 1.0).astype(np.float32)
    if mode != "RGB":
        try:
            img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
        except (ValueError, OSError) as e:
            raise ImageError(f"{name}: cannot convert {mode} image to RGB ({e})") from None
    return np.asarray(img, dtype=np.float32) / 255.0


def _array_to_float(array, name):
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(
            f"{name}: expected an image array of shape [H, W], [H, W, 3] or [H, W, 4], got {a.shape}"
        )
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ImageError(f"{name}: float image contains NaN or infinite values")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ImageError(
                f"{name}: float image values must be in [0, 1], got [{a.min():.4g}, {a.max():.4g}]"
                f" (pass uint8 for 0..255 data)"
            )
        f = a.astype(np.float32)
    else:
        raise ImageError(f"{name}: unsupported array dtype {a.dtype} (use uint8, uint16 or float)")
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    elif f.shape[2] == 4:
        alpha = f[:, :, 3:4]
        f = f[:, :, :3] * alpha + _WHITE * (1.0 - alpha)
    return np.ascontiguousarray(f, dtype=np.float32)


def load_image(source, keep_uint8=False):
    """Reads an image as float32 RGB [H, W, 3] in [0, 1].

    `source` is a path, a PIL image, or an array: uint8 or uint16 [H, W], [H, W, 3] or [H, W, 4],
    or float in [0, 1]. Files get their EXIF orientation applied; transparent pixels are
    composited onto white; grayscale, palette, CMYK and 16-bit images become RGB on their full
    range. Any failure raises `ImageError` whose message starts with the file name.

    `keep_uint8=True`: 8-bit images without transparency (and uint8 RGB arrays, not copied)
    come back as uint8 RGB [H, W, 3], a quarter of the float32 memory (144 MB instead of 576 MB
    at 48 Mpix); `to_float` per tile gives exactly what `load_image` would.
    """
    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        img = _open(source)
    elif isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if keep_uint8 and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
            return source
        return _array_to_float(source, name)
    else:
        raise ImageError(f"{name}: expected a path, a PIL image or a numpy array, got "
                         f"{type(source).__name__}")
    out = _pil_to_float(img, name, keep_uint8)
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ImageError(f"{name}: empty image ({out.shape[1]}x{out.shape[0]})")
    return out


def decode_image(data, name="<bytes>", max_pixels=None):
    """`load_image` for the bytes of an image file (an upload): the same decoding, EXIF
    orientation and colour handling, so the result equals `load_image` of the same file.

    `max_pixels` refuses larger images from their header, before decoding. Any failure raises
    `ImageError` whose message starts with `name`.
    """
    img = _open(io.BytesIO(bytes(data)), name, max_pixels)
    out = _pil_to_float(img, name)
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ImageError(f"{name}: empty image ({out.shape[1]}x{out.shape[0]})")
    return out


def to_float(image):
    """uint8 (divided by 255, as `load_image` does) or float image -> float32."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32, copy=False)


def to_uint8(image):
    """float [0, 1] -> uint8, rounded (Magenta truncated, darkening every pixel by 0.5 on average)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    return np.rint(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def load_image_uint8(source):
    """`load_image`, as uint8 [H, W, 3] (rounded)."""
    return to_uint8(load_image(source))


def fit_size(height, width, max_size):
    """(h, w) with the longest side at most `max_size`, aspect kept; never larger than the input."""
    if max_size is None or max_size <= 0 or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_max(image, max_size, to_float32=False):
    """Downscales so the longest side is `max_size` (Lanczos, antialiased); never upscales.

    `image` is a float [H, W, 3] array in [0, 1] or a uint8 array; the result has the same dtype,
    or float32 in [0, 1] with `to_float32` (a uint8 image is then resized channel by channel in
    float, as `resize_max(to_float(image))` would, without a float copy of the whole input).
    `max_size` None or 0 means no limit.
    """
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    a = np.asarray(image)
    h, w = a.shape[:2]
    new_h, new_w = fit_size(h, w, max_size)
    if (new_h, new_w) == (h, w):
        return to_float(a) if to_float32 else a
    return resize(a, new_h, new_w, to_float32)


def resize_longest_side(image, size):
    """Resizes (up or down, Lanczos) so the longest side is `size`, aspect kept."""
    a = np.asarray(image)
    h, w = a.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    return a if (new_h, new_w) == (h, w) else resize(a, new_h, new_w)


def resize(image, new_h, new_w, to_float32=False):
    """Lanczos resize of a float [H, W, (C)] image in [0, 1] or a uint8 one; same dtype back, or
    float32 in [0, 1] with `to_float32` (a uint8 image resized per channel in float)."""
    a = np.asarray(image)
    if a.dtype == np.uint8 and not to_float32:
        img = Image.fromarray(a)
        return np.asarray(img.resize((new_w, new_h), Image.Resampling.LANCZOS))
    # Per channel in Pillow's float mode: no 8-bit quantization of 16-bit or float inputs.
    channels = a[:, :, None] if a.ndim == 2 else a

    def plane(c):
        if a.dtype == np.uint8:  # Lanczos is linear: resizing x / 255 is resizing x, / 255
            return Image.fromarray(np.ascontiguousarray(channels[:, :, c])).convert("F")
        return Image.fromarray(np.ascontiguousarray(channels[:, :, c], dtype=np.float32), mode="F")

    out = np.stack(
        [np.asarray(plane(c).resize((new_w, new_h), Image.Resampling.LANCZOS))
         for c in range(channels.shape[2])],
        axis=2,
    )
    if a.dtype == np.uint8:
        out = out / np.float32(255.0)
    out = np.clip(out, 0.0, 1.0).astype(a.dtype if a.dtype.kind == "f" else np.float32)
    return out[:, :, 0] if a.ndim == 2 else out


def format_of(path, format=None):
    """Pillow format name for `path`; `format` (png|jpg|jpeg|webp) must agree with the extension."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise ImageError(
            f"{name}: unknown image extension {ext or '(none)'!r}; use one of "
            f"{', '.join(sorted(FORMATS))}"
        )
    if format is not None:
        key = str(format).lower().lstrip(".")
        if key not in EXTENSIONS:
            raise ImageError(f"{name}: unknown format {format!r}; use png, jpg or webp")
        if FORMATS[EXTENSIONS[key]] != FORMATS[ext]:
            raise ImageError(f"{name}: extension {ext!r} does not match format {format!r}")
    return FORMATS[ext]


def save_image(image, path, format=None):
    """Writes an RGB image atomically: a temporary file in the same directory, then `os.replace`.

    `image` is float [H, W, 3] in [0, 1] (rounded to uint8; NaN or infinite values are refused
    rather than written as black), a uint8 array, or a PIL image. The format comes from `format`
    or the extension (.png, .jpg/.jpeg, .webp), and the bytes always match the extension.
    Returns the path.
    """
    name = os.fspath(path)
    fmt = format_of(name, format)
    if isinstance(image, Image.Image):
        img = image if image.mode in ("RGB", "L") else image.convert("RGB")
    else:
        a = np.asarray(image)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ImageError(f"{name}: image contains NaN or infinite values; not writing it")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
            raise ImageError(f"{name}: expected an image of shape [H, W, 3] or [H, W], got {a.shape}")
        if a.dtype != np.uint8 and a.dtype.kind != "f":
            raise ImageError(f"{name}: unsupported dtype {a.dtype} (use float in [0, 1] or uint8)")
        img = Image.fromarray(to_uint8(a))
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        raise ImageError(f"{name}: directory {directory} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(name)}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL and mode 0o666 (minus the umask): the final file gets normal permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            options = dict(_SAVE_OPTIONS[fmt])
            if fmt == "PNG" and img.width * img.height > FAST_PNG_PIXELS:
                options["compress_level"] = 1
            img.save(f, format=fmt, **options)
        os.replace(tmp, name)
    except OSError as e:
        _remove_quietly(tmp)
        error = StorageError if e.errno in _STORAGE_ERRNOS else ImageError
        raise error(f"{name}: cannot write image ({e.strerror or e})") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    return name


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
