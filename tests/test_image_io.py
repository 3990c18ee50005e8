"""image_io: every Pillow mode against hand-computed pixel values, EXIF, bad files, rounded atomic saves."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from image_stylization import image_io
from image_stylization.image_io import ImageError, StorageError, load_image, resize_max, save_image


def _save(img, tmp_path, name, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return str(path)


def test_rgb_png_exact(tmp_path):
    a = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
    out = load_image(_save(Image.fromarray(a), tmp_path, "rgb.png"))
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, a.astype(np.float32) / 255)


def test_grayscale_and_bilevel(tmp_path):
    gray = Image.fromarray(np.array([[0, 100], [200, 255]], dtype=np.uint8))
    out = load_image(_save(gray, tmp_path, "l.png"))
    np.testing.assert_allclose(out[1, 0], [200 / 255] * 3)
    assert out.shape == (2, 2, 3)
    bilevel = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(load_image(_save(bilevel, tmp_path, "b.png"))[0], [[0] * 3, [1] * 3])


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 128))
    rgba.putpixel((1, 0), (10, 20, 30, 0))
    out = load_image(_save(rgba, tmp_path, "rgba.png"))
    a = 128 / 255
    np.testing.assert_allclose(out[0, 0], [1.0, 1 - a, 1 - a], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [1.0, 1.0, 1.0], atol=1e-6)
    la = Image.new("LA", (1, 1), (0, 51))
    out = load_image(_save(la, tmp_path, "la.png"))
    np.testing.assert_allclose(out[0, 0], [1 - 51 / 255] * 3, atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 255, 40, 80, 120] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    out = load_image(_save(p, tmp_path, "p.png"))
    np.testing.assert_allclose(out[0, 1] * 255, [40, 80, 120], atol=1e-4)
    out = load_image(_save(p, tmp_path, "pt.png", transparency=0))
    np.testing.assert_allclose(out[0, 0], [1, 1, 1], atol=1e-6)  # transparent index -> white
    np.testing.assert_allclose(out[0, 1] * 255, [40, 80, 120], atol=1e-4)
    gif = load_image(_save(p, tmp_path, "p.gif"))
    np.testing.assert_allclose(gif[0, 1] * 255, [40, 80, 120], atol=1e-4)


def test_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (0, 255, 255, 0))  # pure magenta+yellow ink = red
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # full black ink
    out = load_image(_save(cmyk, tmp_path, "c.tif"))
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])


def test_16_bit_keeps_full_range(tmp_path):
    a = np.array([[0, 300, 1000, 65535]], dtype=np.uint16)
    out = load_image(_save(Image.fromarray(a), tmp_path, "g16.png"))
    np.testing.assert_allclose(out[0, :, 0], a[0] / 65535, rtol=1e-6)
    assert out[0, 1, 0] > 0 and out[0, 1, 0] < out[0, 2, 0] < 0.02  # not clipped at 255
    i32 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert i32.mode == "I"
    np.testing.assert_allclose(load_image(i32)[0, :, 1], [0, 32768 / 65535, 1], rtol=1e-6)


def test_exif_orientation_applied(tmp_path):
    # Stored 32 wide x 16 high, left half red; orientation 6 = "rotate 90 deg clockwise to view".
    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :16] = (255, 0, 0)
    a[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.fromarray(a), tmp_path, "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (32, 16, 3)
    # Clockwise rotation puts the stored left (red) half on top.
    np.testing.assert_allclose(out[2, 8], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(out[29, 8], [0, 0, 1], atol=0.05)


def test_bad_files_name_the_file(tmp_path, monkeypatch):
    missing = str(tmp_path / "missing.png")
    with pytest.raises(ImageError, match=r"^" + missing):
        load_image(missing)
    text = tmp_path / "text.jpg"
    text.write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match=r"^" + str(text)):
        load_image(text)
    good = _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                 tmp_path, "trunc.png")
    data = open(good, "rb").read()
    open(good, "wb").write(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"^" + good):
        load_image(good)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    big = _save(Image.new("RGB", (30, 30)), tmp_path, "bomb.png")
    with pytest.raises(ImageError, match=r"^" + big + ".*too large.*--max_image_pixels=900 "):
        load_image(big)


def test_decode_image_equals_load_image_of_the_same_file(tmp_path):
    # An upload's bytes decode exactly as the file does: EXIF orientation, alpha on white, 16 bit.
    exif = Image.Exif()
    exif[0x0112] = 6
    rng = np.random.default_rng(1)
    files = [
        _save(Image.fromarray(rng.integers(0, 256, (16, 32, 3), np.uint8)), tmp_path, "r.jpg",
              exif=exif),
        _save(Image.fromarray(rng.integers(0, 256, (9, 7, 4), np.uint8)), tmp_path, "a.png"),
        _save(Image.fromarray(rng.integers(0, 65536, (5, 6), np.uint16)), tmp_path, "g.png"),
    ]
    for path in files:
        data = open(path, "rb").read()
        np.testing.assert_array_equal(image_io.decode_image(data, "upload"), load_image(path))
    assert image_io.decode_image(open(files[0], "rb").read()).shape == (32, 16, 3)


def test_decode_image_errors_name_the_upload(tmp_path):
    with pytest.raises(ImageError, match=r"^photo.jpg: not an image file"):
        image_io.decode_image(b"not an image", "photo.jpg")
    data = open(_save(Image.new("RGB", (40, 30)), tmp_path, "big.png"), "rb").read()
    with pytest.raises(ImageError, match=r"^big.png: image is 40x30 px, more than 0.001 megapixels"):
        image_io.decode_image(data, "big.png", max_pixels=1000)
    assert image_io.decode_image(data, "big.png", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ImageError, match=r"^cut.png: cannot read image"):
        image_io.decode_image(data[: len(data) // 2], "cut.png")


def test_decompression_bomb_limit_is_the_limit(tmp_path, monkeypatch):
    """Pillow only warns between 1x and 2x its limit; here the limit refuses, in one line that
    says the size and the flag, and no warning is printed."""
    big = _save(Image.new("RGB", (30, 20)), tmp_path, "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as e:
            load_image(big)
    assert str(e.value) == (
        f"{big}: image too large (30x20, 600 pixels; the limit against decompression bombs is "
        f"500); if you trust this file, allow it with --max_image_pixels=600 "
        f"(PIL.Image.MAX_IMAGE_PIXELS in Python)")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    assert load_image(big).shape == (20, 30, 3)


def test_keep_uint8(tmp_path):
    """8-bit images come back as uint8 (a quarter of float32's memory), exactly what
    `load_image` gives before its division by 255; others stay float."""
    rgb = rng_u8((9, 7, 3))
    for img, name in [(Image.fromarray(rgb), "rgb.png"), (Image.fromarray(rgb[:, :, 0]), "l.png"),
                      (Image.fromarray(rgb).convert("P"), "p.png"),
                      (Image.fromarray(rgb).convert("CMYK"), "c.tif")]:
        path = _save(img, tmp_path, name)
        kept = load_image(path, keep_uint8=True)
        assert kept.dtype == np.uint8 and kept.shape == (9, 7, 3)
        np.testing.assert_array_equal(image_io.to_float(kept), load_image(path))
    rgba = _save(Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])), tmp_path, "rgba.png")
    assert load_image(rgba, keep_uint8=True).dtype == np.float32  # composited onto white
    g16 = _save(Image.fromarray(np.full((4, 4), 40000, np.uint16)), tmp_path, "g16.png")
    assert load_image(g16, keep_uint8=True).dtype == np.float32
    assert load_image(rgb, keep_uint8=True) is rgb  # uint8 RGB arrays are not copied


def test_resize_uint8_to_float_without_8_bit_rounding():
    a = rng_u8((90, 61, 3))
    out = resize_max(a, 40, to_float32=True)
    assert out.dtype == np.float32 and out.shape == (40, 27, 3)
    np.testing.assert_allclose(out, resize_max(image_io.to_float(a), 40), atol=1e-6)
    np.testing.assert_array_equal(resize_max(a, 100, to_float32=True), image_io.to_float(a))


def rng_u8(shape):
    return np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)


def test_arrays():
    gray = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(load_image(gray), [[[0] * 3, [1] * 3]])
    rgb = np.array([[[255, 128, 0]]], dtype=np.uint8)
    np.testing.assert_allclose(load_image(rgb), [[[1, 128 / 255, 0]]])
    with pytest.raises(ImageError, match=r"^<array>: float image values must be in \[0, 1\]"):
        load_image(np.full((2, 2, 3), 2.0))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 2, 5), np.uint8))


def test_save_rounds_not_truncates(tmp_path):
    k = np.arange(0, 255, dtype=np.float32)
    x = np.stack([(k + 0.6) / 255, (k + 0.4) / 255, k / 255], axis=1)[None]  # [1, 255, 3]
    path = save_image(x, str(tmp_path / "r.png"))
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back[0, :, 0], k + 1)  # truncation would give k
    np.testing.assert_array_equal(back[0, :, 1], k)
    np.testing.assert_array_equal(back[0, :, 2], k)


def test_save_bytes_match_extension(tmp_path):
    img = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    magic = {"a.png": b"\x89PNG", "a.jpg": b"\xff\xd8\xff", "a.jpeg": b"\xff\xd8\xff"}
    for name, head in magic.items():
        assert open(save_image(img, str(tmp_path / name)), "rb").read(len(head)) == head
    webp = open(save_image(img, str(tmp_path / "a.webp"), format="webp"), "rb").read(12)
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    with pytest.raises(ImageError, match="does not match"):
        save_image(img, str(tmp_path / "b.png"), format="jpg")
    with pytest.raises(ImageError, match="unknown image extension"):
        save_image(img, str(tmp_path / "b.xyz"))
    assert not (tmp_path / "b.png").exists()


def test_save_refuses_nan_and_never_leaves_partial_files(tmp_path, monkeypatch):
    img = np.full((4, 4, 3), 0.5, np.float32)
    img[1, 1, 1] = np.nan
    with pytest.raises(ImageError, match=r"NaN"):
        save_image(img, str(tmp_path / "nan.png"))
    target = tmp_path / "keep.png"
    save_image(np.zeros((4, 4, 3), np.uint8), str(target))
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    # The file system failed, not the path: a StorageError (exit status 1 in the tools).
    with pytest.raises(StorageError, match=r"keep.png: cannot write image \(No space left"):
        save_image(np.ones((4, 4, 3), np.uint8), str(target))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]  # no temporary file left behind
    with pytest.raises(ImageError, match="does not exist"):
        save_image(img[:1, :1] * 0, str(tmp_path / "nodir" / "x.png"))


def test_resize_max():
    a = np.full((100, 50, 3), 0.3, np.float32)
    small = resize_max(a, 40)
    assert small.shape == (40, 20, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small, 0.3, atol=1e-5)
    assert resize_max(a, 200) is a  # never upscales
    assert resize_max(a, None) is a and resize_max(a, 0) is a
    assert resize_max(np.zeros((30, 90, 3), np.uint8), 45).shape == (15, 45, 3)
    # Antialiased: a 1-px checkerboard shrunk 4x is mid-grey, not the aliased 0/1 of nearest.
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    shrunk = resize_max(np.repeat(checker[:, :, None], 3, axis=2), 16)
    np.testing.assert_allclose(shrunk[2:-2, 2:-2], 0.5, atol=0.02)
    with pytest.raises(ValueError):
        resize_max(a, -1)
    assert image_io.fit_size(1000, 750, 512) == (512, 384)
