"""Fine-tuning (image_stylization.train.finetune) onto the bundled tf_stylize_26 model: frozen
kernels, learning gamma/beta, and in append mode the 26 old styles bit-identical."""

import numpy as np
import pytest
import tensorflow as tf

from image_stylization import checkpoint, train
from image_stylization.model import conv_layers, norm_layers
from test_train import assets, cli, cli_args, quiet, tiny_config  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def base():
    try:
        return checkpoint.load_model(None)
    except checkpoint.CheckpointError as e:
        pytest.skip(f"the bundled model is not there: {e}")


def test_append_keeps_old_styles_bit_identical(assets, base, tmp_path):
    config = tiny_config(assets, tmp_path / "append", train_steps=3, preset="paper", alpha=1.0)
    result = train.finetune(config, checkpoint=None, mode="append", log=quiet)
    new = checkpoint.load_model(result["model_dir"])
    n = len(base.style_names)
    assert new.style_names == base.style_names + ["hokusai_great_wave", "van_gogh_starry_night"]
    assert new.manifest["preset"] == "android_26" and new.manifest["recipe"]["mode"] == "finetune_append"
    for layer in conv_layers(base):
        np.testing.assert_array_equal(layer.kernel.numpy(), new.get_layer(layer.name).kernel.numpy())
    moved = 0.0
    for layer in norm_layers(base):
        other = new.get_layer(layer.name)
        np.testing.assert_array_equal(layer.gamma.numpy(), other.gamma.numpy()[:n])
        np.testing.assert_array_equal(layer.beta.numpy(), other.beta.numpy()[:n])
        moved = max(moved, float(np.abs(other.gamma.numpy()[n:] - 1).max()),
                    float(np.abs(other.beta.numpy()[n:]).max()))
    assert moved > 1e-4  # the two new rows learned
    # Old styles render exactly as before (same weights, same graph).
    image = tf.random.stateless_uniform([1, 40, 48, 3], seed=[3, 4])
    for style in (0, 7, n - 1):
        old = base({"image": image, "style_weights": tf.one_hot([style], n)}).numpy()
        now = new({"image": image, "style_weights": tf.one_hot([style], n + 2)}).numpy()
        np.testing.assert_array_equal(old, now)


def test_replace_trains_a_fresh_table_on_frozen_kernels(assets, base, tmp_path):
    config = tiny_config(assets, tmp_path / "replace", train_steps=2)
    result = train.finetune(config, checkpoint=checkpoint.bundled_checkpoint_dir(), mode="replace", log=quiet)
    new = checkpoint.load_model(result["model_dir"])
    assert new.style_names == ["hokusai_great_wave", "van_gogh_starry_night"]
    for layer in conv_layers(base):
        np.testing.assert_array_equal(layer.kernel.numpy(), new.get_layer(layer.name).kernel.numpy())
    gammas = np.concatenate([l.gamma.numpy().ravel() for l in norm_layers(new)])
    betas = np.concatenate([l.beta.numpy().ravel() for l in norm_layers(new)])
    assert all(l.gamma.shape[0] == 2 for l in norm_layers(new))
    # Started at gamma 1, beta 0 (Magenta), then 2 Adam steps of about lr (1e-3) each.
    assert 1e-4 < np.abs(gammas - 1).max() < 2.5e-3
    assert 1e-4 < np.abs(betas).max() < 2.5e-3


def test_cli_bad_checkpoint_exits_2(assets, tmp_path):
    config = tiny_config(assets, tmp_path / "cli")
    proc = cli("finetune", *cli_args(config), f"--checkpoint={tmp_path / 'nothing'}", "--finetune_mode=append")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "--checkpoint" in proc.stderr
