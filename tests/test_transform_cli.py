"""image_stylization_transform: output names, folders with bad images, exit codes (via subprocess)."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_STYLE_NAMES as NAMES
from conftest import tool_env
from PIL import Image

from image_stylization import checkpoint, cli
from image_stylization import image_stylization_transform as transform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS


@pytest.fixture(scope="module")
def model(model_dir):
    return checkpoint.load_model(model_dir)


def _photo(path, size=(40, 32)):
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def _run(*args):
    env = tool_env(PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "image_stylization.image_stylization_transform", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_output_names():
    # Magenta's _describe_style: sorted indices, round(w * 1000) padded to 3 digits.
    assert transform.describe_style({5: 0.7, 0: 0.3}) == "0_300_5_700"
    assert transform.describe_style({3: 1.0}) == "3_1000"
    assert transform.describe_style({1: 0.04, 2: 0.96}) == "1_040_2_960"
    assert transform.output_names("cat", [0, 5], ".png") == ["cat_0.png", "cat_5.png"]
    assert transform.output_names("cat", {0: 0.25, 2: 0.75}, ".jpg") == ["cat_0_250_2_750.jpg"]
    assert transform.output_names("cat", [0, 1], ".webp", all_styles=True) == ["cat_all_styles.webp"]
    assert transform.basenames(["d/a.jpg", "d/a.png", "d/b.jpg"]) == ["a_jpg", "a_png", "b"]
    assert transform.basenames(["x/a.jpg"], "out") == ["out"]


def test_find_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    a, b = _photo(tmp_path / "b.png"), _photo(tmp_path / "a.jpg")
    assert transform.find_inputs(str(tmp_path)) == ([b, a], True)
    assert transform.find_inputs(str(tmp_path / "*.png")) == ([a], False)
    assert transform.find_inputs(a) == ([a], False)
    with pytest.raises(ValueError, match="no such file"):
        transform.find_inputs(str(tmp_path / "c.jpg"))
    with pytest.raises(ValueError, match="no files match"):
        transform.find_inputs(str(tmp_path / "*.gif"))


def test_folder_with_one_bad_image_in_process(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    good = [_photo(src / "p1.jpg"), _photo(src / "p3.png", (20, 24))]
    (src / "p2.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    paths, several = transform.find_inputs(str(src))
    out, err = io.StringIO(), io.StringIO()
    failures = transform.transform_images(
        paths, str(tmp_path / "out"), transform.basenames(paths), model, [0, 2],
        several=several, out=out, err=err,
        progress_delay=3600)  # a busy machine (3 s for p1.jpg) must not add a progress line
    assert [f for f, _ in failures] == [str(src / "p2.jpg")]
    assert err.getvalue().startswith(f"[2/3] error: {src / 'p2.jpg'}: not an image file")
    assert "[3/3]" in out.getvalue() and "p3_2.png" in out.getvalue()
    assert sorted(os.listdir(tmp_path / "out")) == ["p1_0.png", "p1_2.png", "p3_0.png", "p3_2.png"]
    for name, source in [("p1_0.png", good[0]), ("p3_2.png", good[1])]:
        with Image.open(tmp_path / "out" / name) as im:
            assert im.format == "PNG" and im.size == Image.open(source).size


def test_cli_happy_path(tmp_path, model_dir):
    photo = _photo(tmp_path / "cat.jpg", (50, 30))
    r = _run(f"--checkpoint={model_dir}", f"--input_image={photo}", f"--output_dir={tmp_path}/o",
             "--which_styles={'Gamma': 1, 0: 3}", "--output_format=jpg", "--strength=0.5")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path / "o") == ["cat_0_750_2_250.jpg"]
    with Image.open(tmp_path / "o" / "cat_0_750_2_250.jpg") as im:
        assert im.format == "JPEG" and im.size == (50, 30)


def test_cli_bad_index_exits_2_without_output(tmp_path, model_dir):
    photo = _photo(tmp_path / "cat.jpg")
    r = _run(f"--checkpoint={model_dir}", f"--input_image={photo}", f"--output_dir={tmp_path}/o",
             "--which_styles=[0,3]")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "image_stylization_transform.py: error: --which_styles: style index 3 is out of range: "
        "this model has 3 styles (0..2)"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags_, message", [
    (["--which_styles={0:-1,1:2}"], "--which_styles: weight of style 0 must be >= 0"),
    (["--which_styles={0:1e999}"], "--which_styles: weight of style 0 must be finite"),
    (["--which_styles=[0"], "--which_styles: cannot parse"),
    (["--num_styles=26"], "--num_styles=26 but the checkpoint"),
    (["--strength=nan"], "--strength must be in [0, 1]"),
    (["--input_image=missing.jpg"], "--input_image: missing.jpg: no such file or folder"),
    (["--input_image=bad.jpg"], "bad.jpg: not an image file"),
    # A basename is a plain file name: nothing is written outside --output_dir.
    (["--output_basename=../escape"], "--output_basename '../escape' contains a path separator"),
    (["--output_basename=/tmp/abs"], "--output_basename '/tmp/abs' contains a path separator"),
    (["--output_basename=a\nb"], "--output_basename 'a\\nb' contains a control character"),
    (["--output_basename=.."], "--output_basename '..' is not a file name"),
    (["--output_basename="], "--output_basename '' is empty"),
    (["--output_dir=cat.jpg"], "--output_dir cat.jpg exists and is not a directory"),
    (["--output_dir=cat.jpg/o"], "--output_dir cat.jpg/o: cannot create it ("),
    (["--memory_budget_mb=0"], "--memory_budget_mb must be > 0"),
    (["--max_image_pixels=-1"], "--max_image_pixels must be >= 0"),
    (["--max_image_pixels=1000"], "cat.jpg: image too large (40x32, 1,280 pixels; the limit "
                                  "against decompression bombs is 1,000); if you trust this "
                                  "file, allow it with --max_image_pixels=1280"),
    (["--max_size=0", "--memory_budget_mb=1", "--input_image=big.png"],
     "a 400x300 image with this network needs a memory budget of about"),
])
def test_main_bad_input_in_process(tmp_path, model_dir, monkeypatch, flags_, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # main sets it
    _photo(tmp_path / "cat.jpg")
    if "--input_image=big.png" in flags_:
        _photo(tmp_path / "big.png", (400, 300))
    (tmp_path / "bad.jpg").write_text("no")
    argv = ["transform", f"--checkpoint={model_dir}", "--input_image=cat.jpg", "--output_dir=o",
            *flags_]
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        with pytest.raises(ValueError) as e:
            transform.main(FLAGS(argv))
    assert isinstance(e.value, cli.usage_errors())
    assert str(e.value).startswith(message)
    # Not even the output folder.
    assert sorted(os.listdir(tmp_path)) == sorted(["bad.jpg", "cat.jpg"] + (
        ["big.png"] if "--input_image=big.png" in flags_ else []))
    assert not os.path.exists("/tmp/abs_0.png")


def test_cli_folder_with_corrupt_image_exits_1(tmp_path, model_dir):
    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = _run(f"--checkpoint={model_dir}", f"--input_image={src}", f"--output_dir={tmp_path}/o",
             "--which_styles=[1]")
    assert r.returncode == 1
    assert "[2/2]" in r.stderr and "b.png" in r.stderr and "1 of 2 images failed" in r.stderr
    assert "Traceback" not in r.stderr
    assert os.listdir(tmp_path / "o") == ["a_1.png"]


def test_tiled_in_process_same_files_and_a_progress_line(tmp_path, model, monkeypatch):
    """A budget that forces tiling writes the same pictures as the default; a photo that takes
    longer than the delay shows a progress line with ETA."""
    monkeypatch.setattr(transform_tiled(), "MAX_TILE_TENSOR", 16 * 1024)
    photo = _photo(tmp_path / "p.png", (70, 45))
    for name, budget in [("whole", None), ("tiled", 1)]:
        err = io.StringIO()
        transform.transform_images([photo], str(tmp_path / name), ["p"], model, [1, 2],
                                   out=io.StringIO(), err=err, memory_budget_mb=budget,
                                   progress_delay=0 if budget else 3)
    for style in (1, 2):
        a, b = (np.asarray(Image.open(tmp_path / d / f"p_{style}.png")) for d in ("whole", "tiled"))
        assert np.abs(a.astype(int) - b).max() <= 1
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith(f"{photo}: ") for line in lines)
    assert "ETA" in lines[0]


def transform_tiled():
    from image_stylization import tiled

    return tiled


def test_progress_line():
    now = [0.0]
    stream = io.StringIO()
    line = cli.ProgressLine("photo.jpg", stream, delay=3, log_interval=10, clock=lambda: now[0])
    for t, f in [(1, 0.1), (4, 0.2), (5, 0.25), (16, 0.5), (40, 1.0)]:
        now[0] = t
        line(f)
    line.close()
    assert stream.getvalue().splitlines() == [
        "photo.jpg:  20% ETA 16s", "photo.jpg:  50% ETA 16s", "photo.jpg: 100% done in 40s"]
