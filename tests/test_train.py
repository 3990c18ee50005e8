"""Training (image_stylization.train and image_stylization_train): real VGG-19 weights, real
paintings and photos from ../shared/data, tiny sizes. Checks that training lowers the loss, that
checkpoints resume bit-exactly (SIGTERM in-process, SIGKILL in a subprocess), that 2 replicas
equal 1, that MultiWorkerMirroredStrategy runs, and that bad flags give one line and exit 2."""

import dataclasses
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, shared_path
from image_stylization import checkpoint, losses, style_dataset, train, vgg
from image_stylization.errors import InputError
from image_stylization.model import build_transformer

PAINTINGS = ("van_gogh_starry_night.jpg", "hokusai_great_wave.jpg")
PHOTOS = ("n01440764_tench.jpg", "n01514668_cock.jpg", "n01530575_brambling.jpg",
          "n01644373_tree_frog.jpg", "n01698640_American_alligator.jpg", "n01855672_goose.jpg")
# Tiny end points keep most tests fast: VGG is cut after block 2.
TINY_STYLE = {"conv1": 1e-4, "conv2": 1e-4}
TINY_CONTENT = {"conv2": 1.0}
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")


_ASSETS = {}  # test_finetune and test_evaluate import this fixture: build the dataset once


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """A 2-style dataset (real paintings, real VGG-19 weights) and a folder of 6 real photos."""
    weights = shared_path("vgg", "vgg19_notop_q8.npz")
    if _ASSETS:
        return _ASSETS
    root = tmp_path_factory.mktemp("assets")
    (root / "styles").mkdir()
    (root / "photos").mkdir()
    for name in PAINTINGS:
        shutil.copy(shared_path("styles", name), root / "styles" / name)
    for name in PHOTOS:
        shutil.copy(shared_path("content", name), root / "photos" / name)
    dataset = root / "styles.tfrecord"
    style_dataset.write_style_dataset(
        str(root / "styles"), str(dataset), loss_network="vgg19", vgg_weights=str(weights),
        style_image_size=96, end_points=["conv1", "conv2", "conv3", "conv4"],
    )
    _ASSETS.update(dataset=str(dataset), photos=str(root / "photos"), weights=str(weights), root=root)
    return _ASSETS


def tiny_config(assets, train_dir, **overrides):
    fields = dict(
        train_dir=str(train_dir), style_dataset_file=assets["dataset"], content_source=assets["photos"],
        train_steps=4, batch_size=2, image_size=32, preset="android_26", alpha=0.25,
        content_weights=TINY_CONTENT, style_weights=TINY_STYLE, seed=11, save_interval_steps=100,
        summary_interval_steps=1, log_interval_seconds=0.0,
    )
    fields.update(overrides)
    return train.TrainConfig(**fields)


def model_weights(model_dir):
    model = checkpoint.load_model(model_dir)
    return {v.path: v.numpy() for v in model.weights}


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def quiet(_message):
    pass


def cli(job, *args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", f"image_stylization.image_stylization_{job}", *args],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout,
    )


def cli_args(config):
    weights = [f"--{name}={json.dumps(getattr(config, name))}"
               for name in ("content_weights", "style_weights") if getattr(config, name) is not None]
    return weights + [
        f"--train_dir={config.train_dir}", f"--style_dataset_file={config.style_dataset_file}",
        f"--content_source={config.content_source}", f"--train_steps={config.train_steps}",
        f"--batch_size={config.batch_size}", f"--image_size={config.image_size}",
        f"--preset={config.preset}", f"--alpha={config.alpha}",
        f"--seed={config.seed}",
        f"--save_interval_steps={config.save_interval_steps}",
        f"--summary_interval_steps={config.summary_interval_steps}",
    ]


# ----------------------------------------------------------------------------- learning


