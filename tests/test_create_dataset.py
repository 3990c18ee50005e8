"""The style dataset: written then read back, Grams against a recomputation in numpy; input image
modes; bad inputs (library errors and the CLI's exit status 2, nothing written)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, shared_path, tool_env
from PIL import Image

from image_stylization import image_io, style_dataset, vgg

NPZ_SHA256 = "edb245da4d7df9e043c48c0ce967616a700c0f963a8af46b4fa3608ff35e3e20"
END_POINTS = ("conv1", "conv3")  # small Grams keep the test fast
SIZE = 48


def npz():
    return str(shared_path("vgg", "vgg19_notop_q8.npz"))


@pytest.fixture
def styles(tmp_path):
    """Tiny style images in the modes users have: RGB JPEG, grayscale, RGBA, CMYK, 16-bit PNG."""
    folder = tmp_path / "styles"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = (rng.random((60, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "b_rgb.jpg", quality=90)
    Image.fromarray(rgb[:40, :30, 0]).save(folder / "a_gray.png")  # smaller than SIZE: kept
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(folder / "c_rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "d_cmyk.jpg")
    Image.fromarray((rng.random((50, 50)) * 65535).astype(np.uint16)).save(folder / "e_gray16.png")
    return folder


def numpy_gram(features):
    f = np.asarray(features, np.float64)[0]
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat / flat.shape[0]


def listing(folder):
    return sorted(os.listdir(folder))


def test_write_then_read_equals_recomputed_grams(styles, tmp_path):
    out = tmp_path / "out" / "styles.tfrecord"
    manifest = style_dataset.write_style_dataset(
        str(styles), str(out), "vgg19", npz(), "avg", SIZE, END_POINTS
    )
    data = style_dataset.read_style_dataset(out)
    files = sorted(styles.iterdir())
    assert data.names == [f.stem for f in files] == manifest["names"]
    assert data.labels == list(range(5))
    assert data.image_raw == [f.read_bytes() for f in files]  # original bytes, not re-encoded
    assert list(data.grams) == ["block1_conv2", "block3_conv4"]
    np.testing.assert_array_equal(data.image(4), image_io.load_image(files[4]))  # 16-bit gray

    # Recompute independently of style_dataset: read + downscale, features, numpy Gram.
    network = vgg.build_loss_network("vgg19", npz(), "avg", END_POINTS)
    for i, f in enumerate(files):
        image = image_io.resize_max(image_io.load_image(f), SIZE)
        assert max(image.shape[:2]) == min(SIZE, max(image_io.load_image(f).shape[:2]))
        features = network(image[None])
        for e in ("block1_conv2", "block3_conv4"):
            np.testing.assert_allclose(data.grams[e][i], numpy_gram(features[e]), rtol=2e-5, atol=1e-3)
    assert data.grams["block3_conv4"].shape == (5, 256, 256)
    assert data.grams["block1_conv2"].dtype == np.float32

    m = json.loads((tmp_path / "out" / "styles.tfrecord.json").read_text())
    assert m == data.manifest == manifest
    assert m["weights_sha256"] == NPZ_SHA256 and m["weights_file"] == "vgg19_notop_q8.npz"
    assert (m["loss_network"], m["vgg_pooling"], m["style_image_size"]) == ("vgg19", "avg", SIZE)
    assert m["end_points"] == [
        {"name": "block1_conv2", "magenta_name": "conv1", "channels": 64},
        {"name": "block3_conv4", "magenta_name": "conv3", "channels": 256},
    ]
    by_name = {s["name"]: s for s in m["styles"]}
    assert by_name["a_gray"]["original_hw"] == by_name["a_gray"]["gram_hw"] == [40, 30]  # no upscale
    assert by_name["b_rgb"]["original_hw"] == [60, 90] and by_name["b_rgb"]["gram_hw"] == [32, 48]
    assert listing(tmp_path / "out") == ["styles.tfrecord", "styles.tfrecord.json"]  # no temporaries

    # Not replaced unless asked.
    with pytest.raises(style_dataset.DatasetError, match="already exists"):
        style_dataset.write_style_dataset(str(styles), str(out), "vgg19", npz(), "avg", SIZE, END_POINTS)


def test_grams_distinguish_styles_and_change_with_size(styles, tmp_path):
    """Guards against a writer that stores the same (or unresized) Grams for every style."""
    out = tmp_path / "s.tfrecord"
    style_dataset.write_style_dataset(
        [str(styles / "b_rgb.jpg"), str(styles / "d_cmyk.jpg")], out, "vgg19", npz(), "avg", 32, ("conv1",)
    )
    g = style_dataset.read_style_dataset(out).grams["block1_conv2"]
    assert not np.allclose(g[0], g[1], rtol=1e-2)  # CMYK round trip changes the colours
    out2 = tmp_path / "s64.tfrecord"
    style_dataset.write_style_dataset(
        [str(styles / "b_rgb.jpg")], out2, "vgg19", npz(), "avg", 64, ("conv1",)
    )
    assert not np.allclose(style_dataset.read_style_dataset(out2).grams["block1_conv2"][0], g[0], rtol=1e-2)


def test_file_selection(styles, tmp_path):
    (styles / "notes.txt").write_text("not an image")
    (styles / ".hidden.jpg").write_bytes(b"")
    folder = style_dataset.find_style_files(str(styles))
    assert [os.path.basename(f) for f in folder] == [
        "a_gray.png", "b_rgb.jpg", "c_rgba.png", "d_cmyk.jpg", "e_gray16.png"]
    assert style_dataset.find_style_files(str(styles / "*.jpg")) == [
        str(styles / "b_rgb.jpg"), str(styles / "d_cmyk.jpg")]
    # A list is sorted too: label = position in sorted order.
    assert style_dataset.find_style_files([str(styles / "d_cmyk.jpg"), str(styles / "a_gray.png")]) == [
        str(styles / "a_gray.png"), str(styles / "d_cmyk.jpg")]
    with pytest.raises(style_dataset.DatasetError, match=r"\*.gif: no style image matches"):
        style_dataset.find_style_files(str(styles / "*.gif"))
    (tmp_path / "other").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "other" / "b_rgb.png")
    with pytest.raises(style_dataset.DatasetError, match="'b_rgb' is also the name of"):
        style_dataset.find_style_files([str(styles / "b_rgb.jpg"), str(tmp_path / "other")])


def test_corrupt_image_writes_nothing(styles, tmp_path):
    good = (styles / "b_rgb.jpg").read_bytes()
    (styles / "z_broken.jpg").write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(image_io.ImageError, match="z_broken.jpg"):
        style_dataset.write_style_dataset(str(styles), str(out / "s.tfrecord"), "vgg19", npz(), "avg", 32)
    assert listing(out) == []


def test_bad_arguments(styles, tmp_path):
    out = str(tmp_path / "s.tfrecord")
    with pytest.raises(ValueError, match="unknown vgg19 end point 'conv7'"):
        style_dataset.write_style_dataset(str(styles), out, "vgg19", npz(), "avg", 32, ["conv7"])
    with pytest.raises(style_dataset.DatasetError, match="style_image_size"):
        style_dataset.write_style_dataset(str(styles), out, "vgg19", npz(), "avg", 8)
    with pytest.raises(vgg.WeightsError, match="no such weights file"):
        style_dataset.write_style_dataset(str(styles), out, "vgg19", str(tmp_path / "none.npz"))
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (40, 8)).save(tiny)
    with pytest.raises(image_io.ImageError, match="tiny.png: 40x8 .*too small"):
        style_dataset.write_style_dataset([str(tiny)], out, "vgg19", npz(), "avg", 32)
    assert not os.path.exists(out)


def test_output_file_that_cannot_be_written(styles, tmp_path):
    """Checked before any image is read: one DatasetError naming the path, nothing written."""
    afile = tmp_path / "afile"
    afile.write_text("keep")
    (tmp_path / "adir.tfrecord").mkdir()
    cases = [(afile / "s.tfrecord", "afile is not a directory"),
             (tmp_path / "adir.tfrecord", "adir.tfrecord is a directory"),
             ("/proc/s.tfrecord" if os.path.isdir("/proc/self") else None, "cannot write in /proc")]
    for target, message in cases:
        if target is None:
            continue
        with pytest.raises(style_dataset.DatasetError, match=message):
            style_dataset.write_style_dataset(str(styles), str(target), "vgg19", None, "avg", 32)
    assert listing(tmp_path) == ["adir.tfrecord", "afile", "styles"]
    assert afile.read_text() == "keep"


def test_read_rejects_non_datasets(tmp_path):
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(style_dataset.DatasetError, match="junk.tfrecord"):
        style_dataset.read_style_dataset(junk)
    with pytest.raises(style_dataset.DatasetError, match="no such style dataset"):
        style_dataset.read_style_dataset(tmp_path / "missing.tfrecord")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "image_stylization.image_stylization_create_dataset", *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=tool_env(),
    )


@pytest.mark.slow
def test_cli_writes_and_fails_with_exit_status_2(styles, tmp_path):
    out = tmp_path / "out"
    ok = run_cli(f"--style_files={styles}/*_rgb*", f"--output_file={out}/s.tfrecord",
                 f"--vgg_weights={npz()}", "--style_image_size=32", "--end_points=conv1")
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and listing(out) == ["s.tfrecord", "s.tfrecord.json"]
    assert json.loads((out / "s.tfrecord.json").read_text())["names"] == ["b_rgb", "c_rgba"]

    (styles / "z_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    empty = tmp_path / "empty"
    for args, message in [
        ([f"--style_files={styles}", f"--output_file={empty}/s.tfrecord"], "z_broken.jpg"),
        ([f"--style_files={styles}/*.gif", f"--output_file={empty}/s.tfrecord"], "no style image matches"),
    ]:
        r = run_cli(*args, f"--vgg_weights={npz()}", "--style_image_size=32")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr  # one line
        assert not empty.exists()
