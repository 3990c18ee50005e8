"""Evaluation (image_stylization.evaluate): per-style losses checked against a numpy
computation from the VGG features, and the style grid's layout checked cell by cell."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from image_stylization import checkpoint, data, evaluate, style_dataset, vgg
from image_stylization.model import build_transformer
from test_train import assets, cli  # noqa: F401  (fixture)

STYLE_W = {"block1_conv2": 1e-4, "block2_conv2": 2e-4}
CONTENT_W = {"block2_conv2": 1.0}


@pytest.fixture(scope="module")
def model_dir(assets, tmp_path_factory):
    keras.utils.set_random_seed(5)
    model = build_transformer(2, "android_26", 0.25)
    names = style_dataset.read_style_dataset(assets["dataset"]).names
    return checkpoint.save_model(model, tmp_path_factory.mktemp("m") / "model", style_names=names)


def numpy_losses(model, assets, images, label):
    """Magenta's losses written out in numpy: MSE of features, MSE of Grams F^T F / (H W)."""
    style = style_dataset.read_style_dataset(assets["dataset"])
    net = vgg.build_loss_network("vgg19", assets["weights"], "avg", list(STYLE_W) + list(CONTENT_W))
    pastiche = model({"image": images, "style_weights": tf.one_hot([label] * len(images), 2)})
    fp = {k: v.numpy().astype(np.float64) for k, v in net(pastiche).items()}
    fc = {k: v.numpy().astype(np.float64) for k, v in net(images).items()}
    content = sum(w * ((fp[k] - fc[k]) ** 2).mean(axis=(1, 2, 3)) for k, w in CONTENT_W.items())
    style_loss = 0
    for k, w in STYLE_W.items():
        b, h, wd, c = fp[k].shape
        f = fp[k].reshape(b, h * wd, c)
        gram = np.einsum("bpi,bpj->bij", f, f) / (h * wd)
        style_loss = style_loss + w * ((gram - style.grams[k][label]) ** 2).mean(axis=(1, 2))
    return content.mean(), style_loss.mean()


def test_losses_and_style_grid(assets, model_dir, tmp_path):
    config = evaluate.EvalConfig(
        checkpoint=model_dir, style_dataset_file=assets["dataset"], eval_dir=str(tmp_path / "eval"),
        content_source=assets["photos"], image_size=32, batch_size=4, grid_max_images=3,
        content_weights=CONTENT_W, style_weights=STYLE_W,
    )
    result = evaluate.evaluate(config, log=lambda m: None)
    with open(result["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["style_name"] for r in rows] == ["hokusai_great_wave", "van_gogh_starry_night"]
    assert all(int(r["images"]) == 6 for r in rows)
    model = checkpoint.load_model(model_dir)
    images, _, _ = data.load_images(assets["photos"], 32)
    for label, row in enumerate(rows):
        content, style = numpy_losses(model, assets, images, label)
        np.testing.assert_allclose(float(row["content_loss"]), content, rtol=1e-4)
        np.testing.assert_allclose(float(row["style_loss"]), style, rtol=1e-4)
        np.testing.assert_allclose(float(row["total_loss"]), content + style, rtol=1e-4)

    grid = np.asarray(Image.open(result["grid"])).astype(np.float32) / 255
    s = 32
    assert grid.shape == ((1 + 3) * s, (1 + 2) * s, 3)
    assert grid[:s, :s].min() == 1.0  # blank corner
    photos = images[:3].numpy()
    for r in range(3):
        np.testing.assert_allclose(grid[(r + 1) * s:(r + 2) * s, :s], photos[r], atol=1 / 255 + 1e-6)
        for label in range(2):
            pastiche = model({"image": tf.constant(photos[r:r + 1]), "style_weights": tf.one_hot([label], 2)})[0]
            cell = grid[(r + 1) * s:(r + 2) * s, (label + 1) * s:(label + 2) * s]
            np.testing.assert_allclose(cell, pastiche, atol=1 / 255 + 1e-6)
    # The header shows each painting (different from each other and from the blank).
    assert np.abs(grid[:s, s:2 * s] - grid[:s, 2 * s:3 * s]).mean() > 0.05
    events = list((tmp_path / "eval").glob("events.out.tfevents.*"))
    tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(str(e)) for v in ev.summary.value}
    assert {"style_loss_style_0", "content_loss_style_1", "style_grid"} <= tags


def test_cli_missing_dataset_exits_2(model_dir, tmp_path):
    proc = cli("evaluate", f"--checkpoint={model_dir}", f"--style_dataset_file={tmp_path / 'none.tfrecord'}",
               f"--eval_dir={tmp_path / 'eval'}", f"--content_source={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "none.tfrecord" in proc.stderr
    assert not (tmp_path / "eval").exists()