def fixed_batch_loss(model, assets, images):
    """Mean of Magenta's total loss over both styles for a fixed batch (computed outside train)."""
    style = style_dataset.read_style_dataset(assets["dataset"])
    content_w = losses.parse_loss_weights(losses.DEFAULT_CONTENT_WEIGHTS, "vgg19")
    style_w = losses.parse_loss_weights(losses.DEFAULT_STYLE_WEIGHTS, "vgg19")
    net = vgg.build_loss_network("vgg19", assets["weights"], "avg", list(content_w) + list(style_w))
    content_feats = net(images)
    total = []
    for label in range(style.num_styles):
        weights = tf.one_hot([label] * images.shape[0], style.num_styles)
        feats = net(model({"image": images, "style_weights": weights}))
        grams = {e: tf.repeat(style.grams[e][label][None], images.shape[0], 0) for e in style_w}
        c_loss, _ = losses.content_loss(feats, content_feats, content_w)
        s_loss, _ = losses.style_loss(feats, grams, style_w)
        total.append(float(tf.reduce_mean(c_loss + s_loss)))
    return float(np.mean(total))


@pytest.mark.slow
def test_twenty_steps_with_real_vgg_lower_the_loss(assets, tmp_path):
    from image_stylization import data

    config = tiny_config(
        assets, tmp_path / "run", train_steps=20, image_size=64, alpha=1.0,
        content_weights=None, style_weights=None, summary_interval_steps=5,
        image_summary_interval_steps=10,
    )
    images, _, _ = data.load_images(assets["photos"], 64, limit=2)
    keras.utils.set_random_seed(config.seed)  # the initialization train() starts from
    before = fixed_batch_loss(build_transformer(2, "android_26", 1.0), assets, images)
    result = train.train(config, log=quiet)
    after = fixed_batch_loss(checkpoint.load_model(result["model_dir"]), assets, images)
    assert after < 0.7 * before, (before, after)

    # The model is ready to use, with the dataset's style names and the recipe.
    manifest = json.loads((tmp_path / "run" / "model" / "manifest.json").read_text())
    assert manifest["style_names"] == ["hokusai_great_wave", "van_gogh_starry_night"]
    assert manifest["recipe"]["train_steps"] == 20 and manifest["preset"] == "android_26"
    # TensorBoard: losses per layer, learning rate, throughput and the three image summaries.
    tags = set()
    for event_file in (tmp_path / "run").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    expected = {"loss/total", "loss/content", "loss/style", "learning_rate", "images_per_second",
                "style_loss/block1_conv2", "style_loss/block4_conv4", "content_loss/block3_conv4",
                "image/0_inputs", "image/1_styles", "image/2_styled_inputs"}
    assert expected <= tags, expected - tags


def test_jit_compile_clipping_and_mixed_precision(assets, tmp_path):
    """--jit_compile (the whole step under XLA) trains the same as the plain step; a tiny
    --clip_gradient_norm keeps the weights where they started (Adam's step is ~ lr * |g| / eps
    for gradients far below eps); --mixed_precision (bfloat16 on CPU) trains finite losses near
    float32's and still writes a float32 model."""
    kw = dict(train_steps=3, image_size=48)
    plain = train.train(tiny_config(assets, tmp_path / "plain", **kw), log=quiet)
    jit = train.train(tiny_config(assets, tmp_path / "jit", jit_compile=True, **kw), log=quiet)
    np.testing.assert_allclose(jit["history"], plain["history"], rtol=1e-4)

    keras.utils.set_random_seed(11)  # tiny_config's seed: the weights train() starts from
    initial = {v.path: v.numpy() for v in build_transformer(2, "android_26", 0.25).weights}

    def moved(result):
        trained = {v.path: v.numpy() for v in result["model"].weights}
        return max(float(np.max(np.abs(trained[k] - initial[k]))) for k in initial)

    clipped = train.train(tiny_config(assets, tmp_path / "clip", clip_gradient_norm=1e-12, **kw), log=quiet)
    assert moved(plain) > 1e-3 and moved(clipped) < 1e-5, (moved(plain), moved(clipped))

    mixed = train.train(tiny_config(assets, tmp_path / "bf16", mixed_precision=True, jit_compile=True, **kw),
                        log=quiet)
    assert all(np.isfinite(mixed["history"]))
    np.testing.assert_allclose(mixed["history"][0], plain["history"][0], rtol=0.05)
    saved = checkpoint.load_model(tmp_path / "bf16" / "model")
    assert {v.dtype for v in saved.weights} == {"float32"}


# ----------------------------------------------------------------------------- resume


def _run_until_checkpoint(config, after_step, sig):
    """Starts the train CLI, sends `sig` once a checkpoint past `after_step` exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "image_stylization.image_stylization_train", *cli_args(config)],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        latest = tf.train.latest_checkpoint(config.train_dir)
        if latest and int(latest.rsplit("-", 1)[1]) > after_step:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.slow
def test_sigkill_sigterm_and_resume_equal_an_uninterrupted_run(assets, tmp_path):
    """Killed with SIGKILL after its first checkpoint, resumed and stopped with SIGTERM (which
    writes a checkpoint at once), resumed again to the end: the same weights, bit for bit, as a
    run never interrupted."""
    config = tiny_config(assets, tmp_path / "killed", train_steps=16, save_interval_steps=2)
    # The uninterrupted reference trains in a thread meanwhile (no signal handler off the main thread).
    straight = {}
    thread = threading.Thread(target=lambda: straight.update(train.train(
        tiny_config(assets, tmp_path / "straight", train_steps=16, save_interval_steps=2), log=quiet)))
    thread.start()
    code, err = _run_until_checkpoint(config, 0, signal.SIGKILL)
    assert code == -signal.SIGKILL, f"the run ended before it could be killed: {err[-2000:]}"
    first = int(tf.train.latest_checkpoint(config.train_dir).rsplit("-", 1)[1])

    code, err = _run_until_checkpoint(config, first, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    last_line = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM at step" in last_line and "rerun the same command to resume" in last_line
    stopped = int(tf.train.latest_checkpoint(config.train_dir).rsplit("-", 1)[1])
    assert first < stopped < 16 and not (tmp_path / "killed" / "model").exists()

    thread.join(timeout=300)  # before the next in-process run: train() sets global seeds/policy
    assert straight.get("step") == 16
    messages = []
    resumed = train.train(config, log=messages.append)
    assert messages[0].startswith("resumed from") and f"at step {stopped}" in messages[0]
    assert resumed["step"] == 16 and len(resumed["history"]) == 16 - stopped
    assert_same_weights(model_weights(straight["model_dir"]), model_weights(resumed["model_dir"]))


def test_resume_when_the_input_pipeline_changed_and_refuse_another_model(assets, tmp_path):
    """The saved tf.data position only fits the pipeline that wrote it: resuming with the same
    photos as TFRecords keeps weights and step and starts a new stream, with a warning. A
    checkpoint of a different network is a one-line usage error, never a traceback."""
    records = tmp_path / "photos.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        for name in PHOTOS:
            raw = open(os.path.join(assets["photos"], name), "rb").read()
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    config = tiny_config(assets, tmp_path / "run", train_steps=2, save_interval_steps=1)
    train.train(config, log=quiet)
    weights_at_2 = model_weights(tmp_path / "run" / "model")

    # Resumed at its last step (nothing left to train), the written model is the checkpoint's.
    messages = []
    moved = dataclasses.replace(config, content_source=str(records))
    train.train(moved, log=messages.append)
    assert messages[0].startswith("warning: ") and "content stream" in messages[0], messages[:2]
    assert messages[1].startswith("resumed from") and "at step 2" in messages[1]
    assert_same_weights(weights_at_2, model_weights(tmp_path / "run" / "model"))

    moved = dataclasses.replace(moved, train_steps=4)
    result = train.train(moved, log=quiet)
    assert result["step"] == 4 and len(result["history"]) == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-4")

    other = dataclasses.replace(moved, preset="paper", alpha=0.25, train_steps=6)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the failed restore's leftovers log every unplaced value when freed
    try:
        with pytest.raises(InputError, match=r"--train_dir=.*cannot resume from .*ckpt-4.*Use a new --train_dir"):
            train.train(other, log=quiet)
        gc.collect()
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------------------- distribution

REPLICA_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from image_stylization import train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = train.train(train.TrainConfig(**json.loads(sys.argv[1])), strategy=strategy, log=lambda m: None)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "history": result["history"]}))
"""


def test_two_replicas_match_one_replica(assets, tmp_path):
    """Global batch 4 on 1 replica vs 2 replicas x 2 (2 logical CPUs, set before TF starts).

    Every step's loss is an average over the global batch computed with the weights the previous
    steps left, so equal losses at steps 2 and 3 show equal updates in everything the loss
    depends on. Step 2 is held to 1e-5. Step 3 is held to 3e-4: Adam's first steps are
    g/sqrt(v) ~ +-lr whatever |g| is, so a weight whose gradient is rounding noise (the beta of
    each residual block's second norm is a null direction: the next instance norm removes any
    per-channel constant; others are nearly so) moves by +-lr with a sign set by the order of
    the sums, and after two such steps the loss differs by up to 5.7e-5 (seen on CI). The
    weights themselves are compared loosely for the same reason.
    """
    config = tiny_config(assets, tmp_path / "one", train_steps=3, batch_size=4)
    two = dataclasses.replace(config, train_dir=str(tmp_path / "two"))
    # The 2-replica run (logical devices must exist before TF starts) runs in a subprocess while
    # the 1-replica run trains here.
    proc = subprocess.Popen([sys.executable, "-c", REPLICA_SCRIPT, json.dumps(vars(two))], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        one_history = train.train(config, log=quiet)["history"]
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    out = {"one": {"replicas": 1, "history": one_history}, "two": json.loads(stdout.strip().splitlines()[-1])}
    assert (out["one"]["replicas"], out["two"]["replicas"]) == (1, 2)
    np.testing.assert_allclose(out["two"]["history"][:2], out["one"]["history"][:2], rtol=1e-5,
                               atol=0)
    np.testing.assert_allclose(out["two"]["history"][2], out["one"]["history"][2], rtol=3e-4,
                               atol=0)
    assert out["one"]["history"][-1] < out["one"]["history"][0]  # training did move the weights
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 2])
    one = checkpoint.load_model(tmp_path / "one" / "model")
    two = checkpoint.load_model(tmp_path / "two" / "model")
    for label in range(2):
        weights = tf.one_hot([label, label], 2)
        np.testing.assert_allclose(one({"image": images, "style_weights": weights}),
                                   two({"image": images, "style_weights": weights}), atol=1e-3)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_on_localhost(assets, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    config = tiny_config(assets, tmp_path / "mw", train_steps=2, save_interval_steps=1)
    procs = []
    for index in range(2):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "image_stylization.image_stylization_train", *cli_args(config),
             "--strategy=multi_worker"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert "(2 replicas)" in results[0][1]
    assert (tmp_path / "mw" / "model" / "model.keras").exists()  # written by the chief only
    assert (tmp_path / "mw" / "workers" / "worker-1" / "checkpoint").exists()


# ----------------------------------------------------------------------------- flags


def test_bad_configs_are_one_line_errors(assets, tmp_path):
    cases = [
        (dict(style_dataset_file=str(tmp_path / "missing.tfrecord")), "no such file"),
        (dict(num_styles=3), "--num_styles=3, but .* holds 2 styles"),
        (dict(image_size=8), "--image_size must be >= 16"),
        (dict(style_weights={"conv9": 1.0}), "--style_weights: unknown vgg19 end point"),
        (dict(style_weights={"conv5": 1.0}), "has no Grams for block5_conv4"),
        (dict(loss_network="vgg16"), "computed with vgg19"),
        (dict(style_coefficients="[1.0]"), "1 values, the style dataset has 2"),
        (dict(content_source=str(tmp_path / "nowhere")), "no such file, folder or glob"),
        (dict(vgg_weights=__file__), "unknown weights format"),
    ]
    for overrides, message in cases:
        # ConfigError, DataError and WeightsError are InputErrors: one line and exit 2 from the CLI.
        with pytest.raises(InputError, match=message):
            train.train(tiny_config(assets, tmp_path / "bad", **overrides), log=quiet)
    assert not (tmp_path / "bad" / "model").exists()


def test_cli_bad_flags_exit_2_with_one_line(assets, tmp_path):
    proc = cli("train", *cli_args(tiny_config(assets, tmp_path / "cli")), "--image_size=8")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "--image_size must be >= 16" in proc.stderr
    assert not (tmp_path / "cli").exists()
